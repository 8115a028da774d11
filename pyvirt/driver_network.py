"""The network-driver contract (libvirt's secondary network driver).

A network driver hands out one :class:`NetworkConnection` per client
connection; the hypervisor connection carries it as ``conn.network`` and
forwards every name in :data:`NETWORK_METHODS` to it (see
:meth:`pyvirt.driver.HypervisorConnection.__getattr__`).  Names, argument
order and return convention are those of :mod:`pyvirt.driver`; a network
argument is a :class:`pyvirt.refs.NetworkRef`.

Every method raises VIR_ERR_NO_SUPPORT by default.
"""

from __future__ import annotations

from .errors import ErrorDomain, api_name, no_support
from .refs import FrozenRecord, NetworkRef

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The network procedures a driver may implement, in procedure-number order
# (the network driver's owner fills this list as procedures are added).
NETWORK_METHODS: tuple[str, ...] = (
    "connect_list_defined_networks", "connect_list_networks", "network_create", "network_create_xml",
    "network_define_xml", "network_destroy", "network_get_xml_desc", "network_get_autostart",
    "network_get_bridge_name", "network_lookup_by_name", "network_lookup_by_uuid",
    "network_set_autostart", "network_undefine", "connect_num_of_defined_networks",
    "connect_num_of_networks", "network_is_active", "network_is_persistent",
    "connect_list_all_networks", "network_update", "network_get_dhcp_leases",
    "network_define_xml_flags", "network_create_xml_flags",
)

# The network methods a read-only connection may call (lists, lookups, XML, leases).
NETWORK_READ_ONLY_SAFE: frozenset[str] = frozenset({
    "connect_list_defined_networks", "connect_list_networks", "connect_num_of_defined_networks",
    "connect_num_of_networks", "connect_list_all_networks", "network_lookup_by_name",
    "network_lookup_by_uuid", "network_get_xml_desc", "network_get_autostart",
    "network_get_bridge_name", "network_is_active", "network_is_persistent",
    "network_get_dhcp_leases",
})


class NetworkEvent(FrozenRecord):
    """An event about a virtual network: ``event_id`` is VIR_NETWORK_EVENT_ID_*
    (0 LIFECYCLE); ``detail`` is the message's fields after ``net`` (``(event, detail)``)."""

    __slots__ = ("event_id", "net", "detail")
    _fields = __match_args__ = __slots__
    event_id: int
    net: NetworkRef
    detail: tuple[Any, ...]

    def __init__(self, event_id: int, net: NetworkRef, detail: tuple[Any, ...]) -> None:
        self._set(event_id=event_id, net=net, detail=detail)


class NetworkConnection:
    """One client's connection to a network driver.  Subclasses override what they support."""

    error_domain: ErrorDomain = ErrorDomain.NETWORK

    def __init__(self, info: Any, events: Any) -> None:   # pyvirt.driver.ConnectionInfo, EventBus
        self.info = info
        self.events = events      # NetworkEvent fan-out, host-wide


def _unsupported(name: str) -> Any:
    async def method(self: NetworkConnection, *args: Any) -> Any:
        raise no_support(self.error_domain, api_name(name))

    method.__name__ = name
    return method


for _name in NETWORK_METHODS:
    setattr(NetworkConnection, _name, _unsupported(_name))
