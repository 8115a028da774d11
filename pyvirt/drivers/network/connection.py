"""One client's connection to the network driver: libvirt's virNetwork* calls."""

from __future__ import annotations

from typing import Any

from ...conf import network as netconf
from ...driver_network import NetworkConnection as NetworkConnectionBase
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import NetworkRef
from .driver import NetworkDriver, NetworkObj

# virConnectListAllNetworksFlags
LIST_INACTIVE, LIST_ACTIVE, LIST_PERSISTENT, LIST_TRANSIENT, LIST_AUTOSTART, LIST_NO_AUTOSTART = 1, 2, 4, 8, 16, 32
LIST_ALL = 63
XML_INACTIVE = 1          # VIR_NETWORK_XML_INACTIVE
VALIDATE = 1              # VIR_NETWORK_DEFINE_VALIDATE, VIR_NETWORK_CREATE_VALIDATE


def _matches(obj: NetworkObj, flags: int) -> bool:
    if flags & (LIST_ACTIVE | LIST_INACTIVE) and not (
            (flags & LIST_ACTIVE and obj.active) or (flags & LIST_INACTIVE and not obj.active)):
        return False
    if flags & (LIST_PERSISTENT | LIST_TRANSIENT) and not (
            (flags & LIST_PERSISTENT and obj.persistent) or (flags & LIST_TRANSIENT and not obj.persistent)):
        return False
    if flags & (LIST_AUTOSTART | LIST_NO_AUTOSTART) and not (
            (flags & LIST_AUTOSTART and obj.autostart) or (flags & LIST_NO_AUTOSTART and not obj.autostart)):
        return False
    return True


class NetworkConnection(NetworkConnectionBase):
    def __init__(self, info: Any, driver: NetworkDriver) -> None:
        super().__init__(info, driver.events)
        self.driver = driver

    def _sorted(self) -> list[NetworkObj]:
        return sorted(self.driver.networks.values(), key=lambda o: o.name)

    # -- lists and lookups ----------------------------------------------------------------------

    async def connect_list_all_networks(self, need_results: int, flags: int) -> tuple[list[NetworkRef], int]:
        check_flags(flags, LIST_ALL, "networkConnectListAllNetworks", ErrorDomain.NETWORK)
        objs = [o for o in self._sorted() if _matches(o, flags)]
        return ([o.ref() for o in objs] if need_results else []), len(objs)

    async def connect_num_of_networks(self) -> int:
        return sum(1 for o in self.driver.networks.values() if o.active)

    async def connect_list_networks(self, maxnames: int) -> list[str]:
        return [o.name for o in self._sorted() if o.active][:max(maxnames, 0)]

    async def connect_num_of_defined_networks(self) -> int:
        return sum(1 for o in self.driver.networks.values() if not o.active)

    async def connect_list_defined_networks(self, maxnames: int) -> list[str]:
        return [o.name for o in self._sorted() if not o.active][:max(maxnames, 0)]

    async def network_lookup_by_name(self, name: str) -> NetworkRef:
        return self.driver.by_name(name).ref()

    async def network_lookup_by_uuid(self, uuid: bytes) -> NetworkRef:
        return self.driver.by_uuid(uuid).ref()

    # -- define and lifecycle --------------------------------------------------------------------

    async def network_define_xml(self, xml: str) -> NetworkRef:
        net = netconf.parse(xml)
        async with self.driver.lock:
            return (await self.driver.define(net)).ref()

    async def network_define_xml_flags(self, xml: str, flags: int) -> NetworkRef:
        check_flags(flags, VALIDATE, "networkDefineXMLFlags", ErrorDomain.NETWORK)
        if flags & VALIDATE:
            netconf.validate(xml)
        return await self.network_define_xml(xml)

    async def network_create_xml_flags(self, xml: str, flags: int) -> NetworkRef:
        check_flags(flags, VALIDATE, "networkCreateXMLFlags", ErrorDomain.NETWORK)
        if flags & VALIDATE:
            netconf.validate(xml)
        return await self.network_create_xml(xml)

    async def network_undefine(self, net: NetworkRef) -> None:
        async with self.driver.lock:
            await self.driver.undefine(self.driver.by_ref(net))

    async def network_create(self, net: NetworkRef) -> None:
        async with self.driver.lock:
            await self.driver.start(self.driver.by_ref(net))

    async def network_create_xml(self, xml: str) -> NetworkRef:
        net = netconf.parse(xml)
        async with self.driver.lock:
            return (await self.driver.create_transient(net)).ref()

    async def network_destroy(self, net: NetworkRef) -> None:
        async with self.driver.lock:
            await self.driver.destroy(self.driver.by_ref(net))

    async def network_set_autostart(self, net: NetworkRef, autostart: int) -> None:
        async with self.driver.lock:
            obj = self.driver.by_ref(net)
            if not obj.persistent:
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK,
                            "cannot set autostart for transient network")
            self.driver.set_autostart(obj, bool(autostart))

    async def network_update(self, net: NetworkRef, command: int, section: int, parent_index: int,
                             xml: str, flags: int) -> None:
        check_flags(flags, 3, "networkUpdate", ErrorDomain.NETWORK)   # VIR_NETWORK_UPDATE_AFFECT_LIVE|CONFIG
        async with self.driver.lock:
            await self.driver.update(self.driver.by_ref(net), command, section, parent_index, xml, flags)

    # -- queries -------------------------------------------------------------------------------

    async def network_get_xml_desc(self, net: NetworkRef, flags: int) -> str:
        check_flags(flags, XML_INACTIVE, "networkGetXMLDesc", ErrorDomain.NETWORK)
        obj = self.driver.by_ref(net)
        if flags & XML_INACTIVE and obj.config is not None:
            return obj.config.to_xml()
        return obj.definition.to_xml(connections=len(obj.taps) if obj.active else 0)

    async def network_get_autostart(self, net: NetworkRef) -> int:
        return int(self.driver.by_ref(net).autostart)

    async def network_get_bridge_name(self, net: NetworkRef) -> str:
        obj = self.driver.by_ref(net)
        bridge = obj.definition.bridge
        if not bridge:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NETWORK,
                        f"network '{obj.name}' does not have a bridge name.")
        return bridge

    async def network_is_active(self, net: NetworkRef) -> int:
        return int(self.driver.by_ref(net).active)

    async def network_is_persistent(self, net: NetworkRef) -> int:
        return int(self.driver.by_ref(net).persistent)

    async def network_get_dhcp_leases(self, net: NetworkRef, mac: str | None, need_results: int,
                                      flags: int) -> tuple[list[tuple], int]:
        check_flags(flags, 0, "networkGetDHCPLeases", ErrorDomain.NETWORK)
        leases = self.driver.leases(self.driver.by_ref(net), mac)
        return (leases if need_results else []), len(leases)
