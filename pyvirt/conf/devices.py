"""The ``<devices>`` of a domain: typed dataclasses, parsed and formatted.

Each device class has ``from_xml(element)`` and ``to_node(flags)`` and keeps
libvirt's element names, attribute order and defaults.  Sub-types pyvirt does
not model (a ``network`` disk, a ``vhostuser`` interface, ``sdl`` graphics)
are refused with CONFIG_UNSUPPORTED rather than dropped, because dropping a
device would silently change the guest; unknown *elements* are ignored, as
libvirt ignores them.

Live-only state (aliases, pty paths, ports picked by autoport, generated tap
names) is kept when parsed, left out of inactive XML and removed by
:meth:`Devices.clear_live`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from lxml import etree

from ..errors import ErrorDomain, ErrorNumber, error
from .address import Address, address_node, address_of
from .controllers import Controller, number_controllers
from .xmlutil import (Node, bool_attr, check_choice, child, children, child_text, el, int_attr,
                      prop_tristate, xml_detail, yes_no)

CONFIG_UNSUPPORTED = ErrorNumber.CONFIG_UNSUPPORTED


@dataclass(frozen=True, slots=True)
class FormatFlags:
    """libvirt's VIR_DOMAIN_XML_SECURE / _INACTIVE as seen by formatters."""

    secure: bool = False
    inactive: bool = False


# Aliases libvirt keeps in inactive XML: the ones the user chose.
USER_ALIAS_PREFIX = "ua-"


def _alias_node(alias: str | None, flags: FormatFlags) -> Node | None:
    if alias is None or (flags.inactive and not alias.startswith(USER_ALIAS_PREFIX)):
        return None
    return el("alias", [("name", alias)])


def _backing_of(node: etree._Element) -> list[tuple[str, str]]:
    """A disk's <backingStore> chain of files as (format, path), outermost first."""
    chain: list[tuple[str, str]] = []
    store = child(node, "backingStore")
    while store is not None and store.get("type", "file") == "file":
        src, fmt = child(store, "source"), child(store, "format")
        if src is None or not src.get("file"):
            break
        chain.append((fmt.get("type", "raw") if fmt is not None else "raw", src.get("file", "")))
        store = child(store, "backingStore")
    return chain


def _backing_node(chain: list[tuple[str, str]], live: bool) -> Node | None:
    """libvirt's nested <backingStore> elements; in live XML the chain ends with an empty one."""
    if not chain:
        return None
    node: Node | None = el("backingStore") if live else None
    for fmt, path in reversed(chain):
        node = el("backingStore", [("type", "file")], [el("format", [("type", fmt)]),
                                                      el("source", [("file", path)]), node])
    return node


def _alias_of(node: etree._Element) -> str | None:
    found = child(node, "alias")
    return found.get("name") or None if found is not None else None


def _live_alias(alias: str | None) -> str | None:
    return alias if alias is not None and alias.startswith(USER_ALIAS_PREFIX) else None


# -- disks ---------------------------------------------------------------------

@dataclass(slots=True)
class DiskMirror:
    """A running block job's <mirror> in the live XML (libvirt's virDomainDiskDefFormatMirror):
    a copy names its destination in attributes and children, an active commit its base."""

    job: str                   # 'copy' | 'active-commit'
    path: str
    format: str
    ready: str | None = None   # None, 'yes', 'abort', 'pivot'

    def to_node(self) -> Node:
        attrs = [("type", "file")]
        if self.job == "copy":
            attrs += [("file", self.path), ("format", self.format)]
        attrs += [("job", self.job), ("ready", self.ready)]
        return el("mirror", attrs, [el("format", [("type", self.format)]), el("source", [("file", self.path)])])

    @classmethod
    def from_xml(cls, node: etree._Element | None) -> "DiskMirror | None":
        if node is None:
            return None
        src, fmt = child(node, "source"), child(node, "format")
        path = (src.get("file") if src is not None else None) or node.get("file")
        fmt_name = (fmt.get("type") if fmt is not None else None) or node.get("format") or "raw"
        return cls(node.get("job") or "copy", path or "", fmt_name, node.get("ready")) if path else None


# disk type -> the <source> attribute that names it
DISK_SOURCE_ATTR: dict[str, str] = {"file": "file", "block": "dev"}
# <disk type='volume'><source pool='P' volume='V'/>: a storage pool's volume, which
# the QEMU driver resolves to its path (file or block) when the guest starts.
DISK_TYPES = (*DISK_SOURCE_ATTR, "volume")
DISK_DEVICES = ("disk", "cdrom", "floppy", "lun")
DISK_BUSES = ("ide", "fdc", "scsi", "virtio", "xen", "usb", "uml", "sata", "sd", "none")
# Without <target bus>, libvirt picks the bus from the target name.
DISK_BUS_BY_PREFIX: tuple[tuple[str, str], ...] = (
    ("hd", "ide"), ("sd", "scsi"), ("vd", "virtio"), ("xvd", "xen"), ("ub", "usb"), ("fd", "fdc"),
)
DISK_DEFAULT_BUS = "ide"


