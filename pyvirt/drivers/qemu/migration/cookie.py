"""The QEMU migration cookie: what one migration step tells the next (pure, no I/O).

On the wire a cookie is UTF-8 XML followed by one NUL byte, and the NUL is
counted in the length (libvirt rejects a cookie without it)::

    <qemu-migration>
      <name>DOM</name>                  the domain, checked by the receiver
      <uuid>DOM-UUID</uuid>
      <hostname>SENDER</hostname>
      <hostuuid>SENDER-HOST-UUID</hostuuid>   equal to the receiver's: same host, refused
      <feature name='F'/>...            mandatory features: refused unless understood
      <graphics/> <lockstate/> <domain/> <statistics/> <capabilities/>   optional parts
    </qemu-migration>

Each feature is a bit of :class:`CookieFlags` with libvirt's name, and each
part pyvirt models has one row in ``_PARTS`` (bit, field, element, writer,
reader), in the order libvirt writes them (which is bit order).  A cookie's
``flags`` are derived from which parts it holds; ``mandatory`` is separate,
as in libvirt (a Begin cookie marks ``lockstate`` mandatory without a
``<lockstate>`` element).

Every part libvirt 9.0 may write is read and can be written: ``<network>``
(per-NIC virtual port data), ``<cpu>`` (the guest CPU the source runs),
``<allowReboot>`` (written by older libvirt only), ``<capabilities>`` (the
migration capabilities the sender's QEMU has, and which it switches on by
itself), ``<blockDirtyBitmaps>``; ``memory-hotplug`` and ``cpu-hotplug`` are
features without an element.  What each step sends and accepts follows
libvirt's qemu_migration.c (see :data:`STEP_ACCEPTS`).

Header checks, as libvirt's: the name and UUID must be the receiver's
domain's, and the sender's host UUID must not be the receiver's — the
hostname may be equal (two hosts may share one; only the UUID tells).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntFlag
from typing import Any
from xml.parsers import expat

from lxml import etree

from ....conf.xmlutil import INDENT, Node, child, el, parse_document, render, text_of, yes_no
from ....errors import ErrorDomain, ErrorNumber, error, libvirtError
from .nbd_cookie import CookieNbd

# libvirt's REMOTE_MIGRATE_COOKIE_MAX: the largest cookie the RPC layer carries.
MIGRATE_COOKIE_MAX = 4194304


class CookieFlags(IntFlag):
    """qemuMigrationCookieFlags: one bit per feature, in libvirt's order."""

    GRAPHICS = 1 << 0
    LOCKSTATE = 1 << 1
    PERSISTENT = 1 << 2
    NETWORK = 1 << 3
    NBD = 1 << 4
    STATS = 1 << 5
    MEMORY_HOTPLUG = 1 << 6
    CPU_HOTPLUG = 1 << 7
    CPU = 1 << 8
    ALLOW_REBOOT = 1 << 9
    CAPS = 1 << 10
    BLOCK_DIRTY_BITMAPS = 1 << 11


# The name of each feature in <feature name='..'/>.
FEATURE_NAMES: dict[CookieFlags, str] = {
    CookieFlags.GRAPHICS: "graphics",
    CookieFlags.LOCKSTATE: "lockstate",
    CookieFlags.PERSISTENT: "persistent",
    CookieFlags.NETWORK: "network",
    CookieFlags.NBD: "nbd",
    CookieFlags.STATS: "statistics",
    CookieFlags.MEMORY_HOTPLUG: "memory-hotplug",
    CookieFlags.CPU_HOTPLUG: "cpu-hotplug",
    CookieFlags.CPU: "cpu",
    CookieFlags.ALLOW_REBOOT: "allowReboot",
    CookieFlags.CAPS: "capabilities",
    CookieFlags.BLOCK_DIRTY_BITMAPS: "block-dirty-bitmaps",
}
_FEATURE_BY_NAME = {name: flag for flag, name in FEATURE_NAMES.items()}
ALL_FLAGS = CookieFlags(sum(FEATURE_NAMES))

