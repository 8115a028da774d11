"""The QEMU driver's procedures for console and graphics (openConsole, screenshot, sendKey, openGraphicsFD).

A mixin of :class:`.connection.QemuConnection`: methods check flags, find the
domain (``self._obj``/``self._active``), take the right job and call into the
driver, as the core methods there do.
"""

from __future__ import annotations


class ConsoleAPI:
    pass