def default_disk_bus(device: str, target: str) -> str:
    if device == "floppy":
        return "fdc"
    return next((bus for prefix, bus in DISK_BUS_BY_PREFIX if target.startswith(prefix)),
                DISK_DEFAULT_BUS)


DISK_ERROR_POLICIES = ("stop", "report", "ignore", "enospace")    # rerror_policy: the first three


@dataclass(slots=True)
class Disk:
    target_dev: str
    target_bus: str
    type: str = "file"                 # file | block
    device: str = "disk"               # disk | cdrom | floppy | lun
    source: str | None = None          # file path or block device; None = empty cdrom
    driver_name: str | None = None     # <driver name='qemu' type='qcow2' cache='none'/>
    driver_type: str | None = None
    driver_cache: str | None = None
    # what QEMU does on a write (error_policy) or read (rerror_policy) error: stop pauses the guest
    driver_error_policy: str | None = None
    driver_rerror_policy: str | None = None
    readonly: bool = False
    shareable: bool = False
    alias: str | None = None
    address: Address | None = None
    # The images under the source, outermost first, as (format, file) (an external
    # snapshot's overlay has the old image here); empty: not known, written as nothing.
    backing_store: list[tuple[str, str]] = field(default_factory=list)
    # type='volume': the pool and volume named; ``source`` and ``actual_type``
    # ('file' or 'block') are what they resolved to while the guest runs.
    source_pool: str | None = None
    source_volume: str | None = None
    actual_type: str | None = None
    mirror: DiskMirror | None = None    # live only: a block copy or active commit under way
    rawio: bool | None = None           # a LUN's raw I/O (the emulator then needs CAP_SYS_RAWIO)

    def validate_source(self, node: etree._Element) -> None:
        """virDomainDiskDefValidate's checks on the disk's source (``node``: its XML), in its
        order: a LUN passes a block device (or a pool's volume) through; only a CD-ROM or a
        floppy (media absent) may go without a source.  A disk with no ``<source>`` element
        at all has no type (libvirt's VIR_STORAGE_TYPE_NONE).  Made on a definition and on
        a device to attach or update, not on one to detach (libvirt skips validation there:
        a disk is named by its target alone)."""
        source_type = self.type if child(node, "source") is not None else "none"
        if self.device == "lun" and source_type not in ("block", "volume"):
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN,
                        "disk device='lun' is only valid for block type disk source")
        if self.device != "lun" and self.rawio is not None:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN,
                        "rawio can be used only with device='lun'")
        empty = source_type == "none" or (source_type in DISK_SOURCE_ATTR and self.source is None)
        if self.device == "disk" and empty:
            raise error(ErrorNumber.NO_SOURCE, ErrorDomain.DOMAIN, self.target_dev)

    @property
    def storage_type(self) -> str:
        """What QEMU opens: 'file' or 'block' (a volume's once resolved)."""
        return self.actual_type or ("file" if self.type == "volume" else self.type)

    @classmethod
    def from_xml(cls, node: etree._Element) -> Disk:
        dtype = check_choice(node.get("type", "file"), DISK_TYPES, "disk type", CONFIG_UNSUPPORTED)
        device = check_choice(node.get("device", "disk"), DISK_DEVICES, "disk device")
        rawio = prop_tristate(node, "rawio")
        src = child(node, "source")
        pool = volume = None
        if dtype == "volume":
            source = None
            if src is not None:
                pool, volume = src.get("pool") or None, src.get("volume") or None
                if (pool is None) != (volume is None):   # libvirt's virDomainDiskSourcePoolDefParse
                    raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN,
                                "'pool' and 'volume' must be specified together for 'pool' type source")
        else:
            source = (src.get(DISK_SOURCE_ATTR[dtype]) or None) if src is not None else None
        target = child(node, "target")
        dev = target.get("dev") if target is not None else None
        if not dev:
            named = source or (f"{pool}/{volume}" if pool else None)
            raise error(ErrorNumber.NO_TARGET, ErrorDomain.DOMAIN,
                        f"missing target information for disk '{named or '(no source)'}': "
                        "add <target dev='...'/>")
        bus = target.get("bus") or default_disk_bus(device, dev)
        check_choice(bus, DISK_BUSES, f"bus of disk '{dev}'")
        drv = child(node, "driver")
        drv_get = drv.get if drv is not None else (lambda _name: None)
        for attr, allowed in (("error_policy", DISK_ERROR_POLICIES), ("rerror_policy", DISK_ERROR_POLICIES[:3])):
            if drv_get(attr) is not None and drv_get(attr) not in allowed:
                raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN,
                            f"Invalid value for attribute '{attr}' in element 'driver': '{drv_get(attr)}'.")
        disk = cls(
            target_dev=dev, target_bus=bus, type=dtype, device=device, source=source,
            driver_name=drv_get("name"), driver_type=drv_get("type"), driver_cache=drv_get("cache"),
            driver_error_policy=drv_get("error_policy"), driver_rerror_policy=drv_get("rerror_policy"),
            # libvirt lists every CD-ROM as read-only
            readonly=child(node, "readonly") is not None or device == "cdrom",
            shareable=child(node, "shareable") is not None,
            alias=_alias_of(node), address=address_of(node), backing_store=_backing_of(node),
            source_pool=pool, source_volume=volume, mirror=DiskMirror.from_xml(child(node, "mirror")),
            rawio=rawio,
        )
        return disk

    def _source_node(self) -> Node | None:
        if self.type == "volume":   # the live XML too names the volume, not its path (as libvirt)
            return el("source", [("pool", self.source_pool), ("volume", self.source_volume)]) \
                if self.source_pool else None
        return el("source", [(DISK_SOURCE_ATTR[self.type], self.source)]) if self.source else None

    def to_node(self, flags: FormatFlags) -> Node:
        driver = [("name", self.driver_name), ("type", self.driver_type), ("cache", self.driver_cache),
                  ("error_policy", self.driver_error_policy), ("rerror_policy", self.driver_rerror_policy)]
        rawio = None if self.rawio is None else ("yes" if self.rawio else "no")
        return el("disk", [("type", self.type), ("device", self.device), ("rawio", rawio)], [
            el("driver", driver) if any(v is not None for _, v in driver) else None,
            self._source_node(),
            _backing_node(self.backing_store, live=not flags.inactive) if self.source else None,
            self.mirror.to_node() if self.mirror is not None and not flags.inactive else None,
            el("target", [("dev", self.target_dev), ("bus", self.target_bus)]),
            el("readonly") if self.readonly else None,
            el("shareable") if self.shareable else None,
            _alias_node(self.alias, flags),
            address_node(self.address),
        ])