# <statistics> children in the order libvirt writes them.  libvirt always
# writes the job's started/stopped/sent/time_elapsed, the memory_* and disk_*
# counters and auto_converge_throttle; delta, downtime, setup_time, the
# memory_constant/normal/normal_bytes group and the compression_* group only
# when known.  Here a key is written when the dict has it.
STATISTICS_KEYS: tuple[str, ...] = (
    "started", "stopped", "sent", "delta",
    "time_elapsed", "downtime", "setup_time",
    "memory_total", "memory_processed", "memory_remaining", "memory_bps",
    "memory_constant", "memory_normal", "memory_normal_bytes",
    "memory_dirty_rate", "memory_iteration", "memory_postcopy_requests", "memory_page_size",
    "disk_total", "disk_processed", "disk_remaining", "disk_bps",
    "compression_cache", "compression_bytes", "compression_pages",
    "compression_cache_misses", "compression_overflow",
    "auto_converge_throttle",
)
# libvirt's value ranges: delta is a long long, the throttle an int, the rest unsigned long long.
_STAT_RANGE: dict[str, tuple[int, int]] = {
    key: (0, 2**64 - 1) for key in STATISTICS_KEYS
} | {"delta": (-(2**63), 2**63 - 1), "auto_converge_throttle": (-(2**31), 2**31 - 1)}

# virDomainGraphicsType names, which is what libvirt's reader accepts.
GRAPHICS_TYPES = ("sdl", "vnc", "rdp", "desktop", "spice", "egl-headless", "dbus")

# libvirt 9.0's qemuMigrationCapability names, in the order its cookie lists them.
# "events" is never listed: libvirt always switches it on itself.
MIGRATION_CAPABILITIES = ("xbzrle", "auto-converge", "rdma-pin-all", "events", "postcopy-ram", "compress",
                          "pause-before-switchover", "late-block-activate", "multifd", "dirty-bitmaps",
                          "return-path", "zero-copy-send")
# The capabilities each side switches on by itself (libvirt's qemuMigrationParamsAlwaysOn):
# the cookie says so with auto='yes'.
ALWAYS_ON = {"source": ("pause-before-switchover",), "destination": ("late-block-activate",)}

# What each step reads from the cookie it receives (qemuMigrationCookieParse's flags in
# libvirt's qemu_migration.c); a mandatory feature outside these is refused.
STEP_ACCEPTS = {
    "prepare": (CookieFlags.LOCKSTATE | CookieFlags.NBD | CookieFlags.MEMORY_HOTPLUG | CookieFlags.CPU_HOTPLUG
                | CookieFlags.CPU | CookieFlags.CAPS | CookieFlags.BLOCK_DIRTY_BITMAPS),
    "perform": CookieFlags.GRAPHICS | CookieFlags.CAPS | CookieFlags.BLOCK_DIRTY_BITMAPS | CookieFlags.NBD,
    "finish": CookieFlags.NETWORK | CookieFlags.STATS | CookieFlags.NBD | CookieFlags.PERSISTENT,
    "confirm": CookieFlags.STATS,
}


def cookie_capabilities(supported: Iterable[str], party: str) -> list[tuple[str, bool]]:
    """The <capabilities> part a sender writes: the capabilities its QEMU has that
    libvirt knows (in libvirt's order, without "events"), each marked automatic
    when ``party`` ("source" or "destination") switches it on by itself."""
    have = set(supported)
    auto = ALWAYS_ON[party]
    return [(name, name in auto) for name in MIGRATION_CAPABILITIES if name in have and name != "events"]


def mandatory_names(flags: int) -> list[str]:
    """The feature names of ``flags``, in bit order (as written in the cookie)."""
    return [name for flag, name in FEATURE_NAMES.items() if flags & flag]


def _fail(detail: str) -> libvirtError:
    """A malformed cookie, as libvirt reports it."""
    return error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU, detail)


