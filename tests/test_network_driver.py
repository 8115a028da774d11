"""The network driver's bookkeeping, in process: definitions, files, lists, the QEMU-facing API.

Nothing here starts a network (that needs a namespace: tests/test_network.py);
these calls only read and write the driver's files under a temporary root.
"""

from __future__ import annotations

import asyncio

import pytest

from pyvirt.driver import ConnectionInfo
from pyvirt.driver_network import NetworkEvent
from pyvirt.drivers.network.connection import NetworkConnection
from pyvirt.drivers.network.driver import NetworkDriver
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError

ISO = "<network><name>iso</name><ip address='10.78.0.1' prefix='24'/></network>"
BR = "<network><name>hostbr</name><forward mode='bridge'/><bridge name='br-host'/></network>"


def run(coro):
    return asyncio.run(coro)


STARTED: list[str] = []


@pytest.fixture(autouse=True)
def never_start(monkeypatch):
    """Starting a network makes interfaces: never in this process's namespace.  Autostart
    (a driver on a root with an autostart network) records the attempt instead."""
    async def start(self, obj):
        STARTED.append(obj.name)
    monkeypatch.setattr(NetworkDriver, "start", start)
    STARTED.clear()


def open_conn(root, default_network: bool = False) -> NetworkConnection:
    drv = NetworkDriver(root, default_network=default_network)
    run(drv.initialize())
    return NetworkConnection(ConnectionInfo(uri="qemu:///system"), drv)


def test_define_fills_in_bridge_and_mac_and_persists(tmp_path):
    conn = open_conn(tmp_path)
    events: list[NetworkEvent] = []
    conn.events.subscribe(events.append)
    ref = run(conn.network_define_xml(ISO))
    xml = run(conn.network_get_xml_desc(ref, 0))
    assert "<bridge name='virbr" in xml and "<mac address='52:54:00:" in xml
    assert events == [NetworkEvent(0, ref, (0, 0))]
    assert (tmp_path / "etc" / "network" / "iso.xml").read_text() == xml
    run(conn.network_set_autostart(ref, 1))
    # a new driver on the same root reads it all back
    again = open_conn(tmp_path)
    ref2 = run(again.network_lookup_by_name("iso"))
    assert ref2 == ref
    assert run(again.network_get_xml_desc(ref2, 0)) == xml
    assert run(again.network_get_autostart(ref2)) == 1
    assert (run(again.network_is_active(ref2)), run(again.network_is_persistent(ref2))) == (0, 1)
    assert STARTED == ["iso"]            # the new driver autostarted it
    run(again.network_undefine(ref2))
    assert not (tmp_path / "etc" / "network" / "iso.xml").exists()
    assert not (tmp_path / "etc" / "network" / "autostart" / "iso").exists()
    with pytest.raises(libvirtError) as exc:
        run(again.network_lookup_by_uuid(ref.uuid))
    assert (exc.value.get_error_code(), exc.value.get_error_domain()) == (ErrorNumber.NO_NETWORK, ErrorDomain.NETWORK)


def test_redefining_keeps_the_assigned_bridge_and_mac(tmp_path):
    conn = open_conn(tmp_path)
    ref = run(conn.network_define_xml(ISO))
    first = run(conn.network_get_xml_desc(ref, 0))
    uuid = first.split("<uuid>")[1].split("</uuid>")[0]
    run(conn.network_define_xml(ISO.replace("<name>iso</name>", f"<name>iso</name><uuid>{uuid}</uuid>")))
    assert run(conn.network_get_xml_desc(ref, 0)) == first


def test_list_all_filters_and_counts(tmp_path):
    conn = open_conn(tmp_path)
    iso = run(conn.network_define_xml(ISO))
    br = run(conn.network_define_xml(BR))
    run(conn.network_set_autostart(br, 1))
    assert run(conn.connect_list_all_networks(1, 0)) == ([br, iso], 2)
    assert run(conn.connect_list_all_networks(1, 16)) == ([br], 1)        # AUTOSTART
    assert run(conn.connect_list_all_networks(1, 32)) == ([iso], 1)       # NO_AUTOSTART
    assert run(conn.connect_list_all_networks(0, 2)) == ([], 0)           # ACTIVE, no results asked
    assert run(conn.connect_list_all_networks(1, 1 | 4)) == ([br, iso], 2)
    assert run(conn.connect_list_defined_networks(1)) == ["hostbr"]
    assert (run(conn.connect_num_of_networks()), run(conn.connect_num_of_defined_networks())) == (0, 2)
    with pytest.raises(libvirtError) as exc:
        run(conn.connect_list_all_networks(1, 64))
    assert exc.value.get_error_message() == "unsupported flags (0x40) in function networkConnectListAllNetworks"


def test_default_network_only_on_first_start(tmp_path):
    conn = open_conn(tmp_path, default_network=True)
    ref = run(conn.network_lookup_by_name("default"))
    assert run(conn.network_get_bridge_name(ref)) == "virbr0"
    assert run(conn.network_is_active(ref)) == 0
    run(conn.network_undefine(ref))
    again = open_conn(tmp_path, default_network=True)
    assert run(again.connect_list_all_networks(1, 0)) == ([], 0)