# -- leases (for the lock manager) ---------------------------------------------

@dataclass(slots=True)
class Lease:
    """``<lease><lockspace/><key/><target path= offset=/></lease>``: a lease the
    lock manager takes beside (or instead of) the disks' own."""

    key: str
    path: str
    lockspace: str | None = None
    offset: int | None = None

    @classmethod
    def from_xml(cls, node: etree._Element) -> Lease:
        key = child_text(node, "key", strip=True)
        if not key:
            raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN, "Missing 'key' element for lease")
        target = child(node, "target")
        path = target.get("path") if target is not None else None
        if not path:
            raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN, "Missing 'target' element for lease")
        offset_text = target.get("offset") if target is not None else None
        offset = None
        if offset_text is not None:
            if not offset_text.isdigit():
                raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN,
                            f"Malformed lease target offset {offset_text}")
            offset = int(offset_text)
        return cls(key=key, path=path, lockspace=child_text(node, "lockspace", strip=True) or None, offset=offset)

    def to_node(self, flags: FormatFlags) -> Node:
        return el("lease", (), [
            el("lockspace", text=self.lockspace) if self.lockspace else None,
            el("key", text=self.key),
            el("target", [("path", self.path), ("offset", None if self.offset is None else str(self.offset))]),
        ])


# -- network interfaces --------------------------------------------------------

# interface type -> the <source> attribute it needs (None: no source)
NET_SOURCE_ATTR: dict[str, str | None] = {"user": None, "network": "network", "bridge": "bridge",
                                          "ethernet": None}
# Tap names the host generates; not part of the persistent config.
GENERATED_TAP_PREFIXES = ("vnet", "macvtap", "macvlan")
# QEMU's locally administered prefix, which libvirt uses for generated MACs.
MAC_PREFIX = (0x52, 0x54, 0x00)
_MAC_RE = re.compile(r"[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}")


def parse_mac(text: str) -> str:
    """Canonical lower-case ``aa:bb:cc:dd:ee:ff``; unicast only."""
    if not _MAC_RE.fullmatch(text):
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                    f"unable to parse mac address '{text}': expected six ':'-separated hex bytes")
    octets = [int(part, 16) for part in text.split(":")]
    if octets[0] & 1:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN,
                    f"expected unicast mac address, found multicast '{text}'")
    return ":".join(f"{b:02x}" for b in octets)


def generate_mac() -> str:
    return ":".join(f"{b:02x}" for b in (*MAC_PREFIX, *secrets.token_bytes(3)))


