"""A virtual network's definition: libvirt's ``<network>`` XML (network.rng).

What pyvirt models: ``<name>``, ``<uuid>``, ``<forward mode='nat'|'bridge' dev>``
(absent: an isolated network) with NAT's port range and its ``<interface dev>``
list, ``<bridge name stp delay>``, ``<mtu>``, ``<mac>``, ``<domain name>``,
``<dns enable>`` with ``<txt>``, ``<srv>`` and ``<host ip><hostname/></host>``
entries, IPv4 ``<ip address netmask|prefix>`` with ``<dhcp><range start
end/><host mac name ip/></dhcp>``, ``<portgroup name default>``
(see :mod:`.network_records`), and ``<bandwidth>``, ``<vlan>`` and
``<virtualport>`` on the network and its portgroups (see :mod:`.netdev_conf`;
the network driver refuses what it cannot apply, as libvirt's does).  Elements of
the schema pyvirt does not act on are refused as unsupported rather than
silently dropped, so a definition never means more than what runs.

The text is written back in libvirt's element and attribute order, so
``net-dumpxml`` reads as libvirtd's.
"""

from __future__ import annotations

import ipaddress
import re
import uuid as uuidlib
from dataclasses import dataclass, field

from lxml import etree

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError, no_name
from .names import check_name
from .netdev_conf import Bandwidth, VirtualPort, Vlan, parse_bandwidth, parse_virtualport, parse_vlan
from .network_records import (DNSHost, DNSSrv, DNSTxt, PortGroup, parse_dns_host, parse_dns_srv, parse_dns_txt,
                              parse_portgroup)
from .xmlutil import Node, child, children, child_text, el, parse_document, render

FORWARD_MODES = ("nat", "bridge")      # pyvirt's; libvirt also has route, open, private, vepa, passthrough, hostdev
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
# libvirt assigns virbrN to a virtual network without a bridge name (networkFindUnusedBridgeName)
BRIDGE_TEMPLATE = "virbr%d"
IFNAMSIZ = 16


def xml_error(detail: str) -> libvirtError:
    return error(ErrorNumber.XML_ERROR, ErrorDomain.NETWORK, detail)


def unsupported(detail: str) -> libvirtError:
    return error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.NETWORK, detail)


@dataclass
class DHCPHost:
    mac: str | None = None
    name: str | None = None
    ip: str | None = None


@dataclass
class IPDef:
    address: str
    prefix: int                       # always known; how it was written is kept in ``netmask_given``
    netmask_given: bool = False
    ranges: list[tuple[str, str]] = field(default_factory=list)
    hosts: list[DHCPHost] = field(default_factory=list)
    has_dhcp: bool = False

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.address}/{self.prefix}")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.interface.network

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)

    def dhcp_size(self) -> int:
        """How many addresses the ranges hold (dnsmasq's dhcp-lease-max, as libvirt computes it)."""
        return sum(int(ipaddress.IPv4Address(e)) - int(ipaddress.IPv4Address(s)) + 1 for s, e in self.ranges)