def _uuid(value: str, what: str) -> uuidlib.UUID:
    try:
        return uuidlib.UUID(value.strip())
    except (ValueError, AttributeError) as exc:
        raise _fail(f"malformed {what} '{value}' in migration data") from exc


def _int(raw: str | None, what: str, lo: int, hi: int) -> int:
    text = (raw or "").strip()
    digits = text[1:] if text[:1] == "-" else text
    if not digits.isascii() or not digits.isdigit() or not lo <= int(text) <= hi:
        raise _fail(f"malformed {what} '{raw}' in migration data")
    return int(text)


# -- the parts ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CookieGraphics:
    """Where the destination's display listens, so clients can follow the guest.

    libvirt writes ``tlsPort`` for SPICE only (``-1`` when TLS is off) and a
    ``<cert info='subject'>`` child when the TLS certificate's subject is known.
    """

    type: str
    port: int
    listen: str
    tls_port: int = -1
    tls_subject: str | None = None

    def __post_init__(self) -> None:
        if self.type not in GRAPHICS_TYPES:
            raise _fail(f"unknown graphics type {self.type}")

    def to_node(self) -> Node:
        tls_port = self.tls_port if self.type == "spice" else None
        cert = (el("cert", [("info", "subject"), ("value", self.tls_subject)])
                if self.tls_subject is not None else None)
        return el("graphics", [("type", self.type), ("port", self.port), ("listen", self.listen),
                               ("tlsPort", tls_port)], [cert])

    @classmethod
    def from_element(cls, node: etree._Element) -> CookieGraphics:
        kind = node.get("type")
        if kind is None:
            raise _fail("missing type attribute in migration data")
        if kind not in GRAPHICS_TYPES:
            raise _fail(f"unknown graphics type {kind}")

        def port(attr: str) -> int:
            if node.get(attr) is None:
                raise _fail(f"missing {attr} attribute in migration data")
            return _int(node.get(attr), f"graphics {attr}", -(2**31), 2**31 - 1)

        listen = node.get("listen")
        if listen is None:
            raise _fail("missing listen attribute in migration data")
        cert = next((c for c in node.findall("cert") if c.get("info") == "subject"), None)
        return cls(type=kind, port=port("port"), listen=listen,
                   tls_port=port("tlsPort") if kind == "spice" else -1,
                   tls_subject=cert.get("value") if cert is not None else None)


@dataclass(frozen=True, slots=True)
class CookieLockState:
    """The lock manager's name and the lease state it handed over.

    ``leases`` is the lock driver's opaque state string, kept unparsed; it is
    written as the text of ``<leases>`` (escaped) and read back as that text.
    """

    driver: str
    leases: str = ""

    def to_node(self) -> Node:
        return el("lockstate", [("driver", self.driver)], [el("leases", text=self.leases)])

    @classmethod
    def from_element(cls, node: etree._Element) -> CookieLockState:
        driver = node.get("driver")
        if not driver:
            raise _fail("Missing lock driver name in migration cookie")
        leases = child(node, "leases")
        return cls(driver=driver, leases="".join(leases.itertext()) if leases is not None else "")


@dataclass(frozen=True, slots=True)
class CookieNetInterface:
    """One NIC's virtual port data (Open vSwitch, 802.1Qbh, midonet...), for the
    destination to restore on its port.  ``index`` is the NIC's position in the
    definition; libvirt writes it and reads the interfaces by position."""

    index: int
    vporttype: str
    portdata: str | None = None

    def to_node(self) -> Node:
        data = el("portdata", text=self.portdata) if self.portdata is not None else None
        return el("interface", [("index", self.index), ("vporttype", self.vporttype)], [data], keep_open=True)


def _network_node(nets: list[CookieNetInterface]) -> Node:
    return el("network", (), [net.to_node() for net in nets])


