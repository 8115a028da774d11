"""Network XML, dnsmasq's configuration and the nftables rules, one layer at a time.

The expected texts are what libvirtd 9.0 wrote for the same definitions
(``net-dumpxml`` and its dnsmasq ``NAME.conf``), recorded on this machine.
"""

from __future__ import annotations


import pytest

from pyvirt.conf import network as netconf
from pyvirt.drivers.network import dnsmasq, firewall
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError

NAT = """<network><name>natnet</name><uuid>58e3ae37-d015-45f4-906e-26418b008453</uuid>
<forward mode='nat'/><bridge name='pvbr1'/><mac address='52:54:00:ee:fc:21'/>
<ip address='10.77.0.1' netmask='255.255.255.0'><dhcp><range start='10.77.0.10' end='10.77.0.20'/>
<host mac='52:54:00:00:00:01' name='h1' ip='10.77.0.5'/></dhcp></ip></network>"""

# libvirtd 9.0's net-dumpxml --inactive of NAT once defined (bridge stp/delay filled in)
NAT_DUMP = """<network>
  <name>natnet</name>
  <uuid>58e3ae37-d015-45f4-906e-26418b008453</uuid>
  <forward mode='nat'/>
  <bridge name='pvbr1' stp='on' delay='0'/>
  <mac address='52:54:00:ee:fc:21'/>
  <ip address='10.77.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.77.0.10' end='10.77.0.20'/>
      <host mac='52:54:00:00:00:01' name='h1' ip='10.77.0.5'/>
    </dhcp>
  </ip>
</network>
"""

# libvirtd 9.0's dnsmasq configuration for NAT (paths aside)
NAT_DNSMASQ = """strict-order
pid-file=RUN/natnet.pid
except-interface=lo
bind-dynamic
interface=pvbr1
dhcp-range=10.77.0.10,10.77.0.20,255.255.255.0
dhcp-no-override
dhcp-authoritative
dhcp-lease-max=11
dhcp-hostsfile=RUN/natnet.hostsfile
addn-hosts=RUN/natnet.addnhosts
"""


def test_nat_definition_reads_and_writes_as_libvirtd():
    assert netconf.parse(NAT).to_xml() == NAT_DUMP
    assert netconf.parse(NAT_DUMP).to_xml() == NAT_DUMP


def test_isolated_ip_without_dhcp_is_written_open_and_closed_as_libvirtd():
    net = netconf.parse("<network><name>iso</name><uuid>3cc43c8b-9cfc-4d53-b456-46221b5edfd2</uuid>"
                        "<bridge name='virbr0'/><ip address='10.78.0.1' prefix='24'/></network>")
    assert net.forward is None and net.virtual
    assert net.to_xml() == """<network>
  <name>iso</name>
  <uuid>3cc43c8b-9cfc-4d53-b456-46221b5edfd2</uuid>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='10.78.0.1' prefix='24'>
  </ip>
</network>
"""


def test_bridge_mode_has_no_stp_attributes():
    net = netconf.parse("<network><name>brnet</name><uuid>4392a643-74a6-4ec5-9d52-cf5ae7a894ce</uuid>"
                        "<forward mode='bridge'/><bridge name='br-host'/></network>")
    assert not net.virtual
    assert net.to_xml() == """<network>
  <name>brnet</name>
  <uuid>4392a643-74a6-4ec5-9d52-cf5ae7a894ce</uuid>
  <forward mode='bridge'/>
  <bridge name='br-host'/>
</network>
"""


def test_live_nat_definition_states_the_port_range():
    net = netconf.parse(NAT)
    net.nat_ports = firewall.DEFAULT_NAT_PORTS
    assert "<forward mode='nat'>\n    <nat>\n      <port start='1024' end='65535'/>\n    </nat>\n  </forward>" \
        in net.to_xml()
    assert netconf.parse(net.to_xml()).nat_ports == (1024, 65535)


def test_default_network_is_libvirts():
    net = netconf.default_network()
    assert (net.name, net.forward, net.bridge) == ("default", "nat", "virbr0")
    ip = net.ipv4()
    assert ip is not None
    assert (ip.address, ip.netmask, ip.ranges) == ("192.168.122.1", "255.255.255.0",
                                                   [("192.168.122.2", "192.168.122.254")])


@pytest.mark.parametrize("xml, code, domain, message", [
    ("<network></network>", ErrorNumber.NO_NAME, ErrorDomain.NETWORK, "missing name information"),
    ("<network><name>a/b</name></network>", ErrorNumber.XML_DETAIL, ErrorDomain.XML,
     "invalid char in name: /"),
    ("<network><name>m2</name><forward mode='bogus'/></network>", ErrorNumber.CONFIG_UNSUPPORTED,
     ErrorDomain.NETWORK, "unsupported configuration: unknown forwarding type 'bogus'"),
    ("<network><name>r</name><ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.1.2' "
     "end='10.0.1.9'/></dhcp></ip></network>", ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.NETWORK,
     "unsupported configuration: range 10.0.1.2 - 10.0.1.9 is not entirely within network 10.0.0.1/24"),
    ("<network><name>p40</name><ip address='10.0.0.1' prefix='40'/></network>", ErrorNumber.CONFIG_UNSUPPORTED,
     ErrorDomain.NETWORK, "unsupported configuration: Invalid IPv4 prefix '40' in network 'p40'"),
    ("<domain/>", ErrorNumber.XML_ERROR, ErrorDomain.XML,
     "XML error: expecting root element of 'network', not 'domain'"),
])
def test_bad_definitions_get_libvirts_errors(xml, code, domain, message):
    with pytest.raises(libvirtError) as exc:
        netconf.parse(xml)
    assert exc.value.get_error_code() == code
    assert exc.value.get_error_domain() == domain
    assert exc.value.get_error_message() == message


