"""Deleting external snapshots as libvirt 9.0 does, with stock virsh against a real
pyvirtd and real QEMU: the snapshot's overlay merged into the image under it (QMP
block-commit on a running guest, qemu-img commit/rebase on a shut-off one), the
overlay gone, the guest's disk content unchanged, and 9.0's refusals word for word.

Expected content is built independently: the same qemu-io writes applied to a raw
scratch image, compared with ``qemu-img compare`` (exit 0: the same content)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from guests import tiny_xml
from test_snapshot import _define, _img, _ok, _same, _virsh, _write_marker, pytestmark  # noqa: F401

MIB = 1 << 20


def _expected(path: Path, writes: list[tuple[int, int]]) -> Path:
    """A raw 16 MiB image holding ``writes`` ((pattern byte, offset) of 64 KiB each)."""
    assert _img("create", "-q", "-f", "raw", str(path), "16M").returncode == 0
    for byte, offset in writes:
        out = subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P {byte} {offset} 64k", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
    return path


def _write_at(image: Path, byte: int, offset: int) -> None:
    out = subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {byte} {offset} 64k", str(image)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def _guest_io(uri: str, command: str, alias: str = "virtio-disk0") -> None:
    """qemu-io inside the running QEMU through the disk's device: what the guest would
    write (HMP answers nothing when it worked), then a flush so the image is current
    on disk for qemu-img."""
    for cmd in (command, "flush"):
        out = _ok(_virsh, uri, "qemu-monitor-command", "g", "--hmp",
                  f'qemu-io -d /machine/peripheral/{alias}/virtio-backend "{cmd}"')
        assert out.strip() == "", out


def _chain(image: Path) -> list[str]:
    out = _img("info", "-U", "--backing-chain", "--output=json", str(image))
    assert out.returncode == 0, out.stderr
    return [entry["filename"] for entry in json.loads(out.stdout)]


def test_running_guest_active_and_intermediate_commit(pyvirtd):
    """Two disk-only snapshots of a running guest; deleting the older one commits its
    overlay under the newer one (intermediate commit), deleting the newer one commits
    the active layer and pivots; the guest runs on, on its original image."""
    uri = pyvirtd.uri
    disk, _ = _define(pyvirtd)
    work = pyvirtd.workdir
    _write_marker(disk, 0x11)
    _ok(_virsh, uri, "start", "g")
    assert _ok(_virsh, uri, "snapshot-create-as", "g", "e1", "--disk-only") == "Domain snapshot e1 created\n"
    _guest_io(uri, f"write -P 0x22 {MIB} 64k")
    assert _ok(_virsh, uri, "snapshot-create-as", "g", "e2", "--disk-only") == "Domain snapshot e2 created\n"
    _guest_io(uri, f"write -P 0x33 {2 * MIB} 64k")
    expected = _expected(work / "expected.raw", [(0x11, 0), (0x22, MIB), (0x33, 2 * MIB)])
    e1, e2 = work / "g.e1", work / "g.e2"
    assert _chain(e2) == [str(e2), str(e1), str(disk)]
    assert _same(e2, expected)

    # the refusals first: nothing may have moved after them
    out = _virsh(uri, "snapshot-delete", "g", "e1", "--children")
    assert out.returncode == 1
    assert out.stderr == ("error: Failed to delete snapshot e1\nerror: unsupported configuration: "
                          "deletion of external children disk snapshots not supported\n")
    out = _virsh(uri, "snapshot-delete", "g", "e1", "--children-only")
    assert out.stderr == ("error: Failed to delete snapshot e1\nerror: unsupported configuration: "
                          "deletion of external children disk snapshots not supported\n")
    out = _virsh(uri, "snapshot-delete", "g", "e2", "--children")
    assert out.stderr == ("error: Failed to delete snapshot e2\nerror: unsupported configuration: "
                          "deletion of external disk snapshots with children not supported\n")
    assert _chain(e2) == [str(e2), str(e1), str(disk)]

    # e1: its overlay is in the middle of the chain
    assert _ok(_virsh, uri, "snapshot-delete", "g", "e1") == "Domain snapshot e1 deleted\n\n"
    assert not e1.exists()
    assert _chain(e2) == [str(e2), str(disk)]
    assert _ok(_virsh, uri, "domstate", "g").strip() == "running"
    live = _ok(_virsh, uri, "dumpxml", "g")
    assert f"<source file='{e2}'" in live and str(e1) not in live
    assert str(e1) not in _ok(_virsh, uri, "dumpxml", "--inactive", "g")
    # e2 lost its parent and forgot the merged overlay in the definition it keeps
    assert _ok(_virsh, uri, "snapshot-list", "g", "--name") == "e2\n\n"
    assert "Parent:         -" in _ok(_virsh, uri, "snapshot-info", "g", "e2")
    assert str(e1) not in _ok(_virsh, uri, "snapshot-dumpxml", "g", "e2")
    assert _same(e2, expected)

    # e2: its overlay is the active layer, committed and pivoted onto the disk's image
    assert _ok(_virsh, uri, "snapshot-delete", "g", "--current") == "Domain snapshot e2 deleted\n\n"
    assert not e2.exists()
    assert _chain(disk) == [str(disk)]
    assert _ok(_virsh, uri, "domstate", "g").strip() == "running"
    blocks = _ok(_virsh, uri, "qemu-monitor-command", "g", '{"execute":"query-block"}')
    assert str(disk) in blocks and str(e2) not in blocks and str(e1) not in blocks
    live = _ok(_virsh, uri, "dumpxml", "g")
    assert f"<source file='{disk}'" in live and "g.e" not in live
    assert "g.e" not in _ok(_virsh, uri, "dumpxml", "--inactive", "g")
    _guest_io(uri, f"write -P 0x44 {3 * MIB} 64k")      # the guest writes on, to its image now
    expected = _expected(work / "expected2.raw", [(0x11, 0), (0x22, MIB), (0x33, 2 * MIB), (0x44, 3 * MIB)])
    assert _same(disk, expected)
    assert _ok(_virsh, uri, "snapshot-list", "g", "--name") == "\n"
    _ok(_virsh, uri, "destroy", "g")
    assert _same(disk, expected)
    _ok(_virsh, uri, "start", "g")              # the persistent definition names the merged image
    _ok(_virsh, uri, "destroy", "g")


def test_shut_off_guest_commit(pyvirtd):
    """Shut off: qemu-img commit of the active overlay into its backing file.  As libvirt
    9.0 (checked in test_same_as_libvirtd), a snapshot whose overlay is under another
    one is refused while the domain is shut off."""
    uri = pyvirtd.uri
    disk, _ = _define(pyvirtd)
    work = pyvirtd.workdir
    e1, e2 = work / "g.e1", work / "g.e2"
    _write_marker(disk, 0x11)
    _ok(_virsh, uri, "snapshot-create-as", "g", "e1", "--disk-only")
    _write_at(e1, 0x22, MIB)
    _ok(_virsh, uri, "snapshot-create-as", "g", "e2", "--disk-only")
    _write_at(e2, 0x33, 2 * MIB)
    expected = _expected(work / "expected.raw", [(0x11, 0), (0x22, MIB), (0x33, 2 * MIB)])
    assert _same(e2, expected)

    out = _virsh(uri, "snapshot-delete", "g", "e1")
    assert out.returncode == 1
    assert out.stderr == ("error: Failed to delete snapshot e1\nerror: invalid argument: could not find base "
                          "disk source in disk source chain\n")
    assert _chain(e2) == [str(e2), str(e1), str(disk)]

    assert _ok(_virsh, uri, "snapshot-delete", "g", "e2") == "Domain snapshot e2 deleted\n\n"
    assert not e2.exists()
    assert _chain(e1) == [str(e1), str(disk)]
    assert _same(e1, expected)
    inactive = _ok(_virsh, uri, "dumpxml", "--inactive", "g")
    assert f"<source file='{e1}'/>" in inactive and str(e2) not in inactive
    assert "Current:        yes" in _ok(_virsh, uri, "snapshot-info", "g", "e1")

    assert _ok(_virsh, uri, "snapshot-delete", "g", "e1") == "Domain snapshot e1 deleted\n\n"
    assert not e1.exists()
    assert _chain(disk) == [str(disk)]
    assert _same(disk, expected)
    assert "g.e" not in _ok(_virsh, uri, "dumpxml", "--inactive", "g")
    assert _ok(_virsh, uri, "snapshot-list", "g", "--name") == "\n"
    _ok(_virsh, uri, "start", "g")
    assert _ok(_virsh, uri, "domstate", "g").strip() == "running"
    _ok(_virsh, uri, "destroy", "g")


def test_metadata_only_keeps_the_overlay_and_block_job_refusal(pyvirtd):
    """--metadata forgets the snapshot and leaves its overlay; a block job on the disk
    refuses the merge in libvirt 9.0's words."""
    uri = pyvirtd.uri
    disk, _ = _define(pyvirtd)
    work = pyvirtd.workdir
    _ok(_virsh, uri, "start", "g")
    _ok(_virsh, uri, "snapshot-create-as", "g", "e1", "--disk-only")
    _ok(_virsh, uri, "blockcopy", "g", "vda", str(work / "copy.qcow2"), "--transient-job", "--wait")
    out = _virsh(uri, "snapshot-delete", "g", "e1")
    assert out.returncode == 1
    assert out.stderr == ("error: Failed to delete snapshot e1\nerror: Operation not supported: cannot delete "
                          "external snapshots when there is another active block job\n")
    _ok(_virsh, uri, "blockjob", "g", "vda", "--abort")
    assert _ok(_virsh, uri, "snapshot-delete", "g", "e1", "--metadata") == "Domain snapshot e1 deleted\n\n"
    assert (work / "g.e1").exists()
    assert _chain(work / "g.e1") == [str(work / "g.e1"), str(disk)]
    assert f"<source file='{work / 'g.e1'}'" in _ok(_virsh, uri, "dumpxml", "g")
    _ok(_virsh, uri, "destroy", "g")