def test_port_for_and_tap_hooks(tmp_path):
    conn = open_conn(tmp_path)
    drv = conn.driver
    with pytest.raises(libvirtError) as exc:
        drv.port_for("nope")
    assert exc.value.get_error_message() == "Network not found: no network with matching name 'nope'"
    run(conn.network_define_xml(ISO))
    with pytest.raises(libvirtError) as exc:
        drv.port_for("iso")
    assert exc.value.get_error_code() == ErrorNumber.OPERATION_INVALID
    assert exc.value.get_error_message() == "Requested operation is not valid: network 'iso' is not active"
    # an active network as a previous daemon left it (no interfaces needed for the bookkeeping)
    obj = drv.by_name("iso")
    obj.live = obj.config
    assert drv.port_for("iso") == (obj.config.bridge, "none")
    drv.tap_attached("iso", "vnet0", "guest")
    assert "<network connections='1'>" in run(conn.network_get_xml_desc(obj.ref(), 0))
    drv.tap_detached("iso", "vnet0")
    assert "connections" not in run(conn.network_get_xml_desc(obj.ref(), 0))


def test_refusals(tmp_path):
    conn = open_conn(tmp_path)
    ref = run(conn.network_define_xml(ISO))
    with pytest.raises(libvirtError) as exc:
        run(conn.network_define_xml(ISO.replace("iso</name>", "iso</name>"
                                                ).replace("<name>iso</name>", "<name>other</name>")
                                    .replace("<ip ", "<bridge name='%s'/><ip " % run(conn.network_get_bridge_name(ref)))))
    assert exc.value.get_error_code() == ErrorNumber.INTERNAL_ERROR
    assert "already in use." in exc.value.get_error_message()
    with pytest.raises(libvirtError) as exc:
        run(conn.network_get_xml_desc(ref, 2))
    assert exc.value.get_error_message() == "unsupported flags (0x2) in function networkGetXMLDesc"
    with pytest.raises(libvirtError) as exc:
        run(conn.network_define_xml_flags("<network><name>v</name><bogus/></network>", 1))
    assert exc.value.get_error_code() == ErrorNumber.XML_INVALID_SCHEMA


def test_update_adds_and_deletes_dhcp_hosts_in_the_definition(tmp_path):
    conn = open_conn(tmp_path)
    ref = run(conn.network_define_xml(
        "<network><name>n</name><ip address='10.9.0.1' prefix='24'><dhcp>"
        "<range start='10.9.0.10' end='10.9.0.20'/></dhcp></ip></network>"))
    host = "<host mac='52:54:00:00:09:01' name='h1' ip='10.9.0.5'/>"
    run(conn.network_update(ref, 3, 4, -1, host, 0))          # add-last ip-dhcp-host, current (config)
    assert host in run(conn.network_get_xml_desc(ref, 0))
    with pytest.raises(libvirtError) as exc:
        run(conn.network_update(ref, 3, 4, -1, host, 0))
    assert exc.value.get_error_message() == (
        "Requested operation is not valid: there is an existing dhcp host entry in network 'n' that matches "
        "\"<host mac='52:54:00:00:09:01' name='h1' ip='10.9.0.5'/>\"")
    with pytest.raises(libvirtError) as exc:
        run(conn.network_update(ref, 3, 4, -1, host, 1))      # --live on an inactive network
    assert exc.value.get_error_message() == "Requested operation is not valid: network is not running"
    with pytest.raises(libvirtError) as exc:
        run(conn.network_update(ref, 3, 1, -1, "<bridge name='x'/>", 2))
    assert exc.value.get_error_code() == ErrorNumber.OPERATION_UNSUPPORTED     # libvirt's code for a section
    run(conn.network_update(ref, 2, 4, -1, "<host mac='52:54:00:00:09:01'/>", 2))
    assert "<host " not in run(conn.network_get_xml_desc(ref, 0))
    assert "<host " not in (tmp_path / "etc" / "network" / "n.xml").read_text()


NAT_BODY = "<forward mode='nat'/><ip address='10.79.0.1' prefix='24'/>"
HOSTBR_BODY = "<forward mode='bridge'/><bridge name='br-host'/>"
FWDDEV_BODY = "<forward mode='bridge' dev='eth0'/>"