def _read_network(node: etree._Element) -> list[CookieNetInterface]:
    nets = []
    for position, iface in enumerate(node.findall("interface")):
        vporttype = iface.get("vporttype")
        if vporttype is None:
            raise _fail("missing vporttype attribute in migration data")
        index = iface.get("index")
        data = child(iface, "portdata")
        nets.append(CookieNetInterface(
            index=_int(index, "interface index", 0, 2**31 - 1) if index is not None else position,
            vporttype=vporttype, portdata="".join(data.itertext()) if data is not None else None))
    return nets


@dataclass(frozen=True, slots=True)
class CookieCpu:
    """The guest CPU the source's QEMU runs (libvirt sends it when it expanded the
    domain's CPU at start), so the destination starts QEMU with the same one.

    Kept as libvirt's ``<cpu>`` element: mode, match, check, migratable, the model
    (with its fallback), the vendor and each feature with its policy.
    """

    mode: str = "custom"
    match: str | None = None
    check: str | None = None
    migratable: str | None = None
    model: str | None = None
    fallback: str | None = None
    vendor: str | None = None
    features: tuple[tuple[str, str], ...] = ()     # (policy, name), in the order written

    def to_node(self) -> Node:
        model = (el("model", [("fallback", self.fallback)], text=self.model)
                 if self.model is not None else None)
        return el("cpu", [("mode", self.mode), ("match", self.match), ("check", self.check),
                          ("migratable", self.migratable)],
                  [model, el("vendor", text=self.vendor) if self.vendor is not None else None,
                   *(el("feature", [("policy", policy), ("name", name)]) for policy, name in self.features)])

    @classmethod
    def from_element(cls, node: etree._Element) -> CookieCpu:
        model = child(node, "model")
        features = []
        for feature in node.findall("feature"):
            name = feature.get("name")
            if not name:
                raise _fail("Invalid CPU feature name")
            features.append((feature.get("policy", "require"), name))
        return cls(mode=node.get("mode", "custom"), match=node.get("match"), check=node.get("check"),
                   migratable=node.get("migratable"),
                   model=text_of(model, strip=True) if model is not None else None,
                   fallback=model.get("fallback") if model is not None else None,
                   vendor=text_of(child(node, "vendor"), strip=True), features=tuple(features))


def _allow_reboot_node(allowed: bool) -> Node:
    return el("allowReboot", [("value", yes_no(allowed))])


def _read_allow_reboot(node: etree._Element) -> bool:
    value = node.get("value")
    if value not in ("yes", "no"):
        raise _fail(f"invalid allowReboot value '{value}' in migration cookie")
    return value == "yes"


@dataclass(frozen=True, slots=True)
class CookieBitmapDisk:
    """A disk's dirty bitmaps that travel with a storage migration: (name, alias) each."""

    target: str
    bitmaps: tuple[tuple[str, str], ...]

    def to_node(self) -> Node:
        return el("disk", [("target", self.target)],
                  [el("bitmap", [("name", name), ("alias", alias)]) for name, alias in self.bitmaps])


def _bitmaps_node(disks: list[CookieBitmapDisk]) -> Node:
    return el("blockDirtyBitmaps", (), [d.to_node() for d in disks if d.bitmaps])


def _read_bitmaps(node: etree._Element) -> list[CookieBitmapDisk]:
    disks = []
    for disk in node.findall("disk"):
        bitmaps = []
        for bitmap in disk.findall("bitmap"):
            name, alias = bitmap.get("name"), bitmap.get("alias")
            if name is None or alias is None:
                raise _fail("malformed <blockDirtyBitmaps> in migration cookie")
            bitmaps.append((name, alias))
        if disk.get("target") is None:
            raise _fail("malformed <blockDirtyBitmaps> in migration cookie")
        disks.append(CookieBitmapDisk(disk.get("target"), tuple(bitmaps)))
    return disks


def _format_persistent(xml: str) -> str:
    """The <domain> document, one level in (libvirt indents it like any child)."""
    return "".join(f"{INDENT}{line}\n" if line else "\n" for line in xml.rstrip("\n").split("\n"))


