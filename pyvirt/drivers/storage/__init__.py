"""The storage driver (libvirt's secondary storage driver): pools of type
``dir`` and ``logical`` and their volumes, for every hypervisor connection
of the daemon.  :class:`StorageDriver` is host-wide; each client gets a
:class:`StorageConnection` from :meth:`StorageDriver.connect`."""

from .driver import StorageDriver
from .connection import StorageConnection

__all__ = ["StorageDriver", "StorageConnection"]