@dataclass
class NetworkDef:
    name: str
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    forward: str | None = None                 # None: isolated
    # <forward dev> and its <interface dev> list are one list, as in libvirt: the dev is the first
    forward_ifs: list[str] = field(default_factory=list)
    nat_ports: tuple[int, int] | None = None   # <nat><port start end/></nat>
    bridge: str | None = None
    stp: bool = True
    delay: int = 0
    mtu: int | None = None
    mac: str | None = None
    domain: str | None = None
    domain_local_only: str | None = None
    dns_enable: str | None = None               # 'yes' | 'no' | None (not written)
    dns_hosts: list[DNSHost] = field(default_factory=list)
    dns_txts: list[DNSTxt] = field(default_factory=list)
    dns_srvs: list[DNSSrv] = field(default_factory=list)
    ips: list[IPDef] = field(default_factory=list)
    portgroups: list[PortGroup] = field(default_factory=list)
    # what the network hands each port that its portgroup does not set (see .netdev_conf)
    vlan: Vlan | None = None
    bandwidth: Bandwidth | None = None
    virtualport: VirtualPort | None = None

    @property
    def forward_dev(self) -> str | None:
        return self.forward_ifs[0] if self.forward_ifs else None

    @property
    def virtual(self) -> bool:
        """A network pyvirt makes its own bridge for (isolated or NAT), not one onto a host bridge."""
        return self.forward != "bridge"

    @property
    def uuid_bytes(self) -> bytes:
        return uuidlib.UUID(self.uuid).bytes

    def ipv4(self) -> IPDef | None:
        return self.ips[0] if self.ips else None

    def to_xml(self, connections: int = 0) -> str:
        return render(self.node(connections))

    def node(self, connections: int = 0) -> Node:
        forward = None
        if self.forward is not None:
            nat = None
            if self.forward == "nat" and self.nat_ports is not None:
                nat = el("nat", children=[el("port", [("start", self.nat_ports[0]), ("end", self.nat_ports[1])])])
            # libvirt lists the dev again as the first of the forward's <interface>s
            ifaces = [el("interface", [("dev", dev)]) for dev in self.forward_ifs]
            forward = el("forward", [("dev", self.forward_dev), ("mode", self.forward)], [nat, *ifaces])
        bridge = None
        if self.bridge is not None:
            attrs: list[tuple[str, object]] = [("name", self.bridge)]
            if self.virtual:
                attrs += [("stp", "on" if self.stp else "off"), ("delay", self.delay)]
            bridge = el("bridge", attrs)
        dns = None
        if self.dns_enable is not None or self.dns_hosts or self.dns_txts or self.dns_srvs:
            dns = el("dns", [("enable", self.dns_enable)],
                     [t.node() for t in self.dns_txts] + [r.node() for r in self.dns_srvs]
                     + [el("host", [("ip", h.ip)], [el("hostname", text=n) for n in h.hostnames])
                        for h in self.dns_hosts])
        ips = []
        for ip in self.ips:
            dhcp = None
            if ip.has_dhcp:
                dhcp = el("dhcp", children=[el("range", [("start", s), ("end", e)]) for s, e in ip.ranges]
                          + [el("host", [("mac", h.mac), ("name", h.name), ("ip", h.ip)]) for h in ip.hosts])
            mask: tuple[str, object] = ("netmask", ip.netmask) if ip.netmask_given else ("prefix", ip.prefix)
            # libvirt writes <ip> open and closed even when empty
            ips.append(el("ip", [("address", ip.address), mask], [dhcp], keep_open=True))
        return el("network", [("connections", connections or None)], [
            el("name", text=self.name),
            el("uuid", text=self.uuid),
            forward,
            bridge,
            el("mtu", [("size", self.mtu)]) if self.mtu else None,
            el("mac", [("address", self.mac)]) if self.mac else None,
            el("domain", [("name", self.domain), ("localOnly", self.domain_local_only)]) if self.domain else None,
            dns,
            self.vlan.node() if self.vlan else None,
            self.bandwidth.node() if self.bandwidth else None,
            *ips,
            self.virtualport.node() if self.virtualport else None,
            *(p.node() for p in self.portgroups),
        ])


# -- parsing ---------------------------------------------------------------------------

# everything else of network.rng (metadata, title, route, portgroup, bandwidth...) is refused,
# never kept without effect or dropped
_KNOWN = {"name", "uuid", "forward", "bridge", "mtu", "mac", "domain", "dns", "ip", "portgroup",
          "vlan", "bandwidth", "virtualport"}