@pytest.mark.parametrize("body, message", [
    (FWDDEV_BODY + "<bandwidth><inbound average='1'/></bandwidth>",
     "Unsupported network-wide <bandwidth> element in network pc with forward mode='bridge'"),
    (FWDDEV_BODY + "<portgroup name='g'><bandwidth><inbound average='1'/></bandwidth></portgroup>",
     "Unsupported <bandwidth> element in network 'pc' in portgroup 'g' with forward mode='bridge'"),
    (NAT_BODY + "<vlan><tag id='5'/></vlan>",
     "<vlan> element specified for network pc, whose type doesn't support vlan configuration"),
    (HOSTBR_BODY + "<vlan><tag id='5'/></vlan>",
     "<vlan> element specified for network pc, whose type doesn't support vlan configuration"),
    # a portgroup's own virtualport must be Open vSwitch on a bridge network to tag
    (HOSTBR_BODY + "<virtualport type='openvswitch'/><portgroup name='g'><vlan><tag id='5'/></vlan>"
     "<virtualport type='802.1Qbh'/></portgroup>",
     "<vlan> element specified for network pc, whose type doesn't support vlan configuration"),
    (NAT_BODY + "<portgroup name='a' default='yes'/><portgroup name='b' default='yes'/>",
     "network 'pc' has multiple default <portgroup> elements (a and b), but only one default is allowed"),
    (NAT_BODY + "<portgroup name='a'/><portgroup name='a'/>",
     "multiple <portgroup> elements with the same name (a) in network 'pc'"),
])
def test_define_refuses_what_libvirts_network_driver_refuses(tmp_path, monkeypatch, body, message):
    async def never(self, obj, live):
        raise AssertionError("a refused network must not start")
    monkeypatch.setattr(NetworkDriver, "_start_live", never)     # create refuses before any interface
    conn = open_conn(tmp_path)
    xml = f"<network><name>pc</name>{body}</network>"
    for call in (conn.network_define_xml, conn.network_create_xml):
        with pytest.raises(libvirtError) as exc:
            run(call(xml))
        assert exc.value.get_error_code() == ErrorNumber.CONFIG_UNSUPPORTED
        assert exc.value.get_error_domain() == ErrorDomain.NETWORK
        assert exc.value.get_error_message() == "unsupported configuration: " + message
    assert not conn.driver.networks


@pytest.mark.parametrize("body", [
    NAT_BODY + "<bandwidth><inbound average='1'/><outbound average='2'/></bandwidth>"
               "<portgroup name='g'><bandwidth><inbound average='1'/></bandwidth></portgroup>",
    HOSTBR_BODY + "<bandwidth><inbound average='1'/></bandwidth>",
    HOSTBR_BODY + "<virtualport type='openvswitch'/><vlan trunk='yes'><tag id='5'/><tag id='6'/></vlan>",
    # a virtualport on a NAT network is refused only when a NIC takes a port
    NAT_BODY + "<virtualport type='openvswitch'/>",
])
def test_define_keeps_what_libvirts_network_driver_keeps(tmp_path, body):
    conn = open_conn(tmp_path)
    ref = run(conn.network_define_xml(f"<network><name>pc</name>{body}</network>"))
    xml = run(conn.network_get_xml_desc(ref, 0))
    for tag in ("<bandwidth>", "<vlan", "<virtualport"):
        assert (tag in body) == (tag in xml)


@pytest.mark.parametrize("body, message", [
    (NAT_BODY + "<virtualport type='openvswitch'/>",
     "<virtualport type='openvswitch'> not supported for network 'pc' which uses IP forwarding"),
    (NAT_BODY + "<portgroup name='g' default='yes'><virtualport type='midonet'/></portgroup>",
     "<virtualport type='midonet'> not supported for network 'pc' which uses IP forwarding"),
    (HOSTBR_BODY + "<virtualport type='openvswitch'/>",
     "network 'pc': pyvirt cannot plug a port with a <virtualport>"),
    (NAT_BODY + "<portgroup name='g' default='yes'><bandwidth><inbound average='1'/></bandwidth></portgroup>",
     "network 'pc': pyvirt cannot shape a port with its portgroup's <bandwidth>"),
])
def test_a_nic_port_is_refused_where_it_would_lack_the_networks_settings(tmp_path, body, message):
    conn = open_conn(tmp_path)
    run(conn.network_define_xml(f"<network><name>pc</name>{body}</network>"))
    obj = conn.driver.by_name("pc")
    obj.live = obj.config            # active as a previous daemon left it: no interfaces needed
    with pytest.raises(libvirtError) as exc:
        conn.driver.port_for("pc")
    assert exc.value.get_error_code() == ErrorNumber.CONFIG_UNSUPPORTED
    assert exc.value.get_error_message() == "unsupported configuration: " + message


@pytest.mark.parametrize("forward, code, message", [
    # libvirt defines and starts such a network and refuses only the port, in these words
    ("<forward mode='bridge'/>", ErrorNumber.INTERNAL_ERROR,
     "internal error: network 'mv' uses a direct mode, but has no forward dev and no interface pool"),
    ("<forward mode='bridge' dev='eth9'/>", ErrorNumber.CONFIG_UNSUPPORTED,
     "unsupported configuration: network 'mv' hands out macvtap devices, which pyvirt does not support"),
])
def test_a_bridge_mode_network_without_a_bridge_is_refused_a_port(tmp_path, forward, code, message):
    conn = open_conn(tmp_path)
    run(conn.network_define_xml(f"<network><name>mv</name>{forward}</network>"))
    obj = conn.driver.by_name("mv")
    assert obj.config.bridge is None           # no bridge made up for it, as libvirt's
    obj.live = obj.config
    with pytest.raises(libvirtError) as exc:
        conn.driver.port_for("mv")
    assert (exc.value.get_error_code(), exc.value.get_error_message()) == (code, message)
