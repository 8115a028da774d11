"""The test host's networks: libvirt's virNetwork* calls, in memory.

As in libvirt's test driver nothing is brought up: starting a network is
bookkeeping, errors come from the TEST error domain with the test driver's
words, and the lifecycle events go out on the host's network bus.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from ...conf import network as netconf
from ...driver import EventBus
from ...driver_network import NetworkConnection as NetworkConnectionBase, NetworkEvent
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import NetworkRef
from ..network import update as netupdate
from .objects import matches_list_flags

_T = ErrorDomain.TEST
# virNetworkEventLifecycleType
DEFINED, UNDEFINED, STARTED, STOPPED = 0, 1, 2, 3


class TestNetwork:
    def __init__(self, definition: netconf.NetworkDef, persistent: bool) -> None:
        self.definition = definition
        self.persistent = persistent
        self.active = False
        self.autostart = False
        # libvirt's newDef: the persistent definition once a running network's config is changed
        # apart from its live one (the test driver never makes it live again)
        self.config: netconf.NetworkDef | None = None

    @property
    def name(self) -> str:
        return self.definition.name

    def ref(self) -> NetworkRef:
        return NetworkRef(self.definition.name, self.definition.uuid_bytes)


class TestNetworks:
    """The host's networks and their event bus."""

    def __init__(self) -> None:
        self.events = EventBus()
        self.by_name: dict[str, TestNetwork] = {}

    def add(self, xml: str, active: bool = True, persistent: bool = True) -> TestNetwork:
        obj = TestNetwork(netconf.parse(xml), persistent)
        obj.active = active
        self.by_name[obj.name] = obj
        return obj

    def emit(self, obj: TestNetwork, event: int) -> None:
        self.events.emit(NetworkEvent(0, obj.ref(), (event, 0)))

    def find(self, ref: NetworkRef) -> TestNetwork:
        for obj in self.by_name.values():
            if obj.definition.uuid_bytes == ref.uuid:
                return obj
        raise error(ErrorNumber.NO_NETWORK, _T, f"no network with matching uuid '{uuidlib.UUID(bytes=ref.uuid)}'"
                    f" ({ref.name})")

    def define(self, xml: str, persistent: bool) -> TestNetwork:
        new = netconf.parse(xml)
        for obj in self.by_name.values():
            if obj.name == new.name and obj.definition.uuid != new.uuid:
                raise error(ErrorNumber.OPERATION_FAILED, _T,
                            f"network '{new.name}' is already defined with uuid {obj.definition.uuid}")
            if obj.definition.uuid == new.uuid and obj.name != new.name:
                raise error(ErrorNumber.OPERATION_FAILED, _T,
                            f"network '{obj.name}' is already defined with uuid {new.uuid}")
        old = self.by_name.get(new.name)
        if old is not None:
            if not persistent and old.active:
                raise error(ErrorNumber.OPERATION_INVALID, _T, f"network is already active as '{old.name}'")
            old.definition = new
            old.persistent = old.persistent or persistent
            return old
        obj = TestNetwork(new, persistent)
        self.by_name[obj.name] = obj
        return obj


