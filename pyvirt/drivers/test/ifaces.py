"""The test host's interfaces and node devices: libvirt's virInterface* and virNodeDevice* calls.

Both live in memory as libvirt's test driver keeps them: interfaces by name
with their MAC and active flag (define makes an inactive one, create and
destroy flip it, undefine forgets it); node devices by name with their parent
and capabilities, read from their XML.  Creating and destroying a vHBA tell
the host's node-device bus (CREATED / DELETED), where libvirt 9.0's test
driver does; it defines, undefines and updates no node device, so it sends
no DEFINED, UNDEFINED or UPDATE event.
"""

from __future__ import annotations

from lxml import etree

from ...driver_nodedev import CREATED, DELETED, EVENT_ID_LIFECYCLE, NodeDeviceEvent
from ...errors import ErrorDomain, ErrorLevel, ErrorNumber, check_flags, error, libvirtError
from ...refs import InterfaceRef, NodeDeviceRef

_T = ErrorDomain.TEST
# virConnectListAllNodeDeviceFlags: capability bit by name (VIR_CONNECT_LIST_NODE_DEVICES_CAP_*)
NODEDEV_CAP_BITS = {name: 1 << bit for bit, name in enumerate((
    "system", "pci", "usb_device", "usb", "net", "scsi_host", "scsi_target", "scsi", "storage",
    "fc_host", "vports", "scsi_generic", "drm", "mdev_types", "mdev", "ccw", "css", "vdpa",
    "ap_card", "ap_queue", "ap_matrix", "vpd"))}
NODEDEV_INACTIVE, NODEDEV_ACTIVE = 1 << 30, 1 << 31
IFACE_LIST_INACTIVE, IFACE_LIST_ACTIVE = 1, 2


_IFACE_ORDER = {"start": 0, "mtu": 1, "protocol": 2, "link": 3}
_ALWAYS_OPEN = ("hardware", "firmware")


def pretty(xml: str) -> str:
    """The element written as libvirt formats it: two-space indent, single quotes."""
    root = etree.fromstring(xml.encode(), etree.XMLParser(remove_blank_text=True, resolve_entities=False,
                                                          no_network=True))
    out: list[str] = []
    if root.tag == "device":
        # a system capability always has its <hardware> and <firmware>, written open even when empty
        for cap in root.findall("capability[@type='system']"):
            for tag in _ALWAYS_OPEN:
                if cap.find(tag) is None:
                    etree.SubElement(cap, tag)
    if root.tag == "interface":
        # virInterfaceDefDevFormat's order: start, mtu, protocol, link, then the type's own (mac, bridge...)
        kids = sorted((c for c in root if isinstance(c.tag, str)), key=lambda c: _IFACE_ORDER.get(c.tag, 4))
        for kid in kids:
            root.append(kid)

    def walk(el: etree._Element, depth: int) -> None:
        pad = "  " * depth
        attrs = "".join(f" {k}='{_esc(v)}'" for k, v in el.attrib.items())
        kids = [c for c in el if isinstance(c.tag, str)]
        text = (el.text or "").strip()
        if not kids and not text and el.tag in _ALWAYS_OPEN and el.getparent() is not None \
                and el.getparent().get("type") == "system":
            out.extend([f"{pad}<{el.tag}{attrs}>", f"{pad}</{el.tag}>"])
        elif not kids and not text:
            out.append(f"{pad}<{el.tag}{attrs}/>")
        elif not kids:
            out.append(f"{pad}<{el.tag}{attrs}>{_esc(text)}</{el.tag}>")
        else:
            out.append(f"{pad}<{el.tag}{attrs}>")
            for kid in kids:
                walk(kid, depth + 1)
            out.append(f"{pad}</{el.tag}>")
    walk(root, 0)
    return "\n".join(out) + "\n"


def _random_wwn() -> str:
    """A WWN as libvirt makes one (virRandomGenerateWWN: NAA 5, QEMU's OUI, 36 random bits)."""
    import secrets
    return f"5001a4a{secrets.randbits(36):09x}"


