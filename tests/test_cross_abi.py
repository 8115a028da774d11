"""Live migration between a real libvirtd 9.0 and pyvirtd, both ways, driven by stock virsh.

The guest starts on libvirtd from plain XML (libvirt adds its default devices),
moves to pyvirtd (which must build the same device tree from libvirt's
migratable XML, or QEMU cannot load the stream) and back to libvirtd (which
must accept pyvirt's migratable XML and build the same tree again).  Each hop
is ``virsh migrate --live`` (client-driven, protocol v3); the guest's serial
heartbeats must continue after every hop.

(a) the tiny guest; (b) a guest with a qcow2 disk on a path both hosts share,
a serial port, VNC and SPICE graphics, a NIC and a USB tablet.  The NIC is
``type='user'`` (QEMU's own user-mode network): both daemons start it as
root without a tap, a bridge or any change to the host's networking, and the
guest sees the same virtio NIC as with any other backend (the backend is host
state; the stream carries the NIC device's state only).

Needs root and Debian's libvirtd (see bench/libvirt_ref.py); skipped otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from daemons import Pyvirtd, qemu_pid
from guests import READY, REPO, TINY, make_traversable, private_copy, wait_for, wait_for_text

sys.path.insert(0, str(REPO / "bench"))

import libvirt_ref  # noqa: E402
from libvirt_ref import LibvirtHost, pick_free_ports  # noqa: E402

AVAILABLE, WHY = libvirt_ref.libvirt_available()

pytestmark = [
    pytest.mark.libvirtd,
    pytest.mark.qemu,
    pytest.mark.skipif(not AVAILABLE, reason=f"libvirtd not available: {WHY}"),
]

VIRSH = "/usr/bin/virsh"
MIGRATE_TIMEOUT = 180


@pytest.fixture(scope="module")
def libvirt_host(tmp_path_factory, guests_built):
    base = tmp_path_factory.mktemp("libvirt-cross")
    port, mig_min = pick_free_ports(2)
    host = LibvirtHost(base / "host", port, migration_port_min=mig_min, migration_port_max=mig_min + 7,
                       cache_dir=base / "cache")
    try:
        host.start()
        yield host
        # every guest was destroyed: wait for libvirt's QEMUs (and helpers) to be gone from /proc
        wait_for(lambda: host.processes() == [host.pid], 30,
                 what=lambda: f"libvirtd's processes to end: {host.processes()}")
    finally:
        left = host.stop()
    assert not left, f"processes left behind by libvirtd: {left}"


@pytest.fixture
def pyvirt_host(tmp_path, guests_built):
    # graphics ports of its own: other QEMUs on this machine may hold 5900 and up
    display = pick_free_ports(1)[0]
    host = Pyvirtd(tmp_path / "pyvirt", extra_config=f"remote_display_port_min = {display}\n"
                                                      f"remote_display_port_max = {display + 15}\n")
    try:
        host.start()
        yield host
    finally:
        leaked = host.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


@pytest.fixture
def shared(tmp_path):
    """A directory both hosts' QEMUs reach (pyvirt's QEMU runs as an unprivileged user)."""
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    make_traversable(d)
    return d


def heartbeat(log: Path) -> int:
    beats = re.findall(r"PYVIRT-HEARTBEAT (\d+)\r?\n", log.read_text(errors="replace"))
    return int(beats[-1]) if beats else 0


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VIRSH, "-q", "-c", uri, *args], capture_output=True, text=True,
                          timeout=MIGRATE_TIMEOUT, stdin=subprocess.DEVNULL)


def guest_xml(name: str, where: Path, devices: str = "", memory_mib: int = 128, machine: str = "pc",
              platform: str = "", virt: str = "qemu") -> str:
    log = where / f"{name}.log"
    return f"""<domain type='{virt}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    <kernel>{private_copy(TINY, where)}</kernel>
    <cmdline>dirty=8:4</cmdline>
  </os>{platform}
  <devices>{devices}
    <serial type='file'>
      <source path='{log}'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>"""


def full_devices(shared: Path, name: str, graphics: bool = True) -> str:
    image = shared / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    image.chmod(0o666)
    return f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='{image}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'>
      <mac address='52:54:00:4a:20:01'/>
      <model type='virtio'/>
    </interface>
    <input type='tablet' bus='usb'/>""" + ("""
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <graphics type='spice' autoport='yes' listen='127.0.0.1'/>""" if graphics else "")


