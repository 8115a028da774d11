"""The third differential walk of a test-driver host: virNetworkUpdate's sections (DHCP host
and range, DNS host, TXT and SRV, portgroup, forward interface, and the ones libvirt refuses),
and node-device events
(see tests/test_test_driver_netdev_diff.py).

Run as ``PYTHON walk_netdev.py MODULE URI``: MODULE is ``libvirt`` (python3-libvirt) or
``pyvirt``.  It prints one JSON list of ``[step, value]``; a failed call's value is
``["ERR", code, domain, message]``.  Each section deletes what it added, so a
difference in one step does not spread to the next.
"""

import json

from walkbase import URI, libvirt, out, seen, cond, note, step, M, start_events

start_events()


ADD_FIRST = libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_FIRST
ADD_LAST = libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST
DELETE = libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE
MODIFY = libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY
LIVE, CONFIG = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE, libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG

conn = libvirt.open(URI)
net = conn.networkLookupByName("default")


def section(prefix, sec, cases, target=None):
    """One step per (name, command, xml[, flags[, parent index]]) on ``target`` (the default network),
    each followed by the network's XML."""
    target = target or net
    for name, command, xml, *extra in cases:
        flags, index = (extra + [0, -1])[:2] if len(extra) < 2 else extra
        step(f"{prefix}-{name}", M(target, "update"), command, sec, index, xml, flags)
        step(f"{prefix}-{name}-xml", M(target, "XMLDesc"), 0)


# -- DNS TXT records -------------------------------------------------------------------------
section("txt", libvirt.VIR_NETWORK_SECTION_DNS_TXT, [
    ("add-last", ADD_LAST, "<txt name='example' value='example value'/>"),
    ("add-first", ADD_FIRST, "<txt name='first' value='a &amp; b &lt;c&gt; &apos;d&apos;'/>"),
    ("add-duplicate", ADD_LAST, "<txt name='example' value='another value'/>"),
    ("modify", MODIFY, "<txt name='example' value='changed'/>"),
    ("add-no-name", ADD_LAST, "<txt value='nameless'/>"),
    ("add-bad-name", ADD_LAST, "<txt name='two words' value='x'/>"),
    ("add-comma-name", ADD_LAST, "<txt name='a,b' value='x'/>"),
    ("add-no-value", ADD_LAST, "<txt name='novalue'/>"),
    ("add-wrong-element", ADD_LAST, "<srv service='ldap' protocol='tcp'/>"),
    ("add-malformed", ADD_LAST, "<txt name='broken' value='x'"),
    ("add-empty", ADD_LAST, ""),
    ("add-two-lines", ADD_LAST, "<txt name='a'\n\tvalue='b' / >"),
    ("bad-command", 7, "<txt name='seven' value='x'/>"),
    ("delete-by-name", DELETE, "<txt name='example'/>"),
    ("delete-missing", DELETE, "<txt name='example'/>"),
    ("delete-no-name", DELETE, "<txt value='example value'/>"),
    ("delete-first", DELETE, "<txt name='first' value='ignored'/>"),
])