def _read_persistent(root: etree._Element, source: bytes) -> str:
    """The text of the one <domain> child exactly as written, one level out."""
    if len(root.findall("domain")) != 1:
        raise _fail("Too many domain elements in migration cookie")
    start, end = _child_span(source, "domain")
    try:
        lines = source[start:end].decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise _fail(f"malformed migration cookie: {exc}") from exc
    return "\n".join(lines[:1] + [line.removeprefix(INDENT) for line in lines[1:]]) + "\n"


def _child_span(source: bytes, tag: str) -> tuple[int, int]:
    """Byte offsets of the root's first child <tag>..</tag> in ``source``.

    lxml does not keep offsets, so locate the element with expat (which
    reports them); ``source`` has already been accepted by lxml.
    """
    parser = expat.ParserCreate()
    depth, span = 0, [-1, -1]

    def on_start(name: str, _attrs: Any) -> None:
        nonlocal depth
        depth += 1
        if depth == 2 and name == tag and span[0] < 0:
            span[0] = parser.CurrentByteIndex

    def on_end(name: str) -> None:
        nonlocal depth
        if depth == 2 and name == tag and span[0] >= 0 and span[1] < 0:
            span[1] = parser.CurrentByteIndex
        depth -= 1

    parser.StartElementHandler, parser.EndElementHandler = on_start, on_end
    try:
        parser.Parse(source, True)
    except expat.ExpatError as exc:
        raise _fail(f"malformed migration cookie: {exc}") from exc
    start, end = span
    if start < 0 or end < 0 or source[end:end + 2] != b"</":
        raise _fail(f"empty <{tag}> element in migration cookie")
    return start, source.index(b">", end) + 1


def _statistics_node(stats: dict[str, int]) -> Node:
    return el("statistics", (), [el(key, text=str(int(stats[key]))) for key in STATISTICS_KEYS
                                 if key in stats])


def _read_statistics(node: etree._Element) -> dict[str, int]:
    stats: dict[str, int] = {}
    for item in node:
        if isinstance(item.tag, str) and item.tag in _STAT_RANGE and item.tag not in stats:
            stats[item.tag] = _int(text_of(item), f"statistic <{item.tag}>", *_STAT_RANGE[item.tag])
    return stats


def _capabilities_node(caps: list[tuple[str, bool]]) -> Node:
    return el("capabilities", (), [el("cap", [("name", name), ("auto", yes_no(auto))])
                                   for name, auto in caps], keep_open=True)


def _read_capabilities(node: etree._Element) -> list[tuple[str, bool]]:
    """As libvirt reads them: a name is required, anything but auto='yes' is not
    automatic, and names this side does not know are kept (the caller ignores them)."""
    caps = []
    for cap in node.findall("cap"):
        name = cap.get("name")
        if name is None:
            raise _fail("missing migration capability name")
        caps.append((name, cap.get("auto") == "yes"))
    return caps


@dataclass(frozen=True, slots=True)
class _Part:
    """One optional part: its feature bit, where it lives, how to write and read it."""

    flag: CookieFlags
    field: str                                             # attribute of MigrationCookie
    tag: str                                               # its element in the cookie
    write: Callable[[Any], str]                            # value -> text at one indent
    read: Callable[[etree._Element, etree._Element, bytes], Any]   # (node, root, source) -> value


def _rendered(to_node: Callable[[Any], Node]) -> Callable[[Any], str]:
    return lambda value: render(to_node(value), 1)


def _unless_empty(to_node: Callable[[Any], Node]) -> Callable[[Any], str]:
    """A container libvirt leaves out when it would be empty (virXMLFormatElement)."""
    def write(value: Any) -> str:
        node = to_node(value)
        return render(node, 1) if node.children else ""
    return write


