"""The list entries of a ``<network>`` that virNetworkUpdate adds and deletes one at a time:
``<dns><host>``, ``<dns><txt>``, ``<dns><srv>`` and ``<portgroup>`` (network.rng).

Each parser takes the element and checks it as libvirt's network_conf.c does,
with its error codes and words; ``partial`` is libvirt's "partialOkay": the
entry names one to delete, so the fields a match does not need may be left out.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from lxml import etree

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from .netdev_conf import Bandwidth, VirtualPort, Vlan, parse_bandwidth, parse_virtualport, parse_vlan
from .xmlutil import Node, el

# RFC 2782's limit less its overhead (libvirt's DNS_RECORD_LENGTH_SRV)
SRV_MAX = 512 - 30
_LETTERS_DIGITS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PROTOCOL_CHARS = frozenset(_LETTERS_DIGITS + "-+/")
SERVICE_CHARS = frozenset(_LETTERS_DIGITS + "_-+/*")
TXT_BAD_CHARS = " ,"        # dnsmasq's txt-record= takes the name up to a comma


def _detail(message: str) -> libvirtError:
    # XML_DETAIL is libvirt's code for a message that stands alone (no "XML error: " before it)
    return libvirtError(message, ErrorNumber.XML_DETAIL, ErrorDomain.NETWORK)


def _xml(message: str) -> libvirtError:
    return error(ErrorNumber.XML_ERROR, ErrorDomain.NETWORK, message)


@dataclass
class DNSHost:
    ip: str | None                  # None only in an entry that names one to delete
    hostnames: list[str] = field(default_factory=list)

    def same_ip(self, other: "DNSHost") -> bool:
        return self.ip is not None and other.ip is not None and \
            ipaddress.ip_address(self.ip) == ipaddress.ip_address(other.ip)


@dataclass
class DNSTxt:
    name: str
    value: str | None = None        # None only in an entry that names one to delete

    def node(self) -> Node:
        return el("txt", [("name", self.name), ("value", self.value)])


@dataclass
class DNSSrv:
    service: str | None
    protocol: str | None
    domain: str | None = None
    target: str | None = None
    port: int = 0                   # 0: not given (libvirt writes only the ones that are not 0)
    priority: int = 0
    weight: int = 0

    def node(self) -> Node:
        return el("srv", [("service", self.service), ("protocol", self.protocol), ("domain", self.domain),
                          ("target", self.target), ("port", self.port or None),
                          ("priority", self.priority or None), ("weight", self.weight or None)])

    def matches(self, other: "DNSSrv") -> bool:
        """libvirt's match for update: every field this entry gives is equal in ``other``."""
        return all(mine is None or mine == getattr(other, key)
                   for key, mine in (("domain", self.domain), ("service", self.service),
                                     ("protocol", self.protocol), ("target", self.target)))


@dataclass
class PortGroup:
    name: str
    default: bool = False
    trust_guest_rx_filters: str | None = None     # 'yes' | 'no' | None
    vlan: Vlan | None = None
    virtualport: VirtualPort | None = None
    bandwidth: Bandwidth | None = None

    def node(self) -> Node:
        # libvirt writes a portgroup open and closed even when it holds nothing
        return el("portgroup", [("name", self.name), ("default", "yes" if self.default else None),
                                ("trustGuestRxFilters", self.trust_guest_rx_filters)],
                  [self.vlan.node() if self.vlan else None,
                   self.virtualport.node() if self.virtualport else None,
                   self.bandwidth.node() if self.bandwidth else None], keep_open=True)


def parse_dns_host(node: etree._Element, netname: str, partial: bool = False) -> DNSHost:
    ip = node.get("ip")
    if ip is None and not partial:
        raise _detail(f"Missing IP address in network '{netname}' DNS HOST record")
    if ip is not None:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise _detail(f"Invalid IP address in network '{netname}' DNS HOST record") from None
    names = []
    for sub in node:
        if sub.tag != "hostname" or (not sub.text and not len(sub)):
            continue                  # an empty <hostname/> is skipped, as libvirt skips it
        name = "".join(sub.itertext()).strip()
        if not name:
            raise _detail(f"Missing hostname in network '{netname}' DNS HOST record")
        names.append(name)
    if not names and not partial:
        raise _detail(f"Missing hostname in network '{netname}' DNS HOST record")
    if ip is None and not names:
        raise _detail(f"Missing ip and hostname in network '{netname}' DNS HOST record")
    return DNSHost(ip, names)