# -- DHCP hosts and ranges: the matching of each command, and the checks on an entry ------------
section("dhcphost", libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, [
    ("add-last", ADD_LAST, "<host mac='52:54:00:00:00:21' name='a1' ip='192.168.122.21'/>"),
    ("add-first", ADD_FIRST, "<host name='a2' ip='192.168.122.22'/>"),
    ("add-duplicate-ip", ADD_LAST, "<host mac='52:54:00:00:00:23' ip='192.168.122.21'/>"),
    ("add-duplicate-name", ADD_LAST, "<host name='a2' ip='192.168.122.24'/>"),
    ("add-bad-mac", ADD_LAST, "<host mac='52:54:00:00:00' ip='192.168.122.25'/>"),
    ("add-multicast-mac", ADD_LAST, "<host mac='01:54:00:00:00:25' ip='192.168.122.25'/>"),
    ("add-bad-name", ADD_LAST, "<host name='-x' ip='192.168.122.25'/>"),
    ("add-bad-ip", ADD_LAST, "<host mac='52:54:00:00:00:25' ip='192.168.122.x'/>"),
    ("add-no-ip", ADD_LAST, "<host mac='52:54:00:00:00:25'/>"),
    ("add-only-ip", ADD_LAST, "<host ip='192.168.122.25'/>"),
    ("add-wrong-element", ADD_LAST, "<range start='192.168.122.30' end='192.168.122.31'/>"),
    ("add-malformed", ADD_LAST, "<host ip='192.168.122.25'/"),
    ("add-bad-index", ADD_LAST, "<host mac='52:54:00:00:00:25' ip='192.168.122.25'/>", 0, 2),
    ("modify-by-ip", MODIFY, "<host mac='52:54:00:00:00:99' name='a1b' ip='192.168.122.21'/>"),
    ("modify-missing", MODIFY, "<host mac='52:54:00:00:00:77' ip='192.168.122.77'/>"),
    ("modify-missing-no-mac", MODIFY, "<host name='zz' ip='192.168.122.78'/>"),
    ("bad-command", 8, "<host mac='52:54:00:00:00:26' ip='192.168.122.26'/>"),
    ("delete-nothing-named", DELETE, "<host/>"),
    ("delete-missing", DELETE, "<host ip='192.168.122.99'/>"),
    ("delete-mac-where-none", DELETE, "<host mac='52:54:00:00:00:55' name='a2'/>"),
    ("delete-mismatch", DELETE, "<host name='a1b' ip='192.168.122.22'/>"),
    ("delete-by-ip", DELETE, "<host ip='192.168.122.21'/>"),
])
section("dhcprange", libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE, [
    ("add-first", ADD_FIRST, "<range start='192.168.122.2' end='192.168.122.9'/>"),
    ("add-duplicate", ADD_LAST, "<range start='192.168.122.2' end='192.168.122.9'/>"),
    ("modify", MODIFY, "<range start='192.168.122.2' end='192.168.122.9'/>"),
    ("add-wrong-element", ADD_LAST, "<host ip='192.168.122.25'/>"),
    ("add-malformed", ADD_LAST, "<range start='192.168.122.2'"),
    ("bad-command", 7, "<range start='192.168.122.2' end='192.168.122.8'/>"),
    ("delete-missing", DELETE, "<range start='192.168.122.2' end='192.168.122.8'/>"),
    ("delete", DELETE, "<range start='192.168.122.2' end='192.168.122.9'/>"),
])

# -- DNS host records: an add matches the address only, a delete any field ----------------------
section("dnshost", libvirt.VIR_NETWORK_SECTION_DNS_HOST, [
    ("add", ADD_LAST, "<host ip='192.168.122.50'><hostname>web</hostname></host>"),
    ("add-same-name", ADD_FIRST, "<host ip='192.168.122.51'><hostname>web</hostname><hostname>www</hostname></host>"),
    ("add-duplicate-ip", ADD_LAST, "<host ip='192.168.122.50'><hostname>other</hostname></host>"),
    ("modify", MODIFY, "<host ip='192.168.122.50'><hostname>web</hostname></host>"),
    ("add-no-ip", ADD_LAST, "<host><hostname>x</hostname></host>"),
    ("add-bad-ip", ADD_LAST, "<host ip='nope'><hostname>x</hostname></host>"),
    ("add-no-name", ADD_LAST, "<host ip='192.168.122.52'/>"),
    ("add-empty-name", ADD_LAST, "<host ip='192.168.122.52'><hostname/></host>"),
    ("add-wrong-element", ADD_LAST, "<txt name='a' value='b'/>"),
    ("add-malformed", ADD_LAST, "<host ip='192.168.122.53'><hostname>x</host>"),
    ("bad-command", 6, "<host ip='192.168.122.54'><hostname>y</hostname></host>"),
    ("delete-ambiguous", DELETE, "<host><hostname>web</hostname></host>"),
    ("delete-by-ip", DELETE, "<host ip='192.168.122.51'/>"),
    ("delete-by-name", DELETE, "<host><hostname>web</hostname></host>"),
    ("delete-missing", DELETE, "<host ip='192.168.122.99'/>"),
    ("delete-nothing-named", DELETE, "<host/>"),
])

