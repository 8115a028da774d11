"""virNetworkUpdate: the list entries of a definition added, deleted or modified one at a time.

DHCP hosts and ranges, DNS hosts, DNS TXT and SRV records, portgroups and
forward interfaces, with libvirt's matching rules, its order of checks and its
words (network_conf.c, virNetworkDefUpdate*).  The network driver and the test
driver both change their definitions here (what a running network must do
about a change is the network driver's business); libvirt's other sections
are refused as unsupported.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable
from xml.sax.saxutils import escape

from ...conf import network as netconf
from ...conf import network_records as records
from ...conf.network import NetworkDef
from ...conf.xmlutil import parse_document
from ...errors import ErrorDomain, ErrorNumber, error

# virNetworkUpdateCommand / virNetworkUpdateSection
MODIFY, DELETE, ADD_LAST, ADD_FIRST = 1, 2, 3, 4
SECTION_IP_DHCP_HOST, SECTION_IP_DHCP_RANGE, SECTION_DNS_HOST = 4, 5, 10
SECTION_FORWARD_INTERFACE, SECTION_PORTGROUP, SECTION_DNS_TXT, SECTION_DNS_SRV = 7, 9, 11, 12


def _invalid(detail: str) -> Exception:
    return error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK, detail)


# the sections libvirt refuses on every network (virNetworkDefUpdateNoSupport), in its words
NO_SUPPORT = {1: "bridge", 2: "domain", 3: "ip", 6: "forward", 8: "forward pf"}


def apply(net: NetworkDef, command: int, section: int, parent_index: int, xml: str) -> None:
    """Change ``net`` in place as one virNetworkUpdate call asks, in libvirt's order: the
    document, the section, then each section's own checks (the command among them)."""
    node = parse_update_xml(xml)
    if section in NO_SUPPORT:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NETWORK,
                    f"can't update '{NO_SUPPORT[section]}' section of network '{net.name}'")
    if section not in RECORD_SECTIONS:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NETWORK,
                    "can't update unrecognized section of network")
    apply_record(net, command, section, parent_index, node)


def parse_update_xml(xml: str) -> Any:
    """The update's element; a syntax error worded as libvirt's parser reports it for
    the document it names ``network_update_xml``."""
    return parse_document(xml, None, "network_update_xml", ErrorDomain.NETWORK)


# -- the sections, one handler each ------------------------------------------------------------
# Each checks the command where libvirt does: some refuse MODIFY first, others (the portgroup)
# look for their matches before they look at the command at all.

def _is_add(command: int) -> bool:
    return command in (ADD_FIRST, ADD_LAST)


def _insert(items: list[Any], command: int, item: Any) -> None:
    items.insert(0 if command == ADD_FIRST else len(items), item)


def _expect(net: NetworkDef, node: Any, tag: str) -> None:
    if node.tag != tag:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.NETWORK,
                    f"unexpected element <{node.tag}>, expecting <{tag}>, while updating network '{net.name}'")


def _unknown(command: int) -> Exception:
    return error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NETWORK,
                 f"unrecognized network update command code {command}")


def _no_modify(command: int, what: str) -> None:
    if command == MODIFY:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NETWORK,
                    f"{what} cannot be modified, only added or deleted")


def _ip_at(net: NetworkDef, parent_index: int) -> Any:
    """The <ip> whose <dhcp> the entry goes in: the given index, or (-1) the one with DHCP
    (pyvirt's networks have one <ip> at most)."""
    if parent_index > 0 or not net.ips:
        where = f"at index {parent_index} " if parent_index >= 0 else ""
        raise _invalid(f"couldn't update dhcp host entry - no <ip> element found {where}in network '{net.name}'")
    return net.ips[0]