def parse(xml: str) -> NetworkDef:
    """A ``<network>`` document as a :class:`NetworkDef`, or libvirt's error."""
    root = parse_document(xml, "network", "(network_definition)", ErrorDomain.NETWORK)
    name = child_text(root, "name", strip=True)
    if not name:
        raise no_name(ErrorDomain.NETWORK)
    _check_network_name(name)
    net = NetworkDef(name=name)
    uuid_text = child_text(root, "uuid", strip=True)
    if uuid_text:
        net.uuid = _uuid(uuid_text)
    for node in root:
        if not isinstance(node.tag, str):
            continue
        if node.tag not in _KNOWN:
            raise unsupported(f"network element <{node.tag}> is not supported by pyvirt")
    # libvirt reads these before the rest, and the network's <virtualport> before its portgroups
    bandwidth = child(root, "bandwidth")
    if bandwidth is not None:
        net.bandwidth = parse_bandwidth(bandwidth)
    vlan = child(root, "vlan")
    if vlan is not None:
        net.vlan = parse_vlan(vlan)
    _parse_forward(root, net)
    _parse_bridge(root, net)
    mtu = child(root, "mtu")
    if mtu is not None and mtu.get("size") is not None:
        net.mtu = _int(mtu.get("size"), "mtu size", 68, 65535)
    mac = child(root, "mac")
    if mac is not None:
        address = mac.get("address") or ""
        if not MAC_RE.match(address):
            raise xml_error(f"Invalid bridge mac address '{address}' in network '{name}'")
        if int(address[:2], 16) & 1:
            raise xml_error(f"Invalid multicast bridge mac address '{address}' in network '{name}'")
        net.mac = address.lower()
    domain = child(root, "domain")
    if domain is not None:
        net.domain = domain.get("name")
        net.domain_local_only = domain.get("localOnly")
    _parse_dns(root, net)
    for ipnode in children(root, "ip"):
        net.ips.append(_parse_ip(ipnode, net))
    virtualport = child(root, "virtualport")
    if virtualport is not None:
        net.virtualport = parse_virtualport(virtualport, require_type=True)
    net.portgroups = [parse_portgroup(node) for node in children(root, "portgroup")]
    if len(net.ips) > 1:
        raise unsupported(f"network '{name}': pyvirt supports one <ip> element")
    if net.forward == "nat" and len(net.forward_ifs) > 1:
        raise xml_error(f"multiple forwarding interfaces specified for network '{name}', only one is supported")
    if net.forward == "bridge":
        if net.bridge is not None and net.forward_ifs:
            raise xml_error(f"A network with forward mode='bridge' can specify a bridge name or a forward dev, "
                            f"but not both (network '{name}')")
        # neither a bridge nor a forward dev is allowed here, as in libvirt: such a network is a
        # (macvtap) pool of no device, refused only when a guest's NIC asks it for one (port_for)
        if net.ips or net.mac or net.domain or net.dns_hosts or net.dns_txts or net.dns_srvs:
            raise unsupported(f"Unsupported <ip>, <mac>, <domain> or <dns> element in network {name} "
                              "with forward mode='bridge'")
    return net


def _check_network_name(name: str) -> None:
    if "/" in name:
        message = "invalid char in name: /"
        raise libvirtError(message, ErrorNumber.XML_DETAIL, ErrorDomain.XML)
    check_name(name)


def _uuid(text: str) -> str:
    digits = text.replace("-", "").replace(" ", "")
    if len(digits) != 32 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.NETWORK, "malformed uuid element")
    return str(uuidlib.UUID(hex=digits))


def _int(raw: str | None, what: str, minimum: int, maximum: int) -> int:
    try:
        value = int(raw or "")
    except ValueError:
        raise xml_error(f"Invalid {what} '{raw}'") from None
    if not minimum <= value <= maximum:
        raise xml_error(f"Invalid {what} '{raw}'")
    return value


def _parse_forward(root: etree._Element, net: NetworkDef) -> None:
    fwd = child(root, "forward")
    if fwd is None:
        return
    mode = fwd.get("mode", "nat")
    if mode not in FORWARD_MODES:
        if mode in ("route", "open", "private", "vepa", "passthrough", "hostdev"):
            raise unsupported(f"forward mode '{mode}' is not supported by pyvirt (nat, bridge or none)")
        raise unsupported(f"unknown forwarding type '{mode}'")
    net.forward = mode
    _parse_forward_ifs(fwd, net)
    nat = child(fwd, "nat")
    if nat is not None:
        if mode != "nat":
            raise xml_error(f"The <nat> element can only be used when <forward> 'mode' is 'nat' "
                            f"in network {net.name}")
        port = child(nat, "port")
        if port is not None:
            start = _int(port.get("start"), "start port", 0, 65535)
            end = _int(port.get("end"), "end port", 0, 65535)
            if start > end:
                raise xml_error(f"Invalid port range '{start}-{end}' in network '{net.name}'")
            net.nat_ports = (start, end)


