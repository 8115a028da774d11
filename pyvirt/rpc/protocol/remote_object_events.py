"""REMOTE procedures for storage pool and network events: registration and the event messages.

Rows as in :mod:`.remote` (numbers, names and fields exactly as libvirt's
remote_protocol.x).  Registration is answered by the daemon (kind DAEMON),
the event messages are MESSAGE rows.  Unlike domain events these have one
form only, the callback one: every message starts with the callback id the
registration returned, then the object, then the event's own fields.
"""

from __future__ import annotations

from ..xdr import Network, NonnullNetwork, NonnullStoragePool, StoragePool
from . import Procedure
from .rows import DAEMON, MESSAGE, _proc, i

PROCEDURES: list[Procedure] = [
    _proc(313, "CONNECT_NETWORK_EVENT_REGISTER_ANY", [("eventID", i), ("net", Network)],
          [("callbackID", i)], high=True, kind=DAEMON),
    _proc(314, "CONNECT_NETWORK_EVENT_DEREGISTER_ANY", [("callbackID", i)], high=True, kind=DAEMON),
    _proc(315, "NETWORK_EVENT_LIFECYCLE",
          [("callbackID", i), ("net", NonnullNetwork), ("event", i), ("detail", i)], kind=MESSAGE),
    _proc(368, "CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY", [("eventID", i), ("pool", StoragePool)],
          [("callbackID", i)], high=True, kind=DAEMON),
    _proc(369, "CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY", [("callbackID", i)], high=True, kind=DAEMON),
    _proc(370, "STORAGE_POOL_EVENT_LIFECYCLE",
          [("callbackID", i), ("pool", NonnullStoragePool), ("event", i), ("detail", i)], kind=MESSAGE),
    _proc(373, "STORAGE_POOL_EVENT_REFRESH",
          [("callbackID", i), ("pool", NonnullStoragePool)], kind=MESSAGE),
]

# The kinds of object event, each with its event ids -> the message that carries them.
STORAGE, NETWORK = "storage", "network"
EVENT_MESSAGES: dict[str, dict[int, Procedure]] = {
    STORAGE: {0: PROCEDURES[5], 1: PROCEDURES[6]},    # VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, _REFRESH
    NETWORK: {0: PROCEDURES[2]},                      # VIR_NETWORK_EVENT_ID_LIFECYCLE
}
"""Object kind -> event id -> its MESSAGE row (``callbackID``, object, then the event's fields)."""

KIND_NAMES = {STORAGE: "storage pool", NETWORK: "network"}
"""How libvirtd's messages name each kind ("unsupported storage pool event ID 7")."""