@dataclass(slots=True)
class Interface:
    type: str                          # user | network | bridge
    mac: str = field(default_factory=generate_mac)
    source: str | None = None          # network name or bridge name
    model: str | None = None
    target_dev: str | None = None      # host tap device (live)
    alias: str | None = None
    address: Address | None = None
    link_state: str | None = None      # <link state='up|down'/>: the guest sees a cable (un)plugged
    # type='network': the bridge the network gave it (live, <source bridge=...>)
    source_bridge: str | None = None
    # type='ethernet' <target managed='no'>: the tap exists already and stays the user's
    target_managed: bool | None = None
    # <script path>/<downscript path>: programs run as the tap comes up / goes down
    script: str | None = None
    downscript: str | None = None

    @property
    def bridge(self) -> str | None:
        """The bridge this NIC's tap joins (None for user and ethernet NICs)."""
        return self.source if self.type == "bridge" else self.source_bridge if self.type == "network" else None

    @classmethod
    def from_xml(cls, node: etree._Element) -> Interface:
        ntype = check_choice(node.get("type", ""), tuple(NET_SOURCE_ATTR), "interface type",
                             CONFIG_UNSUPPORTED)
        mac_node = child(node, "mac")
        mac_text = mac_node.get("address") if mac_node is not None else None
        source_attr = NET_SOURCE_ATTR[ntype]
        source = None
        if source_attr is not None:
            src = child(node, "source")
            source = src.get(source_attr) if src is not None else None
            if not source:
                raise xml_detail(f"no <source {source_attr}='...'/> given for <interface type='{ntype}'>")
        model = child(node, "model")
        target = child(node, "target")
        link = child(node, "link")
        managed = target.get("managed") if target is not None and ntype == "ethernet" else None
        if managed is not None and managed not in ("yes", "no"):
            raise xml_detail(f"invalid managed attribute '{managed}' of interface target")
        if managed == "no" and not (target is not None and target.get("dev")):
            raise xml_detail("an unmanaged <interface type='ethernet'> needs <target dev='...'/>")
        src = child(node, "source")
        return cls(
            type=ntype,
            mac=parse_mac(mac_text) if mac_text else generate_mac(),
            source=source,
            model=model.get("type") if model is not None else None,
            target_dev=target.get("dev") if target is not None else None,
            alias=_alias_of(node), address=address_of(node),
            link_state=check_choice(link.get("state", ""), ("up", "down"), "interface link state")
            if link is not None else None,
            source_bridge=(src.get("bridge") or None) if ntype == "network" and src is not None else None,
            target_managed=None if managed is None else managed == "yes",
            script=_attr_or_none(child(node, "script"), "path"),
            downscript=_attr_or_none(child(node, "downscript"), "path"),
        )

    def _shows_target(self, flags: FormatFlags) -> bool:
        if self.target_dev is None:
            return False
        return not (flags.inactive and self.target_dev.startswith(GENERATED_TAP_PREFIXES))

    def to_node(self, flags: FormatFlags) -> Node:
        source_attr = NET_SOURCE_ATTR[self.type]
        return el("interface", [("type", self.type)], [
            el("mac", [("address", self.mac)]),
            el("source", [(source_attr, self.source),
                          ("bridge", None if flags.inactive else self.source_bridge)])
            if source_attr and self.source else None,
            el("script", [("path", self.script)]) if self.script else None,
            el("downscript", [("path", self.downscript)]) if self.downscript else None,
            el("target", [("dev", self.target_dev),
                          ("managed", "no" if self.target_managed is False else None)])   # as libvirt
            if self._shows_target(flags) else None,
            el("model", [("type", self.model)]) if self.model else None,
            el("link", [("state", self.link_state)]) if self.link_state else None,
            _alias_node(self.alias, flags),
            address_node(self.address),
        ])

    def clear_live(self) -> None:
        self.alias = _live_alias(self.alias)
        self.source_bridge = None
        if self.target_dev and self.target_dev.startswith(GENERATED_TAP_PREFIXES):
            self.target_dev = None


# -- serial ports and consoles -------------------------------------------------

# character device type -> whether its <source> carries a path
CHR_HAS_PATH: dict[str, bool] = {
    "pty": True, "file": True, "dev": True, "pipe": True, "unix": True,
    "null": False, "vc": False, "stdio": False, "spicevmc": False,
}
UNIX_MODES = ("bind", "connect")
CONSOLE_TARGET_TYPES = ("serial", "virtio", "xen", "uml", "lxc", "openvz", "sclp", "sclplm", "none")