def test_two_disks_merged_together_pyvirt_cli(pyvirtd):
    """A snapshot of two disks: both commits run at once, both disks pivot back; through
    pyvirt's own command line this time."""
    from test_snapshot import _pyvirt
    uri = pyvirtd.uri
    work = pyvirtd.workdir
    images = {dev: work / f"two-{dev}.qcow2" for dev in ("vda", "vdb")}
    for image in images.values():
        assert _img("create", "-q", "-f", "qcow2", str(image), "16M").returncode == 0
        os.chmod(image, 0o666)
    devices = "".join(f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{image}'/>
      <target dev='{dev}' bus='virtio'/>
    </disk>""" for dev, image in images.items())
    (work / "two.xml").write_text(tiny_xml("g", work / "g-serial.log", extra_devices=devices))
    _ok(_virsh, uri, "define", str(work / "two.xml"))
    _write_marker(images["vda"], 0x11)
    _write_marker(images["vdb"], 0x12)
    _ok(_pyvirt, uri, "start", "g")
    assert _ok(_pyvirt, uri, "snapshot-create-as", "g", "both", "--disk-only") == "Domain snapshot both created\n"
    overlays = {dev: work / f"two-{dev}.both" for dev in images}
    assert all(_chain(overlays[dev]) == [str(overlays[dev]), str(images[dev])] for dev in images)
    _guest_io(uri, f"write -P 0x21 {MIB} 64k")
    _guest_io(uri, f"write -P 0x22 {MIB} 64k", alias="virtio-disk1")
    assert _ok(_pyvirt, uri, "snapshot-delete", "g", "both") == "Domain snapshot both deleted\n\n"
    assert not any(p.exists() for p in overlays.values())
    assert all(_chain(images[dev]) == [str(images[dev])] for dev in images)
    assert _ok(_pyvirt, uri, "domstate", "g").strip() == "running"
    live = _ok(_pyvirt, uri, "dumpxml", "g")
    assert ".both" not in live and all(f"<source file='{image}'" in live for image in images.values())
    _ok(_pyvirt, uri, "destroy", "g")
    assert _same(images["vda"], _expected(work / "vda.raw", [(0x11, 0), (0x21, MIB)]))
    assert _same(images["vdb"], _expected(work / "vdb.raw", [(0x12, 0), (0x22, MIB)]))


def test_failed_merge_changes_nothing(pyvirtd):
    """QEMU refusing the commit (the image under the overlay not writable for it): the
    error is QEMU's, quoted as libvirt quotes a failed QMP command; the chain, the
    definition and the snapshot stay; the delete works once the image is writable."""
    from daemons import qemu_pid
    uri = pyvirtd.uri
    disk, _ = _define(pyvirtd)
    _ok(_virsh, uri, "start", "g")
    pid = qemu_pid(pyvirtd, "g")
    assert pid is not None
    if os.stat(f"/proc/{pid}").st_uid == 0:
        _ok(_virsh, uri, "destroy", "g")
        pytest.skip("QEMU runs as root here: file modes do not stop it")
    _ok(_virsh, uri, "snapshot-create-as", "g", "e1", "--disk-only")
    overlay = pyvirtd.workdir / "g.e1"
    os.chmod(disk, 0o444)
    try:
        out = _virsh(uri, "snapshot-delete", "g", "e1")
    finally:
        os.chmod(disk, 0o666)
    assert out.returncode == 1
    assert out.stderr == ("error: Failed to delete snapshot e1\nerror: internal error: unable to execute QEMU "
                          f"command 'block-commit': Could not open '{disk}': Permission denied\n")
    assert _chain(overlay) == [str(overlay), str(disk)]
    assert f"<source file='{overlay}'" in _ok(_virsh, uri, "dumpxml", "g")
    assert _ok(_virsh, uri, "snapshot-list", "g", "--name") == "e1\n\n"
    assert _ok(_virsh, uri, "domstate", "g").strip() == "running"
    assert _ok(_virsh, uri, "snapshot-delete", "g", "e1") == "Domain snapshot e1 deleted\n\n"
    assert _chain(disk) == [str(disk)] and not overlay.exists()
    _ok(_virsh, uri, "destroy", "g")


def test_merge_after_daemon_restart(pyvirtd):
    """The daemon restarted between the snapshots and their deletion: the running guest's
    chain (from the status XML and QEMU) is merged as before."""
    uri = pyvirtd.uri
    disk, _ = _define(pyvirtd)
    work = pyvirtd.workdir
    _write_marker(disk, 0x11)
    _ok(_virsh, uri, "start", "g")
    _ok(_virsh, uri, "snapshot-create-as", "g", "e1", "--disk-only")
    _guest_io(uri, f"write -P 0x22 {MIB} 64k")
    _ok(_virsh, uri, "snapshot-create-as", "g", "e2", "--disk-only")
    pyvirtd.stop()
    pyvirtd.start()
    assert _ok(_virsh, uri, "domstate", "g").strip() == "running"
    assert _ok(_virsh, uri, "snapshot-delete", "g", "e1") == "Domain snapshot e1 deleted\n\n"
    assert _ok(_virsh, uri, "snapshot-delete", "g", "e2") == "Domain snapshot e2 deleted\n\n"
    assert _chain(disk) == [str(disk)] and not (work / "g.e1").exists() and not (work / "g.e2").exists()
    assert _ok(_virsh, uri, "domstate", "g").strip() == "running"
    _ok(_virsh, uri, "destroy", "g")
    assert _same(disk, _expected(work / "expected.raw", [(0x11, 0), (0x22, MIB)]))


@pytest.mark.parametrize("running", [False, True], ids=["shutoff", "running"])
def test_internal_parent_refused(pyvirtd, running):
    uri = pyvirtd.uri
    disk, _ = _define(pyvirtd)
    _ok(_virsh, uri, "snapshot-create-as", "g", "one")
    if running:
        _ok(_virsh, uri, "start", "g")
    _ok(_virsh, uri, "snapshot-create-as", "g", "ext", "--disk-only")
    out = _virsh(uri, "snapshot-delete", "g", "ext")
    assert out.stderr == ("error: Failed to delete snapshot ext\nerror: Operation not supported: deleting "
                          "external snapshot that has internal snapshot as parent not supported\n")
    assert _chain(pyvirtd.workdir / "g.ext") == [str(pyvirtd.workdir / "g.ext"), str(disk)]
    if running:
        _ok(_virsh, uri, "destroy", "g")



# python3-libvirt: the block job events of the merges; a suspend/resume pair closes each
# step (events arrive in order on one connection), so nothing waits on time.
_EVENTS_SCRIPT = textwrap.dedent("""
    import json, sys, threading
    import libvirt
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)],
                     daemon=True).start()
    conn = libvirt.open(sys.argv[1])
    events = []
    seen = threading.Condition()
    def note(kind):
        def cb(c, d, *args):
            with seen:
                events.append([kind] + list(args[:-1]))
                seen.notify_all()
        return cb
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, note("lifecycle"), None)
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB, note("block_job"), None)
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, note("block_job_2"), None)
    dom = conn.lookupByName("g")
    def step():
        dom.suspend()
        dom.resume()
        with seen:
            assert seen.wait_for(lambda: events[-1:] == [["lifecycle", 4, 0]], 30), events
            out = events[:-2]
            del events[:]
        return out
    out = {}
    for name in ("e1", "e2"):
        dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>",
                              libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    out["create"] = step()
    dom.snapshotLookupByName("e1").delete()
    out["delete_e1"] = step()
    dom.snapshotLookupByName("e2").delete()
    out["delete_e2"] = step()
    print(json.dumps(out).replace(sys.argv[2], "W"))
