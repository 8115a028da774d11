"""The network driver end to end: stock virsh and python3-libvirt against a real pyvirtd.

Every test runs its pyvirtd inside a network namespace it creates
(:func:`netns_daemon.netns_pyvirtd`): the bridges, addresses, dnsmasq and
nftables tables the networks make exist only there, and the namespace is
deleted at the end (its processes, dnsmasq included, killed by PID first),
also when the test fails.  The host's own interfaces and firewall are never
touched.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from netns_daemon import needs_netns, netns_pyvirtd, ns_run

pytestmark = [needs_netns, pytest.mark.skipif(
    not all(os.path.exists(p) for p in ("/usr/sbin/dnsmasq", "/usr/sbin/nft", "/usr/bin/virsh")),
    reason="needs dnsmasq-base, nftables and libvirt-clients")]

SYSTEM_PYTHON = "/usr/bin/python3"       # python3-libvirt is importable there

NAT_XML = """<network>
  <name>natnet</name>
  <forward mode='nat'/>
  <bridge name='pvbr1'/>
  <ip address='10.77.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.77.0.10' end='10.77.0.20'/>
      <host mac='52:54:00:00:00:01' name='h1' ip='10.77.0.5'/>
    </dhcp>
  </ip>
</network>
"""
ISOLATED_XML = """<network>
  <name>isolated</name>
  <bridge name='pvbr2'/>
  <ip address='10.78.0.1' prefix='24'>
    <dhcp>
      <range start='10.78.0.100' end='10.78.0.110'/>
    </dhcp>
  </ip>
</network>
"""
BRIDGE_XML = """<network>
  <name>hostbr</name>
  <forward mode='bridge'/>
  <bridge name='br-host'/>
