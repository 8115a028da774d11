"""Autodestroy: domains tied to the client connection that started them.

``VIR_DOMAIN_START_AUTODESTROY`` (and the destination of a migration until
Finish) registers a domain against a connection; when that connection
closes, every domain still registered to it is destroyed.  A domain that
stops for any other reason is unregistered, so a later connection close
never touches a guest that was restarted by someone else.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from ..driver import HypervisorConnection

log = logging.getLogger(__name__)

DestroyFn = Callable[[str], Awaitable[None]]


class AutoDestroy:
    """Registry connection → domain UUIDs, destroying them when the connection closes."""

    def __init__(self, destroy: DestroyFn) -> None:
        self._destroy = destroy
        self._owners: dict[str, HypervisorConnection] = {}          # uuid -> connection
        self._hooks: dict[int, Callable[[], Awaitable[None]]] = {}  # id(conn) -> close hook

    def register(self, conn: HypervisorConnection, uuid: str) -> None:
        self._owners[uuid] = conn
        key = id(conn)
        if key not in self._hooks:
            async def on_close(conn: HypervisorConnection = conn) -> None:
                await self._connection_closed(conn)
            self._hooks[key] = on_close
            conn.add_close_hook(on_close)

    def unregister(self, uuid: str) -> None:
        conn = self._owners.pop(uuid, None)
        if conn is not None and conn not in self._owners.values():
            hook = self._hooks.pop(id(conn), None)
            if hook is not None:
                conn.remove_close_hook(hook)

    def owner(self, uuid: str) -> HypervisorConnection | None:
        return self._owners.get(uuid)

    async def _connection_closed(self, conn: HypervisorConnection) -> None:
        self._hooks.pop(id(conn), None)
        doomed = [uuid for uuid, owner in self._owners.items() if owner is conn]
        for uuid in doomed:
            self._owners.pop(uuid, None)
            log.info("autodestroying domain %s: its connection closed", uuid)
            try:
                await self._destroy(uuid)
            except Exception:  # one failure must not spare the others
                log.exception("autodestroy of %s failed", uuid)