# -- DNS SRV records -------------------------------------------------------------------------
section("srv", libvirt.VIR_NETWORK_SECTION_DNS_SRV, [
    ("add-last", ADD_LAST, "<srv service='name' protocol='tcp' domain='test-domain-name' target='.' "
                           "port='1024' priority='10' weight='10'/>"),
    ("add-first", ADD_FIRST, "<srv service='ldap' protocol='udp'/>"),
    ("add-target", ADD_LAST, "<srv service='ldap' protocol='udp' target='ldap.example' port='389' "
                             "priority='0'/>"),
    ("add-duplicate", ADD_LAST, "<srv service='ldap' protocol='udp'/>"),
    ("modify", MODIFY, "<srv service='ldap' protocol='udp'/>"),
    ("add-port-no-target", ADD_LAST, "<srv service='web' protocol='tcp' port='80'/>"),
    ("add-priority-no-target", ADD_LAST, "<srv service='web' protocol='tcp' priority='1'/>"),
    ("add-port-zero", ADD_LAST, "<srv service='web' protocol='tcp' target='t' port='0'/>"),
    ("add-port-text", ADD_LAST, "<srv service='web' protocol='tcp' target='t' port='eighty'/>"),
    ("add-port-high", ADD_LAST, "<srv service='web' protocol='tcp' target='t' port='65536'/>"),
    ("add-priority-high", ADD_LAST, "<srv service='web' protocol='tcp' target='t' priority='70000'/>"),
    ("add-weight-negative", ADD_LAST, "<srv service='web' protocol='tcp' target='t' weight='-1'/>"),
    ("add-bad-service", ADD_LAST, "<srv service='we.b' protocol='tcp'/>"),
    ("add-bad-protocol", ADD_LAST, "<srv service='web' protocol='t_cp'/>"),
    ("add-long-service", ADD_LAST, "<srv service='" + "s" * 483 + "' protocol='tcp'/>"),
    ("add-no-service", ADD_LAST, "<srv protocol='tcp'/>"),
    ("add-no-protocol", ADD_LAST, "<srv service='web'/>"),
    ("add-wrong-element", ADD_LAST, "<txt name='x' value='y'/>"),
    ("add-malformed", ADD_LAST, "<srv service='web' protocol='tcp'><"),
    ("bad-command", 0, "<srv service='web' protocol='tcp'/>"),
    ("delete-ambiguous", DELETE, "<srv service='ldap'/>"),
    ("delete-missing", DELETE, "<srv service='nothing'/>"),
    ("delete-bad-service", DELETE, "<srv service='no.dots'/>"),
    ("delete-port-no-service", DELETE, "<srv protocol='udp' port='5'/>"),
    ("delete-by-target", DELETE, "<srv service='ldap' target='ldap.example'/>"),
    ("delete-by-service", DELETE, "<srv service='ldap'/>"),
    ("delete-by-domain", DELETE, "<srv domain='test-domain-name'/>"),
])

