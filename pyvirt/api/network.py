"""libvirt-python's network API: virNetwork and virConnect's network methods.

Delegation only, as :mod:`pyvirt.domain`: every call is the driver method of
the same REMOTE procedure (``network_get_xml_desc`` ...), served by the
connection's network driver (``conn.network``, see :mod:`pyvirt.driver_network`).
Return values are libvirt-python's: 0 for actions, ints for flags, lists of
handles, and DHCP leases as dicts with libvirt-python's keys.
"""

from __future__ import annotations

from collections.abc import Callable

from ..refs import NetworkRef, format_uuid

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any
    from ..connection import virConnect

# virNetworkDHCPLease's fields, in remote_network_dhcp_lease's wire order: the
# keys of libvirt-python's lease dicts.
LEASE_KEYS = ("iface", "expirytime", "type", "mac", "iaid", "ipaddr", "prefix", "hostname", "clientid")


# VIR_DRV_FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER (see virNetwork.update)
_UPDATE_HAS_CORRECT_ORDER = 16


def lease_dict(lease: Any) -> dict[str, Any]:
    """One lease as libvirt-python returns it, from the driver's record or wire tuple."""
    if isinstance(lease, dict):
        return {key: lease.get(key) for key in LEASE_KEYS}
    if hasattr(lease, "ipaddr"):
        return {key: getattr(lease, key) for key in LEASE_KEYS}
    return dict(zip(LEASE_KEYS, lease))


# -- arguments as libvirt-python takes them ------------------------------------------

def _text(value: Any, name: str, api: str, position: int, nullable: bool = False) -> Any:
    """A string argument: None is libvirt's "must not be NULL" (unless the C API takes
    NULL), any other type libvirt-python's TypeError."""
    if value is None:
        if nullable:
            return None
        from ..errors import ErrorDomain, ErrorLevel, ErrorNumber, libvirtError
        raise libvirtError(f"{name} in {api} must not be NULL", ErrorNumber.INVALID_ARG, ErrorDomain.NETWORK,
                           ErrorLevel.ERROR, None, name, None, 0, 0)
    if not isinstance(value, str):
        raise TypeError(f"{api}() argument {position} must be str or None, not {type(value).__name__}")
    return value


def _uint(value: Any) -> int:
    """An unsigned int (flags, command, section): any Python int, cut to 32 bits as
    libvirt-python's "I" conversion does; anything else a TypeError."""
    import operator
    return operator.index(value) & 0xFFFFFFFF


def _cint(value: Any) -> int:
    """A C int: libvirt-python's "i" conversion and its OverflowError."""
    import operator
    number = operator.index(value)
    if number > 0x7FFFFFFF:
        raise OverflowError("signed integer is greater than maximum")
    if number < -0x80000000:
        raise OverflowError("signed integer is less than minimum")
    return number


class virNetwork:  # noqa: N801 - libvirt-python's name
    """A virtual network handle: a :class:`pyvirt.refs.NetworkRef` plus its connection."""

    def __init__(self, conn: "virConnect", ref: NetworkRef) -> None:
        self._conn = conn
        self._ref = ref

    def _call(self, method: str, *args: Any) -> Any:
        return self._conn._call(method, self._ref, *args)

    def connect(self) -> "virConnect":
        return self._conn

    # -- identity ----------------------------------------------------------------
    def name(self) -> str:
        return self._ref.name

    def UUID(self) -> bytes:
        return self._ref.uuid

    def UUIDString(self) -> str:
        return format_uuid(self._ref.uuid)

    # -- lifecycle ---------------------------------------------------------------
    def create(self) -> int:
        self._call("network_create")
        return 0

    def destroy(self) -> int:
        self._call("network_destroy")
        return 0

    def undefine(self) -> int:
        self._call("network_undefine")
        return 0

    def setAutostart(self, autostart: int) -> int:
        self._call("network_set_autostart", _cint(autostart))
        return 0

    def update(self, command: int, section: int, parentIndex: int, xml: str, flags: int = 0) -> int:
        # libvirt 9.0's virNetworkUpdate: its first releases passed command and section the
        # wrong way round; to a driver that does not report the fixed order
        # (VIR_DRV_FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER) the client sends them swapped,
        # so both ends agree whatever their age, as libvirt's own client does
        command, section, parentIndex = _uint(command), _uint(section), _cint(parentIndex)
        xml, flags = _text(xml, "xml", "virNetworkUpdate", 5), _uint(flags)
        if self._conn._call("connect_supports_feature", _UPDATE_HAS_CORRECT_ORDER):
            first, second = command, section
        else:
            first, second = section, command
        self._call("network_update", first, second, parentIndex, xml, flags)
        return 0

    # -- queries -----------------------------------------------------------------
    def XMLDesc(self, flags: int = 0) -> str:
        return self._call("network_get_xml_desc", _uint(flags))

    def bridgeName(self) -> str:
        return self._call("network_get_bridge_name")

    def autostart(self) -> int:
        return int(self._call("network_get_autostart"))

    def isActive(self) -> int:
        return int(self._call("network_is_active"))

    def isPersistent(self) -> int:
        return int(self._call("network_is_persistent"))

    def DHCPLeases(self, mac: str | None = None, flags: int = 0) -> list[dict[str, Any]]:
        mac = _text(mac, "mac", "virNetworkGetDHCPLeases", 2, nullable=True)
        leases, _count = self._call("network_get_dhcp_leases", mac, 1, _uint(flags))
        return [lease_dict(lease) for lease in leases]

    # -- network ports (libvirt 5.5's virNetworkPort): pyvirt's drivers have none ------
    def listAllPorts(self, flags: int = 0) -> list[Any]:
        raise _no_ports("virNetworkListAllPorts")

    def portCreateXML(self, xmldesc: str, flags: int = 0) -> Any:
        raise _no_ports("virNetworkPortCreateXML")

    def portLookupByUUID(self, uuid: bytes) -> Any:
        raise _no_ports("virNetworkPortLookupByUUID")

    def portLookupByUUIDString(self, uuidstr: str) -> Any:
        _parse_uuid(uuidstr, "virNetworkPortLookupByUUIDString")
        raise _no_ports("virNetworkPortLookupByUUID")

    def __repr__(self) -> str:
        return f"<pyvirt.virNetwork {self._ref.name}>"