# In libvirt's writing order, which is bit order.
_PARTS: tuple[_Part, ...] = (
    _Part(CookieFlags.GRAPHICS, "graphics", "graphics", _rendered(CookieGraphics.to_node),
          lambda node, root, src: CookieGraphics.from_element(node)),
    _Part(CookieFlags.LOCKSTATE, "lockstate", "lockstate", _rendered(CookieLockState.to_node),
          lambda node, root, src: CookieLockState.from_element(node)),
    _Part(CookieFlags.PERSISTENT, "persistent_xml", "domain", _format_persistent,
          lambda node, root, src: _read_persistent(root, src)),
    _Part(CookieFlags.NETWORK, "network", "network", _unless_empty(_network_node),
          lambda node, root, src: _read_network(node)),
    _Part(CookieFlags.NBD, "nbd", "nbd", _rendered(CookieNbd.to_node),
          lambda node, root, src: CookieNbd.from_element(node)),
    _Part(CookieFlags.STATS, "statistics", "statistics", _rendered(_statistics_node),
          lambda node, root, src: _read_statistics(node)),
    _Part(CookieFlags.CPU, "cpu", "cpu", _rendered(CookieCpu.to_node),
          lambda node, root, src: CookieCpu.from_element(node)),
    _Part(CookieFlags.ALLOW_REBOOT, "allow_reboot", "allowReboot", _rendered(_allow_reboot_node),
          lambda node, root, src: _read_allow_reboot(node)),
    _Part(CookieFlags.CAPS, "capabilities", "capabilities", _rendered(_capabilities_node),
          lambda node, root, src: _read_capabilities(node)),
    _Part(CookieFlags.BLOCK_DIRTY_BITMAPS, "dirty_bitmaps", "blockDirtyBitmaps", _unless_empty(_bitmaps_node),
          lambda node, root, src: _read_bitmaps(node)),
)


# -- the cookie ---------------------------------------------------------------

@dataclass(slots=True)
class MigrationCookie:
    """A cookie: who sends it, for which domain, and the parts it carries.

    ``name``/``uuid`` are the domain's; ``hostname``/``hostuuid`` the sender's.
    UUIDs are kept in canonical lower-case form.  Parts are ``None`` when
    absent.  ``statistics`` keys outside :data:`STATISTICS_KEYS` are not
    written (libvirt's cookie has no place for them).
    """

    name: str
    uuid: str
    hostname: str
    hostuuid: str
    mandatory: CookieFlags = CookieFlags(0)
    graphics: CookieGraphics | None = None
    lockstate: CookieLockState | None = None
    persistent_xml: str | None = None
    statistics: dict[str, int] | None = None
    capabilities: list[tuple[str, bool]] | None = None
    nbd: CookieNbd | None = None
    network: list[CookieNetInterface] | None = None
    cpu: CookieCpu | None = None
    allow_reboot: bool | None = None
    dirty_bitmaps: list[CookieBitmapDisk] | None = None

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        if not self.name:
            raise _fail("missing name element in migration data")
        if not self.hostname:
            raise _fail("missing hostname element in migration data")
        self.uuid = str(_uuid(self.uuid, "uuid element"))
        self.hostuuid = str(_uuid(self.hostuuid, "hostuuid element"))
        if unknown := int(self.mandatory) & ~int(ALL_FLAGS):
            raise _fail(f"unknown migration cookie feature bits 0x{unknown:x}")
        self.mandatory = CookieFlags(self.mandatory)
        for key, value in (self.statistics or {}).items():
            lo, hi = _STAT_RANGE.get(key, (None, None))
            if lo is not None and not (isinstance(value, int) and lo <= value <= hi):
                raise _fail(f"statistic {key}={value!r} does not fit a migration cookie")
        if self.persistent_xml is not None and not self.persistent_xml.startswith("<domain"):
            raise _fail("the persistent definition in a migration cookie must be a <domain> document")

    @property
    def flags(self) -> CookieFlags:
        """The parts this cookie carries (mandatory features are in ``mandatory``)."""
        present = CookieFlags(0)
        for part in _PARTS:
            if getattr(self, part.field) is not None:
                present |= part.flag
        return present

    def format(self) -> bytes:
        """The cookie as sent: UTF-8 XML and a trailing NUL (counted in its length)."""
        self._check()
        head = [el("name", text=self.name), el("uuid", text=self.uuid),
                el("hostname", text=self.hostname), el("hostuuid", text=self.hostuuid)]
        head += [el("feature", [("name", name)]) for name in mandatory_names(self.mandatory)]
        out = ["<qemu-migration>\n", *(render(node, 1) for node in head)]
        out += [part.write(getattr(self, part.field)) for part in _PARTS
                if getattr(self, part.field) is not None]
        out.append("</qemu-migration>\n")
        return "".join(out).encode("utf-8") + b"\0"


