"""virNetworkUpdate: the list entries of a definition added, deleted or modified one at a time.

DHCP hosts and DNS hosts (which a running network serves from its dnsmasq
hosts files), DNS TXT and SRV records, portgroups and forward interfaces,
with libvirt's matching rules, its order of checks and its words
(network_conf.c, virNetworkDefUpdate*).  The network driver and the test
driver both change their definitions here; libvirt's other sections are
refused as unsupported.
"""

from __future__ import annotations

from typing import Any, Callable

from lxml import etree

from ...conf import network as netconf
from ...conf import network_records as records
from ...conf.network import DHCPHost, NetworkDef
from ...conf.xmlutil import parse_document
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError

# virNetworkUpdateCommand / virNetworkUpdateSection
MODIFY, DELETE, ADD_LAST, ADD_FIRST = 1, 2, 3, 4
SECTION_IP_DHCP_HOST, SECTION_DNS_HOST = 4, 10
SECTION_FORWARD_INTERFACE, SECTION_PORTGROUP, SECTION_DNS_TXT, SECTION_DNS_SRV = 7, 9, 11, 12
SECTION_NAMES = {1: "bridge", 2: "domain", 3: "ip", 4: "ip-dhcp-host", 5: "ip-dhcp-range", 6: "forward",
                 7: "forward-interface", 8: "forward-pf", 9: "portgroup", 10: "dns-host", 11: "dns-txt",
                 12: "dns-srv"}


def _invalid(detail: str) -> Exception:
    return error(ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK, detail)


def apply(net: NetworkDef, command: int, section: int, parent_index: int, xml: str) -> None:
    """Change ``net`` in place as one virNetworkUpdate call asks."""
    if section in RECORD_SECTIONS:
        apply_record(net, command, section, parse_update_xml(xml))
        return
    if command not in (MODIFY, DELETE, ADD_LAST, ADD_FIRST):
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NETWORK,
                    f"unrecognized network update command code {command}")
    if section == SECTION_IP_DHCP_HOST:
        _dhcp_host(net, command, parent_index, xml)
    else:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.NETWORK,
                    f"can't update '{SECTION_NAMES.get(section, section)}' section of network '{net.name}'")


def parse_update_xml(xml: str) -> Any:
    """The update's element; a syntax error worded as libvirt's parser reports it: the
    document's name and line, libxml2's first message, the line and a pointer under the
    column where it stopped."""
    if not xml:          # libxml2 stops before it has a line to show
        raise libvirtError("network_update_xml:1: Document is empty\n(null)\n^",
                           ErrorNumber.XML_DETAIL, ErrorDomain.NETWORK)
    parser = etree.XMLParser(remove_comments=True, remove_pis=True, resolve_entities=False,
                             no_network=True, huge_tree=False, encoding="utf-8")
    try:
        return etree.fromstring(xml.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        log = parser.error_log       # this parse's own messages; the first is the one libvirt keeps
        first = log[0] if len(log) else None
        message = first.message if first is not None else exc.msg
        line, column = (first.line, first.column) if first is not None else (exc.lineno or 1, 1)
        lines = xml.splitlines()
        context = lines[line - 1] if 0 < line <= len(lines) else ""
        pointer = "".join("\t" if context[n:n + 1] == "\t" else "-" for n in range(max(column - 1, 0)))
        raise libvirtError(f"network_update_xml:{line}: {message}\n{context}\n{pointer}^",
                           ErrorNumber.XML_DETAIL, ErrorDomain.NETWORK) from None


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


# -- DNS host / TXT / SRV records, portgroups, forward interfaces --------------------------------
# Each checks the command where libvirt does: some refuse MODIFY first, the portgroup
# checks its matches before it looks at the command at all.

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


def _dns_host(net: NetworkDef, command: int, node: Any) -> None:
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


def _dns_txt(net: NetworkDef, command: int, node: Any) -> None:
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


def _dns_srv(net: NetworkDef, command: int, node: Any) -> None:
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


def _portgroup(net: NetworkDef, command: int, node: Any) -> None:
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


def _forward_interface(net: NetworkDef, command: int, node: Any) -> None:
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


RECORD_SECTIONS: dict[int, Callable[[NetworkDef, int, Any], None]] = {
    SECTION_DNS_HOST: _dns_host,
    SECTION_FORWARD_INTERFACE: _forward_interface,
    SECTION_PORTGROUP: _portgroup,
    SECTION_DNS_TXT: _dns_txt,
    SECTION_DNS_SRV: _dns_srv,
}
"""The sections :func:`apply_record` changes, each with its own order of checks."""


def apply_record(net: NetworkDef, command: int, section: int, node: Any) -> None:
    """One of :data:`RECORD_SECTIONS` changed in ``net`` from an already parsed element."""
    RECORD_SECTIONS[section](net, command, node)