# -- portgroups ----------------------------------------------------------------------------------
section("portgroup", libvirt.VIR_NETWORK_SECTION_PORTGROUP, [
    ("add-last", ADD_LAST, "<portgroup name='engineering' default='yes'/>"),
    ("add-first", ADD_FIRST, "<portgroup name='sales' trustGuestRxFilters='no'/>"),
    ("add-odd-default", ADD_LAST, "<portgroup name='r&amp;d' default='sometimes'/>"),
    ("delete-odd", DELETE, "<portgroup name='r&amp;d'/>"),
    ("add-duplicate", ADD_LAST, "<portgroup name='sales'/>"),
    ("add-second-default", ADD_LAST, "<portgroup name='extra' default='YES'/>"),
    ("modify", MODIFY, "<portgroup name='sales' trustGuestRxFilters='yes'/>"),
    ("modify-to-default", MODIFY, "<portgroup name='sales' default='yes'/>"),
    ("modify-the-default", MODIFY, "<portgroup name='engineering' default='yes' trustGuestRxFilters='yes'/>"),
    ("modify-missing", MODIFY, "<portgroup name='nobody'/>"),
    ("add-no-name", ADD_LAST, "<portgroup default='no'/>"),
    ("add-bad-trust", ADD_LAST, "<portgroup name='t' trustGuestRxFilters='maybe'/>"),
    ("add-wrong-element", ADD_LAST, "<interface dev='eth0'/>"),
    ("add-malformed", ADD_LAST, "<portgroup name='m'></port>"),
    ("add-vlan", ADD_LAST, "<portgroup name='tagged'><vlan><tag id='42'/></vlan></portgroup>"),
    ("modify-vlan-all", MODIFY, "<portgroup name='tagged'><bandwidth><inbound average='100' burst='10'/>"
                                "</bandwidth><virtualport type='openvswitch'><parameters profileid='p'/>"
                                "</virtualport><vlan trunk='yes'><tag id='42' nativeMode='untagged'/>"
                                "<tag id='43'/></vlan></portgroup>"),
    ("add-bad-vlan", ADD_LAST, "<portgroup name='bad'><vlan><tag id='5000'/></vlan></portgroup>"),
    ("add-bad-bandwidth", ADD_LAST, "<portgroup name='bad'><bandwidth><inbound average='1' floor='2'/>"
                                    "</bandwidth></portgroup>"),
    ("add-bad-virtualport", ADD_LAST, "<portgroup name='bad'><virtualport type='802.1Qbh'>"
                                      "<parameters managerid='1'/></virtualport></portgroup>"),
    ("delete-vlan", DELETE, "<portgroup name='tagged'/>"),
    ("bad-command", 9, "<portgroup name='newgroup'/>"),
    ("bad-command-existing", 9, "<portgroup name='sales'/>"),
    ("delete-missing", DELETE, "<portgroup name='nobody'/>"),
    ("delete-default", DELETE, "<portgroup name='engineering' default='yes'/>"),
    ("delete", DELETE, "<portgroup name='sales'/>"),
])

