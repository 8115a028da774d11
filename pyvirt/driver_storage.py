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

from .errors import ErrorDomain, api_name, no_support
from .refs import FrozenRecord, StoragePoolRef

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The storage procedures a driver may implement, in procedure-number order
# (libvirt's remote_protocol.x; rows in pyvirt.rpc.protocol.remote_storage).
STORAGE_METHODS: tuple[str, ...] = (
    "connect_num_of_storage_pools", "connect_list_storage_pools",
    "connect_num_of_defined_storage_pools", "connect_list_defined_storage_pools",
    "connect_find_storage_pool_sources", "storage_pool_create_xml", "storage_pool_define_xml",
    "storage_pool_create", "storage_pool_build", "storage_pool_destroy", "storage_pool_delete",
    "storage_pool_undefine", "storage_pool_refresh", "storage_pool_lookup_by_name",
    "storage_pool_lookup_by_uuid", "storage_pool_lookup_by_volume", "storage_pool_get_info",
    "storage_pool_get_xml_desc", "storage_pool_get_autostart", "storage_pool_set_autostart",
    "storage_pool_num_of_volumes", "storage_pool_list_volumes", "storage_vol_create_xml",
    "storage_vol_delete", "storage_vol_lookup_by_name", "storage_vol_lookup_by_key",
    "storage_vol_lookup_by_path", "storage_vol_get_info", "storage_vol_get_xml_desc",
    "storage_vol_get_path", "storage_vol_create_xml_from", "storage_pool_is_active",
    "storage_pool_is_persistent", "storage_vol_wipe", "storage_vol_upload", "storage_vol_download",
    "storage_vol_wipe_pattern", "storage_vol_resize", "connect_list_all_storage_pools",
    "storage_pool_list_all_volumes", "storage_vol_get_info_flags",
    "storage_pool_lookup_by_target_path", "connect_get_storage_pool_capabilities",
)

# The storage methods a read-only connection may call (lists, lookups, info, XML).
STORAGE_READ_ONLY_SAFE: frozenset[str] = frozenset({
    "connect_num_of_storage_pools", "connect_list_storage_pools",
    "connect_num_of_defined_storage_pools", "connect_list_defined_storage_pools",
    "connect_list_all_storage_pools", "connect_get_storage_pool_capabilities",
    "storage_pool_lookup_by_name", "storage_pool_lookup_by_uuid", "storage_pool_lookup_by_volume",
    "storage_pool_lookup_by_target_path", "storage_pool_get_info", "storage_pool_get_xml_desc",
    "storage_pool_get_autostart", "storage_pool_is_active", "storage_pool_is_persistent",
    "storage_pool_num_of_volumes", "storage_pool_list_volumes", "storage_pool_list_all_volumes",
    "storage_vol_lookup_by_name", "storage_vol_lookup_by_key", "storage_vol_lookup_by_path",
    "storage_vol_get_info", "storage_vol_get_info_flags", "storage_vol_get_xml_desc",
    "storage_vol_get_path",
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
        raise no_support(self.error_domain, api_name(name))

    method.__name__ = name
    return method


for _name in STORAGE_METHODS:
    setattr(StorageConnection, _name, _unsupported(_name))
