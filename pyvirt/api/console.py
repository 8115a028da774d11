"""libvirt-python's methods for console and graphics (openConsole, screenshot, sendKey, openGraphicsFD)."""

from __future__ import annotations

from typing import Any, Callable


class DomainConsoleAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference


class ConnectConsoleAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: the one place every call goes through
