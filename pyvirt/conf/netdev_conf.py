"""The per-port settings a ``<network>`` and its ``<portgroup>``s hand to the ports
they give out: ``<bandwidth>``, ``<vlan>`` and ``<virtualport>`` (networkcommon.rng).

Each parser checks the element as libvirt's netdev_*_conf.c does, with its codes,
words and error domain (those files report from no domain at all; the generic
attribute readers report from the XML domain); each ``node()`` writes it back as
libvirt formats it, or ``None`` when libvirt writes nothing.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass, field

from lxml import etree

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from .xmlutil import Node, el

ULLONG_MAX = 2**64 - 1
UINT_MAX = 2**32 - 1
VLAN_MAX = 4095
NATIVE_MODES = ("tagged", "untagged")       # libvirt's enum also has 'default', its zero: refused
VPORT_TYPES = ("802.1Qbg", "802.1Qbh", "openvswitch", "midonet")
PROFILE_ID_MAX = 40                         # IFLA_VF_PORT_PROFILE_MAX, with the C string's NUL


def _none(number: ErrorNumber, detail: str) -> libvirtError:
    return error(number, ErrorDomain.NONE, detail)


def _bare(detail: str) -> libvirtError:
    # XML_DETAIL is a message that stands alone (no "XML error: " before it)
    return libvirtError(detail, ErrorNumber.XML_DETAIL, ErrorDomain.NONE)


def _strtoul(raw: str, base: int, limit: int, negative_ok: bool) -> int | None:
    """C's strtoul/strtoull on the whole of ``raw`` as libvirt's virStrToLong_* use it:
    None when it is no number, too big, or (unless ``negative_ok``) has a minus sign;
    a negative one wraps modulo ``limit + 1`` (virStrToLong_ui's "-1 is UINT_MAX")."""
    pattern = r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)" if base == 0 else \
        r"[ \t\n\v\f\r]*([+-]?)([0-9]+)"
    found = re.fullmatch(pattern, raw)
    if found is None:
        return None
    sign, digits = found.groups()
    if base == 0:
        value = int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits, 8 if digits[0] == "0" else 10)
    else:
        value = int(digits)
    if value > ULLONG_MAX:           # strtoul's ERANGE, before any sign is applied
        return None
    if sign == "-":
        if not negative_ok or (value and value > limit):
            return None
        value = (-value) & limit
    return value if value <= limit else None


# -- <bandwidth> -----------------------------------------------------------------------------

@dataclass
class Rate:
    average: int = 0
    peak: int = 0
    burst: int = 0
    floor: int = 0

    def node(self, tag: str) -> Node | None:
        if not (self.average or self.floor):
            return None
        return el(tag, [("average", self.average or None), ("peak", self.peak or None),
                        ("floor", self.floor or None), ("burst", self.burst or None)])


@dataclass
class Bandwidth:
    inbound: Rate | None = None
    outbound: Rate | None = None

    def node(self) -> Node:
        children = [self.inbound.node("inbound") if self.inbound else None,
                    self.outbound.node("outbound") if self.outbound else None]
        return el("bandwidth", children=children, keep_open=True)


def _rate(node: etree._Element) -> Rate:
    raw = {key: node.get(key) for key in ("average", "peak", "burst", "floor")}
    rate = Rate()

    def number(key: str) -> int:
        value = _strtoul(raw[key] or "", 10, ULLONG_MAX, negative_ok=False)
        if value is None:
            raise _none(ErrorNumber.CONFIG_UNSUPPORTED, f"could not convert bandwidth {key} value '{raw[key]}'")
        return value
    if raw["average"] is not None:
        rate.average = number("average")
    elif raw["floor"] is None:
        raise _bare("Missing mandatory average or floor attributes")
    if (raw["peak"] is not None or raw["burst"] is not None) and raw["average"] is None:
        raise _none(ErrorNumber.CONFIG_UNSUPPORTED, "'peak' and 'burst' require 'average' attribute")
    for key in ("peak", "burst", "floor"):
        if raw[key] is not None:
            setattr(rate, key, number(key))
    return rate