def _parse_forward_ifs(fwd: etree._Element, net: NetworkDef) -> None:
    dev = fwd.get("dev")
    net.forward_ifs = [dev] if dev else []
    for i, node in enumerate(children(fwd, "interface")):
        name = node.get("dev")
        if not name:
            raise xml_error(f"Missing required dev attribute in <forward> <interface> element of network {net.name}")
        if i == 0 and dev:
            if name != dev:       # both given: they name the same first interface
                raise xml_error(f"<forward dev='{dev}'> must match first <interface dev='{name}'/> "
                                f"in network {net.name}")
            continue
        if name in net.forward_ifs:
            raise xml_error(f"interface '{name}' can only be listed once in network {net.name}")
        net.forward_ifs.append(name)


def _parse_bridge(root: etree._Element, net: NetworkDef) -> None:
    br = child(root, "bridge")
    if br is None:
        return
    name = br.get("name")
    if name is not None:
        if not name or len(name) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name) or \
                name in (".", ".."):
            raise xml_error(f"Invalid bridge name '{name}' in network '{net.name}'")
        net.bridge = name
    stp = br.get("stp")
    if stp is not None:
        if stp not in ("on", "off"):
            raise xml_error(f"Invalid stp value '{stp}' in network '{net.name}'")
        net.stp = stp == "on"
    delay = br.get("delay")
    if delay is not None:
        net.delay = _int(delay, "delay value", 0, 2**31 - 1)


def _parse_dns(root: etree._Element, net: NetworkDef) -> None:
    dns = child(root, "dns")
    if dns is None:
        return
    enable = dns.get("enable")
    if enable is not None:
        if enable not in ("yes", "no"):
            raise xml_error(f"Invalid dns enable setting '{enable}' in network '{net.name}'")
        net.dns_enable = enable
    for node in dns:
        if not isinstance(node.tag, str):
            continue
        if node.tag == "txt":
            net.dns_txts.append(parse_dns_txt(node, net.name))
            continue
        if node.tag == "srv":
            net.dns_srvs.append(parse_dns_srv(node, net.name))
            continue
        if node.tag != "host":
            raise unsupported(f"<dns><{node.tag}> is not supported by pyvirt")
        net.dns_hosts.append(parse_dns_host(node, net.name))


def _v4(raw: str | None, what: str, netname: str) -> str:
    try:
        return str(ipaddress.IPv4Address(raw or ""))
    except ValueError:
        raise xml_error(f"Invalid {what} '{raw}' in network '{netname}'") from None


def _parse_ip(node: etree._Element, net: NetworkDef) -> IPDef:
    family = node.get("family")
    if family not in (None, "ipv4"):
        raise unsupported(f"network '{net.name}': only IPv4 <ip> is supported by pyvirt")
    address = _v4(node.get("address"), "address", net.name)
    netmask, prefix = node.get("netmask"), node.get("prefix")
    if netmask is not None and prefix is not None:
        raise xml_error(f"Network '{net.name}' IP address cannot have both a prefix and a netmask")
    if netmask is not None:
        try:
            bits = ipaddress.IPv4Network(f"0.0.0.0/{_v4(netmask, 'netmask', net.name)}").prefixlen
        except ValueError:
            raise xml_error(f"Invalid netmask '{netmask}' in network '{net.name}'") from None
        ip = IPDef(address, bits, netmask_given=True)
    elif prefix is not None:
        bits = _int(prefix, "ip prefix", 1, 2**32 - 1)
        if bits > 32:          # a number, but no IPv4 prefix: libvirt's own check, its wording
            raise unsupported(f"Invalid IPv4 prefix '{bits}' in network '{net.name}'")
        ip = IPDef(address, bits)
    else:
        # libvirt: a classful default; every network pyvirt writes states one
        first = int(address.split(".")[0])
        ip = IPDef(address, 8 if first < 128 else 16 if first < 192 else 24)
    dhcp = child(node, "dhcp")
    if dhcp is not None:
        ip.has_dhcp = True
        for sub in dhcp:
            if not isinstance(sub.tag, str):
                continue
            if sub.tag == "range":
                start = _v4(sub.get("start"), "dhcp range 'start' address", net.name)
                end = _v4(sub.get("end"), "dhcp range 'end' address", net.name)
                if ipaddress.IPv4Address(start) not in ip.network or ipaddress.IPv4Address(end) not in ip.network:
                    raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.NETWORK,
                                f"range {start} - {end} is not entirely within network {ip.address}/{ip.prefix}")
                if ipaddress.IPv4Address(start) > ipaddress.IPv4Address(end):
                    raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.NETWORK,
                                f"range {start} - {end} is reversed ")
                ip.ranges.append((start, end))
            elif sub.tag == "host":
                ip.hosts.append(parse_dhcp_host(sub, ip, net.name))
            else:
                raise unsupported(f"<dhcp><{sub.tag}> is not supported by pyvirt")
    return ip