def parse_dns_txt(node: etree._Element, netname: str, partial: bool = False) -> DNSTxt:
    name = node.get("name")
    if name is None:
        raise _detail(f"missing required name attribute in DNS TXT record of network {netname}")
    if any(c in TXT_BAD_CHARS for c in name):
        raise _detail(f"prohibited character in DNS TXT record name '{name}' of network {netname}")
    value = node.get("value")
    if value is None and not partial:
        raise _detail(f"missing required value attribute in DNS TXT record named '{name}' of network {netname}")
    return DNSTxt(name, value)


def _srv_number(node: etree._Element, attr: str) -> int | None:
    """virXPathUInt on an attribute: None when absent or empty, -1 when not an unsigned
    number (a minus sign wraps in strtoul, far above any limit here: refused alike)."""
    raw = node.get(attr)
    if not raw:
        return None
    found = re.fullmatch(r"\s*\+?(\d+)", raw)
    if found is None:
        return -1
    value = int(found.group(1))
    return value if value < 2**32 else -1


def parse_dns_srv(node: etree._Element, netname: str, partial: bool = False) -> DNSSrv:
    service = node.get("service")
    if service is None and not partial:
        raise _detail(f"missing required service attribute in DNS SRV record of network '{netname}'")
    if service is not None:
        if len(service.encode()) > SRV_MAX:
            raise _detail(f"service attribute '{service}' in network '{netname}' is too long, "
                          f"limit is {SRV_MAX} bytes")
        if any(c not in SERVICE_CHARS for c in service):
            raise _detail(f"invalid character in service attribute '{service}' "
                          f"in DNS SRV record of network '{netname}'")
    protocol = node.get("protocol")
    if protocol is None and not partial:
        raise _detail(f"missing required protocol attribute in DNS SRV record '{service}' "
                      f"of network '{netname}'")
    if protocol is not None and any(c not in PROTOCOL_CHARS for c in protocol):
        raise _detail(f"invalid character in protocol attribute '{protocol}' "
                      f"in DNS SRV record of network '{netname}'")
    srv = DNSSrv(service, protocol, node.get("domain"), node.get("target"))
    named = service if service is not None else "(null)"     # a delete may leave it out: C prints "(null)"
    # (attribute, the word libvirt's message starts with, the smallest value allowed)
    for attr, word, low in (("port", "invalid", 1), ("priority", "Invalid", 0), ("weight", "invalid", 0)):
        value = _srv_number(node, attr)
        if value is not None and value >= 0 and srv.target is None:
            raise _detail(f"DNS SRV {attr} attribute not permitted without target for service "
                          f"'{named}' in network '{netname}'")
        if value is not None and (value < 0 or not low <= value <= 65535):
            raise _detail(f"{word} DNS SRV {attr} attribute for service '{named}' in network '{netname}'")
        setattr(srv, attr, value or 0)
    return srv


def parse_portgroup(node: etree._Element) -> PortGroup:
    name = node.get("name")
    if not name:
        raise _xml("Missing required name attribute in portgroup")
    is_default = (node.get("default") or "").lower() == "yes"
    trust = node.get("trustGuestRxFilters")
    if trust is not None and trust not in ("yes", "no"):
        # libvirt's generic attribute reader reports this one, from its XML domain
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.XML,
                    f"Invalid value for attribute 'trustGuestRxFilters' in element 'portgroup': '{trust}'.")
    group = PortGroup(name, is_default, trust)
    # libvirt reads the first of each, in this order (so that is which error comes first)
    first = {tag: next((sub for sub in node if sub.tag == tag), None) for tag in ("virtualport", "bandwidth", "vlan")}
    if first["virtualport"] is not None:
        group.virtualport = parse_virtualport(first["virtualport"], require_type=False)
    if first["bandwidth"] is not None:
        group.bandwidth = parse_bandwidth(first["bandwidth"])
    if first["vlan"] is not None:
        group.vlan = parse_vlan(first["vlan"])
    return group