def parse_bandwidth(node: etree._Element) -> Bandwidth | None:
    """A network's or portgroup's ``<bandwidth>`` (no classID, no floor: libvirt's allowFloor
    is false there); None when it holds neither direction, as libvirt then keeps none."""
    if node.get("classID") is not None:
        raise _bare("classID attribute not supported on <bandwidth> in this usage context")
    found: dict[str, etree._Element] = {}
    for sub in node:
        if sub.tag in ("inbound", "outbound"):       # anything else is ignored, as libvirt does
            if sub.tag in found:
                raise _bare(f"Only one child <{sub.tag}> element allowed")
            found[sub.tag] = sub
    band = Bandwidth()
    if "inbound" in found:
        band.inbound = _rate(found["inbound"])
        if band.inbound.floor:
            raise _none(ErrorNumber.CONFIG_UNSUPPORTED, "floor attribute is not supported for this config")
    if "outbound" in found:
        band.outbound = _rate(found["outbound"])
        if band.outbound.floor:
            raise _none(ErrorNumber.CONFIG_UNSUPPORTED, "'floor' attribute allowed only in <inbound> element")
    return band if band.inbound or band.outbound else None


# -- <vlan> ----------------------------------------------------------------------------------

@dataclass
class Vlan:
    tags: list[int] = field(default_factory=list)
    trunk: bool = False
    native_mode: str | None = None              # 'tagged' | 'untagged'
    native_tag: int = 0

    def node(self) -> Node:
        tags = [el("tag", [("id", tag), ("nativeMode", self.native_mode if self.native_mode and
                                         tag == self.native_tag else None)]) for tag in self.tags]
        return el("vlan", [("trunk", "yes" if self.trunk else None)], tags)


def _xml_attr_error(detail: str) -> libvirtError:
    # libvirt's generic attribute readers (virXMLProp*) report from the XML domain
    return error(ErrorNumber.XML_ERROR, ErrorDomain.XML, detail)


def parse_vlan(node: etree._Element) -> Vlan:
    tag_nodes = [sub for sub in node if sub.tag == "tag"]
    if not tag_nodes:
        raise _none(ErrorNumber.XML_ERROR, "missing tag id - each <vlan> must have at least one "
                                           "<tag id='n'/> subelement")
    vlan = Vlan()
    for sub in tag_nodes:
        raw = sub.get("id")
        if raw is None:
            raise _xml_attr_error("Missing required attribute 'id' in element 'tag'")
        tag = _strtoul(raw, 10, UINT_MAX, negative_ok=False)
        if tag is None:
            raise _xml_attr_error(f"Invalid value for attribute 'id' in element 'tag': '{raw}'. "
                                  "Expected non-negative integer value")
        if tag > VLAN_MAX:
            raise _none(ErrorNumber.XML_ERROR, f"vlan tag id {tag} too large (maximum {VLAN_MAX})")
        vlan.tags.append(tag)
        mode = sub.get("nativeMode")
        if mode is not None:
            if mode not in NATIVE_MODES:
                raise _xml_attr_error(f"Invalid value for attribute 'nativeMode' in element 'tag': '{mode}'.")
            if vlan.native_mode is not None:
                raise _none(ErrorNumber.XML_ERROR, "duplicate native vlan setting")
            vlan.native_mode, vlan.native_tag = mode, tag
    vlan.trunk = len(vlan.tags) > 1
    trunk = node.get("trunk")
    if trunk:                        # libvirt reads it by XPath string(): an empty one is none
        vlan.trunk = trunk.lower() == "yes"
        if not vlan.trunk:
            if len(vlan.tags) > 1:
                raise _none(ErrorNumber.XML_ERROR, f"invalid \"trunk='{trunk}'\" in <vlan> - trunk='yes' "
                                                   "is required for more than one vlan tag")
            if vlan.native_mode is not None:
                raise _none(ErrorNumber.XML_ERROR, "invalid configuration in <vlan> - \"trunk='no'\" is "
                                                   "not allowed with a native vlan id")
            if trunk.lower() != "no":
                raise _none(ErrorNumber.XML_ERROR, f"invalid \"trunk='{trunk}'\" in <vlan> - must be yes or no")
    return vlan


# -- <virtualport> ---------------------------------------------------------------------------