# -- <bandwidth>, <vlan> and <virtualport> on a network and on its portgroup: each define is kept or
# refused, and the kept one written back --------------------------------------------------------
NETDEV_CASES = {
    "bw": "<bandwidth><inbound average='1000' peak='5000' burst='1024'/>"
          "<outbound average='128' peak='256' burst='256'/></bandwidth>",
    "bw-zero": "<bandwidth><inbound average='0'/></bandwidth>",
    "bw-empty": "<bandwidth/>",
    "bw-floor": "<bandwidth><inbound average='10' floor='5'/></bandwidth>",
    "bw-floor-zero": "<bandwidth><inbound floor='0'/></bandwidth>",
    "bw-outbound-floor": "<bandwidth><outbound average='10' floor='5'/></bandwidth>",
    "bw-peak-no-average": "<bandwidth><inbound peak='10'/></bandwidth>",
    "bw-no-rate": "<bandwidth><inbound/></bandwidth>",
    "bw-text": "<bandwidth><inbound average='ten'/></bandwidth>",
    "bw-negative": "<bandwidth><inbound average='-1'/></bandwidth>",
    "bw-bad-burst": "<bandwidth><inbound average='1' burst='1k'/></bandwidth>",
    "bw-two-inbound": "<bandwidth><inbound average='1'/><inbound average='2'/></bandwidth>",
    "bw-class-id": "<bandwidth classID='3'><inbound average='1'/></bandwidth>",
    "bw-unknown-child": "<bandwidth><sideways/><outbound average=' +7'/></bandwidth>",
    "vlan": "<vlan><tag id='42'/></vlan>",
    "vlan-trunk": "<vlan trunk='yes'><tag id='42'/><tag id='47' nativeMode='untagged'/></vlan>",
    "vlan-trunk-one": "<vlan trunk='YES'><tag id='4095' nativeMode='tagged'/></vlan>",
    "vlan-trunk-no": "<vlan trunk='no'><tag id='0'/></vlan>",
    "vlan-no-tag": "<vlan/>",
    "vlan-too-large": "<vlan><tag id='4096'/></vlan>",
    "vlan-no-id": "<vlan><tag/></vlan>",
    "vlan-bad-id": "<vlan><tag id='-1'/></vlan>",
    "vlan-two-native": "<vlan><tag id='1' nativeMode='tagged'/><tag id='2' nativeMode='untagged'/></vlan>",
    "vlan-native-default": "<vlan><tag id='1' nativeMode='default'/></vlan>",
    "vlan-trunk-no-two": "<vlan trunk='no'><tag id='1'/><tag id='2'/></vlan>",
    "vlan-trunk-no-native": "<vlan trunk='no'><tag id='1' nativeMode='tagged'/></vlan>",
    "vlan-trunk-maybe": "<vlan trunk='maybe'><tag id='1'/></vlan>",
    "vp-openvswitch": "<virtualport type='openvswitch'><parameters "
                      "interfaceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f' profileid='p1'/></virtualport>",
    "vp-openvswitch-bare": "<virtualport type='openvswitch'/>",
    "vp-qbg": "<virtualport type='802.1Qbg'><parameters managerid='0x11' typeid='1193047' typeidversion='02' "
              "instanceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'/></virtualport>",
    "vp-qbh": "<virtualport type='802.1Qbh'><parameters profileid='finance'/></virtualport>",
    "vp-midonet": "<virtualport type='midonet'><parameters interfaceid='0b11c538b5c4eeb8f00d84eaa0aaa4f0' "
                  "profileid='dropped'/></virtualport>",
    "vp-no-type": "<virtualport><parameters profileid='x'/></virtualport>",
    "vp-type-none": "<virtualport type='none'/>",
    "vp-bad-type": "<virtualport type='bogus'/>",
    "vp-managerid-range": "<virtualport type='802.1Qbg'><parameters managerid='256'/></virtualport>",
    "vp-managerid-negative": "<virtualport type='802.1Qbg'><parameters managerid='-1'/></virtualport>",
    "vp-managerid-octal": "<virtualport type='802.1Qbg'><parameters managerid='08'/></virtualport>",
    "vp-typeid-range": "<virtualport type='802.1Qbg'><parameters typeid='0x1000000'/></virtualport>",
    "vp-typeidversion-range": "<virtualport type='802.1Qbg'><parameters typeidversion='300'/></virtualport>",
    "vp-bad-instanceid": "<virtualport type='802.1Qbg'><parameters instanceid='nope'/></virtualport>",
    "vp-bad-interfaceid": "<virtualport type='openvswitch'><parameters interfaceid='nope'/></virtualport>",
    "vp-long-profileid": "<virtualport type='802.1Qbh'><parameters profileid='" + "p" * 40 + "'/></virtualport>",
    "vp-qbg-extra": "<virtualport type='802.1Qbg'><parameters profileid='x'/></virtualport>",
    "vp-qbh-extra": "<virtualport type='802.1Qbh'><parameters typeid='1'/></virtualport>",
    "vp-openvswitch-extra": "<virtualport type='openvswitch'><parameters "
                            "instanceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'/></virtualport>",
    "vp-ampersand": "<virtualport type='openvswitch'><parameters profileid='a&amp;b'/></virtualport>",
    "all": "<vlan><tag id='3'/></vlan><bandwidth><outbound average='5'/></bandwidth>"
           "<virtualport type='openvswitch'/>",
}
NETDEV_NET = ("<network><name>netdev-port</name><uuid>7c6f2a4e-5d0b-4b8e-9a51-2f0e3c4d5b6b</uuid>"
              "<forward mode='nat'/><bridge name='vbnd0'/>%s<ip address='10.9.9.1' prefix='24'/></network>")


def define_and_show(xml):
    network = conn.networkDefineXML(xml)
    try:
        return network.XMLDesc(0)
    finally:
        network.undefine()


for where, wrap in (("net", "%s"), ("portgroup", "<portgroup name='g'>%s</portgroup>")):
    for case, body in NETDEV_CASES.items():
        step(f"netdev-{where}-{case}", define_and_show, NETDEV_NET % (wrap % body))

