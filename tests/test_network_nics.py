"""Guest NICs on virtual networks and plain taps, with real QEMU, pyvirtd in a network namespace.

pyvirtd runs inside a network namespace the test makes (netns_daemon), so
the network's bridge, the guests' taps and the test's own tap exist only
there; the namespace and everything in it goes at the end, also on failure.

* ``<interface type='network'>``: the tap (``vnetN``, the guest's MAC with
  0xFE first) is on the network's bridge; the live XML shows
  ``<source network=... bridge=...>`` and ``<target dev='vnetN'/>`` as libvirt;
  domifstat answers for it; the network destroyed and started again gets the
  tap back, and so does a restarted daemon whose tap had lost its bridge.
* ``<interface type='ethernet'>``: a tap of the daemon's on no bridge, and a
  tap the test made (``managed='no'``), which stays when the guest stops while
  the daemon's taps go.
* A network in bridge mode puts the tap on the host bridge it names.
* A NIC on an inactive network stops the start with the network driver's error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guests import qemu_available, tiny_xml, wait_for
from netns_daemon import needs_netns, netns_pyvirtd, ns_run

pytestmark = [needs_netns, pytest.mark.skipif(
    not (qemu_available() and shutil.which("virsh") and os.path.exists("/usr/sbin/dnsmasq")),
    reason="needs QEMU, stock virsh and dnsmasq-base")]

GUEST_UUID = "0e4b7c52-1d3a-4f65-9a0b-7c2d3e4f5a61"
NET_MAC = "52:54:00:4e:00:01"
ETH_MAC = "52:54:00:4e:00:02"
USER_TAP_MAC = "52:54:00:4e:00:03"
ISOLATED_XML = """<network>
  <name>nn</name>
  <bridge name='pvnicbr0'/>
  <ip address='10.79.0.1' prefix='24'/>
</network>
"""
NICS = f"""
    <interface type='network'>
      <mac address='{NET_MAC}'/>
      <source network='nn'/>
      <model type='virtio'/>
    </interface>
    <interface type='ethernet'>
      <mac address='{ETH_MAC}'/>
      <model type='virtio'/>
    </interface>
    <interface type='ethernet'>
      <mac address='{USER_TAP_MAC}'/>
      <target dev='usertap0' managed='no'/>
      <model type='virtio'/>
    </interface>"""


@pytest.fixture
def daemon(tmp_path):
    with netns_pyvirtd(tmp_path / "host", extra_config="default_network = 0") as d:
        net = tmp_path / "nn.xml"
        net.write_text(ISOLATED_XML)
        virsh(d, "net-define", str(net))
        virsh(d, "net-start", "nn")
        ns_run(d.netns, "ip", "tuntap", "add", "dev", "usertap0", "mode", "tap", "vnet_hdr")
        try:
            yield d
        finally:
            subprocess.run(["virsh", "-c", d.uri, "destroy", "g"], capture_output=True, timeout=60)


def virsh(daemon, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["virsh", "-q", "-c", daemon.uri, *args], capture_output=True, text=True, timeout=60)
    if ok:
        assert out.returncode == 0, f"virsh {' '.join(args)}: {out.stderr}"
    else:
        assert out.returncode != 0, f"virsh {' '.join(args)} succeeded: {out.stdout}"
    return out


def link(ns: str, name: str) -> dict | None:
    out = ns_run(ns, "ip", "-json", "link", "show", "dev", name, check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def define(daemon, tmp_path: Path) -> None:
    xml = tmp_path / "g.xml"
    xml.write_text(tiny_xml("g", tmp_path / "g.serial", extra_devices=NICS, uuid=GUEST_UUID))
    virsh(daemon, "define", str(xml))


def taps_by_mac(daemon) -> dict[str, str]:
    """domiflist's Interface column by MAC."""
    rows = [line.split() for line in virsh(daemon, "domiflist", "g").stdout.splitlines() if line.strip()]
    return {row[-1]: row[0] for row in rows}