@dataclass
class VirtualPort:
    type: str | None = None                     # None: libvirt's 'none', only in a portgroup
    managerid: int | None = None
    typeid: int | None = None
    typeidversion: int | None = None
    instanceid: str | None = None
    interfaceid: str | None = None
    profileid: str = ""

    def node(self) -> Node | None:
        kind = self.type
        given = (self.managerid, self.typeid, self.typeidversion, self.instanceid, self.interfaceid)
        if all(v is None for v in given) and not self.profileid:
            return None if kind is None else el("virtualport", [("type", kind)])

        def when(value: object, *types: str) -> object:
            return value if kind is None or kind in types else None
        qbg = "802.1Qbg"
        params = el("parameters", [("managerid", when(self.managerid, qbg)), ("typeid", when(self.typeid, qbg)),
                                   ("typeidversion", when(self.typeidversion, qbg)),
                                   ("instanceid", when(self.instanceid, qbg)),
                                   ("interfaceid", when(self.interfaceid, "midonet", "openvswitch")),
                                   ("profileid", when(self.profileid or None, "openvswitch", "802.1Qbh"))])
        return el("virtualport", [("type", kind)], [params])


def _uuid(raw: str) -> str | None:
    """libvirt's liberal UUID reading: 32 hex digits, '-' or ' ' between pairs, spaces around."""
    text = raw.strip(" \t\n\v\f\r")
    found = re.fullmatch(r"(?:[- ]*[0-9a-fA-F]{2}){16}", text)
    if found is None:
        return None
    return str(uuidlib.UUID(hex=re.sub(r"[- ]", "", text)))


def parse_virtualport(node: etree._Element, require_type: bool) -> VirtualPort:
    """``require_type``: the network's own <virtualport> must name one, a portgroup's need not."""
    port = VirtualPort()
    kind = node.get("type")
    if kind is not None:
        if kind not in VPORT_TYPES:
            raise _none(ErrorNumber.CONFIG_UNSUPPORTED, f"unknown virtualport type {kind}")
        port.type = kind
    elif require_type:
        raise _none(ErrorNumber.XML_ERROR, "missing required virtualport type")
    params = next((sub for sub in node if sub.tag == "parameters"), None)
    get = params.get if params is not None else (lambda key: None)
    for key, limit, what in (("managerid", 0xff, "value of managerid out of range"),
                             ("typeid", 0xffffff, "value for typeid out of range"),
                             ("typeidversion", 0xff, "value of typeidversion out of range")):
        raw = get(key)
        if raw is None:
            continue
        value = _strtoul(raw, 0, UINT_MAX, negative_ok=True)
        if value is None:
            raise _none(ErrorNumber.XML_ERROR, f"cannot parse value of {key} parameter")
        if value > limit:
            raise _none(ErrorNumber.XML_ERROR, what)
        setattr(port, key, value)
    raw = get("instanceid")
    if raw is not None:
        port.instanceid = _uuid(raw)
        if port.instanceid is None:
            raise _none(ErrorNumber.XML_ERROR, "cannot parse instanceid parameter as a uuid")
    raw = get("profileid")
    if raw is not None:
        if len(raw.encode()) >= PROFILE_ID_MAX:
            raise _none(ErrorNumber.XML_ERROR, "profileid parameter too long")
        port.profileid = raw
    raw = get("interfaceid")
    if raw is not None:
        port.interfaceid = _uuid(raw)
        if port.interfaceid is None:
            raise _none(ErrorNumber.XML_ERROR, "cannot parse interfaceid parameter as a uuid")
    _check_no_extras(port)
    return port


# what each type may not carry, in the order libvirt looks (virNetDevVPortProfileCheckNoExtras)
_EXTRAS = {
    "802.1Qbg": ("profileid", "interfaceid"),
    "802.1Qbh": ("managerid", "typeid", "typeidversion", "instanceid", "interfaceid"),
    "openvswitch": ("managerid", "typeid", "typeidversion", "instanceid"),
}


def _check_no_extras(port: VirtualPort) -> None:
    for key in _EXTRAS.get(port.type or "", ()):
        if getattr(port, key) not in (None, ""):
            # this check lives in libvirt's netdev utilities, which report from the NET domain
            raise error(ErrorNumber.XML_ERROR, ErrorDomain.NET,
                        f"extra {key} unsupported in <virtualport type='{port.type}'>")
