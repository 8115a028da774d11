"""``qemu:///embed?root=DIR``: the QEMU driver inside the client's own process.

One driver per root per process, created on first open; guests it starts
are children of this process and live as long as it does not destroy them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...driver import ConnectionInfo
from ...uri import URI, embed_root
from .config import QemuConfig
from .connection import QemuConnection
from .driver import QemuDriver

_DRIVERS: dict[str, QemuDriver] = {}
_LOCK = asyncio.Lock()


async def driver_for_root(root: str, connector: Any = None) -> QemuDriver:
    async with _LOCK:
        drv = _DRIVERS.get(root)
        if drv is None:
            drv = QemuDriver(QemuConfig(root=root), connector=connector)
            await drv.initialize()
            _DRIVERS[root] = drv
        return drv


async def open_connection(uri: URI, info: ConnectionInfo, connector: Any = None) -> QemuConnection:
    """``connector`` opens connections to other hosts (peer-to-peer migration);
    the client library passes its remote driver, since drivers do not speak RPC."""
    root = embed_root(uri)
    return QemuConnection(info, await driver_for_root(root, connector), uri=str(uri))


async def close_all() -> None:
    """Stop managing every embedded root (guests keep running)."""
    for drv in list(_DRIVERS.values()):
        await drv.close()
    _DRIVERS.clear()