def _same_mac(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a == b


def _dhcp_host(net: NetworkDef, command: int, parent_index: int, node: Any) -> None:
    _expect(net, node, "host")
    ip = _ip_at(net, parent_index)
    host = netconf.parse_dhcp_host(node, ip, net.name, partial=command == DELETE)
    if command == MODIFY:          # the entry with this mac, ip or name takes the new fields
        found = next((i for i, h in enumerate(ip.hosts) if _same_mac(host.mac, h.mac) or
                      (host.ip is not None and host.ip == h.ip) or (host.name and host.name == h.name)), None)
        if found is None:
            # libvirt names the entry's fields, a missing name as C prints a NULL string
            raise _invalid(f"couldn't locate an existing dhcp host entry with \"mac='{host.mac or 'unknown'}'\" "
                           f"\"name='{host.name or '(null)'}'\" \"ip='{host.ip or 'unknown'}'\" "
                           f"in network '{net.name}'")
        ip.hosts[found] = host
    elif _is_add(command):
        if any(_same_mac(host.mac, h.mac) or (host.name and host.name == h.name) or host.ip == h.ip
               for h in ip.hosts):
            raise _invalid(f"there is an existing dhcp host entry in network '{net.name}' that matches "
                           f"\"<host mac='{host.mac or 'unknown'}' name='{host.name or '(null)'}' "
                           f"ip='{host.ip or 'unknown'}'/>\"")
        _insert(ip.hosts, command, host)
    elif command == DELETE:         # every attribute given must match (a mac only where both have one)
        found = next((i for i, h in enumerate(ip.hosts)
                      if (host.mac is None or h.mac is None or host.mac == h.mac)
                      and (host.name is None or host.name == h.name)
                      and (host.ip is None or host.ip == h.ip)), None)
        if found is None:
            raise _invalid(f"couldn't locate a matching dhcp host entry in network '{net.name}'")
        del ip.hosts[found]
    else:
        raise _unknown(command)
    ip.has_dhcp = True


def _dhcp_range(net: NetworkDef, command: int, parent_index: int, node: Any) -> None:
    _expect(net, node, "range")
    ip = _ip_at(net, parent_index)
    if command == MODIFY:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NETWORK,
                    "dhcp ranges cannot be modified, only added or deleted")
    # the range parsed with the definition's own checks, through a one-range document
    start, end = (escape(node.get(k) or "", {"'": "&apos;"}) for k in ("start", "end"))
    probe = netconf.parse(f"<network><name>{escape(net.name)}</name><ip address='{ip.address}' "
                          f"prefix='{ip.prefix}'><dhcp><range start='{start}' end='{end}'/></dhcp></ip></network>")
    rng = probe.ips[0].ranges[0]
    found = [r for r in ip.ranges if ipaddress.IPv4Address(r[0]) == ipaddress.IPv4Address(rng[0])
             and ipaddress.IPv4Address(r[1]) == ipaddress.IPv4Address(rng[1])]
    if _is_add(command):
        if found:
            raise _invalid(f"there is an existing dhcp range entry in network '{net.name}' that matches "
                           f"\"<range start='{rng[0]}' end='{rng[1]}'/>\"")
        _insert(ip.ranges, command, rng)
        ip.has_dhcp = True
    elif command == DELETE:
        if not found:
            raise _invalid(f"couldn't locate a matching dhcp range entry in network '{net.name}'")
        ip.ranges.remove(found[0])
    else:
        raise _unknown(command)


def _dns_host(net: NetworkDef, command: int, _parent_index: int, node: Any) -> None:
    _no_modify(command, "DNS HOST records")
    _expect(net, node, "host")
    adding = _is_add(command)
    host = records.parse_dns_host(node, net.name, partial=not adding)
    # an add is refused only for the same address: two addresses may carry one name
    found = [i for i, h in enumerate(net.dns_hosts)
             if host.same_ip(h) or (not adding and set(host.hostnames) & set(h.hostnames))]
    if adding:
        if found:
            raise _invalid(f"there is already at least one DNS HOST record with a matching field "
                           f"in network {net.name}")
        _insert(net.dns_hosts, command, host)
    elif command == DELETE:
        if not found:
            raise _invalid(f"couldn't locate a matching DNS HOST record in network {net.name}")
        if len(found) > 1:
            raise _invalid(f"multiple matching DNS HOST records were found in network {net.name}")
        del net.dns_hosts[found[0]]
    else:
        raise _unknown(command)