""")

# libvirtd 9.0 (Debian 12, bench/libvirt_ref.py) running the script above on the same guest:
# the intermediate commit's COMPLETED names the disk's image (unchanged); the active commit's
# READY names the overlay, its COMPLETED the image the disk is back on.
LIBVIRTD_9_0_EVENTS = {
    "create": [],
    "delete_e1": [["block_job", "W/g.e2", 3, 0], ["block_job_2", "vda", 3, 0]],
    "delete_e2": [["block_job", "W/g.e2", 4, 3], ["block_job_2", "vda", 4, 3],
                  ["block_job", "W/g.qcow2", 4, 0], ["block_job_2", "vda", 4, 0]],
}


def test_block_job_events_as_libvirtd(pyvirtd):
    _define(pyvirtd)
    _ok(_virsh, pyvirtd.uri, "start", "g")
    out = subprocess.run(["/usr/bin/python3", "-c", _EVENTS_SCRIPT, pyvirtd.uri, str(pyvirtd.workdir)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == LIBVIRTD_9_0_EVENTS
    _ok(_virsh, pyvirtd.uri, "destroy", "g")

# -- side by side with libvirtd 9.0 ---------------------------------------------------------

def _scenario(uri: str, work: Path) -> list:
    """One virsh script on a daemon: running and shut-off external deletes, refusals,
    what the images look like after each step.  Paths are given relative to ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "g.qcow2"
    assert _img("create", "-q", "-f", "qcow2", str(disk), "16M").returncode == 0
    xml = tiny_xml("g", work / "g-serial.log", extra_devices=f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>""")
    (work / "g.xml").write_text(xml)
    steps: list = []

    def virsh(*args: str) -> None:
        out = _virsh(uri, *args)
        steps.append([[a.replace(str(work), "W") for a in args], out.returncode, out.stdout.replace(str(work), "W"),
                      out.stderr.replace(str(work), "W")])

    def disks(*args: str) -> None:
        """The <disk> elements of a definition virsh prints, without what differs for
        reasons of its own: PCI slots, libvirt's run-time image indexes, and the empty
        <backingStore/> libvirt's live XML gives every image with no backing file
        (pyvirt's gives it only at the end of a chain)."""
        text = _virsh(uri, *args).stdout.replace(str(work), "W")
        text = re.sub(r" index='\d+'", "", re.sub(r"slot='0x0\d'", "slot", text))
        text = re.sub(r"(<source file='[^']*'/>)\n *<backingStore/>", r"\1", text)
        steps.append([list(args), re.findall(r"<disk .*?</disk>", text, re.S)])

    def images() -> None:
        top = next((work / n for n in ("g.e2", "g.e1") if (work / n).exists()), disk)
        steps.append(["chain", [p.replace(str(work), "W") for p in _chain(top)],
                      sorted(p.name for p in work.glob("g.e*"))])

    virsh("define", str(work / "g.xml"))
    _write_marker(disk, 0x11)
    virsh("start", "g")
    virsh("snapshot-create-as", "g", "e1", "--disk-only")
    virsh("qemu-monitor-command", "g", "--hmp", 'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend '
                                                f'"write -P 0x22 {MIB} 64k"')
    virsh("snapshot-create-as", "g", "e2", "--disk-only")
    for flag in ("--children", "--children-only"):
        virsh("snapshot-delete", "g", "e1", flag)
    virsh("snapshot-delete", "g", "e2", "--children")
    virsh("snapshot-delete", "g", "e1")
    images()
    disks("dumpxml", "g")
    disks("dumpxml", "--inactive", "g")
    disks("snapshot-dumpxml", "g", "e2")
    virsh("snapshot-info", "g", "e2")
    virsh("snapshot-delete", "g", "--current")
    images()
    disks("dumpxml", "g")
    disks("dumpxml", "--inactive", "g")
    virsh("domstate", "g")
    virsh("snapshot-list", "g", "--name")
    virsh("snapshot-create-as", "g", "e1", "--disk-only")
    virsh("blockcopy", "g", "vda", str(work / "copy.qcow2"), "--transient-job", "--wait")
    virsh("snapshot-delete", "g", "e1")
    virsh("blockjob", "g", "vda", "--abort")
    virsh("snapshot-delete", "g", "e1")
    images()
    virsh("destroy", "g")
    expected = _expected(work / "expected.raw", [(0x11, 0), (0x22, MIB)])
    steps.append(["same after running deletes", _same(disk, expected)])
    # shut off
    virsh("snapshot-create-as", "g", "e1", "--disk-only")
    _write_at(work / "g.e1", 0x33, 2 * MIB)
    virsh("snapshot-create-as", "g", "e2", "--disk-only")
    _write_at(work / "g.e2", 0x44, 3 * MIB)
    virsh("snapshot-delete", "g", "e1")
    images()
    virsh("snapshot-delete", "g", "e2")
    images()
    virsh("snapshot-delete", "g", "e1")
    images()
    expected = _expected(work / "expected2.raw", [(0x11, 0), (0x22, MIB), (0x33, 2 * MIB), (0x44, 3 * MIB)])
    steps.append(["same after shut-off deletes", _same(disk, expected)])
    virsh("domstate", "g")
    # an internal snapshot under an external one
    virsh("snapshot-create-as", "g", "i1")
    virsh("snapshot-create-as", "g", "e3", "--disk-only")
    virsh("snapshot-delete", "g", "e3")
    virsh("snapshot-delete", "g", "e3", "--metadata")
    virsh("snapshot-delete", "g", "i1", "--metadata")
    virsh("undefine", "g")
    # a transient guest, paused
    other = work / "t.qcow2"
    assert _img("create", "-q", "-f", "qcow2", str(other), "16M").returncode == 0
    (work / "t.xml").write_text(xml.replace("<name>g</name>", "<name>t</name>").replace(str(disk), str(other)))
    virsh("create", str(work / "t.xml"))
    virsh("suspend", "t")
    virsh("snapshot-create-as", "t", "s1", "--disk-only")
    steps.append(["chain", [p.replace(str(work), "W") for p in _chain(work / "t.s1")]])
    virsh("snapshot-delete", "t", "s1")
    steps.append(["chain", [p.replace(str(work), "W") for p in _chain(other)], (work / "t.s1").exists()])
    virsh("domstate", "t", "--reason")
    disks("dumpxml", "t")
    virsh("destroy", "t")
    return steps


@pytest.mark.libvirtd
def test_same_as_libvirtd(tmp_path):
    """The script above gives the same outputs, errors and images on pyvirtd and libvirtd 9.0."""
    import sys
    from daemons import Pyvirtd
    from guests import REPO
    sys.path.insert(0, str(REPO / "bench"))
    import libvirt_ref
    ok, why = libvirt_ref.libvirt_available()
    if not ok:
        pytest.skip(f"libvirtd not available: {why}")
    lv = libvirt_ref.LibvirtHost(tmp_path / "libvirtd", libvirt_ref.pick_free_ports(1)[0],
                                 cache_dir=tmp_path / "cache")
    lv.start()
    try:
        theirs = _scenario(lv.uri, tmp_path / "lv")
    finally:
        lv.stop()
    pv = Pyvirtd(tmp_path / "pyvirtd")
    pv.start()
    try:
        ours = _scenario(pv.uri, tmp_path / "pv")
    finally:
        pv.cleanup()
    (tmp_path / "steps.json").write_text(json.dumps({"pyvirtd": ours, "libvirtd": theirs}, indent=1))
    for a, b in zip(ours, theirs):
        assert a == b
    assert len(ours) == len(theirs)
