"""Debian's virt-install (virtinst 4.1) against pyvirtd, end to end with real QEMU.

pyvirtd runs inside a network namespace the test makes (netns_daemon) with a
dir pool and a NAT network; virt-install reaches it over the UNIX socket as
a remote client (``qemu+unix:///system?socket=...``), so it goes through the
storage API for every disk, as it does against a remote libvirtd:

* ``--disk pool=P,size=1``: virt-install creates the volume in the pool
  (storageVolCreateXML) and the guest starts from it;
* ``--disk path=POOLDIR/x.qcow2,size=1``: virt-install finds the pool by its
  target path (storagePoolLookupByTargetPath) and creates the volume there;
* ``--network network=NAME``: the guest's tap is on the network's bridge in
  the daemon's namespace.

The namespace and everything in it (bridge, dnsmasq, nftables table, QEMU)
goes at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from guests import TINY, private_copy, qemu_available
from netns_daemon import needs_netns, netns_pyvirtd, ns_run

VIRT_INSTALL = shutil.which("virt-install")
pytestmark = [needs_netns, pytest.mark.skipif(
    not (VIRT_INSTALL and qemu_available() and shutil.which("virsh") and os.path.exists("/usr/sbin/dnsmasq")
         and os.path.exists("/usr/sbin/nft")),
    reason="needs virt-install (virtinst), QEMU, stock virsh, dnsmasq-base and nftables")]

BRIDGE = "pvvibr0"
NAT_XML = f"""<network>
  <name>vinat</name>
  <forward mode='nat'/>
  <bridge name='{BRIDGE}'/>
  <ip address='10.83.0.1' prefix='24'>
    <dhcp>
      <range start='10.83.0.10' end='10.83.0.20'/>
    </dhcp>
  </ip>
</network>
"""


def virsh(daemon, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["virsh", "-q", "-c", daemon.uri, *args], capture_output=True, text=True, timeout=60)
    if ok:
        assert out.returncode == 0, f"virsh {' '.join(args)}: {out.stderr}"
    return out


@pytest.fixture
def host(tmp_path):
    """pyvirtd in its namespace with pool 'vip' on tmp_path/pool and NAT network 'vinat' running."""
    with netns_pyvirtd(tmp_path / "host", extra_config="default_network = 0") as daemon:
        net = tmp_path / "vinat.xml"
        net.write_text(NAT_XML)
        virsh(daemon, "net-define", str(net))
        virsh(daemon, "net-start", "vinat")
        pool = tmp_path / "pool"
        virsh(daemon, "pool-define-as", "vip", "dir", "--target", str(pool))
        virsh(daemon, "pool-build", "vip")
        virsh(daemon, "pool-start", "vip")
        try:
            yield daemon, pool
        finally:
            for name in ("g1", "g2"):
                subprocess.run(["virsh", "-c", daemon.uri, "destroy", name], capture_output=True, timeout=60)
            subprocess.run(["virsh", "-c", daemon.uri, "pool-destroy", "vip"], capture_output=True, timeout=60)


def virt_install(daemon, tmp_path: Path, name: str, disk: str) -> subprocess.CompletedProcess:
    kernel = private_copy(TINY, tmp_path)
    uri = f"qemu+unix:///system?socket={daemon.sock_dir}/libvirt-sock"
    return subprocess.run(
        # --virt-type qemu: virt-install's KVM default is <cpu mode='host-passthrough'>, whose
        # '-cpu host' this machine's nested KVM cannot run (QEMU aborts setting MSR 0x10a,
        # under libvirtd as well); TCG keeps the test about pyvirtd
        [VIRT_INSTALL, "--connect", uri, "--import", "--name", name, "--memory", "128", "--virt-type", "qemu",
         "--disk", disk, "--network", "network=vinat", "--boot", f"kernel={kernel}",
         "--osinfo", "detect=on,require=off", "--noautoconsole"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, HOME=str(tmp_path)))


def disk_path(daemon, name: str) -> str:
    rows = [line.split() for line in virsh(daemon, "domblklist", name, "--details").stdout.splitlines()]
    (path,) = [row[3] for row in rows if row[1] == "disk"]
    return path


def assert_on_bridge(daemon, name: str) -> None:
    rows = [line.split() for line in virsh(daemon, "domiflist", name).stdout.splitlines() if line.strip()]
    (row,) = rows
    tap, kind, source = row[0], row[1], row[2]
    assert (kind, source) == ("network", "vinat")
    link = json.loads(ns_run(daemon.netns, "ip", "-json", "link", "show", "dev", tap).stdout)[0]
    assert link["master"] == BRIDGE


def test_virt_install_disk_from_pool_and_nic_on_network(host, tmp_path):
    daemon, pool = host
    out = virt_install(daemon, tmp_path, "g1", "pool=vip,size=1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert virsh(daemon, "domstate", "g1").stdout.strip() == "running"
    # the disk is a volume virt-install created in the pool
    assert disk_path(daemon, "g1") == str(pool / "g1.qcow2")
    vols = virsh(daemon, "vol-list", "vip").stdout.split()
    assert "g1.qcow2" in vols
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(pool / "g1.qcow2")],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 1 << 30
    assert_on_bridge(daemon, "g1")


def test_virt_install_disk_by_path_in_a_pool(host, tmp_path):
    daemon, pool = host
    out = virt_install(daemon, tmp_path, "g2", f"path={pool}/x.qcow2,size=1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert virsh(daemon, "domstate", "g2").stdout.strip() == "running"
    assert disk_path(daemon, "g2") == str(pool / "x.qcow2")
    assert "x.qcow2" in virsh(daemon, "vol-list", "vip").stdout.split()
    assert_on_bridge(daemon, "g2")


USB2_SET = """<domain type='qemu'><name>u</name><memory>65536</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <controller type='usb' model='ich9-ehci1'/>
    <controller type='usb' model='ich9-uhci1'><master startport='0'/></controller>
    <controller type='usb' model='ich9-uhci2'><master startport='2'/></controller>
    <controller type='usb' model='ich9-uhci3'><master startport='4'/></controller>
  </devices>