@dataclass(slots=True)
class _CharDev:
    """The source half shared by <serial> and <console>."""

    type: str = "pty"                  # pty | file | unix | dev | pipe | null | vc | stdio
    path: str | None = None            # for pty: the host pty, known once running
    mode: str | None = None            # unix only: bind | connect
    alias: str | None = None

    @staticmethod
    def _source_fields(node: etree._Element) -> dict:
        ctype = check_choice(node.get("type", "pty"), tuple(CHR_HAS_PATH),
                             f"<{node.tag}> type", CONFIG_UNSUPPORTED)
        src = child(node, "source")
        path = src.get("path") or None if src is not None and CHR_HAS_PATH[ctype] else None
        mode = None
        if ctype == "unix":
            mode = check_choice(src.get("mode", "connect") if src is not None else "connect",
                                UNIX_MODES, f"<{node.tag}> unix socket mode")
        elif ctype in ("file", "dev", "pipe") and path is None:
            raise xml_detail(f"<{node.tag} type='{ctype}'> needs <source path='...'/>")
        return {"type": ctype, "path": path, "mode": mode, "alias": _alias_of(node)}

    def _source_node(self, flags: FormatFlags) -> Node | None:
        if self.path is None:
            return None
        if self.type == "pty" and flags.inactive:   # the pty is picked at start-up
            return None
        return el("source", [("mode", self.mode), ("path", self.path)])

    def clear_live(self) -> None:
        self.alias = _live_alias(self.alias)
        if self.type == "pty":
            self.path = None


@dataclass(slots=True)
class Serial(_CharDev):
    target_port: int = 0
    target_type: str | None = None     # isa-serial, pci-serial, ... when given
    target_model: str | None = None

    @classmethod
    def from_xml(cls, node: etree._Element) -> tuple[Serial, bool]:
        """The serial port, and whether its port number was given."""
        target = child(node, "target")
        port = int_attr(target, "port", minimum=0) if target is not None else None
        model = child(target, "model") if target is not None else None
        serial = cls(**cls._source_fields(node), target_port=port or 0,
                     target_type=target.get("type") if target is not None else None,
                     target_model=model.get("name") if model is not None else None)
        return serial, port is not None

    def to_node(self, flags: FormatFlags) -> Node:
        model = el("model", [("name", self.target_model)]) if self.target_model else None
        return el("serial", [("type", self.type)], [
            self._source_node(flags),
            el("target", [("type", self.target_type), ("port", self.target_port)], [model]),
            _alias_node(self.alias, flags),
        ])


@dataclass(slots=True)
class Console(_CharDev):
    target_type: str = "serial"
    target_port: int = 0

    @classmethod
    def from_xml(cls, node: etree._Element, index: int) -> Console:
        target = child(node, "target")
        port = int_attr(target, "port", minimum=0) if target is not None else None
        ttype = (target.get("type") if target is not None else None) or "serial"
        return cls(**cls._source_fields(node),
                   target_type=check_choice(ttype, CONSOLE_TARGET_TYPES, "console target type"),
                   target_port=index if port is None else port)

    def to_node(self, flags: FormatFlags) -> Node:
        # libvirt repeats the first pty console's path as the legacy tty attribute
        tty = (self.path if self.type == "pty" and self.target_port == 0 and not flags.inactive
               else None)
        return el("console", [("type", self.type), ("tty", tty)], [
            self._source_node(flags),
            el("target", [("type", self.target_type), ("port", self.target_port)]),
            _alias_node(self.alias, flags),
        ])


# virtio-serial channels: the guest agent's socket, SPICE's vdagent port
CHANNEL_TARGET_TYPES = ("virtio", "guestfwd", "xen")
CHANNEL_STATES = ("connected", "disconnected")


@dataclass(slots=True)
class Channel(_CharDev):
    """``<channel>``: a named port on a virtio-serial controller (org.qemu.guest_agent.0,
    com.redhat.spice.0); ``address`` is its ``<address type='virtio-serial'>``."""

    target_type: str = "virtio"
    target_name: str | None = None
    target_state: str | None = None     # live: whether the guest side has the port open
    address: Address | None = None

    @classmethod
    def from_xml(cls, node: etree._Element) -> Channel:
        target = child(node, "target")
        if target is None:
            raise xml_detail("<channel> needs a <target type='virtio' name='...'/>")
        state = target.get("state")
        return cls(**cls._source_fields(node),
                   target_type=check_choice(target.get("type", ""), CHANNEL_TARGET_TYPES, "channel target type"),
                   target_name=target.get("name") or None,
                   target_state=check_choice(state, CHANNEL_STATES, "channel state") if state else None,
                   address=address_of(node))

    def to_node(self, flags: FormatFlags) -> Node:
        return el("channel", [("type", self.type)], [
            self._source_node(flags),
            el("target", [("type", self.target_type), ("name", self.target_name),
                          ("state", None if flags.inactive else self.target_state)]),
            _alias_node(self.alias, flags),
            address_node(self.address),
        ])

    def clear_live(self) -> None:
        _CharDev.clear_live(self)
        self.target_state = None


# -- graphics ------------------------------------------------------------------

