"""The network records virNetworkUpdate changes one at a time (DNS TXT/SRV, portgroups,
forward interfaces): parsed and written as libvirt does, served by dnsmasq as libvirt
configures it, and changed by the update code both drivers share."""

from __future__ import annotations

from pathlib import Path

import pytest

import pyvirt
from pyvirt.conf import network as netconf
from pyvirt.drivers.network import dnsmasq, update

NET = """<network>
  <name>recs</name>
  <uuid>0b4c6a3e-1f2d-4e5a-9b7c-8d6e5f4a3b21</uuid>
  <forward dev='eth0' mode='nat'>
    <interface dev='eth0'/>
  </forward>
  <bridge name='pvbr9' stp='on' delay='0'/>
  <dns>
    <txt name='a.example' value='one &amp; two'/>
    <srv service='ldap' protocol='tcp' domain='example' target='dir' port='389' weight='5'/>
    <srv service='gone' protocol='udp' target='.'/>
    <host ip='10.9.0.5'>
      <hostname>h</hostname>
    </host>
  </dns>
  <ip address='10.9.0.1' netmask='255.255.255.0'>
  </ip>
  <portgroup name='eng' default='yes' trustGuestRxFilters='no'>
  </portgroup>
</network>
"""


def test_records_round_trip_in_libvirts_order_and_escaping():
    net = netconf.parse(NET)
    assert net.to_xml() == NET
    assert [t.value for t in net.dns_txts] == ["one & two"]
    assert net.forward_dev == "eth0" and net.portgroups[0].default


def test_dnsmasq_gets_txt_and_srv_lines_with_srv_fields_by_place():
    net = netconf.parse(NET)
    assert dnsmasq.dns_record_lines(net) == [
        "txt-record=a.example,one & two",
        "srv-host=_ldap._tcp.example,dir,389,0,5",       # the priority written so the weight keeps its place
        "srv-host=_gone._udp",                            # "." target: not offered, no fields
    ]
    net.dns_enable = "no"
    files = dnsmasq.Files(Path("run"), "recs")
    assert "txt-record" not in dnsmasq.config_text(net, files)


@pytest.mark.parametrize("xml, code, message", [
    ("<forward mode='nat'><interface dev='a'/><interface dev='b'/></forward>", 27,
     "multiple forwarding interfaces specified for network 'x', only one is supported"),
    ("<forward mode='nat' dev='a'><interface dev='b'/></forward>", 27,
     "<forward dev='a'> must match first <interface dev='b'/> in network x"),
    ("<forward mode='bridge'><interface dev='a'/><interface dev='a'/></forward>", 27,
     "interface 'a' can only be listed once in network x"),
    ("<forward mode='bridge'><interface dev='a'/></forward><bridge name='br0'/>", 27,
     "A network with forward mode='bridge' can specify a bridge name or a forward dev, but not both "
     "(network 'x')"),
    ("<dns><txt name='no value'/></dns>", 35, "prohibited character in DNS TXT record name 'no value' of network x"),
    ("<dns><srv service='s' protocol='tcp' weight='3'/></dns>", 35,
     "DNS SRV weight attribute not permitted without target for service 's' in network 'x'"),
    ("<portgroup name='p'><bandwidth><outbound floor='1'/></bandwidth></portgroup>", 67,
     "'floor' attribute allowed only in <inbound> element"),
])
def test_definitions_refuse_what_libvirt_refuses(xml, code, message):
    with pytest.raises(pyvirt.libvirtError) as info:
        netconf.parse(f"<network><name>x</name>{xml}<ip address='10.1.0.1' prefix='24'/></network>")
    assert info.value.get_error_code() == code
    assert info.value.get_error_message().endswith(message)


def test_update_keeps_libvirts_list_order_and_matching():
    net = netconf.parse(NET)
    update.apply(net, update.ADD_FIRST, update.SECTION_DNS_TXT, -1, "<txt name='first' value='1'/>")
    update.apply(net, update.ADD_LAST, update.SECTION_PORTGROUP, -1, "<portgroup name='ops'/>")
    assert [t.name for t in net.dns_txts] == ["first", "a.example"]
    assert [p.name for p in net.portgroups] == ["eng", "ops"]
    # a SRV delete names the entry by the fields it gives; one match is needed
    update.apply(net, update.DELETE, update.SECTION_DNS_SRV, -1, "<srv target='.'/>")
    assert [s.service for s in net.dns_srvs] == ["ldap"]
    update.apply(net, update.DELETE, update.SECTION_FORWARD_INTERFACE, -1, "<interface dev='eth0'/>")
    assert net.forward_dev is None and "<forward mode='nat'/>" in net.to_xml()


def test_update_xml_syntax_errors_read_as_libvirts_parser_reports_them():
    with pytest.raises(pyvirt.libvirtError) as info:
        update.parse_update_xml("<txt name='a'\n\tvalue='b' / >")
    assert (info.value.get_error_code(), info.value.get_error_domain()) == (35, 19)
    assert info.value.get_error_message() == ("network_update_xml:2: error parsing attribute name\n"
                                              "\tvalue='b' / >\n\t----------^")
