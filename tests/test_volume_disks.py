"""``<disk type='volume'>``: a pool's volume as a guest disk, on a real pyvirtd with real QEMU.

Stock virsh defines a dir pool and a qcow2 volume, then a guest whose disk
names them.  At start the QEMU driver resolves the volume through the
storage driver: QEMU opens the volume's file with its format, the live XML
still names the pool and volume (as libvirt's), the storage driver refuses
to delete the volume while the guest runs and lets it go once it stops; a
restarted daemon still knows the path (domblkinfo); a missing volume or an
inactive pool stops the start with the storage driver's error; the parser
refuses a pool without a volume as libvirt does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from daemons import Pyvirtd
from guests import qemu_available, tiny_xml, wait_for

from pyvirt import conf
from pyvirt.errors import ErrorNumber, libvirtError

VIRSH = shutil.which("virsh")
pytestmark = pytest.mark.skipif(VIRSH is None or not qemu_available(),
                                reason="needs stock virsh and QEMU")

VOLUME_DISK = """
    <disk type='volume' device='disk'>
      <source pool='vp' volume='{volume}'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""
GUEST_UUID = "6b1c1b2e-4a3b-4c1d-9e8f-0a1b2c3d4e5f"


def virsh(daemon: Pyvirtd, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([VIRSH, "-q", "-c", daemon.uri, *args], capture_output=True, text=True, timeout=120)
    if ok:
        assert out.returncode == 0, f"virsh {' '.join(args)}: {out.stderr}"
    else:
        assert out.returncode != 0, f"virsh {' '.join(args)} succeeded: {out.stdout}"
    return out


def qmp(daemon: Pyvirtd, name: str, command: str) -> dict:
    return json.loads(virsh(daemon, "qemu-monitor-command", name, json.dumps({"execute": command})).stdout)


@pytest.fixture
def pool(pyvirtd, tmp_path):
    target = tmp_path / "vpool"
    virsh(pyvirtd, "pool-define-as", "vp", "dir", "--target", str(target))
    virsh(pyvirtd, "pool-build", "vp")
    virsh(pyvirtd, "pool-start", "vp")
    virsh(pyvirtd, "vol-create-as", "vp", "d1.qcow2", "16M", "--format", "qcow2")
    yield target
    subprocess.run([VIRSH, "-c", pyvirtd.uri, "destroy", "g"], capture_output=True)
    subprocess.run([VIRSH, "-c", pyvirtd.uri, "pool-destroy", "vp"], capture_output=True)


def define(daemon: Pyvirtd, tmp_path: Path, volume: str = "d1.qcow2") -> None:
    xml = tmp_path / "g.xml"
    xml.write_text(tiny_xml("g", tmp_path / "g.serial", extra_devices=VOLUME_DISK.format(volume=volume),
                            uuid=GUEST_UUID))
    virsh(daemon, "define", str(xml))


def test_volume_disk_resolves_at_start_and_keeps_its_volume(pyvirtd, pool, tmp_path):
    define(pyvirtd, tmp_path)
    inactive = virsh(pyvirtd, "dumpxml", "--inactive", "g").stdout
    assert "<source pool='vp' volume='d1.qcow2'/>" in inactive and "<driver" not in inactive
    virsh(pyvirtd, "start", "g")

    # QEMU opened the volume's file, as qcow2 (the volume's format: the XML named none)
    blocks = qmp(pyvirtd, "g", "query-named-block-nodes")["return"]
    files = {b["node-name"]: b for b in blocks}
    assert any(b["drv"] == "qcow2" and b["file"] == str(pool / "d1.qcow2") for b in files.values()), blocks

    live = virsh(pyvirtd, "dumpxml", "g").stdout
    assert "<disk type='volume' device='disk'>" in live
    assert "<source pool='vp' volume='d1.qcow2'/>" in live
    assert "<driver type='qcow2'/>" in live
    assert str(pool / "d1.qcow2") not in live
    # domblklist reads the XML: the volume's name, as virsh shows it for libvirtd
    assert virsh(pyvirtd, "domblklist", "g").stdout.split() == ["vda", "d1.qcow2"]

    # the storage driver asks the QEMU driver before deleting
    refused = virsh(pyvirtd, "vol-delete", "d1.qcow2", "--pool", "vp", ok=False)
    assert "volume 'd1.qcow2' is still in use by domain 'g'" in refused.stderr
    assert (pool / "d1.qcow2").exists()

    # a restarted daemon knows the path from the status file
    pyvirtd.stop()
    pyvirtd.start()
    capacity = virsh(pyvirtd, "domblkinfo", "g", "vda").stdout
    assert "Capacity:       16777216" in capacity, capacity
    virsh(pyvirtd, "vol-delete", "d1.qcow2", "--pool", "vp", ok=False)

    virsh(pyvirtd, "destroy", "g")
    assert "<source pool='vp' volume='d1.qcow2'/>" in virsh(pyvirtd, "dumpxml", "g").stdout
    virsh(pyvirtd, "vol-delete", "d1.qcow2", "--pool", "vp")
    assert not (pool / "d1.qcow2").exists()


def test_missing_volume_or_inactive_pool_stops_the_start(pyvirtd, pool, tmp_path):
    define(pyvirtd, tmp_path, volume="nope.qcow2")
    out = virsh(pyvirtd, "start", "g", ok=False)
    assert "Storage volume not found: no storage vol with matching name 'nope.qcow2'" in out.stderr
    assert virsh(pyvirtd, "domstate", "g").stdout.strip() == "shut off"

    define(pyvirtd, tmp_path)
    virsh(pyvirtd, "pool-destroy", "vp")
    out = virsh(pyvirtd, "start", "g", ok=False)
    assert "storage pool 'vp' is not active" in out.stderr
    virsh(pyvirtd, "pool-start", "vp")
    virsh(pyvirtd, "start", "g")
    wait_for(lambda: virsh(pyvirtd, "domstate", "g").stdout.strip() == "running", what="g running")


def test_pool_without_volume_is_refused_as_libvirt():
    xml = """<domain type='qemu'><name>x</name><memory>65536</memory><os><type>hvm</type></os>
      <devices><disk type='volume'><source pool='p'/><target dev='vda'/></disk></devices></domain>"""
    with pytest.raises(libvirtError) as exc:
        conf.parse(xml, ("qemu",), "qemu")
    assert exc.value.get_error_code() == ErrorNumber.XML_ERROR
    assert "'pool' and 'volume' must be specified together for 'pool' type source" in str(exc.value)


def test_volume_disk_hot_plugged(pyvirtd, pool, tmp_path):
    """attach-device of a volume disk: resolved like one at start, refused for deletion while attached."""
    virsh(pyvirtd, "vol-create-as", "vp", "hot.raw", "8M", "--format", "raw")
    xml = tmp_path / "g.xml"
    xml.write_text(tiny_xml("g", tmp_path / "g.serial", uuid=GUEST_UUID).replace(
        "<devices>", "<features><acpi/></features><devices>"))
    virsh(pyvirtd, "define", str(xml))
    virsh(pyvirtd, "start", "g")
    disk = tmp_path / "hot.xml"
    disk.write_text("<disk type='volume' device='disk'><source pool='vp' volume='hot.raw'/>"
                    "<target dev='vdb' bus='virtio'/></disk>")
    virsh(pyvirtd, "attach-device", "g", str(disk), "--live")
    blocks = qmp(pyvirtd, "g", "query-named-block-nodes")["return"]
    assert any(b["drv"] == "raw" and b["file"] == str(pool / "hot.raw") for b in blocks), blocks
    assert "<source pool='vp' volume='hot.raw'/>" in virsh(pyvirtd, "dumpxml", "g").stdout
    refused = virsh(pyvirtd, "vol-delete", "hot.raw", "--pool", "vp", ok=False)
    assert "still in use by domain 'g'" in refused.stderr


def _pool_on(daemon: Pyvirtd, target: Path) -> None:
    virsh(daemon, "pool-define-as", "vp", "dir", "--target", str(target))
    virsh(daemon, "pool-build", "vp")
    virsh(daemon, "pool-start", "vp")
    virsh(daemon, "vol-create-as", "vp", "d1.qcow2", "16M", "--format", "qcow2")


def test_volume_disk_resolved_again_at_migration_prepare(tmp_path, guests_built):
    """The destination resolves the volume through its own pool (here another directory
    than the source's): QEMU there opens the destination's file; a destination whose
    pool is not active refuses the Prepare with the storage driver's error and the
    guest runs on at the source."""
    import pyvirt
    from daemons import running_pair

    # UNSAFE: the pools are local directories, not shared storage (libvirt refuses that
    # without the flag); the tiny guest never reads its disk
    FLAGS = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_UNSAFE
    a, b = Pyvirtd(tmp_path / "a"), Pyvirtd(tmp_path / "b")
    with running_pair(a, b):
        _pool_on(a, tmp_path / "pool-a")
        _pool_on(b, tmp_path / "pool-b")
        xml = tiny_xml("g", a.workdir / "g.serial", uuid=GUEST_UUID,
                       extra_devices=VOLUME_DISK.format(volume="d1.qcow2"))
        src = pyvirt.open(a.uri)
        dst = pyvirt.open(b.uri)
        dom = src.createXML(xml, 0)

        virsh(b, "pool-destroy", "vp")
        with pytest.raises(pyvirt.libvirtError) as exc:
            dom.migrate(dst, FLAGS)
        assert "storage pool 'vp' is not active" in str(exc.value)
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING

        virsh(b, "pool-start", "vp")
        moved = dom.migrate(dst, FLAGS)
        assert moved.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
        blocks = qmp(b, "g", "query-named-block-nodes")["return"]
        assert any(n["drv"] == "qcow2" and n["file"] == str(tmp_path / "pool-b" / "d1.qcow2") for n in blocks)
        assert "<source pool='vp' volume='d1.qcow2'/>" in moved.XMLDesc(0)
        refused = virsh(b, "vol-delete", "d1.qcow2", "--pool", "vp", ok=False)
        assert "still in use by domain 'g'" in refused.stderr
        virsh(a, "vol-delete", "d1.qcow2", "--pool", "vp")     # the source lets its copy go
        moved.destroy()


def _disk_of(xml: str) -> etree._Element:
    return etree.fromstring(xml).find("devices/disk")


def test_disk_only_snapshot_of_volume_disk_needs_a_file_and_moves_to_it(pyvirtd, pool, tmp_path):
    """libvirt 9.0 names no overlay for a volume disk (its formatted definition has no
    path); with --diskspec file= the disk becomes a file disk on the overlay, the
    volume its backing image, in the live and the persistent definition, so the next
    start keeps the overlay's writes; the volume, now a backing image, is in use."""
    define(pyvirtd, tmp_path)
    virsh(pyvirtd, "start", "g")
    refused = virsh(pyvirtd, "snapshot-create-as", "g", "s1", "--disk-only", ok=False)
    assert ("unsupported configuration: cannot generate external snapshot name for disk 'vda' "
            "without source") in refused.stderr
    assert virsh(pyvirtd, "snapshot-list", "g", "--name").stdout.strip() == ""

    overlay = tmp_path / "g.s1.qcow2"
    volume = str(pool / "d1.qcow2")
    virsh(pyvirtd, "snapshot-create-as", "g", "s1", "--disk-only", "--diskspec", f"vda,file={overlay}")
    for flags in ((), ("--inactive",)):
        disk = _disk_of(virsh(pyvirtd, "dumpxml", "g", *flags).stdout)
        assert disk.get("type") == "file", flags
        assert disk.find("source").get("file") == str(overlay), flags
        assert disk.find("driver").get("type") == "qcow2", flags
        backing = disk.find("backingStore")
        assert backing.find("source").get("file") == volume, flags
        assert backing.find("format").get("type") == "qcow2", flags
    nodes = qmp(pyvirtd, "g", "query-named-block-nodes")["return"]
    assert any(n["file"] == str(overlay) and n.get("backing_file") == volume for n in nodes), nodes

    refused = virsh(pyvirtd, "vol-delete", "d1.qcow2", "--pool", "vp", ok=False)
    assert "volume 'd1.qcow2' is still in use by domain 'g'" in refused.stderr
    assert (pool / "d1.qcow2").exists()

    virsh(pyvirtd, "destroy", "g")
    virsh(pyvirtd, "start", "g")
    nodes = qmp(pyvirtd, "g", "query-named-block-nodes")["return"]
    assert any(n["file"] == str(overlay) for n in nodes), nodes
    virsh(pyvirtd, "destroy", "g")
    virsh(pyvirtd, "vol-delete", "d1.qcow2", "--pool", "vp")     # a shut-off guest holds nothing


def test_a_guest_boots_from_a_cloned_volume(pyvirtd, pool, tmp_path, guests_built):
    """vol-clone of a volume holding the tiny guest's bootable image: the clone's content
    equals the source's (qemu-img compare), and a guest boots from the clone (its kernel
    is the clone's file) with its disk on the clone, which QEMU opens."""
    from guests import READY, TINY, wait_for_text
    image = TINY.read_bytes()
    virsh(pyvirtd, "vol-create-as", "vp", "boot.img", f"{len(image)}b", "--format", "raw")
    upload = tmp_path / "boot.src"
    upload.write_bytes(image)
    virsh(pyvirtd, "vol-upload", "--pool", "vp", "boot.img", str(upload))
    virsh(pyvirtd, "vol-clone", "--pool", "vp", "boot.img", "boot-clone.img")
    clone = Path(virsh(pyvirtd, "vol-path", "--pool", "vp", "boot-clone.img").stdout.strip())
    assert clone == pool / "boot-clone.img"
    same = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", str(pool / "boot.img"), str(clone)],
                          capture_output=True, text=True, timeout=60)
    assert same.returncode == 0, same.stdout + same.stderr
    assert clone.read_bytes()[:len(image)] == image

    log = tmp_path / "clone.serial"
    disk = """
    <disk type='volume' device='disk'>
      <driver name='qemu' type='raw'/>
      <source pool='vp' volume='boot-clone.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""
    xml = tiny_xml("g", log, extra_devices=disk, uuid=GUEST_UUID)
    xml = xml.replace(f"<kernel>{tmp_path / TINY.name}</kernel>", f"<kernel>{clone}</kernel>")
    assert f"<kernel>{clone}</kernel>" in xml
    (tmp_path / "g.xml").write_text(xml)
    virsh(pyvirtd, "create", str(tmp_path / "g.xml"))
    wait_for_text(log, READY)
    nodes = qmp(pyvirtd, "g", "query-named-block-nodes")["return"]
    assert any(n["drv"] == "raw" and n["file"] == str(clone) for n in nodes), nodes
    virsh(pyvirtd, "destroy", "g")


def test_disk_only_snapshot_of_a_shut_off_volume_disk(pyvirtd, pool, tmp_path):
    """Shut off, the volume's path comes from the storage driver: the overlay sits on it
    and the definition's disk becomes a file disk on the overlay."""
    define(pyvirtd, tmp_path)
    refused = virsh(pyvirtd, "snapshot-create-as", "g", "s1", "--disk-only", ok=False)
    assert "cannot generate external snapshot name for disk 'vda' without source" in refused.stderr
    overlay = tmp_path / "off.qcow2"
    virsh(pyvirtd, "snapshot-create-as", "g", "s1", "--disk-only", "--diskspec", f"vda,file={overlay}")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(overlay)], capture_output=True,
                                     text=True, check=True, timeout=60).stdout)
    assert info["backing-filename"] == str(pool / "d1.qcow2") and info["backing-filename-format"] == "qcow2"
    disk = _disk_of(virsh(pyvirtd, "dumpxml", "--inactive", "g").stdout)
    assert disk.get("type") == "file" and disk.find("source").get("file") == str(overlay)
    assert disk.find("backingStore/source").get("file") == str(pool / "d1.qcow2")