def hop(src_uri: str, dst_uri: str, name: str, migrate_uri: str, log: Path, extra: tuple[str, ...] = ()) -> None:
    """virsh migrate --live (client-driven v3) and the guest's heartbeats going on at the other end."""
    before, seen = heartbeat(log), len(log.read_bytes())
    r = virsh(src_uri, "migrate", "--live", name, dst_uri, "--migrateuri", migrate_uri, *extra)
    assert r.returncode == 0, f"migrate {src_uri} -> {dst_uri} failed: {r.stderr.strip()}"
    assert virsh(dst_uri, "domstate", name).stdout.strip() == "running"
    assert name not in virsh(src_uri, "list", "--name").stdout.split()
    wait_for(lambda: heartbeat(log) > before + 1, 30, what=f"heartbeats of {name} after the hop to {dst_uri}")
    # The same guest went on, it did not boot again: no new ready marker, and the count
    # continues.  (libvirt's QEMU truncates a serial file it opens, pyvirt's appends.)
    data = log.read_bytes()
    new = (data[seen:] if len(data) >= seen else data).decode(errors="replace")
    assert READY not in new
    beats = [int(n) for n in re.findall(r"PYVIRT-HEARTBEAT (\d+)\r?\n", new)]
    assert beats and beats[0] >= before and beats == list(range(beats[0], beats[0] + len(beats)))


def migratable_xml(uri: str, name: str) -> str:
    """``virsh dumpxml --migratable``, less what only libvirt's host side has: the cgroup
    partition (<resource>) and the probed end of a disk's backing chain (<backingStore/>)."""
    out = virsh(uri, "dumpxml", "--migratable", name).stdout
    out = re.sub(r"\n *<resource>.*?</resource>", "", out, flags=re.S)
    return re.sub(r"\n *<backingStore/>", "", out)


def round_trip(lv: LibvirtHost, pv: Pyvirtd, name: str, xml: str, log: Path, extra: tuple[str, ...] = ()) -> None:
    xml_file = log.parent / f"{name}.xml"
    xml_file.write_text(xml)
    lv.virsh("create", str(xml_file))
    try:
        wait_for_text(log, "PYVIRT-HEARTBEAT 2")
        sent = migratable_xml(lv.uri, name)
        hop(lv.uri, pv.uri, name, "tcp://127.0.0.1", log, extra)
        # pyvirtd describes the guest to the next host as libvirtd did, element for element
        assert migratable_xml(pv.uri, name) == sent
        # pyvirt's QEMU runs the guest now; libvirt's is gone
        assert qemu_pid(pv, name) is not None and lv.domain_pid(name) is None
        hop(pv.uri, lv.uri, name, f"tcp://127.0.0.1:{lv.migration_port_min}", log, extra)
        assert qemu_pid(pv, name) is None
    finally:
        virsh(lv.uri, "destroy", name)
        virsh(pv.uri, "destroy", name)


KVM = os.access("/dev/kvm", os.R_OK | os.W_OK)


@pytest.mark.parametrize("virt", ["qemu", pytest.param("kvm", marks=pytest.mark.skipif(
    not KVM, reason="/dev/kvm cannot be opened"))])
def test_tiny_guest_libvirtd_to_pyvirtd_and_back(libvirt_host, pyvirt_host, shared, virt):
    """TCG and KVM: with KVM libvirtd's live CPU lists what the host's KVM gave qemu64."""
    name = f"cross-tiny-{virt}"
    round_trip(libvirt_host, pyvirt_host, name, guest_xml(name, shared, virt=virt), shared / f"{name}.log")


def test_guest_with_disk_graphics_and_nic_both_ways(libvirt_host, pyvirt_host, shared):
    name = "cross-full"
    xml = guest_xml(name, shared, full_devices(shared, name))
    # The image is one file both "hosts" open: shared storage in fact, which libvirt 9.0 can
    # only tell from a cluster or network file system; --unsafe says so.  (cache='none'
    # gives the disk write-cache=on, which both QEMUs must agree on.)
    round_trip(libvirt_host, pyvirt_host, name, xml, shared / f"{name}.log", ("--unsafe",))


def test_q35_guest_both_ways(libvirt_host, pyvirt_host, shared):
    """PCIe root ports, the XHCI controller and the built-in AHCI placed as libvirt places them."""
    name = "cross-q35"
    xml = guest_xml(name, shared, full_devices(shared, name, graphics=False), machine="q35")
    round_trip(libvirt_host, pyvirt_host, name, xml, shared / f"{name}.log", ("--unsafe",))


def channel_devices(shared: Path, name: str) -> str:
    return f"""
    <channel type='unix'>
      <source mode='bind' path='{shared}/{name}.agent'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <channel type='spicevmc'>
      <target type='virtio' name='com.redhat.spice.0'/>
    </channel>
    <console type='pty'>
      <target type='virtio' port='1'/>
    </console>
    <graphics type='spice' autoport='yes' listen='127.0.0.1'/>"""


