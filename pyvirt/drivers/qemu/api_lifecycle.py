"""The QEMU driver's procedures for lifecycle and metadata (reset, metadata, title and description).

A mixin of :class:`.connection.QemuConnection`: methods check flags, find the
domain (``self._obj``/``self._active``), take the right job and call into the
driver, as the core methods there do.
"""

from __future__ import annotations


class LifecycleAPI:
    pass
