"""Device hot-plug against a real pyvirtd and real QEMU, driven by stock virsh,
python3-libvirt and pyvirt's own client.

What each test checks is what QEMU itself reports (``query-pci``,
``query-block``, ``query-hotpluggable-cpus``) besides the XML: a disk in
``domblklist`` must be a device on the guest's PCI bus at the slot the XML
names.  The tiny guest runs no ACPI hot-plug code, so a PCI device it is
asked to give back stays ("detach request sent", libvirt's behaviour); the
Linux guest's kernel (acpiphp) ejects it, and SCSI/USB devices go without
asking the guest.
"""

from __future__ import annotations

import json
import pwd
import queue
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyvirt
from daemons import Pyvirtd, running_pair
from guests import READY, linux_xml, tiny_xml, wait_for_text

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]

SYSTEM_PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parent.parent
ACPI = "</os>\n  <features><acpi/></features>"


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=120)


def ours(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", uri, *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def ok(uri: str, *args: str) -> str:
    out = virsh(uri, *args)
    assert out.returncode == 0, f"virsh {' '.join(args)}: {out.stderr}"
    return out.stdout


def same_output(uri: str, *args: str) -> subprocess.CompletedProcess:
    """Run a command through stock virsh and through pyvirt's CLI; both must print the same."""
    theirs, mine = virsh(uri, *args), ours(uri, *args)
    assert (mine.returncode, mine.stdout, mine.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), \
        f"{args}:\nvirsh: {theirs!r}\npyvirt: {mine!r}"
    return theirs


def qmp(daemon: Pyvirtd, name: str, command: str, **arguments) -> object:
    """QEMU's own answer, through stock virsh qemu-monitor-command (any of the daemon's sockets)."""
    reply = ok(daemon.uri, "qemu-monitor-command", name, json.dumps({"execute": command, "arguments": arguments}))
    return json.loads(reply)["return"]


def pci_devices(daemon: Pyvirtd, name: str) -> dict[str, int]:
    """qdev id -> slot on the guest's pci.0, as QEMU reports it."""
    return {dev["qdev_id"]: dev["slot"] for bus in qmp(daemon, name, "query-pci")
            for dev in bus["devices"] if dev["qdev_id"]}


def image(where: Path, name: str, fmt: str = "qcow2") -> Path:
    path = where / name
    subprocess.run(["qemu-img", "create", "-f", fmt, str(path), "16M"], check=True, capture_output=True)
    path.chmod(0o644)
    return path


def disk_xml(path: Path, target: str, bus: str, fmt: str = "qcow2") -> str:
    return (f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
            f"<source file='{path}'/><target dev='{target}' bus='{bus}'/></disk>")


def live_xml(uri: str, name: str, inactive: bool = False) -> pyvirt.conf.DomainDef:
    from pyvirt import conf
    return conf.parse(ok(uri, "dumpxml", *(["--inactive"] if inactive else []), name))


def disk_of(d, target: str):
    return next((disk for disk in d.devices.disks if disk.target_dev == target), None)


@pytest.fixture
def tiny(pyvirtd, guests_built):
    """A running tiny guest with ACPI (the pc machine's PCI hot-plug needs it)."""
    log = pyvirtd.workdir / "hp.log"
    xml = pyvirtd.workdir / "hp.xml"
    xml.write_text(tiny_xml("hp", log).replace("</os>", ACPI, 1))
    ok(pyvirtd.uri, "define", str(xml))
    ok(pyvirtd.uri, "start", "hp")
    wait_for_text(log, READY)
    return pyvirtd


# -- python3-libvirt with its event loop: the events come with the calls ------------------------

_EVENTS_SCRIPT = textwrap.dedent("""
    import json, sys, threading, libvirt
    uri, name, steps, expect = json.loads(sys.argv[1])
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)],
                     daemon=True).start()
    conn = libvirt.open(uri)
    dom = conn.lookupByName(name)
    seen, cond = [], threading.Condition()
    def record(kind):
        def cb(conn, dom, alias, opaque):
            with cond:
                seen.append([kind, alias])
                cond.notify_all()
        return cb
    conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, record("added"), None)
    conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, record("removed"), None)
    results = []
    for method, *args in steps:
        try:
            results.append(getattr(dom, method)(*args))
        except libvirt.libvirtError as exc:
            results.append(["error", exc.get_error_code(), str(exc)])
    with cond:
        cond.wait_for(lambda: all(e in seen for e in expect), timeout=60)
    print(json.dumps({"results": results, "events": seen}))
""")


def stock_client(uri: str, name: str, steps: list, expect: list) -> dict:
    """Run ``steps`` (method, *args) with python3-libvirt, collecting DEVICE_ADDED/REMOVED until ``expect``."""
    if subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    out = subprocess.run([SYSTEM_PYTHON, "-c", _EVENTS_SCRIPT, json.dumps([uri, name, steps, expect])],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# -- disks ---------------------------------------------------------------------------------------------

def test_virtio_disk_hotplug_is_on_the_pci_bus_and_in_domblklist(tiny):
    uri, img = tiny.uri, image(tiny.workdir, "data.qcow2")
    assert ok(uri, "attach-disk", "hp", str(img), "vdb", "--targetbus", "virtio", "--subdriver", "qcow2",
              "--live") == "Disk attached successfully\n\n"
    listing = same_output(uri, "domblklist", "hp").stdout
    assert f" vdb      {img}" in listing
    same_output(uri, "domblklist", "hp", "--details")
    disk = disk_of(live_xml(uri, "hp"), "vdb")
    assert disk.alias == "virtio-disk1" and disk.address.slot >= 3
    # QEMU has it where the XML says, beside the balloon libvirt adds by default
    slots = pci_devices(tiny, "hp")
    assert slots[disk.alias] == disk.address.slot
    # slot 2 is the balloon's: the guest has no video card (libvirt 9.0's placement)
    assert slots["balloon0"] == live_xml(uri, "hp").devices.memballoon.address.slot == 2
    blocks = {b["qdev"]: b for b in qmp(tiny, "hp", "query-block")}
    inserted = blocks[f"/machine/peripheral/{disk.alias}/virtio-backend"]["inserted"]
    assert inserted["file"] == str(img) and inserted["drv"] == "qcow2"
    # a live-only change leaves the next boot alone
    assert disk_of(live_xml(uri, "hp", inactive=True), "vdb") is None


def test_pci_disk_the_guest_keeps_stays_after_detach_request(tiny):
    """The tiny guest has no ACPI hot-plug driver: detach returns after libvirt's 5 s
    ("detach request sent"), and the disk stays in the live XML and on the bus."""
    uri, img = tiny.uri, image(tiny.workdir, "kept.qcow2")
    result = stock_client(uri, "hp", [["attachDeviceFlags", disk_xml(img, "vdb", "virtio"), 1],
                                      ["detachDeviceFlags", disk_xml(img, "vdb", "virtio"), 1]],
                          expect=[["added", "virtio-disk1"]])
    assert result["results"] == [0, 0]
    assert result["events"] == [["added", "virtio-disk1"]]        # no DEVICE_REMOVED
    assert disk_of(live_xml(uri, "hp"), "vdb") is not None
    assert "virtio-disk1" in pci_devices(tiny, "hp")
    # a second request while the first is pending is refused, as QEMU would
    again = virsh(uri, "detach-disk", "hp", "vdb", "--live")
    assert again.returncode == 1 and "already in progress" in again.stderr


def test_scsi_disk_brings_its_controller_and_goes_at_once(tiny):
    uri, img = tiny.uri, image(tiny.workdir, "scsi.qcow2")
    owner = img.stat().st_uid
    result = stock_client(uri, "hp", [["attachDeviceFlags", disk_xml(img, "sda", "scsi"), 1]],
                          expect=[["added", "scsi0"], ["added", "scsi0-0-0-0"]])
    assert result["events"] == [["added", "scsi0"], ["added", "scsi0-0-0-0"]]
    d = live_xml(uri, "hp")
    ctrl = next(c for c in d.devices.controllers if c.type == "scsi")
    assert (ctrl.index, ctrl.model, ctrl.alias) == (0, "virtio-scsi", "scsi0")
    assert pci_devices(tiny, "hp")["scsi0"] == ctrl.address.slot
    assert any(b["qdev"] == "scsi0-0-0-0" and b["inserted"]["file"] == str(img)
               for b in qmp(tiny, "hp", "query-block"))
    # QEMU's user was given the image, as for a disk present at boot, and a restarted
    # daemon still knows the disk (the status XML has it)
    assert img.stat().st_uid == pwd.getpwnam("libvirt-qemu").pw_uid != owner
    tiny.stop()
    tiny.start()
    assert disk_of(live_xml(uri, "hp"), "sda").alias == "scsi0-0-0-0"
    # SCSI unplug needs no guest: DEVICE_DELETED, then the disk is gone and announced
    result = stock_client(uri, "hp", [["detachDeviceFlags", disk_xml(img, "sda", "scsi"), 1]],
                          expect=[["removed", "scsi0-0-0-0"]])
    assert result == {"results": [0], "events": [["removed", "scsi0-0-0-0"]]}
    assert disk_of(live_xml(uri, "hp"), "sda") is None
    assert not any(b["qdev"] == "scsi0-0-0-0" for b in qmp(tiny, "hp", "query-block"))
    assert "libvirt-1-format" not in {n["node-name"] for n in qmp(tiny, "hp", "query-named-block-nodes")}
    assert img.stat().st_uid == owner                     # and given back
    # the controller can go too once no disk uses it
    assert ok(uri, "detach-device", "hp", _write(tiny.workdir / "c.xml",
              "<controller type='scsi' index='0' model='virtio-scsi'/>"), "--live") == \
        "Device detached successfully\n\n"


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_usb_disk_needs_a_usb_controller_which_can_be_hotplugged(tiny):
    uri = tiny.uri
    # a guest defined without USB (<controller type='usb' model='none'/>; new definitions
    # get libvirt's default UHCI otherwise) refuses a USB disk
    log, xml = tiny.workdir / "nousb.log", tiny.workdir / "nousb.xml"
    xml.write_text(tiny_xml("nousb", log, extra_devices="\n    <controller type='usb' model='none'/>")
                   .replace("</os>", ACPI, 1))
    ok(uri, "define", str(xml))
    ok(uri, "start", "nousb")
    wait_for_text(log, READY)
    img = image(tiny.workdir, "usb.raw", fmt="raw")
    usb_disk = _write(tiny.workdir / "usb.xml", disk_xml(img, "sdb", "usb", fmt="raw"))
    refused = same_output(uri, "attach-device", "nousb", usb_disk, "--live")
    assert refused.returncode == 1 and "no USB controller" in refused.stderr
    # the default guest has the PIIX3's UHCI (usb); a hot-plugged XHCI is a second controller
    ok(uri, "attach-device", "hp", _write(tiny.workdir / "xhci.xml",
       "<controller type='usb' model='qemu-xhci'/>"), "--live")
    assert {"usb", "usb1"} <= set(pci_devices(tiny, "hp"))
    ok(uri, "attach-device", "hp", usb_disk, "--live")
    assert any("usb-disk1" in b["qdev"] and b["inserted"]["file"] == str(img)
               for b in qmp(tiny, "hp", "query-block") if b.get("inserted"))
    assert ok(uri, "detach-disk", "hp", "sdb", "--live") == "Disk detached successfully\n\n"
    assert disk_of(live_xml(uri, "hp"), "sdb") is None       # USB unplug needs no guest


def test_linux_guest_releases_a_pci_disk_and_a_late_release_is_finished(pyvirtd, guests_built):
    """acpiphp in the Linux guest ejects the slot: the detach sees DEVICE_DELETED in time.
    Paused, the guest cannot: the call returns after 5 s with the disk still listed, and when
    the guest runs again and lets go, the daemon removes it and emits DEVICE_REMOVED."""
    uri, work = pyvirtd.uri, pyvirtd.workdir
    path = work / "lx.xml"
    path.write_text(linux_xml("lx", work / "lx.log"))
    ok(uri, "define", str(path))
    ok(uri, "start", "lx")
    wait_for_text(work / "lx.log", READY, 120)
    img = image(work, "lx.qcow2")
    xml = disk_xml(img, "vdb", "virtio")
    result = stock_client(uri, "lx", [["attachDeviceFlags", xml, 1], ["detachDeviceFlags", xml, 1]],
                          expect=[["added", "virtio-disk1"], ["removed", "virtio-disk1"]])
    assert result["events"] == [["added", "virtio-disk1"], ["removed", "virtio-disk1"]]
    assert "virtio-disk1" not in pci_devices(pyvirtd, "lx")
    assert disk_of(live_xml(uri, "lx"), "vdb") is None
    ok(uri, "attach-disk", "lx", str(img), "vdb", "--subdriver", "qcow2", "--live")
    ok(uri, "suspend", "lx")
    result = stock_client(uri, "lx", [["detachDeviceFlags", xml, 1], ["resume"]],
                          expect=[["removed", "virtio-disk1"]])
    assert result["results"] == [0, 0] and result["events"] == [["removed", "virtio-disk1"]]
    assert disk_of(live_xml(uri, "lx"), "vdb") is None
    assert "virtio-disk1" not in pci_devices(pyvirtd, "lx")


def test_detach_device_alias_requests_the_removal_and_the_event_tells_its_end(pyvirtd, guests_built):
    """detachDeviceAlias returns once QEMU has the request (libvirt's async removal);
    DEVICE_REMOVED follows when the Linux guest's acpiphp lets go.  Through python3-libvirt,
    pyvirt's client, virsh and pyvirt's CLI; a user alias names a device of the next boot too."""
    uri, work = pyvirtd.uri, pyvirtd.workdir
    path = work / "la.xml"
    path.write_text(linux_xml("la", work / "la.log"))
    ok(uri, "define", str(path))
    ok(uri, "start", "la")
    wait_for_text(work / "la.log", READY, 120)
    img, img2 = image(work, "la.qcow2"), image(work, "la2.qcow2")
    xml = disk_xml(img, "vdb", "virtio")
    result = stock_client(uri, "la", [["attachDeviceFlags", xml, 1], ["detachDeviceAlias", "virtio-disk1", 1]],
                          expect=[["added", "virtio-disk1"], ["removed", "virtio-disk1"]])
    assert result == {"results": [0, 0], "events": [["added", "virtio-disk1"], ["removed", "virtio-disk1"]]}
    assert "virtio-disk1" not in pci_devices(pyvirtd, "la")
    assert disk_of(live_xml(uri, "la"), "vdb") is None

    # pyvirt's client: the same call, and libvirt's errors for an unknown or undetachable alias
    conn = pyvirt.open(uri)
    try:
        dom = conn.lookupByName("la")
        dom.attachDeviceFlags(xml, pyvirt.VIR_DOMAIN_AFFECT_LIVE)
        removed: queue.Queue = queue.Queue()
        cb = conn.domainEventRegisterAny(dom, pyvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                         lambda _c, _d, alias, _o: removed.put(alias), None)
        assert dom.detachDeviceAlias("virtio-disk1", pyvirt.VIR_DOMAIN_AFFECT_LIVE) == 0
        assert removed.get(timeout=60) == "virtio-disk1"
        conn.domainEventDeregisterAny(cb)
        with pytest.raises(pyvirt.libvirtError, match="no device found with alias nosuch") as missing:
            dom.detachDeviceAlias("nosuch", pyvirt.VIR_DOMAIN_AFFECT_LIVE)
        assert missing.value.get_error_code() == pyvirt.VIR_ERR_INTERNAL_ERROR
        with pytest.raises(pyvirt.libvirtError, match="live detach of device 'memballoon' is not supported"):
            dom.detachDeviceAlias("balloon0", pyvirt.VIR_DOMAIN_AFFECT_LIVE)
    finally:
        conn.close()
    assert disk_of(live_xml(uri, "la"), "vdb") is None

    # virsh and pyvirt's CLI print the same; a user alias (ua-) is kept in the persistent
    # definition, so --config finds it there
    for args in (("detach-device-alias", "la", "nosuch"), ("detach-device-alias", "la", "nosuch", "--config"),
                 ("detach-device-alias", "la", "x", "--current", "--live")):
        refused = same_output(uri, *args)
        assert refused.returncode == 1 and refused.stderr.startswith("error: "), refused
    ua = _write(work / "ua.xml", disk_xml(img2, "vdc", "virtio").replace("</disk>", "<alias name='ua-data'/></disk>"))
    printed = []
    for run in (virsh, ours):
        ok(uri, "attach-device", "la", ua, "--config")
        assert disk_of(live_xml(uri, "la", inactive=True), "vdc").alias == "ua-data"
        out = run(uri, "detach-device-alias", "la", "ua-data", "--config")
        printed.append((out.returncode, out.stdout, out.stderr))
        assert disk_of(live_xml(uri, "la", inactive=True), "vdc") is None
    assert printed == [(0, "Device detach request sent successfully\n\n", "")] * 2
    ok(uri, "destroy", "la")


def test_cdrom_media_change(tiny):
    uri, work = tiny.uri, tiny.workdir
    iso = image(work, "media.iso", fmt="raw")
    ok(uri, "destroy", "hp")
    xml = live_xml(uri, "hp", inactive=True).format(inactive=True).replace(
        "<devices>", "<devices><disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>")
    ok(uri, "define", _write(work / "cd.xml", xml))
    ok(uri, "start", "hp")

    def medium() -> str | None:
        found = next(b for b in qmp(tiny, "hp", "query-block") if b["qdev"] == "ide0-1-0")
        return (found.get("inserted") or {}).get("file")

    assert medium() is None
    assert same_output(uri, "change-media", "hp", "hdc", "--insert", "--source", str(iso),
                       "--print-xml").returncode == 0
    assert ok(uri, "change-media", "hp", "hdc", "--insert", "--source", str(iso)) == \
        "Successfully inserted media.\n"
    assert medium() == str(iso)
    assert disk_of(live_xml(uri, "hp"), "hdc").source == str(iso)
    assert ours(uri, "change-media", "hp", "hdc", "--eject").stdout == "Successfully ejected media.\n"
    assert medium() is None and disk_of(live_xml(uri, "hp"), "hdc").source is None
    # not removable media: refused
    img = image(work, "fixed.qcow2")
    ok(uri, "attach-disk", "hp", str(img), "vdb", "--subdriver", "qcow2", "--live")
    swapped = _write(work / "swap.xml", disk_xml(iso, "vdb", "virtio", fmt="raw"))
    out = same_output(uri, "update-device", "hp", swapped, "--live")
    assert out.returncode == 1 and "removable media" in out.stderr


# -- persistence, errors ----------------------------------------------------------------------------------

def test_config_changes_survive_a_daemon_restart(pyvirtd, guests_built):
    uri, work = pyvirtd.uri, pyvirtd.workdir
    path = work / "cfg.xml"
    path.write_text(tiny_xml("cfg", work / "cfg.log").replace("</os>", ACPI, 1))
    ok(uri, "define", str(path))
    img = image(work, "cfg.qcow2")
    assert ok(uri, "attach-disk", "cfg", str(img), "vdb", "--subdriver", "qcow2", "--config") == \
        "Disk attached successfully\n\n"
    nic = _write(work / "nic.xml", "<interface type='user'><mac address='52:54:00:12:34:56'/>"
                                   "<model type='virtio'/></interface>")
    ok(uri, "attach-device", "cfg", nic, "--config")
    before = live_xml(uri, "cfg", inactive=True)
    pyvirtd.stop()
    pyvirtd.start()
    after = live_xml(uri, "cfg", inactive=True)
    assert disk_of(after, "vdb").address == disk_of(before, "vdb").address is not None
    assert after.devices.interfaces[0].mac == "52:54:00:12:34:56"
    same_output(uri, "domblklist", "cfg", "--inactive")
    same_output(uri, "domiflist", "cfg", "--inactive")
    # the next boot has them on the bus, at the addresses the definition keeps
    ok(uri, "start", "cfg")
    slots = pci_devices(pyvirtd, "cfg")
    assert slots["virtio-disk1"] == disk_of(after, "vdb").address.slot
    assert slots["net0"] == after.devices.interfaces[0].address.slot
    same_output(uri, "domiflist", "cfg")
    # and detaching from the config only leaves the running guest alone
    assert ok(uri, "detach-disk", "cfg", "vdb", "--config") == "Disk detached successfully\n\n"
    assert disk_of(live_xml(uri, "cfg", inactive=True), "vdb") is None
    assert disk_of(live_xml(uri, "cfg"), "vdb") is not None


@pytest.mark.parametrize("args", [
    ("attach-device", "hp", "{bad}", "--live"),
    ("attach-device", "hp", "{sound}", "--live"),
    ("attach-device", "hp", "{sound}", "--config"),
    ("attach-device", "hp", "{unknown}", "--live"),
    ("detach-device", "hp", "{missing}", "--live"),
    ("detach-device", "hp", "{missing}", "--config"),
    ("detach-disk", "hp", "vdz"),
    ("change-media", "hp", "vdz", "--eject"),
    ("change-media", "hp", "vdz", "--insert"),
    ("detach-interface", "hp", "bridge"),
    ("setmem", "hp", "1G"),
    ("setmem", "hp", "lots"),
    ("setmaxmem", "hp", "64M"),
    ("setvcpus", "hp", "0"),
    ("setvcpus", "hp", "9", "--live"),
    ("setvcpus", "hp", "2", "--maximum"),
    ("setvcpus", "hp", "2", "--guest"),
    ("attach-disk", "hp", "/x.img", "hdb", "--targetbus", "ide", "--live"),
    ("attach-disk", "hp", "/x.img", "vdb", "--current", "--live"),
    ("attach-disk", "hp", "/x.img", "vdb", "--mode", "bogus"),
    ("attach-interface", "hp", "user", "x"),
])
def test_errors_are_libvirt_s(tiny, args):
    work = tiny.workdir
    files = {"bad": _write(work / "bad.xml", "<disk type='file'><target dev="),
             "sound": _write(work / "sound.xml", "<sound model='ich9'/>"),
             "unknown": _write(work / "unknown.xml", "<gizmo/>"),
             "missing": _write(work / "missing.xml", disk_xml(work / "none.img", "vdq", "virtio"))}
    out = same_output(tiny.uri, *(a.format(**files) for a in args))
    assert out.returncode == 1 and out.stderr.startswith("error: ")


def test_flags_follow_libvirt_s_rules(pyvirtd, guests_built):
    uri, work = pyvirtd.uri, pyvirtd.workdir
    conn = pyvirt.open(uri)
    dom = conn.defineXML(tiny_xml("fl", work / "fl.log"))
    xml = disk_xml(image(work, "fl.qcow2"), "vdb", "virtio")
    with pytest.raises(pyvirt.libvirtError) as info:
        dom.attachDeviceFlags(xml, pyvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_INVALID
    assert "domain is not running" in info.value.get_error_message()
    with pytest.raises(pyvirt.libvirtError) as info:
        dom.attachDeviceFlags(xml, 8)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    assert "unsupported flags (0x8) in function qemuDomainAttachDeviceFlags" in info.value.get_error_message()
    dom.attachDeviceFlags(xml, pyvirt.VIR_DOMAIN_AFFECT_CURRENT)     # inactive: the config
    with pytest.raises(pyvirt.libvirtError) as info:
        dom.attachDeviceFlags(xml, 0)
    assert "target vdb already exists" in info.value.get_error_message()
    dom.undefine()
    transient = conn.createXML(tiny_xml("tr", work / "tr.log").replace("</os>", ACPI, 1), 0)
    with pytest.raises(pyvirt.libvirtError) as info:
        transient.attachDeviceFlags(xml, pyvirt.VIR_DOMAIN_AFFECT_CONFIG)
    assert "transient domains do not have any persistent config" in info.value.get_error_message()
    with pytest.raises(pyvirt.libvirtError) as info:
        transient.detachDeviceFlags(disk_xml(work / "no.img", "vdc", "virtio"), 0)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_DEVICE_MISSING
    transient.destroy()


# -- migration keeps the bus layout --------------------------------------------------------------------

def test_migration_recreates_a_hotplugged_disk_at_its_slot(tmp_path, guests_built):
    a, b = Pyvirtd(tmp_path / "a"), Pyvirtd(tmp_path / "b")
    with running_pair(a, b):
        log = a.workdir / "mig.log"
        path = a.workdir / "mig.xml"
        path.write_text(tiny_xml("mig", log).replace("</os>", ACPI, 1))
        ok(a.uri, "create", str(path))
        wait_for_text(log, READY)
        img = image(tmp_path, "mig.qcow2")
        ok(a.uri, "attach-disk", "mig", str(img), "vdb", "--subdriver", "qcow2", "--live")
        source = live_xml(a.uri, "mig")
        slot = disk_of(source, "vdb").address.slot
        ok(a.uri, "migrate", "--live", "--unsafe", "mig", b.uri)     # the image is local
        moved = live_xml(b.uri, "mig")
        disk = disk_of(moved, "vdb")
        assert disk.address == disk_of(source, "vdb").address
        slots = pci_devices(b, "mig")
        assert slots[disk.alias] == slot and slots["balloon0"] == 2
        assert any(blk["inserted"]["file"] == str(img) for blk in qmp(b, "mig", "query-block")
                   if blk.get("inserted"))
        same_output(b.uri, "domblklist", "mig")


@pytest.fixture
def loop_device(tmp_path):
    """A loop block device over a file of this test's, detached afterwards (by its own name)."""
    if shutil.which("losetup") is None:
        pytest.skip("losetup (util-linux) is not installed")
    backing = image(tmp_path, "loop.raw", fmt="raw")
    out = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"no loop device: {out.stderr.strip()}")
    dev = out.stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "--detach", dev], capture_output=True)


