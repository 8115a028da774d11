"""virNetworkUpdate on the test host's networks, as libvirt's test driver answers it.

The DHCP host, DNS host, DNS TXT/SRV, portgroup and forward-interface sections
go through the network driver's own update code (the same checks and words);
DHCP ranges are changed here with libvirt's rules.  The sections libvirt
refuses everywhere (bridge, domain, ip, forward, forward pf) get its refusal.
"""

from __future__ import annotations

import ipaddress
from xml.sax.saxutils import escape

from ...conf import network as netconf
from ...conf.network import NetworkDef
from ...errors import ErrorDomain, ErrorNumber, error
from ..network import update

_N = ErrorDomain.NETWORK
SECTION_IP_DHCP_RANGE = 5
# the names libvirt's refusals use (virNetworkDefUpdateNoSupport)
SECTION_NAMES = {1: "bridge", 2: "domain", 3: "ip", 6: "forward", 8: "forward pf"}
COMMANDS = (update.MODIFY, update.DELETE, update.ADD_LAST, update.ADD_FIRST)


def _unknown_command(command: int) -> Exception:
    return error(ErrorNumber.OPERATION_UNSUPPORTED, _N, f"unrecognized network update command code {command}")


def apply(net: NetworkDef, command: int, section: int, parent_index: int, xml: str) -> None:
    """Change ``net`` in place as one virNetworkUpdate call asks (libvirt's order of checks:
    the section, the document, then the command)."""
    if section in SECTION_NAMES:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, _N,
                    f"can't update '{SECTION_NAMES[section]}' section of network '{net.name}'")
    if section not in (update.SECTION_IP_DHCP_HOST, SECTION_IP_DHCP_RANGE, update.SECTION_DNS_HOST,
                       *update.RECORD_SECTIONS):
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, _N, "can't update unrecognized section of network")
    node = update.parse_update_xml(xml)
    if section == SECTION_IP_DHCP_RANGE:
        _dhcp_range(net, command, parent_index, node)
        return
    if section in update.RECORD_SECTIONS:
        update.apply_record(net, command, section, node)
        return
    if command not in COMMANDS:
        raise _unknown_command(command)
    update.apply(net, command, section, parent_index, xml)


def _dhcp_range(net: NetworkDef, command: int, parent_index: int, node: object) -> None:
    if getattr(node, "tag", None) != "range":
        raise error(ErrorNumber.XML_ERROR, _N, f"unexpected element <{getattr(node, 'tag', '?')}>, expecting "
                    f"<range>, while updating network '{net.name}'")
    if parent_index > 0 or not net.ips:
        where = f"at index {parent_index} " if parent_index >= 0 else ""
        raise error(ErrorNumber.OPERATION_INVALID, _N,
                    f"couldn't update dhcp host entry - no <ip> element found {where}in network '{net.name}'")
    ip = net.ips[0]
    if command == update.MODIFY:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, _N, "dhcp ranges cannot be modified, only added or deleted")
    # the range parsed with the definition's own checks, through a one-range document
    start, end = (escape(node.get(k) or "", {"'": "&apos;"}) for k in ("start", "end"))   # type: ignore[attr-defined]
    probe = netconf.parse(f"<network><name>{net.name}</name><ip address='{ip.address}' prefix='{ip.prefix}'>"
                          f"<dhcp><range start='{start}' end='{end}'/></dhcp></ip></network>")
    rng = probe.ips[0].ranges[0]
    found = [r for r in ip.ranges if ipaddress.IPv4Address(r[0]) == ipaddress.IPv4Address(rng[0])
             and ipaddress.IPv4Address(r[1]) == ipaddress.IPv4Address(rng[1])]
    if command in (update.ADD_FIRST, update.ADD_LAST):
        if found:
            raise error(ErrorNumber.OPERATION_INVALID, _N, f"there is an existing dhcp range entry in network "
                        f"'{net.name}' that matches \"<range start='{rng[0]}' end='{rng[1]}'/>\"")
        ip.ranges.insert(0 if command == update.ADD_FIRST else len(ip.ranges), rng)
        ip.has_dhcp = True
    elif command == update.DELETE:
        if not found:
            raise error(ErrorNumber.OPERATION_INVALID, _N,
                        f"couldn't locate a matching dhcp range entry in network '{net.name}'")
        ip.ranges.remove(found[0])
    else:
        raise _unknown_command(command)