GRAPHICS_TYPES = ("vnc", "spice")
LISTEN_TYPES = ("address", "network", "socket", "none")
MAX_PORT = 65535


@dataclass(slots=True)
class GraphicsListen:
    type: str = "address"
    address: str | None = None         # for type='network': the resolved address (live)
    network: str | None = None
    socket: str | None = None

    @classmethod
    def from_xml(cls, node: etree._Element) -> GraphicsListen:
        ltype = node.get("type")
        if ltype is None:
            raise xml_detail("graphics <listen> needs a type attribute")
        check_choice(ltype, LISTEN_TYPES, "graphics listen type")
        return cls(ltype, node.get("address") or None, node.get("network") or None,
                   node.get("socket") or None)

    def shown_address(self, flags: FormatFlags) -> str | None:
        if self.type == "address" or (self.type == "network" and not flags.inactive):
            return self.address
        return None

    def to_node(self, flags: FormatFlags) -> Node:
        return el("listen", [
            ("type", self.type),
            ("address", self.shown_address(flags)),
            ("network", self.network if self.type == "network" else None),
            ("socket", self.socket if self.type == "socket" else None),
        ])


def _port_attr(node: etree._Element, name: str) -> int | None:
    value = int_attr(node, name, minimum=-1)
    if value is not None and value > MAX_PORT:
        raise xml_detail(f"invalid value '{value}' for attribute '{name}' of <graphics>: "
                         f"ports go up to {MAX_PORT}")
    return value


@dataclass(slots=True)
class Graphics:
    type: str                          # vnc | spice
    port: int = 0                      # 0: none chosen (yet)
    tls_port: int = 0                  # spice only
    autoport: bool = True              # the port is picked at start-up
    keymap: str | None = None
    passwd: str | None = None          # shown only in secure XML
    listens: list[GraphicsListen] = field(default_factory=lambda: [GraphicsListen()])

    @property
    def listen_address(self) -> str | None:
        return self.listens[0].address if self.listens else None

    @classmethod
    def from_xml(cls, node: etree._Element) -> Graphics:
        gtype = check_choice(node.get("type", ""), GRAPHICS_TYPES, "graphics type", CONFIG_UNSUPPORTED)
        port = _port_attr(node, "port")
        tls_port = _port_attr(node, "tlsPort") if gtype == "spice" else None
        # -1 is libvirt's legacy spelling of autoport; VNC without a port is autoport too.
        autoport = (bool_attr(node, "autoport") is True or -1 in (port, tls_port)
                    or (gtype == "vnc" and port is None))
        return cls(type=gtype, port=max(port or 0, 0), tls_port=max(tls_port or 0, 0),
                   autoport=autoport, keymap=node.get("keymap"), passwd=node.get("passwd"),
                   listens=cls._listens(node))

    @staticmethod
    def _listens(node: etree._Element) -> list[GraphicsListen]:
        listens = [GraphicsListen.from_xml(n) for n in children(node, "listen")]
        attr = node.get("listen") or None
        if not listens:
            return [GraphicsListen("address", attr)]
        first = listens[0]
        if attr is not None and first.type == "address":
            if first.address is None:
                first.address = attr
            elif first.address != attr:
                raise xml_detail(f"graphics 'listen' attribute '{attr}' must match the 'address' "
                                 f"attribute of the first <listen> element (found '{first.address}')")
        return listens

    def _port_shown(self, port: int, flags: FormatFlags) -> int | None:
        return port if port and not (self.autoport and flags.inactive) else None

    def to_node(self, flags: FormatFlags) -> Node:
        first = self.listens[0] if self.listens else None
        attrs: list[tuple[str, object]] = [("type", self.type)]
        if first is not None and first.type == "socket" and self.type == "vnc":
            attrs.append(("socket", first.socket))
        elif first is None or first.type in ("address", "network"):
            port = self._port_shown(self.port, flags)
            if port is None and self.autoport and self.type == "vnc":
                port = -1
            attrs += [("port", port)]
            if self.type == "spice":
                attrs.append(("tlsPort", self._port_shown(self.tls_port, flags)))
            attrs += [("autoport", yes_no(self.autoport)),
                      ("listen", first.shown_address(flags) if first else None)]
        attrs += [("keymap", self.keymap), ("passwd", self.passwd if flags.secure else None)]
        return el("graphics", attrs, [listen.to_node(flags) for listen in self.listens])

    def clear_live(self) -> None:
        if self.autoport:
            self.port = self.tls_port = 0
        for listen in self.listens:
            if listen.type == "network":
                listen.address = None


# -- video, input, memory balloon -----------------------------------------------

VIDEO_TYPES = ("default", "vga", "cirrus", "vmvga", "xen", "vbox", "qxl", "parallels", "virtio",
               "gop", "none", "bochs", "ramfb")