def test_block_device_disk(tiny, loop_device):
    """virsh sees a block device and writes <source dev>; QEMU opens it as host_device."""
    uri = tiny.uri
    printed = same_output(uri, "attach-disk", "hp", loop_device, "sdb", "--targetbus", "scsi", "--print-xml")
    assert "<disk type='block'>" in printed.stdout and f"<source dev='{loop_device}'/>" in printed.stdout
    ok(uri, "attach-disk", "hp", loop_device, "sdb", "--targetbus", "scsi", "--live")
    disk = disk_of(live_xml(uri, "hp"), "sdb")
    assert (disk.type, disk.source) == ("block", loop_device)
    found = next(b for b in qmp(tiny, "hp", "query-block") if b["qdev"] == disk.alias)
    assert found["inserted"]["file"] == loop_device
    nodes = {n["node-name"]: n["drv"] for n in qmp(tiny, "hp", "query-named-block-nodes")}
    assert "host_device" in nodes.values()
    same_output(uri, "domblklist", "hp", "--details")
    assert ours(uri, "detach-disk", "hp", "sdb", "--live").stdout == "Disk detached successfully\n\n"
    assert disk_of(live_xml(uri, "hp"), "sdb") is None


@pytest.mark.parametrize("args", [
    ("attach-disk", "any", "/img/a b'c.qcow2", "vdb", "--driver", "qemu", "--subdriver", "qcow2",
     "--cache", "none", "--type", "disk", "--mode", "readonly", "--print-xml"),
    ("attach-disk", "any", "/img/cd.iso", "hdc", "--type", "cdrom", "--targetbus", "ide", "--serial", "S1",
     "--print-xml"),
    ("attach-disk", "any", "/img/x.raw", "vdc", "--sourcetype", "block", "--alias", "ua-x", "--print-xml"),
    ("attach-disk", "any", "/img/x.raw", "vdc", "--sourcetype", "tape", "--print-xml"),
    ("attach-interface", "any", "bridge", "br0", "--model", "e1000", "--target", "tap7", "--print-xml"),
    ("attach-interface", "any", "network", "default", "--mac", "52:54:00:01:02:03", "--print-xml"),
    ("attach-interface", "any", "direct", "eth9", "--print-xml"),
])
def test_printed_xml_is_virsh_s(pyvirtd, args):
    same_output(pyvirtd.uri, *args)


