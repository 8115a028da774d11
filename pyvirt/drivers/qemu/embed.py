"""``qemu:///embed?root=DIR``: the QEMU driver inside the client's own process.

One driver per root per process, created on first open; guests it starts
are children of this process and live as long as it does not destroy them.
The driver holds the root's lock (:mod:`.rootlock`) from its first open
until :func:`close_all`, so a pyvirtd on the same directory, or another
process embedding it, is refused instead of fighting over the guests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...driver import ConnectionInfo
from ..network.connection import NetworkConnection
from ..network.driver import NetworkDriver
from ...uri import URI, embed_root
from ..storage import StorageDriver
from .config import QemuConfig
from .connection import QemuConnection
from . import netsource, storage_source
from .driver import QemuDriver
from .rootlock import RootLock, acquire

EMBED_HOLDER = "an embedded qemu driver (qemu:///embed)"

_DRIVERS: dict[str, QemuDriver] = {}
_LOCKS: dict[str, RootLock] = {}
_NETWORKS: dict[str, NetworkDriver] = {}
_STORAGE: dict[str, StorageDriver] = {}
_LOCK = asyncio.Lock()


async def driver_for_root(root: str, connector: Any = None) -> QemuDriver:
    async with _LOCK:
        drv = _DRIVERS.get(root)
        if drv is None:
            lock = acquire(root, EMBED_HOLDER)
            try:
                drv = QemuDriver(QemuConfig(root=root), connector=connector)
                await drv.initialize()
            except BaseException:
                lock.release()
                raise
            # the root's networks too (their files beside the guests'), as pyvirtd serves them
            nets = NetworkDriver(root, default_network=False)   # no package installs one here
            try:
                await nets.initialize()
                netsource.wire(drv, nets)
                await netsource.reattach(drv)
            except BaseException:
                await drv.close()
                lock.release()
                raise
            storage = StorageDriver(root)   # the root's pools, their files beside the guests'
            try:
                await storage.initialize()
            except BaseException:
                await drv.close()
                lock.release()
                raise
            storage_source.wire(drv, storage)
            _STORAGE[root] = storage
            _DRIVERS[root] = drv
            _LOCKS[root] = lock
            _NETWORKS[root] = nets
        return drv


async def open_connection(uri: URI, info: ConnectionInfo, connector: Any = None) -> QemuConnection:
    """``connector`` opens connections to other hosts (peer-to-peer migration);
    the client library passes its remote driver, since drivers do not speak RPC."""
    root = embed_root(uri)
    conn = QemuConnection(info, await driver_for_root(root, connector), uri=str(uri))
    conn.storage = _STORAGE[root].connect(info)
    conn.network = NetworkConnection(info, _NETWORKS[root])
    return conn


async def close_all() -> None:
    """Stop managing every embedded root (guests keep running)."""
    for root, drv in list(_DRIVERS.items()):
        await drv.close()
        storage = _STORAGE.pop(root, None)
        if storage is not None:
            await storage.close()
        nets = _NETWORKS.pop(root, None)
        if nets is not None:
            await nets.close()
        _LOCKS.pop(root).release()
    _DRIVERS.clear()