</network>
"""


@pytest.fixture
def daemon(tmp_path):
    with netns_pyvirtd(tmp_path / "host", extra_config="default_network = 0") as d:
        yield d


def virsh(daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["virsh", "-c", daemon.uri, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, f"virsh {' '.join(args)}: {out.stderr}"
    return out


def define(daemon, tmp_path: Path, xml: str) -> None:
    path = tmp_path / f"net-{secrets.token_hex(3)}.xml"
    path.write_text(xml)
    virsh(daemon, "net-define", str(path))


def links(ns: str) -> dict[str, dict]:
    return {link["ifname"]: link for link in json.loads(ns_run(ns, "ip", "-json", "-details", "addr", "show").stdout)}


def nft_tables(ns: str) -> list[str]:
    out = ns_run(ns, "nft", "list", "tables").stdout
    return [line.split()[-1] for line in out.splitlines() if line.startswith("table ")]


def dnsmasq_pid(daemon, name: str) -> int | None:
    """The pid in the network's pid file, if that process is alive and is a dnsmasq."""
    try:
        pid = int((daemon.state_dir / "run" / "network" / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    return pid if exe.endswith("/dnsmasq") else None


def _is_dnsmasq(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/exe").endswith("/dnsmasq")
    except OSError:
        return False


def libvirt_python(daemon, code: str) -> str:
    """Run ``code`` with stock python3-libvirt, ``conn`` open on the daemon; its stdout."""
    prog = f"import libvirt, json\nconn = libvirt.open({daemon.uri!r})\n{code}"
    out = subprocess.run([SYSTEM_PYTHON, "-c", prog], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_nat_network_lifecycle_through_virsh(daemon, tmp_path):
    ns = daemon.netns
    define(daemon, tmp_path, NAT_XML)
    info = virsh(daemon, "net-info", "natnet").stdout
    assert "Active:         no" in info and "Persistent:     yes" in info and "Bridge:         pvbr1" in info
    assert "pvbr1" not in links(ns)
    assert (daemon.state_dir / "etc" / "network" / "natnet.xml").exists()

    assert virsh(daemon, "net-start", "natnet").stdout.strip() == "Network natnet started"
    bridge = links(ns)["pvbr1"]
    assert bridge["linkinfo"]["info_kind"] == "bridge" and "UP" in bridge["flags"]
    assert [(a["local"], a["prefixlen"]) for a in bridge["addr_info"] if a["family"] == "inet"] == \
        [("10.77.0.1", 24)]
    live = virsh(daemon, "net-dumpxml", "natnet").stdout
    assert "<port start='1024' end='65535'/>" in live
    assert f"<mac address='{bridge['address']}'/>" in live
    assert "<port " not in virsh(daemon, "net-dumpxml", "--inactive", "natnet").stdout
    assert "pyvirt_natnet" in nft_tables(ns)
    ruleset = ns_run(ns, "nft", "list", "table", "ip", "pyvirt_natnet").stdout
    assert 'oifname != "pvbr1" masquerade' in ruleset
    assert ns_run(ns, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    pid = dnsmasq_pid(daemon, "natnet")
    assert pid is not None
    conf = (daemon.state_dir / "run" / "network" / "natnet.conf").read_text()
    assert "interface=pvbr1\n" in conf and "dhcp-range=10.77.0.10,10.77.0.20,255.255.255.0\n" in conf
    assert "Active:         yes" in virsh(daemon, "net-info", "natnet").stdout

    again = virsh(daemon, "net-start", "natnet", check=False)
    assert again.returncode == 1
    assert "error: Requested operation is not valid: network is already active" in again.stderr

    update = virsh(daemon, "net-update", "natnet", "add", "ip-dhcp-host",
                   "<host mac='52:54:00:00:00:02' name='h2' ip='10.77.0.6'/>", "--live", "--config")
    assert update.stdout.strip() == "Updated network natnet persistent config and live state"
    hosts = (daemon.state_dir / "run" / "network" / "natnet.hostsfile").read_text()
    assert hosts == "52:54:00:00:00:01,10.77.0.5,h1\n52:54:00:00:00:02,10.77.0.6,h2\n"
    assert "name='h2'" in virsh(daemon, "net-dumpxml", "--inactive", "natnet").stdout
    assert dnsmasq_pid(daemon, "natnet") == pid             # re-read its hosts, not restarted

    virsh(daemon, "net-autostart", "natnet")
    listing = virsh(daemon, "net-list", "--all").stdout.splitlines()
    assert listing[2].split() == ["natnet", "active", "yes", "yes"]
    assert (daemon.state_dir / "etc" / "network" / "autostart" / "natnet").exists()
    virsh(daemon, "net-autostart", "--disable", "natnet")

    assert virsh(daemon, "net-destroy", "natnet").stdout.strip() == "Network natnet destroyed"
    assert "pvbr1" not in links(ns)
    assert "pyvirt_natnet" not in nft_tables(ns)
    assert dnsmasq_pid(daemon, "natnet") is None
    assert not _is_dnsmasq(pid)
    not_active = virsh(daemon, "net-destroy", "natnet", check=False)
    assert "error: Requested operation is not valid: network 'natnet' is not active" in not_active.stderr

    assert virsh(daemon, "net-undefine", "natnet").stdout.strip() == "Network natnet has been undefined"
    assert not (daemon.state_dir / "etc" / "network" / "natnet.xml").exists()
    missing = virsh(daemon, "net-info", "natnet", check=False)
    assert missing.returncode == 1
    assert "error: Network not found: no network with matching name 'natnet'" in missing.stderr


def test_isolated_network_has_dnsmasq_and_only_refuses_forwarding(daemon, tmp_path):
    define(daemon, tmp_path, ISOLATED_XML)
    virsh(daemon, "net-start", "isolated")
    ns = daemon.netns
    assert "pvbr2" in links(ns)
    rules = ns_run(ns, "nft", "list", "table", "ip", "pyvirt_isolated").stdout
    assert "masquerade" not in rules and 'oifname "pvbr2" reject' in rules and 'iifname "pvbr2" reject' in rules
    assert dnsmasq_pid(daemon, "isolated") is not None
    xml = virsh(daemon, "net-dumpxml", "isolated").stdout
    assert "<forward" not in xml and "<bridge name='pvbr2' stp='on' delay='0'/>" in xml
    virsh(daemon, "net-destroy", "isolated")
    assert "pvbr2" not in links(ns)
    assert "pyvirt_isolated" not in nft_tables(ns)


def test_bridge_mode_uses_an_existing_host_bridge_only(daemon, tmp_path):
    ns = daemon.netns
    define(daemon, tmp_path, BRIDGE_XML)
    refused = virsh(daemon, "net-start", "hostbr", check=False)
    assert refused.returncode == 1
    assert "error: Cannot get interface MTU on 'br-host': No such device" in refused.stderr
    ns_run(ns, "ip", "link", "add", "name", "br-host", "type", "bridge")
    virsh(daemon, "net-start", "hostbr")
    assert "Bridge:         br-host" in virsh(daemon, "net-info", "hostbr").stdout
    assert dnsmasq_pid(daemon, "hostbr") is None
    assert not [t for t in nft_tables(ns) if t.startswith("pyvirt_")]
    assert virsh(daemon, "net-dumpxml", "hostbr").stdout == """<network>
  <name>hostbr</name>
  <uuid>{}</uuid>
  <forward mode='bridge'/>
  <bridge name='br-host'/>
</network>

""".format(virsh(daemon, "net-uuid", "hostbr").stdout.strip())
    virsh(daemon, "net-destroy", "hostbr")
    assert "br-host" in links(ns)            # the host's bridge is not ours to delete


def test_collisions_are_refused_as_libvirt_refuses_them(daemon, tmp_path):
    ns = daemon.netns
    define(daemon, tmp_path, NAT_XML)
    # the same bridge name as another network: refused at define
    dup = tmp_path / "dup.xml"
    dup.write_text("<network><name>dup</name><bridge name='pvbr1'/></network>")
    out = virsh(daemon, "net-define", str(dup), check=False)
    assert "error: internal error: bridge name 'pvbr1' already in use." in out.stderr
    # the same name with another uuid
    out = virsh(daemon, "net-define", _write(tmp_path, NAT_XML), check=False)
    assert "error: operation failed: network 'natnet' already exists with uuid" in out.stderr
    # a subnet an active network routes already: refused at start
    virsh(daemon, "net-start", "natnet")
    define(daemon, tmp_path, "<network><name>clash</name><bridge name='pvbr7'/>"
                             "<ip address='10.77.0.1' prefix='24'/></network>")
    out = virsh(daemon, "net-start", "clash", check=False)
    assert "error: internal error: Network is already in use by interface pvbr1" in out.stderr
    assert "pvbr7" not in links(ns)
    # a bridge name a host interface already has
    ns_run(ns, "ip", "link", "add", "name", "pvbr8", "type", "veth", "peer", "name", "pvbr8p")
    define(daemon, tmp_path, "<network><name>taken</name><bridge name='pvbr8'/>"
                             "<ip address='10.99.0.1' prefix='24'/></network>")
    out = virsh(daemon, "net-start", "taken", check=False)
    assert "error: error creating bridge interface pvbr8: File exists" in out.stderr
    assert links(ns)["pvbr8"]["linkinfo"]["info_kind"] == "veth"       # left as it was
    assert dnsmasq_pid(daemon, "taken") is None
    # a network without a bridge name gets libvirt's next free virbrN
    define(daemon, tmp_path, "<network><name>auto</name><ip address='10.98.0.1' prefix='24'/></network>")
    assert "Bridge:         virbr0" in virsh(daemon, "net-info", "auto").stdout


def _write(tmp_path: Path, xml: str) -> str:
    path = tmp_path / f"x-{secrets.token_hex(3)}.xml"
    path.write_text(xml)
    return str(path)


def test_python3_libvirt_sees_libvirts_answers(daemon, tmp_path):
    define(daemon, tmp_path, NAT_XML)
    define(daemon, tmp_path, ISOLATED_XML)
    out = libvirt_python(daemon, """
net = conn.networkLookupByName('natnet')
net.create()
res = {
  'all': sorted(n.name() for n in conn.listAllNetworks(0)),
  'active': sorted(n.name() for n in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)),
  'inactive': conn.listDefinedNetworks(), 'running': conn.listNetworks(),
  'counts': [conn.numOfNetworks(), conn.numOfDefinedNetworks()],
  'bridge': net.bridgeName(), 'flags': [net.isActive(), net.isPersistent(), net.autostart()],
  'by_uuid': conn.networkLookupByUUIDString(net.UUIDString()).name(),
  'leases': net.DHCPLeases(),
}
errors = []
for call in (lambda: conn.networkLookupByName('nope'),
             lambda: conn.networkLookupByUUIDString('00000000-0000-0000-0000-000000000001'),
             lambda: conn.networkLookupByName('isolated').destroy(),
             lambda: conn.networkDefineXML('<network><name>a/b</name></network>'),
             lambda: conn.networkCreateXMLFlags('<network><name>x</name></network>', 1234)):
    try:
        call()
    except libvirt.libvirtError as e:
        errors.append([e.get_error_code(), e.get_error_domain(), e.get_error_message()])
res['errors'] = errors
t = conn.networkCreateXML("<network><name>transient</name><bridge name='pvbr5'/></network>")
res['transient'] = [t.isActive(), t.isPersistent()]
t.destroy()
res['after'] = sorted(n.name() for n in conn.listAllNetworks(0))
net.destroy()
print(json.dumps(res))
""")
    res = json.loads(out)
    assert res["all"] == ["isolated", "natnet"] and res["active"] == ["natnet"]
    assert res["inactive"] == ["isolated"] and res["running"] == ["natnet"]
    assert res["counts"] == [1, 1] and res["bridge"] == "pvbr1" and res["flags"] == [1, 1, 0]
    assert res["by_uuid"] == "natnet" and res["leases"] == []
    # the codes, domains and texts libvirtd 9.0 gave for the same calls
    assert res["errors"] == [
        [43, 19, "Network not found: no network with matching name 'nope'"],
        [43, 19, "Network not found: no network with matching uuid '00000000-0000-0000-0000-000000000001'"],
        [55, 19, "Requested operation is not valid: network 'isolated' is not active"],
        [35, 5, "invalid char in name: /"],
        [8, 19, "unsupported flags (0x4d2) in function networkCreateXMLFlags"],
    ]
    assert res["transient"] == [1, 0] and res["after"] == ["isolated", "natnet"]


@contextmanager
def client_namespace(daemon, mac: str, bridge: str = "pvbr1"):
    """A second namespace joined to the daemon's by a veth pair: one end on ``bridge``, the other
    (with ``mac``) in the client namespace.  Deleted at the end, also on failure."""
    client = f"pyvirt-dhcp-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", client], check=True, timeout=30)
    try:
        ns_run(daemon.netns, "ip", "link", "add", "name", "vport0", "type", "veth", "peer", "name", "vclient0")
        ns_run(daemon.netns, "ip", "link", "set", "dev", "vclient0", "netns", client)
        ns_run(daemon.netns, "ip", "link", "set", "dev", "vport0", "master", bridge, "up")
        ns_run(client, "ip", "link", "set", "dev", "vclient0", "address", mac, "up")
        yield client
    finally:
        out = subprocess.run(["ip", "netns", "pids", client], capture_output=True, text=True, timeout=30)
        for pid in out.stdout.split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "delete", client], timeout=30)


@pytest.mark.skipif(not os.path.exists("/usr/bin/busybox"), reason="needs busybox (udhcpc)")
def test_dnsmasq_answers_dhcp_and_net_dhcp_leases_lists_the_lease(daemon, tmp_path):
    define(daemon, tmp_path, NAT_XML)
    virsh(daemon, "net-start", "natnet")
    mac = "52:54:00:12:34:56"
    with client_namespace(daemon, mac) as client:
        # -n: fail instead of backgrounding; -t/-T: retries while the bridge port starts forwarding
        got = ns_run(client, "busybox", "udhcpc", "-i", "vclient0", "-n", "-q", "-f", "-t", "10", "-T", "2",
                     "-s", "/bin/true", "-x", "hostname:guest1", check=False)
        assert got.returncode == 0, got.stdout + got.stderr
        text = got.stdout + got.stderr
        assert "obtained" in text
        address = text.split("lease of ", 1)[1].split()[0]
        assert address.startswith("10.77.0.") and 10 <= int(address.rsplit(".", 1)[1]) <= 20

        table = virsh(daemon, "net-dhcp-leases", "natnet").stdout.splitlines()
        assert table[0].split() == ["Expiry", "Time", "MAC", "address", "Protocol", "IP", "address",
                                    "Hostname", "Client", "ID", "or", "DUID"]
        rows = [line.split() for line in table[2:] if line.strip()]
        assert len(rows) == 1
        row = rows[0]
        assert row[2:6] == [mac, "ipv4", f"{address}/24", "guest1"]
        only = virsh(daemon, "net-dhcp-leases", "natnet", "--mac", mac).stdout
        assert address in only
        assert address not in virsh(daemon, "net-dhcp-leases", "natnet", "--mac", "52:54:00:99:99:99").stdout
        leases = json.loads(libvirt_python(daemon, "print(json.dumps(conn.networkLookupByName('natnet').DHCPLeases()))"))
        assert len(leases) == 1
        lease = leases[0]
        assert (lease["iface"], lease["mac"], lease["ipaddr"], lease["prefix"], lease["hostname"], lease["type"]) == \
            ("pvbr1", mac, address, 24, "guest1", 0)
        assert lease["expirytime"] > time.time()

        # a host entry added to the running network is what dnsmasq hands that MAC next
        virsh(daemon, "net-update", "natnet", "add", "ip-dhcp-host",
              f"<host mac='{mac}' name='fixed' ip='10.77.0.7'/>", "--live")
        again = ns_run(client, "busybox", "udhcpc", "-i", "vclient0", "-n", "-q", "-f", "-t", "10", "-T", "2",
                       "-s", "/bin/true", check=False)
        assert "lease of 10.77.0.7 obtained" in again.stdout + again.stderr, again.stdout + again.stderr


def test_restart_adopts_active_networks_and_starts_autostart_ones(tmp_path):
    with netns_pyvirtd(tmp_path / "host", extra_config="default_network = 0") as daemon:
        define(daemon, tmp_path, NAT_XML)
        define(daemon, tmp_path, ISOLATED_XML)
        virsh(daemon, "net-start", "natnet")
        virsh(daemon, "net-autostart", "isolated")
        pid = dnsmasq_pid(daemon, "natnet")
        assert pid is not None
        ifindex = links(daemon.netns)["pvbr1"]["ifindex"]

        daemon.stop(signal_kill())            # no clean shutdown at all
        daemon.start()
        info = virsh(daemon, "net-info", "natnet").stdout
        assert "Active:         yes" in info
        assert dnsmasq_pid(daemon, "natnet") == pid                  # the same dnsmasq, kept
        assert links(daemon.netns)["pvbr1"]["ifindex"] == ifindex    # the same bridge, kept
        assert "pyvirt_natnet" in nft_tables(daemon.netns)
        assert "Active:         yes" in virsh(daemon, "net-info", "isolated").stdout   # autostarted
        assert dnsmasq_pid(daemon, "isolated") is not None

        virsh(daemon, "net-destroy", "natnet")
        assert "pvbr1" not in links(daemon.netns) and dnsmasq_pid(daemon, "natnet") is None


def signal_kill() -> int:
    import signal
    return signal.SIGKILL


def test_default_network_is_defined_on_first_start_but_not_started(tmp_path):
    with netns_pyvirtd(tmp_path / "host") as daemon:
        listing = virsh(daemon, "net-list", "--all").stdout.splitlines()
        assert listing[2].split() == ["default", "inactive", "no", "yes"]
        xml = virsh(daemon, "net-dumpxml", "default").stdout
        assert "<bridge name='virbr0' stp='on' delay='0'/>" in xml
        assert "<range start='192.168.122.2' end='192.168.122.254'/>" in xml
        assert "virbr0" not in links(daemon.netns)
        # once undefined it stays so: only a first start defines it
        virsh(daemon, "net-undefine", "default")
        daemon.stop()
        daemon.start()
        assert "default" not in virsh(daemon, "net-list", "--all", "--name").stdout


def test_lifecycle_events_reach_python3_libvirt(daemon, tmp_path):
    """DEFINED, STARTED, STOPPED, UNDEFINED (detail 0), as libvirtd sends them, to a client's
    networkEventRegisterAny callback; the client waits on a condition, never on a timer."""
    path = _write(tmp_path, NAT_XML)
    out = libvirt_python(daemon, f"""
import threading
libvirt.virEventRegisterDefaultImpl()
conn = libvirt.open({daemon.uri!r})
def loop():
    while True:
        libvirt.virEventRunDefaultImpl()
threading.Thread(target=loop, daemon=True).start()
seen, cond = [], threading.Condition()
def callback(conn, net, event, detail, opaque):
    with cond:
        seen.append([net.name(), event, detail])
        cond.notify_all()
try:
    conn.networkEventRegisterAny(None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE, callback, None)
except libvirt.libvirtError as e:
    print(json.dumps({{"unsupported": str(e)}}))
    raise SystemExit(0)
net = conn.networkDefineXML(open({path!r}).read())
net.create()
net.destroy()
net.undefine()
with cond:
    cond.wait_for(lambda: len(seen) >= 4, timeout=30)
print(json.dumps({{"seen": seen}}))
""")
    res = json.loads(out)
    if "unsupported" in res:
        pytest.skip(f"the daemon does not deliver network events yet: {res['unsupported']}")
    assert res["seen"] == [["natnet", 0, 0], ["natnet", 2, 0], ["natnet", 3, 0], ["natnet", 1, 0]]


def test_read_only_connection_reads_networks_but_changes_nothing(daemon, tmp_path):
    define(daemon, tmp_path, ISOLATED_XML)
    ro = daemon.unix_ro_uri
    listing = subprocess.run(["virsh", "-r", "-c", ro, "net-list", "--all", "--name"], capture_output=True,
                             text=True, timeout=60)
    assert listing.returncode == 0 and listing.stdout.split() == ["isolated"]
    assert "<name>isolated</name>" in subprocess.run(["virsh", "-r", "-c", ro, "net-dumpxml", "isolated"],
                                                     capture_output=True, text=True, timeout=60).stdout
    for command in (["net-start", "isolated"], ["net-undefine", "isolated"], ["net-autostart", "isolated"]):
        out = subprocess.run(["virsh", "-r", "-c", ro, *command], capture_output=True, text=True, timeout=60)
        assert out.returncode == 1
        assert "operation forbidden: read only access prevents" in out.stderr, out.stderr
    assert "pvbr2" not in links(daemon.netns)
    assert "inactive" in virsh(daemon, "net-list", "--all").stdout


def test_restart_restarts_a_dead_dnsmasq_and_forgets_a_network_whose_bridge_went(tmp_path):
    with netns_pyvirtd(tmp_path / "host", extra_config="default_network = 0") as daemon:
        define(daemon, tmp_path, NAT_XML)
        define(daemon, tmp_path, ISOLATED_XML)
        virsh(daemon, "net-start", "natnet")
        virsh(daemon, "net-start", "isolated")
        old = dnsmasq_pid(daemon, "natnet")
        assert old is not None
        daemon.stop()
        os.kill(old, 9)                                        # the dnsmasq we started, by its pid
        ns_run(daemon.netns, "ip", "link", "del", "dev", "pvbr2")   # isolated's bridge removed by hand
        daemon.start()
        assert "Active:         yes" in virsh(daemon, "net-info", "natnet").stdout
        new = dnsmasq_pid(daemon, "natnet")
        assert new is not None and new != old
        assert "Active:         no" in virsh(daemon, "net-info", "isolated").stdout
        assert dnsmasq_pid(daemon, "isolated") is None
        assert "pyvirt_isolated" not in nft_tables(daemon.netns)
        virsh(daemon, "net-start", "isolated")                 # and it starts again cleanly
        assert "pvbr2" in links(daemon.netns)


def wait_until_forwarding(ns: str, port: str, timeout: float = 60.0) -> None:
    """A new port of an STP bridge passes frames only after listening and learning: poll the
    kernel's port state (the observable condition itself) until it says forwarding."""
    deadline = time.monotonic() + timeout
    while True:
        link = json.loads(ns_run(ns, "ip", "-json", "-details", "link", "show", "dev", port).stdout)[0]
        if link.get("linkinfo", {}).get("info_slave_data", {}).get("state") == "forwarding":
            return
        assert time.monotonic() < deadline, f"{port} never reached the forwarding state: {link}"
        time.sleep(0.1)


@pytest.mark.skipif(not os.path.exists("/usr/bin/busybox"), reason="needs busybox (nslookup)")
def test_dnsmasq_answers_dns_for_dns_hosts_in_the_network_domain(daemon, tmp_path):
    define(daemon, tmp_path, NAT_XML.replace("  <ip ", "  <domain name='lab.test'/>\n  <dns>\n"
                                             "    <host ip='10.77.0.50'><hostname>web</hostname></host>\n"
                                             "  </dns>\n  <ip ", 1))
    virsh(daemon, "net-start", "natnet")
    with client_namespace(daemon, "52:54:00:12:34:57") as client:
        ns_run(client, "ip", "addr", "add", "10.77.0.30/24", "dev", "vclient0")
        wait_until_forwarding(daemon.netns, "vport0")
        out = ns_run(client, "busybox", "nslookup", "web", "10.77.0.1", check=False)
        assert "10.77.0.50" in out.stdout, out.stdout + out.stderr
        full = ns_run(client, "busybox", "nslookup", "web.lab.test", "10.77.0.1", check=False)
        assert "10.77.0.50" in full.stdout, full.stdout + full.stderr


@pytest.mark.skipif(not os.path.exists("/usr/bin/busybox"), reason="needs busybox (nslookup)")
def test_live_range_txt_and_srv_updates_are_served_by_the_restarted_dnsmasq(daemon, tmp_path):
    define(daemon, tmp_path, NAT_XML.replace("  <ip ", "  <domain name='lab.test'/>\n  <ip ", 1))
    virsh(daemon, "net-start", "natnet")
    virsh(daemon, "net-update", "natnet", "add", "dns-txt", "<txt name='motd.lab.test' value='hello'/>",
          "--live", "--config")
    virsh(daemon, "net-update", "natnet", "add", "dns-srv",
          "<srv service='ldap' protocol='tcp' domain='lab.test' target='dir.lab.test' port='389' "
          "priority='10' weight='5'/>", "--live")
    virsh(daemon, "net-update", "natnet", "add", "ip-dhcp-range", "<range start='10.77.0.40' end='10.77.0.49'/>",
          "--live")
    dumped = virsh(daemon, "net-dumpxml", "natnet").stdout
    assert "<range start='10.77.0.40' end='10.77.0.49'/>" in dumped
    assert "<txt name='motd.lab.test' value='hello'/>" in dumped
    assert "target='dir.lab.test' port='389' priority='10' weight='5'/>" in dumped
    with client_namespace(daemon, "52:54:00:12:34:58") as client:
        ns_run(client, "ip", "addr", "add", "10.77.0.31/24", "dev", "vclient0")
        wait_until_forwarding(daemon.netns, "vport0")
        txt = ns_run(client, "busybox", "nslookup", "-type=txt", "motd.lab.test", "10.77.0.1", check=False)
        assert "hello" in txt.stdout, txt.stdout + txt.stderr
        srv = ns_run(client, "busybox", "nslookup", "-type=srv", "_ldap._tcp.lab.test", "10.77.0.1", check=False)
        assert "dir.lab.test" in srv.stdout and "389" in srv.stdout, srv.stdout + srv.stderr
    # only the TXT record was asked for the persistent definition too
    inactive = virsh(daemon, "net-dumpxml", "natnet", "--inactive").stdout
    assert "<txt name='motd.lab.test'" in inactive and "<srv " not in inactive


@contextmanager
def namespace(prefix: str):
    name = f"{prefix}-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        yield name
    finally:
        out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30)
        for pid in out.stdout.split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "delete", name], timeout=30)


