"""The QEMU driver's procedures for console and graphics (openConsole, screenshot, sendKey, openGraphicsFD).

A mixin of :class:`.connection.QemuConnection`: methods check flags, find the
domain (``self._obj``/``self._active``), take the right job and call into the
driver, as the core methods there do.  The work is in :mod:`.console` and
:mod:`.graphics`.
"""

from __future__ import annotations

from typing import Any

from ...driver import FdReply, StreamSink
from ...errors import check_flags
from ..domainlist import not_running
from . import console, graphics
from .jobs import JobKind


def _running(obj: Any) -> Any:
    if not obj.active or obj.process is None:
        raise not_running(obj)
    return obj


class ConsoleAPI:
    async def domain_open_console(self, dom: Any, dev_name: str | None, flags: int) -> tuple[None, StreamSink]:
        # As libvirt: no job (a console never waits on QEMU, and works during a migration).
        obj = self._active(dom)  # type: ignore[attr-defined]
        return None, console.open_console(self.driver, obj, dev_name, flags)  # type: ignore[attr-defined]

    async def domain_screenshot(self, dom: Any, screen: int, flags: int) -> tuple[str, StreamSink]:
        check_flags(flags, 0, "qemuDomainScreenshot")
        obj = self._active(dom)  # type: ignore[attr-defined]
        async with self.driver.job_guard(obj, JobKind.QUERY):  # type: ignore[attr-defined]
            emulator = obj.live.devices.emulator or self.driver.cfg.emulator  # type: ignore[attr-defined]
            return await graphics.screenshot(_running(obj), emulator, screen, flags)

    async def domain_send_key(self, dom: Any, codeset: int, holdtime: int, keycodes: list[int],
                              flags: int) -> None:
        check_flags(flags, 0, "qemuDomainSendKey")
        qnums = graphics.qnum_keycodes(codeset, keycodes)
        obj = self._active(dom)  # type: ignore[attr-defined]
        async with self.driver.job_guard(obj, JobKind.MODIFY):  # type: ignore[attr-defined]
            await graphics.send_key(_running(obj), qnums, holdtime)

    async def domain_open_graphics_fd(self, dom: Any, idx: int, flags: int) -> FdReply:
        obj = self._active(dom)  # type: ignore[attr-defined]
        protocol = graphics.graphics_protocol(obj, idx, flags)
        async with self.driver.job_guard(obj, JobKind.MODIFY):  # type: ignore[attr-defined]
            return await graphics.open_graphics_fd(_running(obj), protocol, flags)
