"""virNetworkUpdate: DHCP host and DNS host entries changed in a definition.

The two sections a running network serves from its dnsmasq hosts files
(``ip-dhcp-host``, ``dns-host``); libvirt's other sections are refused as
unsupported.  The words of the errors are libvirt's (virnetworkconf.c).
"""

from __future__ import annotations

from ...conf import network as netconf
from ...conf.network import DHCPHost, DNSHost, NetworkDef
from ...conf.xmlutil import parse_document
from ...errors import ErrorDomain, ErrorNumber, error

# virNetworkUpdateCommand / virNetworkUpdateSection
MODIFY, DELETE, ADD_LAST, ADD_FIRST = 1, 2, 3, 4
SECTION_IP_DHCP_HOST, SECTION_DNS_HOST = 4, 10
SECTION_NAMES = {1: "bridge", 2: "domain", 3: "ip", 4: "ip-dhcp-host", 5: "ip-dhcp-range", 6: "forward",
                 7: "forward-interface", 8: "forward-pf", 9: "portgroup", 10: "dns-host", 11: "dns-txt",
                 12: "dns-srv"}


def _invalid(detail: str) -> Exception:
    return error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK, detail)


def apply(net: NetworkDef, command: int, section: int, parent_index: int, xml: str) -> None:
    """Change ``net`` in place as one virNetworkUpdate call asks."""
    if command not in (MODIFY, DELETE, ADD_LAST, ADD_FIRST):
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NETWORK,
                    f"unrecognized network update command code {command}")
    if section == SECTION_IP_DHCP_HOST:
        _dhcp_host(net, command, parent_index, xml)
    elif section == SECTION_DNS_HOST:
        _dns_host(net, command, xml)
    else:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NETWORK,
                    f"can't update '{SECTION_NAMES.get(section, section)}' section of network '{net.name}'")


def _dhcp_host(net: NetworkDef, command: int, parent_index: int, xml: str) -> None:
    if parent_index > 0 or not net.ips:
        raise _invalid(f"couldn't update dhcp host entry - no <ip> element found at index {parent_index} "
                       f"in network '{net.name}'")
    ip = net.ips[0]
    node = parse_document(xml, "host", "network_update")
    if command == DELETE:       # any of the three attributes names the entry to delete
        new = DHCPHost((node.get("mac") or "").lower() or None, node.get("name"), node.get("ip"))
    else:
        new = netconf.parse_dhcp_host(node, ip, net.name)
    matches = [h for h in ip.hosts
               if (new.mac and h.mac == new.mac) or (new.name and h.name == new.name)
               or (command != MODIFY and new.ip and h.ip == new.ip)]
    if command in (ADD_FIRST, ADD_LAST):
        if matches:
            # libvirt names the new entry's fields, a missing name as C prints a NULL string
            raise _invalid(f"there is an existing dhcp host entry in network '{net.name}' that matches "
                           f"\"<host mac='{new.mac or 'unknown'}' name='{new.name or '(null)'}' "
                           f"ip='{new.ip or 'unknown'}'/>\"")
        if command == ADD_FIRST:
            ip.hosts.insert(0, new)
        else:
            ip.hosts.append(new)
    elif command == DELETE:
        exact = [h for h in ip.hosts if (new.mac is None or h.mac == new.mac) and
                 (new.name is None or h.name == new.name) and (new.ip is None or h.ip == new.ip)]
        if not exact:
            raise _invalid(f"couldn't locate a matching dhcp host entry in network '{net.name}'")
        ip.hosts.remove(exact[0])
    else:
        if not matches:
            raise _invalid(f"couldn't locate an existing dhcp host entry with \"mac='{new.mac}'\" "
                           f"in network '{net.name}'")
        ip.hosts[ip.hosts.index(matches[0])] = new
    ip.has_dhcp = True


def _dns_host(net: NetworkDef, command: int, xml: str) -> None:
    node = parse_document(xml, "host", "network_update")
    address = node.get("ip")
    names = [n.text.strip() for n in node.findall("hostname") if n.text and n.text.strip()]
    if not address:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.NETWORK,
                    f"Missing IP address in network '{net.name}' DNS HOST record")
    existing = [h for h in net.dns_hosts if h.ip == address or set(h.hostnames) & set(names)]
    if command in (ADD_FIRST, ADD_LAST):
        if existing:
            raise _invalid(f"there is already at least one DNS HOST record with a matching field "
                           f"in network {net.name}")
        entry = DNSHost(address, names)
        if command == ADD_FIRST:
            net.dns_hosts.insert(0, entry)
        else:
            net.dns_hosts.append(entry)
    elif command == DELETE:
        if not existing:
            raise _invalid(f"couldn't locate a matching DNS HOST record in network {net.name}")
        net.dns_hosts.remove(existing[0])
    else:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NETWORK,
                    "DNS HOST records cannot be modified, only added or deleted")