def test_network_and_ethernet_nics(daemon, tmp_path):
    ns = daemon.netns
    define(daemon, tmp_path)
    virsh(daemon, "start", "g")
    taps = taps_by_mac(daemon)
    net_tap, eth_tap = taps[NET_MAC], taps[ETH_MAC]
    assert net_tap.startswith("vnet") and eth_tap.startswith("vnet") and taps[USER_TAP_MAC] == "usertap0"

    live = virsh(daemon, "dumpxml", "g").stdout
    assert "<source network='nn' bridge='pvnicbr0'/>" in live
    assert f"<target dev='{net_tap}'/>" in live
    assert "<target dev='usertap0' managed='no'/>" in live
    inactive = virsh(daemon, "dumpxml", "--inactive", "g").stdout
    assert "<source network='nn'/>" in inactive and "vnet" not in inactive

    on_bridge = link(ns, net_tap)
    assert on_bridge["master"] == "pvnicbr0" and on_bridge["address"] == "fe" + NET_MAC[2:]
    assert "UP" in on_bridge["flags"]
    plain = link(ns, eth_tap)
    assert "master" not in plain and plain["address"] == "fe" + ETH_MAC[2:] and "UP" in plain["flags"]

    # domifstat keys on the tap's name
    stats = dict(line.split()[1:] for line in virsh(daemon, "domifstat", "g", net_tap).stdout.splitlines())
    assert set(stats) >= {"rx_bytes", "rx_packets", "tx_bytes", "tx_packets"}

    # a network destroyed and started again: a new bridge, and the tap back on it
    virsh(daemon, "net-destroy", "nn")
    assert "master" not in link(ns, net_tap)
    virsh(daemon, "net-start", "nn")
    wait_for(lambda: (link(ns, net_tap) or {}).get("master") == "pvnicbr0", what="tap back on the bridge")

    # a restarted daemon puts a tap that lost its bridge back (before it serves)
    daemon.stop()
    ns_run(ns, "ip", "link", "set", "dev", net_tap, "nomaster")
    daemon.start()
    assert link(ns, net_tap)["master"] == "pvnicbr0"
    assert "<source network='nn' bridge='pvnicbr0'/>" in virsh(daemon, "dumpxml", "g").stdout

    # stopping the guest takes the daemon's taps away, never the user's
    virsh(daemon, "destroy", "g")
    assert link(ns, net_tap) is None and link(ns, eth_tap) is None
    assert link(ns, "usertap0") is not None


def test_nic_on_inactive_network_stops_the_start(daemon, tmp_path):
    define(daemon, tmp_path)
    virsh(daemon, "net-destroy", "nn")
    out = virsh(daemon, "start", "g", ok=False)
    assert "network 'nn' is not active" in out.stderr
    assert virsh(daemon, "domstate", "g").stdout.strip() == "shut off"
    ns_run(daemon.netns, "ip", "tuntap", "del", "dev", "usertap0", "mode", "tap")
    virsh(daemon, "net-start", "nn")
    out = virsh(daemon, "start", "g", ok=False)      # the unmanaged tap must exist
    assert "usertap0" in out.stderr


def test_network_nic_hot_plugged(daemon, tmp_path):
    xml = tmp_path / "h.xml"
    xml.write_text(tiny_xml("g", tmp_path / "h.serial", uuid=GUEST_UUID).replace(
        "<devices>", "<features><acpi/></features><devices>"))     # PCI hot-plug on pc needs ACPI
    virsh(daemon, "define", str(xml))
    virsh(daemon, "start", "g")
    virsh(daemon, "attach-interface", "g", "network", "nn", "--model", "virtio", "--mac", NET_MAC, "--live")
    tap = taps_by_mac(daemon)[NET_MAC]
    assert link(daemon.netns, tap)["master"] == "pvnicbr0"
    assert "<source network='nn' bridge='pvnicbr0'/>" in virsh(daemon, "dumpxml", "g").stdout
    # the network driver counts it (libvirt's connections='1' in the live network XML)
    assert "connections='1'" in virsh(daemon, "net-dumpxml", "nn").stdout
    virsh(daemon, "destroy", "g")
    assert link(daemon.netns, tap) is None