</domain>"""


def test_ich9_usb2_set_as_libvirt_places_it():
    """virt-install's USB for an unknown OS: EHCI plus three UHCI companions, one index,
    one slot (EHCI at function 7, the companions at 0-2, multifunction on the first)."""
    from pyvirt import conf
    from pyvirt.conf import pciaddr
    from pyvirt.drivers.qemu.command import CommandContext, assign_aliases, build_argv

    d = conf.parse(USB2_SET, ("qemu",), "qemu")
    assert [c.index for c in d.devices.controllers if c.type == "usb"] == [0, 0, 0, 0]
    pciaddr.assign(d)
    xml = d.format(inactive=True)
    slot = d.devices.controllers[0].address.slot
    assert (f"<controller type='usb' index='0' model='ich9-uhci2'>\n      <master startport='2'/>\n"
            f"      <address type='pci' domain='0x0000' bus='0x00' slot='0x{slot:02x}' function='0x1'/>") in xml
    assert conf.parse(xml, ("qemu",), "qemu").format(inactive=True) == xml
    assign_aliases(d)
    argv = build_argv(d, CommandContext("/usr/bin/qemu-system-x86_64", False))
    devices = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "-device"]
    usb = [dev for dev in devices if dev["driver"].startswith("ich9-usb")]
    assert usb == [
        {"driver": "ich9-usb-ehci1", "id": "usb", "bus": "pci.0", "addr": f"0x{slot:x}.0x7"},
        {"driver": "ich9-usb-uhci1", "masterbus": "usb.0", "firstport": 0, "bus": "pci.0",
         "addr": f"0x{slot:x}", "multifunction": True},
        {"driver": "ich9-usb-uhci2", "masterbus": "usb.0", "firstport": 2, "bus": "pci.0", "addr": f"0x{slot:x}.0x1"},
        {"driver": "ich9-usb-uhci3", "masterbus": "usb.0", "firstport": 4, "bus": "pci.0", "addr": f"0x{slot:x}.0x2"},
    ]