class TestNetworkConnection(NetworkConnectionBase):
    def __init__(self, info: Any, nets: TestNetworks) -> None:
        super().__init__(info, nets.events)
        self.nets = nets

    def _sorted(self) -> list[TestNetwork]:
        return sorted(self.nets.by_name.values(), key=lambda o: o.name)

    async def connect_list_all_networks(self, need_results: int, flags: int) -> tuple[list[NetworkRef], int]:
        check_flags(flags, 63, "testConnectListAllNetworks", _T)
        objs = [o for o in self._sorted() if matches_list_flags(o, flags)]
        return ([o.ref() for o in objs] if need_results else []), len(objs)

    async def connect_num_of_networks(self) -> int:
        return sum(1 for o in self.nets.by_name.values() if o.active)

    async def connect_list_networks(self, maxnames: int) -> list[str]:
        return [o.name for o in self._sorted() if o.active][:max(maxnames, 0)]

    async def connect_num_of_defined_networks(self) -> int:
        return sum(1 for o in self.nets.by_name.values() if not o.active)

    async def connect_list_defined_networks(self, maxnames: int) -> list[str]:
        return [o.name for o in self._sorted() if not o.active][:max(maxnames, 0)]

    async def network_lookup_by_name(self, name: str) -> NetworkRef:
        obj = self.nets.by_name.get(name)
        if obj is None:
            raise error(ErrorNumber.NO_NETWORK, _T, f"no network with matching name '{name}'")
        return obj.ref()

    async def network_lookup_by_uuid(self, uuid: bytes) -> NetworkRef:
        for obj in self.nets.by_name.values():
            if obj.definition.uuid_bytes == uuid:
                return obj.ref()
        raise error(ErrorNumber.NO_NETWORK, _T, f"no network with matching uuid '{uuidlib.UUID(bytes=uuid)}'")

    async def network_define_xml(self, xml: str) -> NetworkRef:
        return await self.network_define_xml_flags(xml, 0)

    async def network_define_xml_flags(self, xml: str, flags: int) -> NetworkRef:
        check_flags(flags, 1, "testNetworkDefineXMLFlags", _T)
        obj = self.nets.define(xml, persistent=True)
        self.nets.emit(obj, DEFINED)
        return obj.ref()

    async def network_create_xml(self, xml: str) -> NetworkRef:
        return await self.network_create_xml_flags(xml, 0)

    async def network_create_xml_flags(self, xml: str, flags: int) -> NetworkRef:
        check_flags(flags, 1, "testNetworkCreateXMLFlags", _T)
        obj = self.nets.define(xml, persistent=False)
        obj.active = True
        self.nets.emit(obj, STARTED)
        return obj.ref()

    async def network_undefine(self, net: NetworkRef) -> None:
        obj = self.nets.find(net)
        if not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "network is not persistent")
        self.nets.emit(obj, UNDEFINED)
        if obj.active:
            obj.persistent = False
        else:
            del self.nets.by_name[obj.name]

    async def network_create(self, net: NetworkRef) -> None:
        obj = self.nets.find(net)
        if obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, _T, f"Network '{obj.name}' is already running")
        obj.active = True
        self.nets.emit(obj, STARTED)

    async def network_destroy(self, net: NetworkRef) -> None:
        obj = self.nets.find(net)
        if not obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, _T, f"network '{obj.name}' is not active")
        obj.active = False
        self.nets.emit(obj, STOPPED)
        if not obj.persistent:
            del self.nets.by_name[obj.name]

    async def network_set_autostart(self, net: NetworkRef, autostart: int) -> None:
        obj = self.nets.find(net)
        if not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "cannot set autostart for transient network")
        obj.autostart = bool(autostart)

    async def network_get_xml_desc(self, net: NetworkRef, flags: int) -> str:
        check_flags(flags, 0, "testNetworkGetXMLDesc", _T)     # no INACTIVE here, as libvirt's
        return self.nets.find(net).definition.to_xml()

    async def network_update(self, net: NetworkRef, command: int, section: int, parentIndex: int,  # noqa: N803
                             xml: str, flags: int) -> None:
        check_flags(flags, 3, "testNetworkUpdate", _T)      # VIR_NETWORK_UPDATE_AFFECT_LIVE | _CONFIG
        obj = self.nets.find(net)
        live, config = bool(flags & 1), bool(flags & 2)
        if not live and not config:         # AFFECT_CURRENT
            live, config = obj.active, not obj.active
        if live and not obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK, "network is not running")
        if config and not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK,
                        "cannot change persistent config of a transient network")
        # changed on copies: a refused change leaves both definitions as they were
        new_live = netconf.parse(obj.definition.to_xml()) if live else None
        persistent = obj.config if obj.config is not None else obj.definition
        new_config = netconf.parse(persistent.to_xml()) if config else None
        for target in (new_live, new_config):
            if target is not None:
                netupdate.apply(target, command, section, parentIndex, xml)
                netconf.parse(target.to_xml())     # libvirt's final format/parse: nothing illegal added
        if new_config is not None:
            if obj.active:
                obj.config = new_config
            else:
                obj.definition = new_config
        if new_live is not None:
            obj.definition = new_live

    async def network_get_autostart(self, net: NetworkRef) -> int:
        return int(self.nets.find(net).autostart)

    async def network_get_bridge_name(self, net: NetworkRef) -> str:
        obj = self.nets.find(net)
        if not obj.definition.bridge:
            raise error(ErrorNumber.INTERNAL_ERROR, _T, f"network '{obj.name}' does not have a bridge name.")
        return obj.definition.bridge

    async def network_is_active(self, net: NetworkRef) -> int:
        return int(self.nets.find(net).active)

    async def network_is_persistent(self, net: NetworkRef) -> int:
        return int(self.nets.find(net).persistent)