# -- forward interfaces: the NAT network takes one, a bridge network a list ----------------------
section("fwdif", libvirt.VIR_NETWORK_SECTION_FORWARD_INTERFACE, [
    ("add", ADD_LAST, "<interface dev='eth0'/>"),
    ("add-second", ADD_FIRST, "<interface dev='eth1'/>"),
    ("add-duplicate", ADD_LAST, "<interface dev='eth0'/>"),
    ("modify", MODIFY, "<interface dev='eth0'/>"),
    ("modify-wrong-element", MODIFY, "<portgroup name='x'/>"),
    ("add-no-dev", ADD_LAST, "<interface name='eth0'/>"),
    ("add-malformed", ADD_LAST, "<interface dev='eth0'"),
    ("bad-command", 5, "<interface dev='eth5'/>"),
    ("delete", DELETE, "<interface dev='eth0'/>"),
    ("delete-missing", DELETE, "<interface dev='eth0'/>"),
])
BRIDGE_NET = """<network>
  <name>netdev-bridge</name>
  <uuid>7c6f2a4e-5d0b-4b8e-9a51-2f0e3c4d5b6a</uuid>
  <forward mode='bridge'>
    <interface dev='eth0'/>
  </forward>
</network>"""
bridge = conn.networkDefineXML(BRIDGE_NET)
step("bridge-xml", M(bridge, "XMLDesc"), 0)
section("bridge", libvirt.VIR_NETWORK_SECTION_FORWARD_INTERFACE, [
    ("add-first", ADD_FIRST, "<interface dev='eth1'/>"),
    ("add-last", ADD_LAST, "<interface dev='eth2'/>", CONFIG),
    ("add-live", ADD_LAST, "<interface dev='eth3'/>", LIVE),
    ("add-both", ADD_LAST, "<interface dev='eth3'/>", LIVE | CONFIG),
    ("delete-first", DELETE, "<interface dev='eth1'/>"),
    ("delete-middle", DELETE, "<interface dev='eth0'/>"),
    ("delete-last", DELETE, "<interface dev='eth2'/>"),
], target=bridge)
step("bridge-undefine", M(bridge, "undefine"))

# -- the sections libvirt refuses, and no section: the document is read first -----------------------
for sec in (1, 2, 3, 6, 8, 0, 13):      # bridge, domain, ip, forward, forward pf, none, past the last
    for tag, xml in (("malformed", "<x"), ("empty", ""), ("element", "<x/>")):
        step(f"section-{sec}-{tag}", M(net, "update"), 9, sec, -1, xml, 0)

# -- the flags, on a record section: a running network's live definition ---------------------------
TXT = libvirt.VIR_NETWORK_SECTION_DNS_TXT
step("flags-config", M(net, "update"), ADD_LAST, TXT, -1, "<txt name='cfg' value='1'/>", CONFIG)
step("flags-config-xml", M(net, "XMLDesc"), 0)
step("flags-live", M(net, "update"), ADD_LAST, TXT, -1, "<txt name='live' value='1'/>", LIVE)
step("flags-live-xml", M(net, "XMLDesc"), 0)
step("flags-bad", M(net, "update"), ADD_LAST, TXT, -1, "<txt name='bad' value='1'/>", 4)
step("flags-live-delete", M(net, "update"), DELETE, TXT, -1, "<txt name='live'/>", LIVE)
step("flags-config-delete", M(net, "update"), DELETE, TXT, -1, "<txt name='cfg'/>", CONFIG)
step("flags-config-delete-again", M(net, "update"), DELETE, TXT, -1, "<txt name='cfg'/>", CONFIG)
step("net-xml-end", M(net, "XMLDesc"), 0)


# -- node-device events ----------------------------------------------------------------------------
def wait(predicate):
    with cond:
        return cond.wait_for(lambda: predicate(seen), timeout=60)


def count(tag, event):
    return lambda records: sum(1 for r in records if r[0] == tag and r[2] == event)