def _esc(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")


class TestInterface:
    def __init__(self, xml: str, active: bool) -> None:
        root = etree.fromstring(xml.encode())
        self.name = root.get("name") or ""
        mac = root.find("mac")
        self.mac = (mac.get("address") or "") if mac is not None else ""
        self.xml = xml
        self.active = active

    def ref(self) -> InterfaceRef:
        return InterfaceRef(self.name, self.mac)


class TestNodeDevice:
    def __init__(self, xml: str) -> None:
        root = etree.fromstring(xml.encode())
        self.name = (root.findtext("name") or "").strip()
        parent = root.findtext("parent")
        self.parent = parent.strip() if parent else None
        self.caps = [c.get("type") for c in root.findall("capability")]
        # a listing by capability also finds the nested ones (an fc_host, vports under a scsi_host)
        nested = [c.get("type") for c in root.findall("capability/capability")]
        self.match_caps = set(self.caps) | {"vports" if n == "vport_ops" else n for n in nested}
        self.xml = xml


def _load_interfaces(host: object) -> dict[str, TestInterface]:
    objs = host.__dict__.get("iface_objs")
    if objs is None:
        objs = {}
        for xml in host.interfaces:
            obj = TestInterface(pretty(xml), active=True)
            objs[obj.name] = obj
        host.iface_objs = objs
    return objs


def _load_devices(host: object) -> dict[str, TestNodeDevice]:
    objs = host.__dict__.get("nodedev_objs")
    if objs is None:
        objs = {}
        for xml in host.node_devices:
            obj = TestNodeDevice(pretty(xml))
            objs[obj.name] = obj
        host.nodedev_objs = objs
    return objs


class IfaceNodedevAPI:
    """Mixed into TestConnection (which supplies ``host``)."""

    # -- interfaces ---------------------------------------------------------------------------
    def _ifaces(self) -> dict[str, TestInterface]:
        return _load_interfaces(self.host)

    def _iface(self, ref: InterfaceRef) -> TestInterface:
        obj = self._ifaces().get(ref.name)
        if obj is None:
            raise error(ErrorNumber.NO_INTERFACE, _T, f"no interface with matching name '{ref.name}'")
        return obj

    def _sorted_ifaces(self) -> list[TestInterface]:
        return [self._ifaces()[n] for n in sorted(self._ifaces())]

    async def connect_num_of_interfaces(self) -> int:
        return sum(1 for o in self._ifaces().values() if o.active)

    async def connect_list_interfaces(self, maxnames: int) -> list[str]:
        return [o.name for o in self._sorted_ifaces() if o.active][:max(maxnames, 0)]

    async def connect_num_of_defined_interfaces(self) -> int:
        return sum(1 for o in self._ifaces().values() if not o.active)

    async def connect_list_defined_interfaces(self, maxnames: int) -> list[str]:
        return [o.name for o in self._sorted_ifaces() if not o.active][:max(maxnames, 0)]

    async def connect_list_all_interfaces(self, need_results: int, flags: int) -> tuple[list[InterfaceRef], int]:
        check_flags(flags, IFACE_LIST_INACTIVE | IFACE_LIST_ACTIVE, "testConnectListAllInterfaces", _T)
        objs = [o for o in self._sorted_ifaces()
                if not flags & 3 or (flags & IFACE_LIST_ACTIVE and o.active)
                or (flags & IFACE_LIST_INACTIVE and not o.active)]
        return ([o.ref() for o in objs] if need_results else []), len(objs)

    # -- transactions: a restore point of every interface, as libvirt's test driver keeps one --
    async def interface_change_begin(self, flags: int) -> None:
        check_flags(flags, 0, "testInterfaceChangeBegin", _T)
        if self.host.__dict__.get("iface_backup") is not None:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "there is another transaction running.")
        # libvirt's copy keeps each definition, not its state: a rollback leaves them all inactive
        self.host.iface_backup = {name: TestInterface(obj.xml, active=False) for name, obj in self._ifaces().items()}

    async def interface_change_commit(self, flags: int) -> None:
        check_flags(flags, 0, "testInterfaceChangeCommit", _T)
        if self.host.__dict__.get("iface_backup") is None:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "no transaction running, nothing to be committed.")
        self.host.iface_backup = None

    async def interface_change_rollback(self, flags: int) -> None:
        check_flags(flags, 0, "testInterfaceChangeRollback", _T)
        backup = self.host.__dict__.get("iface_backup")
        if backup is None:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "no transaction running, nothing to rollback.")
        self.host.iface_objs = backup
        self.host.iface_backup = None

    async def interface_lookup_by_name(self, name: str) -> InterfaceRef:
        obj = self._ifaces().get(name)
        if obj is None:
            raise error(ErrorNumber.NO_INTERFACE, _T, f"no interface with matching name '{name}'")
        return obj.ref()

    async def interface_lookup_by_mac_string(self, mac: str) -> InterfaceRef:
        found = [o for o in self._sorted_ifaces() if o.mac.lower() == mac.lower()]
        if not found:
            raise error(ErrorNumber.NO_INTERFACE, _T, f"no interface with matching mac '{mac}'")
        if len(found) > 1:
            raise error(ErrorNumber.MULTIPLE_INTERFACES, _T, "multiple matching interfaces found")
        return found[0].ref()

    async def interface_get_xml_desc(self, iface: InterfaceRef, flags: int) -> str:
        check_flags(flags, 1, "testInterfaceGetXMLDesc", _T)    # VIR_INTERFACE_XML_INACTIVE
        return self._iface(iface).xml

    async def interface_define_xml(self, xml: str, flags: int) -> InterfaceRef:
        check_flags(flags, 1, "testInterfaceDefineXML", _T)     # VIR_INTERFACE_DEFINE_VALIDATE
        from ...conf.xmlutil import parse_document
        parse_document(xml, "interface", "(interface_definition)", ErrorDomain.INTERFACE)
        text = pretty(xml)
        obj = TestInterface(text, active=False)
        if not obj.name:
            raise error(ErrorNumber.XML_ERROR, ErrorDomain.INTERFACE, "interface has no name")
        old = self._ifaces().get(obj.name)
        if old is not None:
            obj.active = old.active
        self._ifaces()[obj.name] = obj
        return obj.ref()

    async def interface_undefine(self, iface: InterfaceRef) -> None:
        del self._ifaces()[self._iface(iface).name]

    async def interface_create(self, iface: InterfaceRef, flags: int) -> None:
        check_flags(flags, 0, "testInterfaceCreate", _T)
        obj = self._iface(iface)
        if obj.active:
            raise _plain(ErrorNumber.OPERATION_INVALID, "Requested operation is not valid")
        obj.active = True

    async def interface_destroy(self, iface: InterfaceRef, flags: int) -> None:
        check_flags(flags, 0, "testInterfaceDestroy", _T)
        obj = self._iface(iface)
        if not obj.active:
            raise _plain(ErrorNumber.OPERATION_INVALID, "Requested operation is not valid")
        obj.active = False

    async def interface_is_active(self, iface: InterfaceRef) -> int:
        return int(self._iface(iface).active)

    # -- node devices -------------------------------------------------------------------------
    def _devices(self) -> dict[str, TestNodeDevice]:
        return _load_devices(self.host)

    def _device(self, name: str) -> TestNodeDevice:
        obj = self._devices().get(name)
        if obj is None:
            raise error(ErrorNumber.NO_NODE_DEVICE, _T, f"no node device with matching name '{name}'")
        return obj

    def _by_cap(self, cap: str | None) -> list[TestNodeDevice]:
        return [o for n, o in sorted(self._devices().items()) if cap is None or cap in o.match_caps]

    async def node_num_of_devices(self, cap: str | None, flags: int) -> int:
        check_flags(flags, 0, "testNodeNumOfDevices", _T)
        return len(self._by_cap(cap))

    async def node_list_devices(self, cap: str | None, maxnames: int, flags: int) -> list[str]:
        check_flags(flags, 0, "testNodeListDevices", _T)
        return [o.name for o in self._by_cap(cap)][:max(maxnames, 0)]

    async def connect_list_all_node_devices(self, need_results: int, flags: int) -> tuple[list[NodeDeviceRef], int]:
        # libvirt 9.0's test driver takes the capability filters only (not ACTIVE/INACTIVE)
        check_flags(flags, sum(NODEDEV_CAP_BITS.values()), "testConnectListAllNodeDevices", _T)
        wanted = [name for name, bit in NODEDEV_CAP_BITS.items() if flags & bit]
        objs = [o for n, o in sorted(self._devices().items())
                if not wanted or any(c in o.match_caps for c in wanted)]
        return ([NodeDeviceRef(o.name) for o in objs] if need_results else []), len(objs)

    # -- vHBAs: libvirt's test driver "creates" one by copying scsi_host11 as scsi_host12 ----------
    async def node_device_create_xml(self, xml_desc: str, flags: int) -> NodeDeviceRef:
        check_flags(flags, 1, "testNodeDeviceCreateXML", _T)       # VIR_NODE_DEVICE_CREATE_XML_VALIDATE
        from ...conf.xmlutil import parse_document
        root = parse_document(xml_desc, "device", "(node_device_definition)", ErrorDomain.NODEDEV)
        name = (root.findtext("name") or "").strip() or "new device"
        fc = root.find("capability[@type='scsi_host']/capability[@type='fc_host']")
        if fc is None:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NODEDEV, "Device is not a fibre channel HBA")
        wwnn = (fc.findtext("wwnn") or "").strip() or _random_wwn()
        wwpn = (fc.findtext("wwpn") or "").strip() or _random_wwn()
        devices = self._devices()
        parent = (root.findtext("parent") or "").strip()
        if parent:
            found = devices.get(parent)
            if found is None:
                raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NODEDEV,
                            f"Could not find parent device for '{name}'")
            if "vport_ops" not in {c.get("type") for c in etree.fromstring(found.xml.encode()).iter("capability")}:
                raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NODEDEV,
                            f"Parent device {parent} is not capable of vport operations")
        template = devices.get("scsi_host11")
        if template is None:
            raise error(ErrorNumber.NO_NODE_DEVICE, _T, "no node device with matching name 'scsi_host11'")
        copy_ = etree.fromstring(template.xml.encode())
        copy_.find("name").text = "scsi_host12"
        for tag, value in (("wwnn", wwnn), ("wwpn", wwpn)):
            node = copy_.find(f"capability/capability[@type='fc_host']/{tag}")
            if node is not None:
                node.text = value
        made = TestNodeDevice(pretty(etree.tostring(copy_, encoding="unicode")))
        devices[made.name] = made            # a second one takes the same name's place, as libvirt's
        self._emit_nodedev(made.name, int(CREATED))
        return NodeDeviceRef(made.name)

    async def node_device_destroy(self, name: str) -> None:
        obj = self._device(name)
        fc = etree.fromstring(obj.xml.encode()).find("capability[@type='scsi_host']/capability[@type='fc_host']")
        if fc is None:
            return      # libvirt's test driver answers success and keeps the device (not a vHBA)
        if obj.parent not in self._devices():
            raise error(ErrorNumber.INTERNAL_ERROR, _T, f"cannot find parent '{obj.parent}' definition")
        del self._devices()[name]
        self._emit_nodedev(name, int(DELETED))

    def _emit_nodedev(self, name: str, event: int) -> None:
        self.host.nodedev_events.emit(NodeDeviceEvent(int(EVENT_ID_LIFECYCLE), NodeDeviceRef(name), (event, 0)))

    async def node_device_lookup_by_name(self, name: str) -> NodeDeviceRef:
        return NodeDeviceRef(self._device(name).name)

    async def node_device_get_xml_desc(self, name: str, flags: int) -> str:
        check_flags(flags, 0, "testNodeDeviceGetXMLDesc", _T)
        return self._device(name).xml

    async def node_device_get_parent(self, name: str) -> str | None:
        return self._device(name).parent

    async def node_device_num_of_caps(self, name: str) -> int:
        return len(self._device(name).caps)

    async def node_device_list_caps(self, name: str, maxnames: int) -> list[str]:
        return self._device(name).caps[:max(maxnames, 0)]


def _plain(code: ErrorNumber, message: str) -> libvirtError:
    """An error libvirt's test driver raises with no detail (the bare prefix)."""
    return libvirtError(message, code, _T, ErrorLevel.ERROR, message, None, None)