def _no_ports(api: str) -> Exception:
    """libvirt's answer from a network driver without the port calls."""
    from ..errors import ErrorDomain, no_support
    return no_support(ErrorDomain.NETWORK, api)


class ConnectNetworkAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: access check, then the driver on the loop

    def _network(self, ref: NetworkRef) -> virNetwork:
        return virNetwork(self, ref)  # type: ignore[arg-type]

    # -- listing -----------------------------------------------------------------
    def listAllNetworks(self, flags: int = 0) -> list[virNetwork]:
        refs, _count = self._call("connect_list_all_networks", 1, _uint(flags))
        return [self._network(ref) for ref in refs]

    def numOfNetworks(self) -> int:
        return self._call("connect_num_of_networks")

    def numOfDefinedNetworks(self) -> int:
        return self._call("connect_num_of_defined_networks")

    def listNetworks(self) -> list[str]:
        # libvirt-python asks for the count first, then for that many names
        return list(self._call("connect_list_networks", self.numOfNetworks()))

    def listDefinedNetworks(self) -> list[str]:
        return list(self._call("connect_list_defined_networks", self.numOfDefinedNetworks()))

    # -- lookup ------------------------------------------------------------------
    def networkLookupByName(self, name: str) -> virNetwork:
        return self._network(self._call("network_lookup_by_name", _text(name, "name", "virNetworkLookupByName", 2)))

    def networkLookupByUUID(self, uuid: bytes) -> virNetwork:
        if not isinstance(uuid, (bytes, bytearray)) or len(uuid) != 16:
            if uuid is not None and not isinstance(uuid, (bytes, bytearray)):
                raise TypeError(f"virNetworkLookupByUUID() argument 2 must be read-only bytes-like object, "
                                f"not {type(uuid).__name__}")
            from ..errors import ErrorDomain, ErrorLevel, ErrorNumber, libvirtError
            raise libvirtError("virNetworkLookupByUUID() failed", ErrorNumber.INVALID_ARG, ErrorDomain.NETWORK,
                               ErrorLevel.ERROR, None, "uuid", None, 0, 0)
        return self._network(self._call("network_lookup_by_uuid", bytes(uuid)))

    def networkLookupByUUIDString(self, uuidstr: str) -> virNetwork:
        uuidstr = _text(uuidstr, "uuidstr", "virNetworkLookupByUUIDString", 2)
        return self.networkLookupByUUID(_parse_uuid(uuidstr, "virNetworkLookupByUUIDString"))

    # -- definition --------------------------------------------------------------
    def networkDefineXML(self, xml: str) -> virNetwork:
        return self._network(self._call("network_define_xml", _text(xml, "xml", "virNetworkDefineXML", 2)))

    def networkDefineXMLFlags(self, xml: str, flags: int = 0) -> virNetwork:
        return self._network(self._with_flags("network_define_xml", "virNetworkDefineXMLFlags", xml, flags))

    def networkCreateXML(self, xmlDesc: str) -> virNetwork:
        return self._network(self._call("network_create_xml",
                                        _text(xmlDesc, "xmlDesc", "virNetworkCreateXML", 2)))

    def networkCreateXMLFlags(self, xmlDesc: str, flags: int = 0) -> virNetwork:
        return self._network(self._with_flags("network_create_xml", "virNetworkCreateXMLFlags", xmlDesc, flags))

    def _with_flags(self, method: str, api: str, xml: str, flags: int) -> NetworkRef:
        """The ``_flags`` procedure (libvirt 7.8's), or, from a driver without it, the plain
        one when no flag is asked for; a flag such a driver cannot honour is NO_SUPPORT."""
        xml = _text(xml, "xml" if "Define" in api else "xmlDesc", api, 2)
        flags = _uint(flags)
        if hasattr(self._drv, method + "_flags"):  # type: ignore[attr-defined]
            return self._call(method + "_flags", xml, flags)
        if flags:
            from ..errors import ErrorDomain, no_support
            raise no_support(ErrorDomain.NETWORK, api)
        return self._call(method, xml)


def _parse_uuid(text: str, function: str) -> bytes:
    """virUUIDParse: 32 hex digits, dashes allowed between byte pairs, blanks around;
    anything else is libvirt's INVALID_ARG for the API's ``uuidstr``."""
    digits = text.strip().replace("-", "") if isinstance(text, str) else ""
    if len(digits) == 32 and all(c in "0123456789abcdefABCDEF" for c in digits):
        return bytes.fromhex(digits)
    from ..errors import ErrorDomain, ErrorLevel, ErrorNumber, libvirtError
    raise libvirtError(f"uuidstr in {function} must be a valid UUID", ErrorNumber.INVALID_ARG,
                       ErrorDomain.NETWORK, ErrorLevel.ERROR, None, "uuidstr", None, 0, 0)


__all__ = ["virNetwork", "ConnectNetworkAPI", "LEASE_KEYS"]