def test_config_update_replaces_a_disk_or_interface(pyvirtd, guests_built):
    uri, work = pyvirtd.uri, pyvirtd.workdir
    ok(uri, "define", _write(work / "up.xml", tiny_xml("up", work / "up.log")))
    nic = "<interface type='user'><mac address='52:54:00:00:aa:01'/><model type='{}'/></interface>"
    ok(uri, "attach-device", "up", _write(work / "n1.xml", nic.format("virtio")), "--config")
    slot = live_xml(uri, "up", inactive=True).devices.interfaces[0].address
    assert ours(uri, "update-device", "up", _write(work / "n2.xml", nic.format("e1000")), "--config").stdout == \
        "Device updated successfully\n\n"
    iface = live_xml(uri, "up", inactive=True).devices.interfaces[0]
    assert (iface.model, iface.address) == ("e1000", slot)          # the slot stays with the device
    out = same_output(uri, "update-device", "up", _write(work / "d.xml", disk_xml(work / "x.img", "vdz", "virtio")),
                      "--config")
    assert out.returncode == 1 and "target vdz doesn't exist." in out.stderr


def test_q35_pci_hotplug_is_refused_clearly(pyvirtd, guests_built):
    uri, work = pyvirtd.uri, pyvirtd.workdir
    xml = tiny_xml("qq", work / "qq.log").replace("machine='pc'", "machine='q35'")
    ok(uri, "create", _write(work / "qq.xml", xml.replace("</os>", ACPI, 1)))
    wait_for_text(work / "qq.log", READY)
    out = same_output(uri, "attach-device", "qq", _write(work / "v.xml", disk_xml(work / "v.img", "vdb", "virtio")),
                      "--live")
    assert out.returncode == 1 and "i440FX" in out.stderr and "q35" in out.stderr


