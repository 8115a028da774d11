"""REMOTE procedures for storage pool, network and node device events: registration and the event messages.

Rows as in :mod:`.remote` (numbers, names and fields exactly as libvirt's
remote_protocol.x).  Registration is answered by the daemon (kind DAEMON),
the event messages are MESSAGE rows.  Unlike domain events these have one
form only, the callback one: every message starts with the callback id the
registration returned, then the object, then the event's own fields.
"""

from __future__ import annotations

from ..xdr import Network, NonnullNetwork, NonnullNodeDevice, NonnullStoragePool, Optional, StoragePool
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
    _proc(374, "CONNECT_NODE_DEVICE_EVENT_REGISTER_ANY", [("eventID", i), ("dev", Optional(NonnullNodeDevice))],
          [("callbackID", i)], high=True, kind=DAEMON),
    _proc(375, "CONNECT_NODE_DEVICE_EVENT_DEREGISTER_ANY", [("callbackID", i)], high=True, kind=DAEMON),
    _proc(376, "NODE_DEVICE_EVENT_LIFECYCLE",
          [("callbackID", i), ("dev", NonnullNodeDevice), ("event", i), ("detail", i)], kind=MESSAGE),
    _proc(377, "NODE_DEVICE_EVENT_UPDATE", [("callbackID", i), ("dev", NonnullNodeDevice)], kind=MESSAGE),
]

# The kinds of object event, each with its event ids -> the message that carries them.
STORAGE, NETWORK, NODEDEV = "storage", "network", "nodedev"
EVENT_MESSAGES: dict[str, dict[int, Procedure]] = {
    STORAGE: {0: PROCEDURES[5], 1: PROCEDURES[6]},    # VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, _REFRESH
    NETWORK: {0: PROCEDURES[2]},                      # VIR_NETWORK_EVENT_ID_LIFECYCLE
    NODEDEV: {0: PROCEDURES[9], 1: PROCEDURES[10]},   # VIR_NODE_DEVICE_EVENT_ID_LIFECYCLE, _UPDATE
}
"""Object kind -> event id -> its MESSAGE row (``callbackID``, object, then the event's fields)."""

KIND_NAMES = {STORAGE: "storage pool", NETWORK: "network", NODEDEV: "node device"}
"""How libvirtd's messages name each kind ("unsupported storage pool event ID 7")."""

OBJECT_KEYS = {STORAGE: ("pool", "uuid"), NETWORK: ("net", "uuid"), NODEDEV: ("dev", "name")}
"""Kind -> (the event record's object field, what a registration's filter matches on):
pools and networks are told apart by UUID, node devices (which have none) by name."""