@dataclass(slots=True)
class Video:
    type: str = "default"
    ram: int | None = None             # KiB, qxl only
    vram: int | None = None            # KiB
    vgamem: int | None = None          # KiB
    heads: int | None = None
    primary: bool = False
    alias: str | None = None
    address: Address | None = None

    @classmethod
    def from_xml(cls, node: etree._Element) -> Video:
        model = child(node, "model")
        if model is None:
            return cls(alias=_alias_of(node), address=address_of(node))
        return cls(
            type=check_choice(model.get("type", "default"), VIDEO_TYPES, "video model"),
            ram=int_attr(model, "ram", minimum=0), vram=int_attr(model, "vram", minimum=0),
            vgamem=int_attr(model, "vgamem", minimum=0), heads=int_attr(model, "heads", minimum=1),
            primary=bool_attr(model, "primary") is True, alias=_alias_of(node),
            address=address_of(node),
        )

    def to_node(self, flags: FormatFlags) -> Node:
        return el("video", (), [
            el("model", [("type", self.type), ("ram", self.ram), ("vram", self.vram),
                         ("vgamem", self.vgamem), ("heads", self.heads),
                         ("primary", "yes" if self.primary else None)]),
            _alias_node(self.alias, flags),
            address_node(self.address),
        ])


INPUT_TYPES = ("mouse", "tablet", "keyboard", "passthrough", "evdev")
INPUT_BUSES = ("ps2", "usb", "xen", "parallels", "virtio", "none")
# libvirt's bus for an x86 guest's input device without one
INPUT_DEFAULT_BUS: dict[str, str] = {"tablet": "usb", "passthrough": "virtio", "evdev": "none"}


@dataclass(slots=True)
class Input:
    type: str
    bus: str
    alias: str | None = None
    address: Address | None = None     # virtio input devices are PCI devices

    @classmethod
    def from_xml(cls, node: etree._Element) -> Input:
        itype = check_choice(node.get("type", ""), INPUT_TYPES, "input type")
        bus = node.get("bus") or INPUT_DEFAULT_BUS.get(itype, "ps2")
        return cls(itype, check_choice(bus, INPUT_BUSES, "input bus"), _alias_of(node), address_of(node))

    def to_node(self, flags: FormatFlags) -> Node:
        return el("input", [("type", self.type), ("bus", self.bus)], [_alias_node(self.alias, flags),
                                                                      address_node(self.address)])


MEMBALLOON_MODELS = ("virtio", "virtio-transitional", "virtio-non-transitional", "xen", "none")


@dataclass(slots=True)
class Memballoon:
    model: str
    alias: str | None = None
    address: Address | None = None
    period: int | None = None          # <stats period='N'/>: guest statistics polling, seconds

    @classmethod
    def from_xml(cls, node: etree._Element) -> Memballoon:
        model = node.get("model")
        if not model:
            raise xml_detail("<memballoon> needs a model attribute")
        stats = child(node, "stats")
        period_text = stats.get("period") if stats is not None else None
        if period_text is not None and not period_text.isdigit():
            raise xml_detail(f"invalid statistics collection period '{period_text}'")
        return cls(check_choice(model, MEMBALLOON_MODELS, "memballoon model"), _alias_of(node),
                   address_of(node), int(period_text) if period_text else None)

    def to_node(self, flags: FormatFlags) -> Node:
        stats = el("stats", [("period", str(self.period))]) if self.period else None
        return el("memballoon", [("model", self.model)], [stats, _alias_node(self.alias, flags),
                                                          address_node(self.address)])


def _attr_or_none(node: etree._Element | None, name: str) -> str | None:
    """An attribute as libvirt's string(./x/@name) reads it: None when absent or empty."""
    return (node.get(name) or None) if node is not None else None


# -- the <devices> element -----------------------------------------------------

# libvirt's guest device elements pyvirt has no model of (host-side ones such as <audio> aside)
UNMODELLED_DEVICES = frozenset({"sound", "rng", "watchdog", "hostdev", "redirdev", "smartcard", "tpm",
                                "filesystem", "shmem", "panic", "vsock", "iommu", "memory", "parallel",
                                "hub", "redirfilter", "crypto"})