def test_save_and_restore_keep_a_hotplugged_disk_at_its_slot(tiny):
    uri, work = tiny.uri, tiny.workdir
    img = image(work, "saved.qcow2")
    ok(uri, "attach-disk", "hp", str(img), "vdc", "--subdriver", "qcow2", "--live")
    slot = disk_of(live_xml(uri, "hp"), "vdc").address.slot
    ok(uri, "save", "hp", str(work / "hp.save"))
    ok(uri, "restore", str(work / "hp.save"))
    restored = live_xml(uri, "hp")
    assert disk_of(restored, "vdc").address.slot == slot
    assert pci_devices(tiny, "hp")[disk_of(restored, "vdc").alias] == slot
    assert ok(uri, "domstate", "hp").strip() == "running"


def test_a_qemu_refusal_is_reported_in_libvirt_s_words(pyvirtd, guests_built):
    """Without ACPI the pc machine's pci.0 takes no hot-plugged device: QEMU refuses
    device_add, and the error is libvirt's INTERNAL_ERROR quoting QEMU, as libvirtd
    9.0 reports it (qemuMonitorJSONCheckErrorFull), through virsh and pyvirt alike."""
    log = pyvirtd.workdir / "noacpi.log"
    xml = pyvirtd.workdir / "noacpi.xml"
    xml.write_text(tiny_xml("noacpi", log))
    ok(pyvirtd.uri, "create", str(xml))
    wait_for_text(log, READY)
    disk = image(pyvirtd.workdir, "late.qcow2")
    out = same_output(pyvirtd.uri, "attach-disk", "noacpi", str(disk), "vdb", "--subdriver", "qcow2", "--live")
    assert out.returncode == 1
    assert out.stderr.splitlines()[:2] == [
        "error: Failed to attach disk",
        "error: internal error: unable to execute QEMU command 'device_add': "
        "Bus 'pci.0' does not support hotplugging"], out.stderr
    assert "late.qcow2" not in ok(pyvirtd.uri, "domblklist", "noacpi")


