"""<bandwidth>, <vlan> and <virtualport> of a network and its portgroups: what is kept, how it is
written back, and libvirt 9.0's refusals (codes, domains, words).  The same cases are proved against
libvirt's own test driver by tests/test_test_driver_netdev_diff.py."""

from __future__ import annotations

import pytest
from lxml import etree

import pyvirt
from pyvirt.conf import network as netconf
from pyvirt.conf.netdev_conf import _strtoul, parse_bandwidth, parse_virtualport, parse_vlan
from pyvirt.conf.xmlutil import render
from pyvirt.errors import ErrorDomain, ErrorNumber

IID = "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"


def net(body: str, inner: str = "") -> netconf.NetworkDef:
    return netconf.parse(f"<network><name>n</name><uuid>{IID}</uuid><forward mode='nat'/><bridge name='b0'/>"
                         f"{body}<ip address='10.1.0.1' prefix='24'/><portgroup name='g'>{inner}</portgroup>"
                         "</network>")


def test_network_writes_them_in_libvirts_places():
    xml = net("<virtualport type='openvswitch'/><bandwidth><inbound average='10'/></bandwidth>"
              "<vlan><tag id='3'/></vlan>",
              "<bandwidth><outbound average='1'/></bandwidth><vlan><tag id='4'/></vlan>"
              "<virtualport><parameters profileid='x'/></virtualport>").to_xml()
    assert xml == f"""<network>
  <name>n</name>
  <uuid>{IID}</uuid>
  <forward mode='nat'/>
  <bridge name='b0' stp='on' delay='0'/>
  <vlan>
    <tag id='3'/>
  </vlan>
  <bandwidth>
    <inbound average='10'/>
  </bandwidth>
  <ip address='10.1.0.1' prefix='24'>
  </ip>
  <virtualport type='openvswitch'/>
  <portgroup name='g'>
    <vlan>
      <tag id='4'/>
    </vlan>
    <virtualport>
      <parameters profileid='x'/>
    </virtualport>
    <bandwidth>
      <outbound average='1'/>
    </bandwidth>
  </portgroup>
</network>
"""
    assert netconf.parse(xml).to_xml() == xml


def node(xml: str) -> etree._Element:
    return etree.fromstring(xml)


@pytest.mark.parametrize("xml, written", [
    ("<bandwidth><inbound average='1000' burst='1024' peak='5000'/><outbound average='1'/></bandwidth>",
     "<bandwidth>\n  <inbound average='1000' peak='5000' burst='1024'/>\n  <outbound average='1'/>\n</bandwidth>\n"),
    # a rate of nothing is kept, but written as none
    ("<bandwidth><inbound average='0'/></bandwidth>", "<bandwidth>\n</bandwidth>\n"),
    ("<bandwidth><inbound floor='0'/><x/></bandwidth>", "<bandwidth>\n</bandwidth>\n"),
    ("<bandwidth><outbound average=' +7'/></bandwidth>", "<bandwidth>\n  <outbound average='7'/>\n</bandwidth>\n"),
])
def test_bandwidth_round_trip(xml, written):
    band = parse_bandwidth(node(xml))
    assert band is not None and render(band.node()) == written


def test_bandwidth_without_a_direction_is_none():
    assert parse_bandwidth(node("<bandwidth><sideways/></bandwidth>")) is None


def err(fn, *args):
    with pytest.raises(pyvirt.libvirtError) as info:
        fn(*args)
    e = info.value
    return e.get_error_code(), e.get_error_domain(), e.get_error_message()


NONE, XML, NET = ErrorDomain.NONE, ErrorDomain.XML, ErrorDomain.NET
UNSUP, XMLERR, DETAIL = ErrorNumber.CONFIG_UNSUPPORTED, ErrorNumber.XML_ERROR, ErrorNumber.XML_DETAIL