def _dns_txt(net: NetworkDef, command: int, _parent_index: int, node: Any) -> None:
    _no_modify(command, "DNS TXT records")
    _expect(net, node, "txt")
    txt = records.parse_dns_txt(node, net.name, partial=not _is_add(command))
    found = next((i for i, t in enumerate(net.dns_txts) if t.name == txt.name), None)
    if _is_add(command):
        if found is not None:
            raise _invalid(f"there is already a DNS TXT record with name '{txt.name}' in network {net.name}")
        _insert(net.dns_txts, command, txt)
    elif command == DELETE:
        if found is None:
            raise _invalid(f"couldn't locate a matching DNS TXT record in network {net.name}")
        del net.dns_txts[found]
    else:
        raise _unknown(command)


def _dns_srv(net: NetworkDef, command: int, _parent_index: int, node: Any) -> None:
    _no_modify(command, "DNS SRV records")
    _expect(net, node, "srv")
    srv = records.parse_dns_srv(node, net.name, partial=not _is_add(command))
    found = [i for i, s in enumerate(net.dns_srvs) if srv.matches(s)]
    if _is_add(command):
        if found:
            raise _invalid(f"there is already at least one DNS SRV record matching all specified fields "
                           f"in network {net.name}")
        _insert(net.dns_srvs, command, srv)
    elif command == DELETE:
        if not found:
            raise _invalid(f"couldn't locate a matching DNS SRV record in network {net.name}")
        if len(found) > 1:
            raise _invalid(f"multiple DNS SRV records matching all specified fields were found "
                           f"in network {net.name}")
        del net.dns_srvs[found[0]]
    else:
        raise _unknown(command)


def _portgroup(net: NetworkDef, command: int, _parent_index: int, node: Any) -> None:
    _expect(net, node, "portgroup")
    group = records.parse_portgroup(node)
    named = next((i for i, g in enumerate(net.portgroups) if g.name == group.name), None)
    default = next((i for i, g in reversed(list(enumerate(net.portgroups))) if g.default), None)
    if named is None and command in (MODIFY, DELETE):
        raise _invalid(f"couldn't find a portgroup entry in network '{net.name}' matching "
                       f"<portgroup name='{group.name}'>")
    if named is not None and _is_add(command):
        raise _invalid(f"there is an existing portgroup entry in network '{net.name}' that matches "
                       f"\"<portgroup name='{group.name}'>\"")
    if command != DELETE and group.default and default is not None and default != named:
        raise _invalid(f"a different portgroup entry in network '{net.name}' is already set as the default. "
                       "Only one default is allowed.")
    if command == MODIFY:
        net.portgroups[named] = group          # type: ignore[index]
    elif _is_add(command):
        _insert(net.portgroups, command, group)
    elif command == DELETE:
        del net.portgroups[named]              # type: ignore[arg-type]
    else:
        raise _unknown(command)


def _forward_interface(net: NetworkDef, command: int, _parent_index: int, node: Any) -> None:
    _expect(net, node, "interface")
    _no_modify(command, "forward interface entries")
    dev = node.get("dev")
    if dev is None:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.NETWORK, "missing dev attribute in <interface> element")
    if _is_add(command):
        if dev in net.forward_ifs:
            raise _invalid(f"there is an existing interface entry in network '{net.name}' that matches "
                           f"\"<interface dev='{dev}'>\"")
        _insert(net.forward_ifs, command, dev)
    elif command == DELETE:
        if dev not in net.forward_ifs:
            raise _invalid(f"couldn't find an interface entry in network '{net.name}' matching "
                           f"<interface dev='{dev}'>")
        # libvirt refuses to delete one its guests use; pyvirt counts no connections per interface
        net.forward_ifs.remove(dev)
    else:
        raise _unknown(command)


RECORD_SECTIONS: dict[int, Callable[[NetworkDef, int, int, Any], None]] = {
    SECTION_IP_DHCP_HOST: _dhcp_host,
    SECTION_IP_DHCP_RANGE: _dhcp_range,
    SECTION_DNS_HOST: _dns_host,
    SECTION_FORWARD_INTERFACE: _forward_interface,
    SECTION_PORTGROUP: _portgroup,
    SECTION_DNS_TXT: _dns_txt,
    SECTION_DNS_SRV: _dns_srv,
}
"""The sections :func:`apply_record` changes, each with its own order of checks."""


def apply_record(net: NetworkDef, command: int, section: int, parent_index: int, node: Any) -> None:
    """One of :data:`RECORD_SECTIONS` changed in ``net`` from an already parsed element."""
    RECORD_SECTIONS[section](net, command, parent_index, node)