@dataclass(slots=True)
class Devices:
    emulator: str | None = None
    disks: list[Disk] = field(default_factory=list)
    controllers: list[Controller] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    interfaces: list[Interface] = field(default_factory=list)
    serials: list[Serial] = field(default_factory=list)
    consoles: list[Console] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    graphics: list[Graphics] = field(default_factory=list)
    videos: list[Video] = field(default_factory=list)
    inputs: list[Input] = field(default_factory=list)
    memballoon: Memballoon | None = None
    # guest devices pyvirt does not model and left out (<sound>, <rng>...), by element name:
    # a running guest that has them cannot move here (see the QEMU driver's post-parse)
    unmodelled: list[str] = field(default_factory=list)

    @classmethod
    def from_xml(cls, node: etree._Element | None) -> Devices:
        devs = cls()
        if node is None:
            return devs
        devs.unmodelled = sorted({n.tag for n in node if isinstance(n.tag, str) and n.tag in UNMODELLED_DEVICES})
        devs.emulator = child_text(node, "emulator", strip=True)
        given_buses: list[str | None] = []
        for n in children(node, "disk"):
            disk = Disk.from_xml(n)
            disk.validate_source(n)
            _insert_disk(devs.disks, given_buses, disk, n.find("target").get("bus") or None)
        devs.controllers = number_controllers([Controller.from_xml(n) for n in children(node, "controller")])
        devs.leases = [Lease.from_xml(n) for n in children(node, "lease")]
        devs.interfaces = [Interface.from_xml(n) for n in children(node, "interface")]
        devs.serials = _number_serials([Serial.from_xml(n) for n in children(node, "serial")])
        devs.consoles = [Console.from_xml(n, i) for i, n in enumerate(children(node, "console"))]
        devs.channels = [Channel.from_xml(n) for n in children(node, "channel")]
        devs.graphics = [Graphics.from_xml(n) for n in children(node, "graphics")]
        devs.videos = _primary_first([Video.from_xml(n) for n in children(node, "video")])
        devs.inputs = [Input.from_xml(n) for n in children(node, "input")]
        balloon = child(node, "memballoon")
        devs.memballoon = Memballoon.from_xml(balloon) if balloon is not None else None
        return devs

    def to_node(self, flags: FormatFlags) -> Node:
        # libvirt's device order, whatever order the input used
        groups: list[list] = [self.interfaces, self.serials, self.consoles, self.channels,
                              self.inputs, self.graphics, self.videos,
                              [self.memballoon] if self.memballoon else []]
        return el("devices", (), [
            el("emulator", text=self.emulator) if self.emulator else None,
            *(dev.to_node(flags) for dev in self.disks),
            *(ctrl.to_node(flags.inactive) for ctrl in self.controllers),
            *(lease.to_node(flags) for lease in self.leases),
            *(dev.to_node(flags) for group in groups for dev in group),
        ], keep_open=True)

    def clear_live(self) -> None:
        for group in (self.disks, self.controllers, self.videos, self.inputs,
                      [self.memballoon] if self.memballoon else []):
            for dev in group:
                dev.alias = _live_alias(dev.alias)
        for disk in self.disks:
            if disk.type == "volume":     # resolved again at the next start
                disk.source = disk.actual_type = None
        for dev in (*self.interfaces, *self.serials, *self.consoles, *self.channels, *self.graphics):
            dev.clear_live()


def disk_index(dev: str) -> int:
    """virDiskNameToIndex: vda → 0, sdb → 1, hdaa → 26 (-1: not a disk name)."""
    m = re.fullmatch(r"(?:fd|hd|vd|sd|xvd|ubd)([a-z]+)[0-9]*", dev)
    if m is None:
        return -1
    index = 0
    for ch in m.group(1):
        index = index * 26 + (ord(ch) - ord("a") + 1)
    return index - 1


def _insert_disk(disks: list[Disk], buses: list[str | None], disk: Disk, bus: str | None) -> None:
    """virDomainDiskInsert: after the last disk of the same bus, or before the first one
    of that bus whose name sorts after it; at the end when its bus is new.  The buses
    compared are the ones the XML gave (``buses``, in step with ``disks``; None where it
    gave none): libvirt inserts each disk as it parses it and picks a missing bus from
    the target name only later, so disks without a bus sort among themselves."""
    at = -1
    for i in range(len(disks) - 1, -1, -1):
        if buses[i] != bus:
            continue
        if disk_index(disks[i].target_dev) > disk_index(disk.target_dev):
            at = i
        elif at == -1:
            at = i + 1
    at = len(disks) if at == -1 else at
    disks.insert(at, disk)
    buses.insert(at, bus)


def _number_serials(parsed: list[tuple[Serial, bool]]) -> list[Serial]:
    """Serial ports without a port number get the next one after the highest so far."""
    serials: list[Serial] = []
    for serial, given in parsed:
        if not given:
            serial.target_port = max((s.target_port for s in serials), default=-1) + 1
        serials.append(serial)
    return serials


def _primary_first(videos: list[Video]) -> list[Video]:
    """libvirt keeps the primary video first, and makes the first one primary."""
    primaries = [v for v in videos if v.primary]
    if len(primaries) > 1:
        raise xml_detail("only one primary video device is supported")
    if videos and not primaries:
        videos[0].primary = True
    return sorted(videos, key=lambda v: not v.primary)