def parse_cookie(data: bytes, *, local_host_uuid: str, expect_name: str | None,
                 expect_uuid: str | None, accepted: CookieFlags,
                 check_same_host: bool = True) -> MigrationCookie | None:
    """Read and check a cookie received from the other side.

    An empty ``data`` is no cookie (v2 steps send none): ``None``.  The
    sender's name and uuid must match ``expect_*`` when given; its host UUID
    must differ from ``local_host_uuid`` when ``check_same_host``.  Every
    mandatory feature must be in ``accepted``; parts outside ``accepted`` are
    not read.
    """
    data = bytes(data)
    if not data:
        return None
    if len(data) > MIGRATE_COOKIE_MAX:
        raise _fail(f"Migration cookie of {len(data)} bytes is larger than the maximum "
                    f"of {MIGRATE_COOKIE_MAX} bytes")
    if data[-1] != 0:
        raise _fail("Migration cookie was not NULL terminated")
    source = data[:-1]
    if (nul := source.find(b"\0")) >= 0:
        raise _fail(f"Migration cookie has a NUL byte at offset {nul} of {len(data)}, before its end")
    try:
        root = parse_document(source, "qemu-migration", "(qemu_migration_cookie)")
    except libvirtError as exc:
        raise _fail(f"malformed migration cookie: {exc.get_str2()}") from exc

    # libvirt's qemuMigrationCookieXMLParse: each of these is an internal error
    fields = {tag: _required(root, tag) for tag in ("name", "uuid", "hostname", "hostuuid")}
    if expect_name is not None and fields["name"] != expect_name:
        raise _fail(f"Incoming cookie data had unexpected name {fields['name']} vs {expect_name}")
    dom_uuid = _uuid(fields["uuid"], "uuid element")
    if expect_uuid is not None and dom_uuid != _uuid(expect_uuid, "expected domain UUID"):
        raise _fail(f"Incoming cookie data had unexpected UUID {fields['uuid']} vs {expect_uuid}")
    try:
        host_uuid = uuidlib.UUID(fields["hostuuid"].strip())
    except ValueError:
        raise _fail("malformed hostuuid element in migration data") from None
    # Only the host UUID tells two hosts apart: equal hostnames are allowed, as in libvirt.
    if check_same_host and host_uuid == _uuid(local_host_uuid, "local host UUID"):
        raise _fail(f"Attempt to migrate guest to the same host {fields['hostuuid']}")

    mandatory = _mandatory_features(root.findall("feature"), accepted)
    parts = {}
    for part in _PARTS:
        if part.flag & accepted and (node := child(root, part.tag)) is not None:
            parts[part.field] = part.read(node, root, source)
    return MigrationCookie(**fields, mandatory=mandatory, **parts)


def _required(root: etree._Element, tag: str) -> str:
    value = text_of(child(root, tag))
    if value is None:
        raise _fail(f"missing {tag} element in migration data")
    return value


def _mandatory_features(nodes: Iterable[etree._Element], accepted: CookieFlags) -> CookieFlags:
    found = CookieFlags(0)
    for node in nodes:
        name = node.get("name")
        if name is None:
            raise _fail("missing feature name")
        flag = _FEATURE_BY_NAME.get(name)
        if flag is None:
            raise _fail(f"Unknown migration cookie feature {name}")
        if not flag & accepted:
            raise _fail(f"Unsupported migration cookie feature {name}")
        found |= flag
    return found