def parse_dhcp_host(sub: etree._Element, ip: IPDef, netname: str, partial: bool = False) -> DHCPHost:
    """One ``<dhcp><host mac name ip/>`` of ``ip``'s subnet (also what virNetworkUpdate adds);
    ``partial``: an entry that names one to delete, by any of its three attributes."""
    mac, hname, hip = sub.get("mac"), sub.get("name"), sub.get("ip")
    if mac is not None:
        if not MAC_RE.match(mac):
            raise xml_error(f"Cannot parse MAC address '{mac}' in network '{netname}'")
        if int(mac[:2], 16) & 1:
            raise xml_error(f"expected unicast mac address, found multicast '{mac}' in network '{netname}'")
        mac = mac.lower()
    if hname is not None and not (hname[:1].isascii() and hname[:1].isalnum()):
        raise xml_error(f"Cannot use host name '{hname}' in network '{netname}'")
    if hip is not None:
        try:
            hip = str(ipaddress.IPv4Address(hip))
        except ValueError:
            raise xml_error(f"Invalid IP address in static host definition for network '{netname}'") from None
        if not partial and ipaddress.IPv4Address(hip) not in ip.network:
            # pyvirt's own check: dnsmasq would never hand out an address beyond the subnet
            raise xml_error(f"Invalid IP address in static host definition for network '{netname}'")
    if partial:
        if mac is None and hname is None and hip is None:
            raise xml_error("At least one of name, mac, or ip attribute must be specified for static host "
                            f"definition in network '{netname}' ")
        return DHCPHost(mac, hname, hip)
    if mac is None and hname is None:
        raise xml_error(f"Static host definition in IPv4 network '{netname}' must have "
                        "mac or name attribute")
    if hip is None:
        raise xml_error(f"Missing IP address in static host definition for network '{netname}'")
    return DHCPHost(mac, hname, hip)


def default_network() -> NetworkDef:
    """libvirt's ``default`` network (libvirt-daemon-config-network's default.xml)."""
    return parse("""<network>
  <name>default</name>
  <bridge name='virbr0'/>
  <forward/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
""")


# libvirt's schema, from the libvirt-daemon package's data (VIR_NETWORK_DEFINE_VALIDATE)
NETWORK_RNG = "/usr/share/libvirt/schemas/network.rng"


def validate(xml: str) -> None:
    """Check ``xml`` against libvirt's network.rng, as VIR_NETWORK_DEFINE_VALIDATE asks."""
    import os
    if not os.path.exists(NETWORK_RNG):
        raise error(ErrorNumber.NO_SUPPORT, ErrorDomain.NETWORK,
                    f"cannot validate: libvirt's schema {NETWORK_RNG} is not installed")
    schema = etree.RelaxNG(etree.parse(NETWORK_RNG))
    doc = parse_document(xml, "network", "(network_definition)", ErrorDomain.NETWORK)
    if not schema.validate(doc):
        detail = "\n".join(str(e.message) for e in schema.error_log)
        raise error(ErrorNumber.XML_INVALID_SCHEMA, ErrorDomain.NETWORK,
                    f"Unable to validate doc against {NETWORK_RNG}\n{detail}")