def test_pyvirt_domiflist_matches_stock_virsh(daemon, tmp_path):
    define(daemon, tmp_path)
    virsh(daemon, "start", "g")
    ours, theirs = (subprocess.run([*cmd, "-c", daemon.uri, "domiflist", "g"], capture_output=True, text=True,
                                   timeout=60) for cmd in ([sys.executable, "-m", "pyvirt.cli"], ["virsh"]))
    assert ours.returncode == 0, ours.stderr
    assert "nn" in theirs.stdout.split() and "pvnicbr0" not in theirs.stdout
    assert ours.stdout == theirs.stdout


def test_interface_xml_as_libvirt_formats_it():
    from pyvirt import conf
    from pyvirt.errors import libvirtError

    def nics(xml: str, inactive: bool) -> str:
        d = conf.parse(f"<domain type='qemu'><name>x</name><memory>65536</memory><os><type>hvm</type></os>"
                       f"<devices>{xml}</devices></domain>", ("qemu",), "qemu")
        return d.format(inactive=inactive)

    live = nics("<interface type='network'><mac address='52:54:00:00:00:09'/>"
                "<source network='n' bridge='br9'/><target dev='vnet3'/></interface>"
                "<interface type='ethernet'><mac address='52:54:00:00:00:0a'/><target dev='t0' managed='yes'/></interface>"
                "<interface type='ethernet'><mac address='52:54:00:00:00:0b'/><target dev='t1' managed='no'/></interface>",
                inactive=False)
    assert "<source network='n' bridge='br9'/>" in live and "<target dev='vnet3'/>" in live
    assert "<target dev='t0'/>" in live and "<target dev='t1' managed='no'/>" in live
    inactive = nics("<interface type='network'><source network='n' bridge='br9'/><target dev='vnet3'/></interface>",
                    inactive=True)
    assert "<source network='n'/>" in inactive and "vnet3" not in inactive
    for bad in ("<interface type='ethernet'><target managed='no'/></interface>",
                "<interface type='ethernet'><target dev='t' managed='maybe'/></interface>"):
        with pytest.raises(libvirtError):
            nics(bad, inactive=True)


def test_nic_on_a_bridge_mode_network_joins_the_host_bridge(daemon, tmp_path):
    """<forward mode='bridge'>: the network names a bridge of the host (here one the test
    made in the namespace); the guest's tap goes there."""
    ns_run(daemon.netns, "ip", "link", "add", "pvhostbr0", "type", "bridge")
    ns_run(daemon.netns, "ip", "link", "set", "dev", "pvhostbr0", "up")
    net = tmp_path / "hb.xml"
    net.write_text("<network><name>hb</name><forward mode='bridge'/><bridge name='pvhostbr0'/></network>")
    virsh(daemon, "net-define", str(net))
    virsh(daemon, "net-start", "hb")
    xml = tmp_path / "b.xml"
    xml.write_text(tiny_xml("g", tmp_path / "b.serial", uuid=GUEST_UUID, extra_devices=f"""
    <interface type='network'>
      <mac address='{NET_MAC}'/>
      <source network='hb'/>
    </interface>"""))
    virsh(daemon, "define", str(xml))
    virsh(daemon, "start", "g")
    tap = taps_by_mac(daemon)[NET_MAC]
    assert link(daemon.netns, tap)["master"] == "pvhostbr0"
    assert "<source network='hb' bridge='pvhostbr0'/>" in virsh(daemon, "dumpxml", "g").stdout
