"""libvirt-python's host-interface and node-device API: virInterface, virNodeDevice
and virConnect's methods for them.

Delegation only, as :mod:`pyvirt.domain`: every call is the driver method of
the same REMOTE procedure (rows in :mod:`pyvirt.rpc.protocol.remote_iface_nodedev`).
Return values are libvirt-python's: 0 for actions, lists of names or handles,
``parent()`` None for a root device.
"""

from __future__ import annotations

from collections.abc import Callable

from ..refs import InterfaceRef, NodeDeviceRef

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from ..connection import virConnect


class virInterface:  # noqa: N801 - libvirt-python's name
    def __init__(self, conn: "virConnect", ref: InterfaceRef) -> None:
        self._conn = conn
        self._ref = ref

    def _call(self, method: str, *args: Any) -> Any:
        return self._conn._call(method, self._ref, *args)

    def connect(self) -> "virConnect":
        return self._conn

    def name(self) -> str:
        return self._ref.name

    def MACString(self) -> str:
        return self._ref.mac

    def XMLDesc(self, flags: int = 0) -> str:
        return self._call("interface_get_xml_desc", flags)

    def isActive(self) -> int:
        return self._call("interface_is_active")

    def create(self, flags: int = 0) -> int:
        self._call("interface_create", flags)
        return 0

    def destroy(self, flags: int = 0) -> int:
        self._call("interface_destroy", flags)
        return 0

    def undefine(self) -> int:
        self._call("interface_undefine")
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, virInterface) and other._ref == self._ref

    def __hash__(self) -> int:
        return hash(self._ref)


class virNodeDevice:  # noqa: N801 - libvirt-python's name
    def __init__(self, conn: "virConnect", ref: NodeDeviceRef) -> None:
        self._conn = conn
        self._ref = ref

    def connect(self) -> "virConnect":
        return self._conn

    def name(self) -> str:
        return self._ref.name

    def XMLDesc(self, flags: int = 0) -> str:
        return self._conn._call("node_device_get_xml_desc", self._ref.name, flags)

    def parent(self) -> str | None:
        return self._conn._call("node_device_get_parent", self._ref.name)

    def numOfCaps(self) -> int:
        return self._conn._call("node_device_num_of_caps", self._ref.name)

    def destroy(self) -> int:
        self._conn._call("node_device_destroy", self._ref.name)
        return 0

    def listCaps(self) -> list[str]:
        count = self.numOfCaps()
        return list(self._conn._call("node_device_list_caps", self._ref.name, count)) if count else []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, virNodeDevice) and other._ref == self._ref

    def __hash__(self) -> int:
        return hash(self._ref)


class ConnectIfaceNodedevAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]

    # -- interfaces ---------------------------------------------------------------------------
    def changeBegin(self, flags: int = 0) -> int:
        self._call("interface_change_begin", flags)
        return 0

    def changeCommit(self, flags: int = 0) -> int:
        self._call("interface_change_commit", flags)
        return 0

    def changeRollback(self, flags: int = 0) -> int:
        self._call("interface_change_rollback", flags)
        return 0

    def numOfInterfaces(self) -> int:
        return self._call("connect_num_of_interfaces")

    def numOfDefinedInterfaces(self) -> int:
        return self._call("connect_num_of_defined_interfaces")

    def listInterfaces(self) -> list[str]:
        count = self.numOfInterfaces()
        return list(self._call("connect_list_interfaces", count)) if count else []

    def listDefinedInterfaces(self) -> list[str]:
        count = self.numOfDefinedInterfaces()
        return list(self._call("connect_list_defined_interfaces", count)) if count else []

    def listAllInterfaces(self, flags: int = 0) -> list[virInterface]:
        refs, _count = self._call("connect_list_all_interfaces", 1, flags)
        return [virInterface(self, ref) for ref in refs]  # type: ignore[arg-type]

    def interfaceLookupByName(self, name: str) -> virInterface:
        return virInterface(self, self._call("interface_lookup_by_name", name))  # type: ignore[arg-type]

    def interfaceLookupByMACString(self, macstr: str) -> virInterface:
        return virInterface(self, self._call("interface_lookup_by_mac_string", macstr))  # type: ignore[arg-type]

    def interfaceDefineXML(self, xml: str, flags: int = 0) -> virInterface:
        return virInterface(self, self._call("interface_define_xml", xml, flags))  # type: ignore[arg-type]

    # -- node devices ---------------------------------------------------------------------------
    def numOfDevices(self, cap: str | None = None, flags: int = 0) -> int:
        return self._call("node_num_of_devices", cap, flags)

    def listDevices(self, cap: str | None = None, flags: int = 0) -> list[str]:
        count = self.numOfDevices(cap, flags)
        return list(self._call("node_list_devices", cap, count, flags)) if count else []

    def listAllDevices(self, flags: int = 0) -> list[virNodeDevice]:
        refs, _count = self._call("connect_list_all_node_devices", 1, flags)
        return [virNodeDevice(self, ref) for ref in refs]  # type: ignore[arg-type]

    def nodeDeviceCreateXML(self, xmlDesc: str, flags: int = 0) -> virNodeDevice:  # noqa: N803
        return virNodeDevice(self, self._call("node_device_create_xml", xmlDesc, flags))  # type: ignore[arg-type]

    def nodeDeviceLookupByName(self, name: str) -> virNodeDevice:
        return virNodeDevice(self, self._call("node_device_lookup_by_name", name))  # type: ignore[arg-type]
