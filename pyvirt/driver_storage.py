"""The storage-driver contract (libvirt's secondary storage driver).

A storage driver hands out one :class:`StorageConnection` per client
connection; the hypervisor connection carries it as ``conn.storage`` and
forwards every name in :data:`STORAGE_METHODS` to it (see
:meth:`pyvirt.driver.HypervisorConnection.__getattr__`), so the daemon's
dispatcher and the in-process client call storage procedures on the
connection exactly as domain ones.  Names, argument order and return
convention are those of :mod:`pyvirt.driver`: the snake-case procedure name
of ``remote_protocol.x``, wire-order arguments, a pool argument is a
:class:`pyvirt.refs.StoragePoolRef`, a volume a :class:`pyvirt.refs.StorageVolRef`.

Every method raises VIR_ERR_NO_SUPPORT by default.
"""

from __future__ import annotations

from .errors import ErrorDomain, no_support
from .refs import FrozenRecord, StoragePoolRef

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The storage procedures a driver may implement, in procedure-number order
# (the storage driver's owner fills this list as procedures are added).
STORAGE_METHODS: tuple[str, ...] = (
)

# The storage methods a read-only connection may call (lists, lookups, info, XML).
STORAGE_READ_ONLY_SAFE: frozenset[str] = frozenset({
})


class PoolEvent(FrozenRecord):
    """An event about a storage pool: ``event_id`` is VIR_STORAGE_POOL_EVENT_ID_*
    (0 LIFECYCLE, 1 REFRESH); ``detail`` is the message's fields after ``pool``
    (LIFECYCLE ``(event, detail)``, REFRESH ``()``)."""

    __slots__ = ("event_id", "pool", "detail")
    _fields = __match_args__ = __slots__
    event_id: int
    pool: StoragePoolRef
    detail: tuple[Any, ...]

    def __init__(self, event_id: int, pool: StoragePoolRef, detail: tuple[Any, ...]) -> None:
        self._set(event_id=event_id, pool=pool, detail=detail)


class StorageConnection:
    """One client's connection to a storage driver.  Subclasses override what they support."""

    error_domain: ErrorDomain = ErrorDomain.STORAGE

    def __init__(self, info: Any, events: Any) -> None:   # pyvirt.driver.ConnectionInfo, EventBus
        self.info = info
        self.events = events      # PoolEvent fan-out, host-wide


def _unsupported(name: str) -> Any:
    async def method(self: StorageConnection, *args: Any) -> Any:
        raise no_support(self.error_domain, name)

    method.__name__ = name
    return method


for _name in STORAGE_METHODS:
    setattr(StorageConnection, _name, _unsupported(_name))