@pytest.mark.parametrize("xml, code, message", [
    ("<bandwidth><inbound/></bandwidth>", DETAIL, "Missing mandatory average or floor attributes"),
    ("<bandwidth><inbound floor='0' peak='3'/></bandwidth>", UNSUP,
     "unsupported configuration: 'peak' and 'burst' require 'average' attribute"),
    ("<bandwidth><inbound average='-1'/></bandwidth>", UNSUP,
     "unsupported configuration: could not convert bandwidth average value '-1'"),
    ("<bandwidth><inbound average='1' burst='1k'/></bandwidth>", UNSUP,
     "unsupported configuration: could not convert bandwidth burst value '1k'"),
    ("<bandwidth><inbound average='18446744073709551616'/></bandwidth>", UNSUP,
     "unsupported configuration: could not convert bandwidth average value '18446744073709551616'"),
    ("<bandwidth><inbound average='1' floor='1'/></bandwidth>", UNSUP,
     "unsupported configuration: floor attribute is not supported for this config"),
    ("<bandwidth><outbound floor='1'/></bandwidth>", UNSUP,
     "unsupported configuration: 'floor' attribute allowed only in <inbound> element"),
    ("<bandwidth><outbound average='1'/><outbound average='2'/></bandwidth>", DETAIL,
     "Only one child <outbound> element allowed"),
    ("<bandwidth classID='1'/>", DETAIL, "classID attribute not supported on <bandwidth> in this usage context"),
])
def test_bandwidth_refusals(xml, code, message):
    assert err(parse_bandwidth, node(xml)) == (code, NONE, message)


@pytest.mark.parametrize("xml, written", [
    ("<vlan><tag id='42'/></vlan>", "<vlan>\n  <tag id='42'/>\n</vlan>\n"),
    ("<vlan><tag id='1'/><tag id='2' nativeMode='untagged'/></vlan>",
     "<vlan trunk='yes'>\n  <tag id='1'/>\n  <tag id='2' nativeMode='untagged'/>\n</vlan>\n"),
    ("<vlan trunk='YES'><tag id='4095' nativeMode='tagged'/></vlan>",
     "<vlan trunk='yes'>\n  <tag id='4095' nativeMode='tagged'/>\n</vlan>\n"),
    ("<vlan trunk='No'><tag id='0'/></vlan>", "<vlan>\n  <tag id='0'/>\n</vlan>\n"),
    ("<vlan trunk=''><tag id='7'/></vlan>", "<vlan>\n  <tag id='7'/>\n</vlan>\n"),
    # the native mode goes to every tag of the native id
    ("<vlan><tag id='5' nativeMode='tagged'/><tag id='5'/></vlan>",
     "<vlan trunk='yes'>\n  <tag id='5' nativeMode='tagged'/>\n  <tag id='5' nativeMode='tagged'/>\n</vlan>\n"),
])
def test_vlan_round_trip(xml, written):
    assert render(parse_vlan(node(xml)).node()) == written


@pytest.mark.parametrize("xml, domain, message", [
    ("<vlan/>", NONE, "missing tag id - each <vlan> must have at least one <tag id='n'/> subelement"),
    ("<vlan><tag id='4096'/></vlan>", NONE, "vlan tag id 4096 too large (maximum 4095)"),
    ("<vlan><tag/></vlan>", XML, "Missing required attribute 'id' in element 'tag'"),
    ("<vlan><tag id='-1'/></vlan>", XML,
     "Invalid value for attribute 'id' in element 'tag': '-1'. Expected non-negative integer value"),
    ("<vlan><tag id='1' nativeMode='default'/></vlan>", XML,
     "Invalid value for attribute 'nativeMode' in element 'tag': 'default'."),
    ("<vlan><tag id='1' nativeMode='tagged'/><tag id='2' nativeMode='tagged'/></vlan>", NONE,
     "duplicate native vlan setting"),
    ("<vlan trunk='no'><tag id='1'/><tag id='2'/></vlan>", NONE,
     "invalid \"trunk='no'\" in <vlan> - trunk='yes' is required for more than one vlan tag"),
    ("<vlan trunk='no'><tag id='1' nativeMode='untagged'/></vlan>", NONE,
     "invalid configuration in <vlan> - \"trunk='no'\" is not allowed with a native vlan id"),
    ("<vlan trunk='maybe'><tag id='1'/></vlan>", NONE, "invalid \"trunk='maybe'\" in <vlan> - must be yes or no"),
])
def test_vlan_refusals(xml, domain, message):
    assert err(parse_vlan, node(xml)) == (XMLERR, domain, "XML error: " + message)


