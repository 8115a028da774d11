"""The QEMU driver's procedures for devices and tuning (attach/detach/update devices, memory, vCPUs).

A mixin of :class:`.connection.QemuConnection`: methods check flags, find the
domain (``self._obj``/``self._active``), take the right job and call into the
driver, as the core methods there do.
"""

from __future__ import annotations


class DevicesAPI:
    pass