def test_backing_image_of_a_file_disk_is_in_use(pyvirtd, pool, tmp_path):
    """A file disk on a pool's volume, moved onto an overlay elsewhere: the volume is
    now the disk's backing image, and vol-delete still refuses it while the guest runs."""
    volume = pool / "d1.qcow2"
    disk = f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{volume}'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""
    (tmp_path / "g.xml").write_text(tiny_xml("g", tmp_path / "g.serial", extra_devices=disk, uuid=GUEST_UUID))
    virsh(pyvirtd, "define", str(tmp_path / "g.xml"))
    virsh(pyvirtd, "start", "g")
    overlay = tmp_path / "top.qcow2"
    virsh(pyvirtd, "snapshot-create-as", "g", "s1", "--disk-only", "--diskspec", f"vda,file={overlay}")
    assert _disk_of(virsh(pyvirtd, "dumpxml", "g").stdout).find("source").get("file") == str(overlay)
    refused = virsh(pyvirtd, "vol-delete", "d1.qcow2", "--pool", "vp", ok=False)
    assert "volume 'd1.qcow2' is still in use by domain 'g'" in refused.stderr
    assert volume.exists()
    virsh(pyvirtd, "destroy", "g")
    virsh(pyvirtd, "vol-delete", "d1.qcow2", "--pool", "vp")
    assert not volume.exists()