@pytest.mark.parametrize("xml, written", [
    ("<virtualport type='openvswitch'/>", "<virtualport type='openvswitch'/>\n"),
    # base 0 numbers, as strtoul reads them; only what the type carries is written
    (f"<virtualport type='802.1Qbg'><parameters managerid='0x11' typeid='010' typeidversion='2' "
     f"instanceid='{IID.upper()}'/></virtualport>",
     f"<virtualport type='802.1Qbg'>\n  <parameters managerid='17' typeid='8' typeidversion='2' "
     f"instanceid='{IID}'/>\n</virtualport>\n"),
    ("<virtualport type='midonet'><parameters interfaceid=' 09b11c538b5c4eeb8f00d84eaa0aaa4f ' profileid='x'/>"
     "</virtualport>",
     f"<virtualport type='midonet'>\n  <parameters interfaceid='{IID}'/>\n</virtualport>\n"),
    ("<virtualport type='802.1Qbh'><parameters profileid=''/></virtualport>", "<virtualport type='802.1Qbh'/>\n"),
])
def test_virtualport_round_trip(xml, written):
    port = parse_virtualport(node(xml), require_type=True)
    assert render(port.node()) == written


def test_a_portgroups_virtualport_may_leave_the_type_out():
    assert parse_virtualport(node("<virtualport/>"), require_type=False).node() is None
    assert err(parse_virtualport, node("<virtualport/>"), True) == \
        (XMLERR, NONE, "XML error: missing required virtualport type")


@pytest.mark.parametrize("xml, code, domain, message", [
    ("<virtualport type='none'/>", UNSUP, NONE, "unsupported configuration: unknown virtualport type none"),
    ("<virtualport type='802.1Qbg'><parameters managerid='256'/></virtualport>", XMLERR, NONE,
     "XML error: value of managerid out of range"),
    # strtoul's "-1 is UINT_MAX": in range of nothing here
    ("<virtualport type='802.1Qbg'><parameters managerid='-1'/></virtualport>", XMLERR, NONE,
     "XML error: value of managerid out of range"),
    ("<virtualport type='802.1Qbg'><parameters managerid='08'/></virtualport>", XMLERR, NONE,
     "XML error: cannot parse value of managerid parameter"),
    ("<virtualport type='802.1Qbg'><parameters typeid='0x1000000'/></virtualport>", XMLERR, NONE,
     "XML error: value for typeid out of range"),
    ("<virtualport type='802.1Qbg'><parameters instanceid='nope'/></virtualport>", XMLERR, NONE,
     "XML error: cannot parse instanceid parameter as a uuid"),
    ("<virtualport type='802.1Qbh'><parameters profileid='" + "p" * 40 + "'/></virtualport>", XMLERR, NONE,
     "XML error: profileid parameter too long"),
    ("<virtualport type='802.1Qbg'><parameters interfaceid='" + IID + "'/></virtualport>", XMLERR, NET,
     "XML error: extra interfaceid unsupported in <virtualport type='802.1Qbg'>"),
    ("<virtualport type='openvswitch'><parameters typeidversion='1'/></virtualport>", XMLERR, NET,
     "XML error: extra typeidversion unsupported in <virtualport type='openvswitch'>"),
])
def test_virtualport_refusals(xml, code, domain, message):
    assert err(parse_virtualport, node(xml), True) == (code, domain, message)


@pytest.mark.parametrize("raw, base, limit, negative_ok, value", [
    ("  +12", 10, 2**64 - 1, False, 12), ("-0", 10, 2**64 - 1, False, None), ("", 10, 255, False, None),
    ("0x1F", 0, 2**32 - 1, True, 31), ("017", 0, 2**32 - 1, True, 15), ("-1", 0, 2**32 - 1, True, 2**32 - 1),
    ("-4294967296", 0, 2**32 - 1, True, None), ("4294967296", 0, 2**32 - 1, True, None), ("1 ", 10, 9, False, None),
])
def test_numbers_are_read_as_c_reads_them(raw, base, limit, negative_ok, value):
    assert _strtoul(raw, base, limit, negative_ok) == value
