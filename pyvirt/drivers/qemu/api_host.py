"""The QEMU driver's procedures for host and capabilities (node info and memory, sysinfo, domain capabilities, CPU models).

A mixin of :class:`.connection.QemuConnection`: methods check flags, find the
domain (``self._obj``/``self._active``), take the right job and call into the
driver, as the core methods there do.
"""

from __future__ import annotations


class HostAPI:
    pass