@pytest.mark.parametrize("kind", ["full", "channels"])
def test_guest_born_on_pyvirtd_goes_to_libvirtd_and_back(libvirt_host, pyvirt_host, shared, kind):
    """pyvirt's own definition (its post-parse, its migratable XML) is what libvirtd's Prepare gets."""
    name = f"cross-born-{kind}"
    log = shared / f"{name}.log"
    xml_file = shared / f"{name}.xml"
    devices = full_devices(shared, name) if kind == "full" else channel_devices(shared, name)
    xml_file.write_text(guest_xml(name, shared, devices, platform=VIRT_INSTALL_PLATFORM))
    r = virsh(pyvirt_host.uri, "create", str(xml_file))
    assert r.returncode == 0, r.stderr
    try:
        wait_for_text(log, "PYVIRT-HEARTBEAT 2")
        sent = migratable_xml(pyvirt_host.uri, name)
        hop(pyvirt_host.uri, libvirt_host.uri, name, f"tcp://127.0.0.1:{libvirt_host.migration_port_min}",
            log, ("--unsafe",))
        # libvirtd describes pyvirt's guest as pyvirtd did
        assert migratable_xml(libvirt_host.uri, name) == sent
        hop(libvirt_host.uri, pyvirt_host.uri, name, "tcp://127.0.0.1", log, ("--unsafe",))
    finally:
        virsh(libvirt_host.uri, "destroy", name)
        virsh(pyvirt_host.uri, "destroy", name)


# what virt-install writes for an x86 guest: ACPI, no vmport, its timers, no S3/S4
VIRT_INSTALL_PLATFORM = """
  <features><acpi/><apic/><vmport state='off'/></features>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='no'/></pm>"""


@pytest.mark.parametrize("machine", ["pc", "q35"])
def test_virt_install_platform_both_ways(libvirt_host, pyvirt_host, shared, machine):
    """No HPET, the PIT's and RTC's tick policies, vmport off, S3/S4 off: the same machine on both."""
    name = f"cross-vi-{machine}"
    xml = guest_xml(name, shared, machine=machine, platform=VIRT_INSTALL_PLATFORM)
    round_trip(libvirt_host, pyvirt_host, name, xml, shared / f"{name}.log")


def test_guest_agent_and_spice_channels_both_ways(libvirt_host, pyvirt_host, shared):
    """A virtio-serial controller with the guest agent's port, SPICE's vdagent port and a
    virtio console: the ports keep their numbers, so the stream's virtio-serial state loads."""
    name = "cross-chan"
    round_trip(libvirt_host, pyvirt_host, name, guest_xml(name, shared, channel_devices(shared, name)),
               shared / f"{name}.log")


def test_a_device_pyvirt_lacks_is_refused_and_the_guest_stays(libvirt_host, pyvirt_host, shared):
    """A sound card pyvirt has no model of: pyvirtd's Prepare refuses before any QEMU starts,
    virsh reports pyvirtd's error, and the guest runs on at libvirtd."""
    name = "cross-sound"
    log = shared / f"{name}.log"
    xml_file = shared / f"{name}.xml"
    xml_file.write_text(guest_xml(name, shared, "\n    <sound model='ich6'/>"))
    libvirt_host.virsh("create", str(xml_file))
    try:
        wait_for_text(log, "PYVIRT-HEARTBEAT 2")
        r = virsh(libvirt_host.uri, "migrate", "--live", name, pyvirt_host.uri, "--migrateuri", "tcp://127.0.0.1")
        assert r.returncode == 1
        assert "unsupported configuration: the guest has devices pyvirt does not support (<sound>)" in r.stderr
        assert virsh(libvirt_host.uri, "domstate", name).stdout.strip() == "running"
        assert name not in virsh(pyvirt_host.uri, "list", "--all", "--name").stdout.split()
        assert qemu_pid(pyvirt_host, name) is None
        before = heartbeat(log)
        wait_for(lambda: heartbeat(log) > before + 1, 30, what="the guest to run on at libvirtd")
    finally:
        virsh(libvirt_host.uri, "destroy", name)


def test_guest_agent_channel_libvirt_made_the_socket_for(libvirt_host, pyvirt_host, shared):
    """virt-install's guest agent channel names no socket: libvirtd makes one and leaves its
    path out of the migratable XML; pyvirtd keeps the port (on a null backend) and libvirtd
    makes its socket again on the way back."""
    name = "cross-agent"
    devices = """
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>"""
    round_trip(libvirt_host, pyvirt_host, name, guest_xml(name, shared, devices), shared / f"{name}.log")