def test_dnsmasq_configuration_has_libvirts_options(tmp_path):
    files = dnsmasq.Files(tmp_path, "natnet")
    text = dnsmasq.config_text(netconf.parse(NAT), files)
    options = [line for line in text.splitlines() if not line.startswith("#")]
    ours = {"user=root", f"dhcp-leasefile={files.leases}"}     # pyvirt keeps leases in dnsmasq's file
    assert [o for o in options if o not in ours] == \
        NAT_DNSMASQ.replace("RUN", str(tmp_path)).splitlines()
    assert dnsmasq.hostsfile_text(netconf.parse(NAT)) == "52:54:00:00:00:01,10.77.0.5,h1\n"


def test_lease_file_lines_become_lease_records(tmp_path):
    files = dnsmasq.Files(tmp_path, "n")
    files.leases.write_text("1999999999 52:54:00:aa:bb:01 10.77.0.12 guest1 01:52:54:00:aa:bb:01\n"
                            "1999999998 52:54:00:aa:bb:02 10.77.0.13 * *\n"
                            "duid 00:01:00:01:2c:aa\n")
    assert dnsmasq.read_leases(files) == [
        (1999999999, "52:54:00:aa:bb:01", "10.77.0.12", "guest1", "01:52:54:00:aa:bb:01"),
        (1999999998, "52:54:00:aa:bb:02", "10.77.0.13", None, None)]
    assert dnsmasq.read_leases(dnsmasq.Files(tmp_path, "missing")) == []


def test_nft_rules_masquerade_the_subnet_out_of_any_other_interface():
    net = netconf.parse(NAT)
    rules = firewall.ruleset(net)
    assert rules.startswith("table ip pyvirt_natnet {")
    assert 'ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 oifname != "pvbr1" masquerade\n' in rules
    assert 'masquerade to :1024-65535' in rules
    assert 'iifname "pvbr1" ip saddr 10.77.0.0/24 accept' in rules
    assert firewall.needed(net)
    isolated = netconf.parse("<network><name>i</name><bridge name='pvi'/><ip address='10.1.0.1' prefix='24'/></network>")
    assert firewall.needed(isolated)
    refusals = firewall.ruleset(isolated)
    assert "masquerade" not in refusals and "accept\n    oifname \"pvi\" reject\n    iifname \"pvi\" reject" in refusals
    assert not firewall.needed(netconf.parse(
        "<network><name>b</name><forward mode='bridge'/><bridge name='br0'/></network>"))


def test_nft_table_names_stay_nft_identifiers():
    assert firewall.table_name("default") == "pyvirt_default"
    odd = firewall.table_name("my-net.1")
    assert odd.startswith("pyvirt_my_net_1_") and odd != firewall.table_name("my_net_1")


def test_route_collision_reads_proc_net_route(tmp_path, monkeypatch):
    import ipaddress
    from pyvirt.drivers.network import netdev
    route = tmp_path / "route"
    # 10.77.0.0/24 on pvbr1 (the kernel's host-order hex of network-order words)
    route.write_text("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
                     "pvbr1\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    monkeypatch.setattr(netdev, "PROC_NET_ROUTE", str(route))
    with pytest.raises(libvirtError) as exc:
        netdev.check_route_collision(ipaddress.IPv4Network("10.77.0.0/24"), "pvbr2")
    assert exc.value.get_error_message() == "internal error: Network is already in use by interface pvbr1"
    netdev.check_route_collision(ipaddress.IPv4Network("10.77.0.0/24"), "pvbr1")    # its own bridge
    netdev.check_route_collision(ipaddress.IPv4Network("10.78.0.0/24"), "pvbr2")


def test_a_bridge_name_nft_cannot_quote_is_refused_not_written():
    net = netconf.parse(NAT.replace("pvbr1", 'a";flush'))
    with pytest.raises(libvirtError) as exc:
        firewall.ruleset(net)
    assert exc.value.get_error_code() == ErrorNumber.SYSTEM_ERROR


def test_forward_dev_limits_masquerading_to_that_interface():
    rules = firewall.ruleset(netconf.parse(NAT.replace("<forward mode='nat'/>", "<forward mode='nat' dev='eth9'/>")))
    assert 'ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 oifname "eth9" masquerade\n' in rules
    assert 'oifname != ' not in rules