LIFECYCLE, UPDATE = libvirt.VIR_NODE_DEVICE_EVENT_ID_LIFECYCLE, libvirt.VIR_NODE_DEVICE_EVENT_ID_UPDATE
CREATED, DELETED = libvirt.VIR_NODE_DEVICE_EVENT_CREATED, libvirt.VIR_NODE_DEVICE_EVENT_DELETED
step("nodedev-constants", lambda: [LIFECYCLE, UPDATE, CREATED, DELETED, libvirt.VIR_NODE_DEVICE_EVENT_DEFINED,
                                   libvirt.VIR_NODE_DEVICE_EVENT_UNDEFINED])
all_id = step("nodedev-register-all", M(conn, "nodeDeviceEventRegisterAny"), None, LIFECYCLE,
              lambda c, d, event, detail, opaque: note(opaque, d.name(), event, detail), "all")
update_id = step("nodedev-register-update", M(conn, "nodeDeviceEventRegisterAny"), None, UPDATE,
                 lambda c, d, opaque: note(opaque, d.name(), "update"), "update")
out[-2][1] = isinstance(all_id, int)          # ids are each daemon's own: only that there is one
out[-1][1] = isinstance(update_id, int)
step("nodedev-register-bad-id", M(conn, "nodeDeviceEventRegisterAny"), None, 2, lambda *a: None, None)
step("nodedev-register-negative-id", M(conn, "nodeDeviceEventRegisterAny"), None, -1, lambda *a: None, None)

VHBA = """<device>
  <parent>scsi_host1</parent>
  <capability type='scsi_host'>
    <capability type='fc_host'>
      <wwnn>2001001b32a9da5e</wwnn>
      <wwpn>2101001b32a9da5e</wwpn>
    </capability>
  </capability>
</device>"""
created = step("nodedev-create", lambda: conn.nodeDeviceCreateXML(VHBA, 0).name())
step("nodedev-created-seen", wait, lambda r: count("all", CREATED)(r) >= 1)
dev = conn.nodeDeviceLookupByName(created) if isinstance(created, str) else None
one_id = step("nodedev-register-one", M(conn, "nodeDeviceEventRegisterAny"), dev, LIFECYCLE,
              lambda c, d, event, detail, opaque: note(opaque, d.name(), event, detail), "one")
out[-1][1] = isinstance(one_id, int)
step("nodedev-destroy", M(dev, "destroy"))
step("nodedev-deleted-seen", wait, lambda r: count("all", DELETED)(r) >= 1 and count("one", DELETED)(r) >= 1)
step("nodedev-create-again", lambda: conn.nodeDeviceCreateXML(VHBA, 0).name())
step("nodedev-created-again-seen", wait, lambda r: count("one", CREATED)(r) >= 1)
step("nodedev-destroy-again", lambda: conn.nodeDeviceLookupByName(created).destroy())
step("nodedev-deleted-again-seen", wait, lambda r: count("one", DELETED)(r) >= 2)
step("nodedev-destroy-not-vhba", lambda: conn.nodeDeviceLookupByName("computer").destroy())
step("nodedev-deregister-one", M(conn, "nodeDeviceEventDeregisterAny"), one_id)
again = step("nodedev-deregister-one-again", M(conn, "nodeDeviceEventDeregisterAny"), one_id)
if isinstance(again, list) and isinstance(again[-1], str):
    again[-1] = again[-1].replace(str(one_id), "ID")
step("nodedev-deregister-update", M(conn, "nodeDeviceEventDeregisterAny"), update_id)
# the walk's last event: a create only the callback for every device sees, then its destroy
step("nodedev-create-last", lambda: conn.nodeDeviceCreateXML(VHBA, 0).name())
step("nodedev-destroy-last", lambda: conn.nodeDeviceLookupByName(created).destroy())
step("nodedev-last-seen", wait, lambda r: count("all", DELETED)(r) >= 3)
step("nodedev-deregister-all", M(conn, "nodeDeviceEventDeregisterAny"), all_id)
step("nodedev-events", lambda: list(seen))
conn.close()
print(json.dumps(out))