PEER_PRINTER = """
import socket, sys
s = socket.socket()
s.bind(("192.0.2.1", 9000))
s.listen(1)
print("listening", flush=True)
s.settimeout(60)
conn, peer = s.accept()
print(peer[0], flush=True)
"""


@pytest.mark.skipif(not os.path.exists("/usr/bin/busybox"), reason="needs busybox (nc)")
def test_nat_masquerades_the_subnet_toward_another_interface(daemon, tmp_path):
    """A client on the bridge reaches a host beyond the daemon's other interface, which sees the
    daemon's address, not the client's: the network's nftables table masqueraded it."""
    define(daemon, tmp_path, NAT_XML)
    virsh(daemon, "net-start", "natnet")
    with namespace("pyvirt-outside") as outside, client_namespace(daemon, "52:54:00:12:34:58") as client:
        ns_run(daemon.netns, "ip", "link", "add", "name", "up0", "type", "veth", "peer", "name", "out0")
        ns_run(daemon.netns, "ip", "link", "set", "dev", "out0", "netns", outside)
        ns_run(daemon.netns, "ip", "addr", "add", "192.0.2.2/24", "dev", "up0")
        ns_run(daemon.netns, "ip", "link", "set", "dev", "up0", "up")
        ns_run(outside, "ip", "addr", "add", "192.0.2.1/24", "dev", "out0")
        ns_run(outside, "ip", "link", "set", "dev", "out0", "up")
        ns_run(client, "ip", "addr", "add", "10.77.0.30/24", "dev", "vclient0")
        ns_run(client, "ip", "route", "add", "default", "via", "10.77.0.1")
        wait_until_forwarding(daemon.netns, "vport0")
        listener = subprocess.Popen(["ip", "netns", "exec", outside, SYSTEM_PYTHON, "-c", PEER_PRINTER],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert listener.stdout.readline().strip() == "listening"
            sent = ns_run(client, "busybox", "nc", "-w", "10", "192.0.2.1", "9000", check=False)
            assert sent.returncode == 0, sent.stderr
            assert listener.stdout.readline().strip() == "192.0.2.2"     # masqueraded, not 10.77.0.30
        finally:
            listener.kill()
            listener.wait()


@pytest.mark.skipif(not os.path.exists("/usr/bin/busybox"), reason="needs busybox (nc)")
def test_isolated_network_reaches_nothing_beyond_even_when_the_host_forwards(daemon, tmp_path):
    define(daemon, tmp_path, NAT_XML)
    define(daemon, tmp_path, ISOLATED_XML)
    virsh(daemon, "net-start", "natnet")          # switches IPv4 forwarding on
    virsh(daemon, "net-start", "isolated")
    with namespace("pyvirt-outside") as outside, \
            client_namespace(daemon, "52:54:00:12:34:59", bridge="pvbr2") as client:
        ns_run(daemon.netns, "ip", "link", "add", "name", "up0", "type", "veth", "peer", "name", "out0")
        ns_run(daemon.netns, "ip", "link", "set", "dev", "out0", "netns", outside)
        ns_run(daemon.netns, "ip", "addr", "add", "192.0.2.2/24", "dev", "up0")
        ns_run(daemon.netns, "ip", "link", "set", "dev", "up0", "up")
        ns_run(outside, "ip", "addr", "add", "192.0.2.1/24", "dev", "out0")
        ns_run(outside, "ip", "link", "set", "dev", "out0", "up")
        ns_run(outside, "ip", "route", "add", "10.78.0.0/24", "via", "192.0.2.2")   # only the firewall stops it
        ns_run(client, "ip", "addr", "add", "10.78.0.30/24", "dev", "vclient0")
        ns_run(client, "ip", "route", "add", "default", "via", "10.78.0.1")
        wait_until_forwarding(daemon.netns, "vport0")
        listener = subprocess.Popen(["ip", "netns", "exec", outside, SYSTEM_PYTHON, "-c", PEER_PRINTER],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert listener.stdout.readline().strip() == "listening"
            # the host itself answers (its dnsmasq on the bridge address, even if only to refuse) ...
            asked = ns_run(client, "busybox", "nslookup", "localhost", "10.78.0.1", check=False)
            assert "Server:" in asked.stdout and "no servers could be reached" not in asked.stdout + asked.stderr
            # ... the outside is not: the isolated table rejects the forward
            sent = ns_run(client, "busybox", "nc", "-w", "5", "192.0.2.1", "9000", check=False)
            assert sent.returncode != 0
        finally:
            listener.kill()
            listener.wait()


SHAPED_XML = """<network>
  <name>shaped</name>
  <forward mode='nat'/>
  <bridge name='pvbr7'/>
  <bandwidth>
    <inbound average='1000' peak='2000' burst='256'/>
    <outbound average='500'/>
  </bandwidth>
  <ip address='10.79.0.1' prefix='24'/>
</network>
"""


def _kernel_shapes(ns: str) -> bool:
    """Whether this kernel has every tc piece libvirt's shaping uses (HTB, SFQ, the fw and u32
    classifiers, the police action), tried on a scratch bridge inside the namespace."""
    ns_run(ns, "ip", "link", "add", "name", "pvtcprobe", "type", "bridge")
    try:
        tries = [["qdisc", "add", "dev", "pvtcprobe", "root", "handle", "1:", "htb", "default", "2"],
                 ["qdisc", "add", "dev", "pvtcprobe", "parent", "1:", "handle", "2:", "sfq"],
                 ["filter", "add", "dev", "pvtcprobe", "parent", "1:0", "protocol", "all", "prio", "1",
                  "handle", "1", "fw", "flowid", "1"],
                 ["qdisc", "add", "dev", "pvtcprobe", "ingress"],
                 ["filter", "add", "dev", "pvtcprobe", "parent", "ffff:", "protocol", "all", "u32", "match",
                  "u32", "0", "0", "police", "rate", "1kbps", "burst", "1kb", "drop", "flowid", ":1"]]
        return all(ns_run(ns, "tc", *argv, check=False).returncode == 0 for argv in tries)
    finally:
        ns_run(ns, "ip", "link", "del", "pvtcprobe")


def test_network_bandwidth_shapes_its_bridge_with_tc(daemon, tmp_path):
    """libvirt's tc setup on the bridge: the guests' inbound as an HTB tree on its egress, their
    outbound policed on its ingress.  On a kernel without those schedulers the start fails with
    tc's own error, as libvirt's does, and leaves nothing behind."""
    ns = daemon.netns
    define(daemon, tmp_path, SHAPED_XML)
    if not _kernel_shapes(ns):
        refused = virsh(daemon, "net-start", "shaped", check=False)
        assert refused.returncode == 1
        assert "error: internal error: Child process (/usr/sbin/tc " in refused.stderr
        assert "pvbr7" not in links(ns)
        assert "Active:         no" in virsh(daemon, "net-info", "shaped").stdout
        return
    virsh(daemon, "net-start", "shaped")
    qdiscs = ns_run(ns, "tc", "qdisc", "show", "dev", "pvbr7").stdout
    assert "qdisc htb 1: root" in qdiscs and "default 0x2" in qdiscs
    assert "qdisc sfq 2: parent 1:2" in qdiscs and "qdisc ingress ffff:" in qdiscs
    classes = ns_run(ns, "tc", "class", "show", "dev", "pvbr7").stdout
    assert "class htb 1:1 root" in classes and "class htb 1:2 parent 1:1" in classes
    police = ns_run(ns, "tc", "filter", "show", "dev", "pvbr7", "ingress").stdout
    assert "police" in police and "drop" in police
    assert "<inbound average='1000' peak='2000' burst='256'/>" in virsh(daemon, "net-dumpxml", "shaped").stdout
    virsh(daemon, "net-destroy", "shaped")
    assert "pvbr7" not in links(ns)


def test_bridge_network_bandwidth_is_set_on_the_host_bridge_and_cleared(daemon, tmp_path):
    """libvirt shapes a bridge network's host bridge too; a start that fails leaves it unshaped."""
    ns = daemon.netns
    define(daemon, tmp_path, BRIDGE_XML.replace("</network>", "<bandwidth><inbound average='64'/></bandwidth>"
                                                              "</network>"))
    ns_run(ns, "ip", "link", "add", "name", "br-host", "type", "bridge")
    shapes = _kernel_shapes(ns)
    started = virsh(daemon, "net-start", "hostbr", check=False)
    assert started.returncode == (0 if shapes else 1), started.stderr
    if shapes:
        assert "qdisc htb 1: root" in ns_run(ns, "tc", "qdisc", "show", "dev", "br-host").stdout
        virsh(daemon, "net-destroy", "hostbr")
    else:
        assert "Child process (/usr/sbin/tc " in started.stderr
    assert "htb" not in ns_run(ns, "tc", "qdisc", "show", "dev", "br-host").stdout
    assert "br-host" in links(ns)            # the host's bridge is not ours to delete
