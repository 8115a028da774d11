"""virsh's commands for console and graphics (openConsole, screenshot, sendKey, openGraphicsFD)."""

from __future__ import annotations