STOCK_ZERO_MEMORY = """
import libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
dom = libvirt.open('test:///default').lookupByName('test')
for call in (lambda: dom.setMemory(0), lambda: dom.setMaxMemory(0), lambda: dom.setMemoryFlags(0, 0)):
    try:
        call()
    except libvirt.libvirtError as e:
        print(e.get_error_code(), e.get_error_domain(), e.get_error_message())
"""


def test_zero_memory_is_refused_with_libvirt_s_public_api_error(tiny):
    """libvirt's public API refuses 0 before the driver (in libvirtd too, which calls it);
    the daemon answers the same, never QEMU's balloon error."""
    stock = subprocess.run(["/usr/bin/python3", "-c", STOCK_ZERO_MEMORY], capture_output=True, text=True,
                           timeout=60)
    dom = pyvirt.open(tiny.uri).lookupByName("hp")
    ours = []
    for call in (lambda: dom.setMemory(0), lambda: dom.setMaxMemory(0), lambda: dom.setMemoryFlags(0, 0)):
        with pytest.raises(pyvirt.libvirtError) as info:
            call()
        err = info.value
        ours.append(f"{err.get_error_code()} {err.get_error_domain()} {err.get_error_message()}")
    assert ours == stock.stdout.splitlines() == [
        "8 20 memory in virDomainSetMemory must not be zero",
        "8 20 memory in virDomainSetMaxMemory must not be zero",
        "8 20 memory in virDomainSetMemoryFlags must not be zero"], stock.stderr
    assert qmp(tiny, "hp", "query-balloon")["actual"] == 128 << 20
