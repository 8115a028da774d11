"""The storage driver through stock clients: virsh 9.0 and python3-libvirt against a real pyvirtd.

Pools of type dir (define/build/start/refresh/destroy/delete/undefine/autostart,
restart persistence), volumes (raw, qcow2, backing store, clone, create-from,
wipe, resize, upload/download byte for byte), lookups, libvirt's errors, and a
logical pool on a loop device the test makes and removes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from daemons import Pyvirtd

VIRSH = shutil.which("virsh")
SYSTEM_PYTHON = "/usr/bin/python3"
pytestmark = pytest.mark.skipif(VIRSH is None, reason="stock virsh (libvirt-clients) is not installed")


def virsh(daemon: Pyvirtd, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([VIRSH, "-q", "-c", daemon.uri, *args], capture_output=True, text=True, timeout=120)
    if ok:
        assert out.returncode == 0, f"virsh {' '.join(args)}: {out.stderr}"
    else:
        assert out.returncode != 0, f"virsh {' '.join(args)} succeeded: {out.stdout}"
    return out


def qemu_img_info(path: Path) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)],
                                     capture_output=True, text=True, check=True).stdout)


def libvirt_script(code: str, *argv: str) -> dict:
    if subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    out = subprocess.run([SYSTEM_PYTHON, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def dir_pool(pyvirtd, tmp_path):
    """A running, persistent dir pool 'p1' on a directory the test owns."""
    target = tmp_path / "pool1"
    virsh(pyvirtd, "pool-define-as", "p1", "dir", "--target", str(target))
    virsh(pyvirtd, "pool-build", "p1")
    virsh(pyvirtd, "pool-start", "p1")
    yield target
    subprocess.run([VIRSH, "-c", pyvirtd.uri, "pool-destroy", "p1"], capture_output=True)


def test_dir_pool_lifecycle(pyvirtd, tmp_path):
    target = tmp_path / "pool-a"
    virsh(pyvirtd, "pool-define-as", "pa", "dir", "--target", str(target))
    assert virsh(pyvirtd, "pool-list", "--inactive").stdout.split()[:2] == ["pa", "inactive"]
    virsh(pyvirtd, "pool-build", "pa")
    assert target.is_dir() and (target.stat().st_mode & 0o777) == 0o711
    virsh(pyvirtd, "pool-start", "pa")
    info = virsh(pyvirtd, "pool-info", "pa").stdout
    assert "State:          running" in info and "Persistent:     yes" in info
    xml = virsh(pyvirtd, "pool-dumpxml", "pa").stdout
    assert f"<path>{target}</path>" in xml and "<capacity unit='bytes'>" in xml and "<mode>0711</mode>" in xml
    virsh(pyvirtd, "pool-autostart", "pa")
    assert "Autostart:      yes" in virsh(pyvirtd, "pool-info", "pa").stdout
    (target / "dropped.raw").write_bytes(b"\0" * 4096)
    assert "dropped.raw" not in virsh(pyvirtd, "vol-list", "pa").stdout
    virsh(pyvirtd, "pool-refresh", "pa")
    assert "dropped.raw" in virsh(pyvirtd, "vol-list", "pa").stdout
    os.unlink(target / "dropped.raw")
    virsh(pyvirtd, "pool-destroy", "pa")
    assert "State:          inactive" in virsh(pyvirtd, "pool-info", "pa").stdout
    virsh(pyvirtd, "pool-delete", "pa")
    assert not target.exists()
    virsh(pyvirtd, "pool-autostart", "--disable", "pa")
    virsh(pyvirtd, "pool-undefine", "pa")
    err = virsh(pyvirtd, "pool-info", "pa", ok=False).stderr
    assert "Storage pool not found: no storage pool with matching name 'pa'" in err
    assert not (pyvirtd.state_dir / "etc" / "storage" / "pa.xml").exists()


def test_pool_errors_are_libvirts(pyvirtd, dir_pool, tmp_path):
    assert ("Requested operation is not valid: storage pool 'p1' is already active"
            in virsh(pyvirtd, "pool-start", "p1", ok=False).stderr)
    assert ("Requested operation is not valid: storage pool 'p1' is still active"
            in virsh(pyvirtd, "pool-delete", "p1", ok=False).stderr)
    assert "operation failed: pool 'p1' already exists with uuid" in virsh(
        pyvirtd, "pool-define-as", "p1", "dir", "--target", str(tmp_path / "other"), ok=False).stderr
    assert "Storage source conflict with pool: 'p1'" in virsh(
        pyvirtd, "pool-define-as", "p2", "dir", "--target", str(dir_pool), ok=False).stderr
    assert "XML error: name a/b cannot contain '/'" in virsh(
        pyvirtd, "pool-define-as", "a/b", "dir", "--target", str(tmp_path / "x"), ok=False).stderr
    afile = tmp_path / "afile"
    afile.write_text("")
    virsh(pyvirtd, "pool-define-as", "pf", "dir", "--target", str(afile))
    assert f"cannot open directory '{afile}': Not a directory" in virsh(pyvirtd, "pool-start", "pf", ok=False).stderr
    virsh(pyvirtd, "pool-undefine", "pf")
    virsh(pyvirtd, "pool-destroy", "p1")
    assert ("Requested operation is not valid: storage pool 'p1' is not active"
            in virsh(pyvirtd, "pool-destroy", "p1", ok=False).stderr)
    assert ("Requested operation is not valid: storage pool 'p1' is not active"
            in virsh(pyvirtd, "vol-list", "p1", ok=False).stderr)


def test_volumes_raw_qcow2_backing(pyvirtd, dir_pool):
    virsh(pyvirtd, "vol-create-as", "p1", "a.qcow2", "10M", "--format", "qcow2")
    virsh(pyvirtd, "vol-create-as", "p1", "b.raw", "5M", "--allocation", "1M")
    virsh(pyvirtd, "vol-create-as", "p1", "c.qcow2", "20M", "--format", "qcow2",
          "--backing-vol", str(dir_pool / "a.qcow2"), "--backing-vol-format", "qcow2")
    a = qemu_img_info(dir_pool / "a.qcow2")
    assert a["format"] == "qcow2" and a["virtual-size"] == 10 << 20
    c = qemu_img_info(dir_pool / "c.qcow2")
    assert c["backing-filename"] == str(dir_pool / "a.qcow2") and c["virtual-size"] == 20 << 20
    b = (dir_pool / "b.raw").stat()
    assert b.st_size == 5 << 20 and b.st_blocks * 512 >= 1 << 20
    xml = virsh(pyvirtd, "vol-dumpxml", "--pool", "p1", "c.qcow2").stdout
    assert f"<key>{dir_pool}/c.qcow2</key>" in xml
    assert "<capacity unit='bytes'>20971520</capacity>" in xml and "<format type='qcow2'/>" in xml
    assert f"<backingStore>\n    <path>{dir_pool}/a.qcow2</path>" in xml and "<physical unit='bytes'>" in xml
    info = virsh(pyvirtd, "vol-info", "--pool", "p1", "b.raw").stdout
    assert "Capacity:       5.00 MiB" in info and "Allocation:     1.00 MiB" in info and "Type:           file" in info
    rows = virsh(pyvirtd, "vol-list", "p1", "--details").stdout.splitlines()
    assert [r.split()[0] for r in rows] == ["a.qcow2", "b.raw", "c.qcow2"]
    # lookups by path and key, and the pool of a volume
    assert virsh(pyvirtd, "vol-name", str(dir_pool / "b.raw")).stdout.strip() == "b.raw"
    assert virsh(pyvirtd, "vol-key", "--pool", "p1", "b.raw").stdout.strip() == str(dir_pool / "b.raw")
    assert virsh(pyvirtd, "vol-pool", str(dir_pool / "b.raw")).stdout.strip() == "p1"
    virsh(pyvirtd, "vol-delete", "--pool", "p1", "c.qcow2")
    assert not (dir_pool / "c.qcow2").exists()


def test_volume_errors_are_libvirts(pyvirtd, dir_pool):
    virsh(pyvirtd, "vol-create-as", "p1", "a.qcow2", "10M", "--format", "qcow2")
    assert "storage volume 'a.qcow2' exists already" in virsh(
        pyvirtd, "vol-create-as", "p1", "a.qcow2", "1M", ok=False).stderr
    assert "Requested operation is not valid: volume name 'x/y' cannot contain '/'" in virsh(
        pyvirtd, "vol-create-as", "p1", "x/y", "1M", ok=False).stderr
    # no invented pre-check: the allocation itself fails, with libvirt's words for it
    # (the file's size comes first: larger than ext4's largest file, libvirt 9.0's words for it)
    assert f"cannot extend file '{dir_pool}/huge': File too large" in virsh(
        pyvirtd, "vol-create-as", "p1", "huge", "100T", ok=False).stderr
    assert not (dir_pool / "huge").exists()
    # virsh tries the name in the pool, then the argument as a path: the last error is printed
    assert "Storage volume not found: no storage vol with matching path 'nosuch'" in virsh(
        pyvirtd, "vol-info", "--pool", "p1", "nosuch", ok=False).stderr
    assert "no storage vol with matching path" in virsh(pyvirtd, "vol-info", str(dir_pool / "nosuch"),
                                                         ok=False).stderr


def test_clone_create_from_wipe_resize(pyvirtd, dir_pool):
    virsh(pyvirtd, "vol-create-as", "p1", "a.qcow2", "10M", "--format", "qcow2")
    virsh(pyvirtd, "vol-clone", "--pool", "p1", "a.qcow2", "a2.qcow2")
    assert qemu_img_info(dir_pool / "a2.qcow2")["format"] == "qcow2"
    xml = dir_pool.parent / "f.xml"
    xml.write_text("<volume><name>f.raw</name><capacity>0</capacity><target><format type='raw'/></target></volume>")
    virsh(pyvirtd, "vol-create-from", "p1", str(xml), "a.qcow2", "--inputpool", "p1")
    f = qemu_img_info(dir_pool / "f.raw")
    assert f["format"] == "raw" and f["virtual-size"] == 10 << 20
    # resize: grow; shrink refused without the flag, done with it
    virsh(pyvirtd, "vol-create-as", "p1", "full.raw", "4M")
    assert "can't shrink capacity below existing allocation" in virsh(
        pyvirtd, "vol-resize", "--pool", "p1", "full.raw", "2M", "--shrink", ok=False).stderr
    virsh(pyvirtd, "vol-create-as", "p1", "b.raw", "4M", "--allocation", "0")
    virsh(pyvirtd, "vol-resize", "--pool", "p1", "b.raw", "8M")
    assert (dir_pool / "b.raw").stat().st_size == 8 << 20
    err = virsh(pyvirtd, "vol-resize", "--pool", "p1", "b.raw", "2M", ok=False).stderr
    assert "Can't shrink capacity below current capacity unless shrink flag explicitly specified" in err
    virsh(pyvirtd, "vol-resize", "--pool", "p1", "b.raw", "2M", "--shrink")
    assert (dir_pool / "b.raw").stat().st_size == 2 << 20
    virsh(pyvirtd, "vol-resize", "--pool", "p1", "a.qcow2", "--delta", "6M")
    assert qemu_img_info(dir_pool / "a.qcow2")["virtual-size"] == 16 << 20
    # wipe (zero algorithm): the data are zeros, the size unchanged
    virsh(pyvirtd, "vol-wipe", "--pool", "p1", "b.raw")
    assert (dir_pool / "b.raw").read_bytes() == bytes(2 << 20)
    # the other patterns are scrub(1)'s (absent here: libvirt's command runner's words); trim none
    if shutil.which("scrub") is None:
        assert "error: Cannot find 'scrub' in path: No such file or directory" in virsh(
            pyvirtd, "vol-wipe", "--pool", "p1", "b.raw", "--algorithm", "nnsa", ok=False).stderr
    assert "error: argument unsupported: 'trim' algorithm not supported" in virsh(
        pyvirtd, "vol-wipe", "--pool", "p1", "b.raw", "--algorithm", "trim", ok=False).stderr


def test_upload_download_round_trip(pyvirtd, dir_pool, tmp_path):
    data = os.urandom(3 << 20) + bytes(1 << 20) + os.urandom(12288)   # qemu-img sizes raw files in sectors
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    virsh(pyvirtd, "vol-create-as", "p1", "u.raw", str(len(data)) + "b")
    virsh(pyvirtd, "vol-upload", "--pool", "p1", "u.raw", str(src))
    assert (dir_pool / "u.raw").read_bytes() == data
    back = tmp_path / "down.bin"
    virsh(pyvirtd, "vol-download", "--pool", "p1", "u.raw", str(back))
    subprocess.run(["cmp", str(src), str(back)], check=True)
    part = tmp_path / "part.bin"
    virsh(pyvirtd, "vol-download", "--pool", "p1", "u.raw", str(part), "--offset", "1024", "--length", "4096")
    assert part.read_bytes() == data[1024:1024 + 4096]


def test_restart_keeps_pools_and_autostart_starts(tmp_path):
    daemon = Pyvirtd(tmp_path / "host")
    try:
        daemon.start()
        for name in ("keep", "auto"):
            virsh(daemon, "pool-define-as", name, "dir", "--target", str(tmp_path / name))
            virsh(daemon, "pool-build", name)
        virsh(daemon, "pool-start", "keep")
        virsh(daemon, "vol-create-as", "keep", "v.qcow2", "1M", "--format", "qcow2")
        virsh(daemon, "pool-autostart", "auto")
        virsh(daemon, "pool-create-as", "clash", "dir", "--target", str(tmp_path / "keep"), ok=False)
        virsh(daemon, "pool-create-as", "tr", "dir", "--target", str(tmp_path / "tr"), "--build")
        daemon.stop()
        daemon.start()
        listing = {r.split()[0]: r.split()[1:] for r in virsh(daemon, "pool-list", "--all").stdout.splitlines()}
        assert listing == {"auto": ["active", "yes"], "keep": ["active", "no"], "tr": ["active", "no"]}
        assert "Persistent:     no" in virsh(daemon, "pool-info", "tr").stdout
        virsh(daemon, "pool-destroy", "tr")
        assert "tr" not in virsh(daemon, "pool-list", "--all").stdout
        assert "v.qcow2" in virsh(daemon, "vol-list", "keep").stdout
    finally:
        daemon.cleanup()


PYLIBVIRT = r"""
import json, sys, libvirt
uri, target = sys.argv[1], sys.argv[2]
c = libvirt.open(uri)
p = c.storagePoolLookupByName("p1")
out = {}
out["by_target"] = c.storagePoolLookupByTargetPath(target).name()
out["by_uuid"] = c.storagePoolLookupByUUIDString(p.UUIDString()).name()
out["info"] = p.info()
out["all_active"] = [x.name() for x in c.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)]
out["all_logical"] = [x.name() for x in c.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_LOGICAL)]
out["list"] = c.listStoragePools()
out["defined"] = c.listDefinedStoragePools()
out["num"] = c.numOfStoragePools()
v = p.createXML("<volume><name>py.qcow2</name><capacity unit='MiB'>2</capacity>"
                "<target><format type='qcow2'/></target></volume>", 0)
out["vol"] = [v.name(), v.key() == v.path(), v.info()]
out["by_key"] = c.storageVolLookupByKey(v.key()).name()
out["by_path"] = c.storageVolLookupByPath(v.path()).name()
out["pool_of"] = v.storagePoolLookupByVolume().name()
out["vols"] = sorted(x.name() for x in p.listAllVolumes())
out["caps"] = "<pool type='dir' supported='yes'>" in c.getStoragePoolCapabilities()
try:
    c.storagePoolLookupByTargetPath("/nonexistent")
except libvirt.libvirtError as e:
    out["miss"] = [e.get_error_code(), e.get_error_domain(), e.get_error_message()]
ro = libvirt.openReadOnly(uri)
try:
    ro.storagePoolLookupByName("p1").createXML("<volume><name>x</name><capacity>1</capacity></volume>", 0)
except libvirt.libvirtError as e:
    out["ro"] = e.get_error_code()
out["ro_list"] = ro.listStoragePools()
v.delete(0)
print(json.dumps(out))
"""


def test_python3_libvirt_lookups_and_lists(pyvirtd, dir_pool):
    out = libvirt_script(PYLIBVIRT, pyvirtd.unix_uri, str(dir_pool))
    assert out["by_target"] == out["by_uuid"] == out["pool_of"] == "p1"
    assert out["info"][0] == 2 and out["info"][1] > 0
    assert out["all_active"] == ["p1"] and out["all_logical"] == [] and out["list"] == ["p1"]
    assert out["defined"] == [] and out["num"] == 1
    assert out["vol"][:2] == ["py.qcow2", True] and out["vol"][2][1] == 2 << 20
    assert out["by_key"] == out["by_path"] == "py.qcow2" and out["vols"] == ["py.qcow2"]
    assert out["caps"]
    assert out["miss"] == [49, 18, "Storage pool not found: no storage pool with matching target path '/nonexistent'"]
    assert out["ro"] == 29 and out["ro_list"] == ["p1"]   # VIR_ERR_OPERATION_DENIED


def test_volume_in_use_by_a_guest_is_not_deleted(pyvirtd, dir_pool):
    """The QEMU side sets the hook; here the driver's own refusal, through the in-process API."""
    import asyncio

    from pyvirt.driver import ConnectionInfo
    from pyvirt.drivers.storage import StorageDriver
    from pyvirt.errors import libvirtError

    async def scenario(root: Path) -> str:
        drv = StorageDriver(root)
        await drv.initialize()
        conn = drv.connect(ConnectionInfo("qemu:///system"))
        pool = await conn.storage_pool_create_xml(
            f"<pool type='dir'><name>q</name><target><path>{root}/q</path></target></pool>", 1)
        vol = await conn.storage_vol_create_xml(pool, "<volume><name>d.raw</name><capacity>4096</capacity></volume>", 0)
        drv.in_use = lambda path: "guest1" if path.endswith("/d.raw") else None
        try:
            await conn.storage_vol_delete(vol, 0)
        except libvirtError as exc:
            return exc.get_error_message()
        return "deleted"

    message = asyncio.run(scenario(dir_pool.parent / "inproc"))
    assert message == "Requested operation is not valid: volume 'd.raw' is still in use by domain 'guest1'"


@pytest.fixture
def loop_device(tmp_path):
    if shutil.which("losetup") is None or shutil.which("vgcreate") is None:
        pytest.skip("losetup/LVM not installed")
    image = tmp_path / "lvm.img"
    image.write_bytes(b"")
    os.truncate(image, 64 << 20)
    dev = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True)
    if dev.returncode:
        pytest.skip(f"no loop device: {dev.stderr.strip()}")
    path = dev.stdout.strip()
    try:
        yield path
    finally:
        subprocess.run(["losetup", "-d", path], capture_output=True)


def test_logical_pool_on_a_loop_device(pyvirtd, loop_device):
    vg = f"pyvirt{uuid.uuid4().hex[:8]}"
    lvm_conf = "--config=activation{udev_sync=0 udev_rules=0} devices{obtain_device_list_from_udev=0}"
    try:
        virsh(pyvirtd, "pool-define-as", vg, "logical", "--source-dev", loop_device, "--source-name", vg,
              "--target", f"/dev/{vg}")
        virsh(pyvirtd, "pool-build", vg)
        vgs = subprocess.run(["vgs", lvm_conf, "--reportformat", "json", vg], capture_output=True, text=True)
        assert vgs.returncode == 0 and vg in vgs.stdout
        virsh(pyvirtd, "pool-start", vg)
        info = virsh(pyvirtd, "pool-info", vg).stdout
        assert "State:          running" in info and "Capacity:       60.00 MiB" in info
        xml = virsh(pyvirtd, "pool-dumpxml", vg).stdout
        assert f"<device path='{loop_device}'/>" in xml and f"<name>{vg}</name>" in xml
        assert "<format type='lvm2'/>" in xml and f"<path>/dev/{vg}</path>" in xml
        sources = virsh(pyvirtd, "find-storage-pool-sources", "logical").stdout
        assert f"<name>{vg}</name>" in sources
        virsh(pyvirtd, "pool-refresh", vg)
        virsh(pyvirtd, "pool-destroy", vg)
        virsh(pyvirtd, "pool-delete", vg)
        assert subprocess.run(["vgs", lvm_conf, vg], capture_output=True).returncode != 0
        virsh(pyvirtd, "pool-undefine", vg)
    finally:
        subprocess.run(["vgremove", lvm_conf, "-f", vg], capture_output=True)
        subprocess.run(["pvremove", lvm_conf, "-y", loop_device], capture_output=True)


def test_sparse_upload_download_keep_holes(pyvirtd, dir_pool, tmp_path):
    """virsh --sparse both ways: the bytes come back equal, the holes stay holes."""
    src = tmp_path / "sparse.bin"
    with open(src, "wb") as f:
        f.truncate(64 << 20)
        f.seek(10 << 20)
        f.write(os.urandom(2 << 20))
        f.seek(40 << 20)
        f.write(os.urandom(1 << 20))
    virsh(pyvirtd, "vol-create-as", "p1", "s.raw", "64M", "--allocation", "0")
    virsh(pyvirtd, "vol-upload", "--sparse", "--pool", "p1", "s.raw", str(src))
    vol = dir_pool / "s.raw"
    subprocess.run(["cmp", str(src), str(vol)], check=True)
    assert vol.stat().st_blocks * 512 < 8 << 20          # 3 MiB of data, not 64
    back = tmp_path / "back.bin"
    virsh(pyvirtd, "vol-download", "--sparse", "--pool", "p1", "s.raw", str(back))
    subprocess.run(["cmp", str(src), str(back)], check=True)
    assert back.stat().st_size == 64 << 20 and back.stat().st_blocks * 512 < 8 << 20


def test_embedded_driver_has_the_roots_pools(tmp_path):
    """qemu:///embed?root=DIR serves storage too, its files under DIR, kept across opens."""
    root = tmp_path / "embroot"
    root.mkdir()
    uri = f"qemu:///embed?root={root}"
    script = (
        "import json, sys, pyvirt\n"
        "c = pyvirt.open(sys.argv[1])\n"
        "if sys.argv[2] == 'make':\n"
        "    c.storagePoolDefineXML(\"<pool type='dir'><name>e</name><target><path>%s</path></target></pool>\""
        " % sys.argv[3], 0).create(1)\n"
        "p = c.storagePoolLookupByName('e')\n"
        "if sys.argv[2] == 'make':\n"
        "    p.createXML(\"<volume><name>v.qcow2</name><capacity unit='M'>1</capacity>"
        "<target><format type='qcow2'/></target></volume>\", 0)\n"
        "print(json.dumps([p.isActive(), p.listVolumes()]))\n")
    for step in ("make", "look"):
        out = subprocess.run([os.sys.executable, "-c", script, uri, step, str(root / "pool")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.splitlines()[-1]) == [1, ["v.qcow2"]]
    assert (root / "etc" / "storage" / "e.xml").exists() and (root / "pool" / "v.qcow2").exists()


def test_pool_events_carry_libvirts_codes(tmp_path):
    """LIFECYCLE (DEFINED 0, STARTED 2, STOPPED 3, CREATED 4, DELETED 5, UNDEFINED 1) and REFRESH
    on the driver's bus, in order; the daemon's delivery is tested with the object events."""
    import asyncio

    from pyvirt.driver import ConnectionInfo
    from pyvirt.drivers.storage import StorageDriver

    async def scenario() -> list[tuple[int, str, tuple]]:
        drv = StorageDriver(tmp_path / "root")
        await drv.initialize()
        seen: list[tuple[int, str, tuple]] = []
        drv.events.subscribe(lambda ev: seen.append((ev.event_id, ev.pool.name, ev.detail)))
        conn = drv.connect(ConnectionInfo("qemu:///system"))
        pool = await conn.storage_pool_define_xml(
            f"<pool type='dir'><name>ev</name><target><path>{tmp_path}/evpool</path></target></pool>", 0)
        await conn.storage_pool_build(pool, 0)
        await conn.storage_pool_create(pool, 0)
        await conn.storage_pool_refresh(pool, 0)
        await conn.storage_pool_destroy(pool)
        await conn.storage_pool_delete(pool, 0)
        await conn.storage_pool_undefine(pool)
        return seen

    seen = asyncio.run(scenario())
    assert seen == [(0, "ev", (0, 0)), (0, "ev", (4, 0)), (0, "ev", (2, 0)), (1, "ev", ()),
                    (0, "ev", (3, 0)), (0, "ev", (5, 0)), (0, "ev", (1, 0))]


BAD_POOLS = [
    ("", 35), ("<pool/>", 27), ("<notpool/>", 27), ("<pool type='dir'/>", 27),
    ("<pool type='dir'><name>a\nb</name><target><path>/x</path></target></pool>", 35),
    ("<pool type='dir'><name>ok</name><target><path>rel</path></target></pool>", 27),
    ("<pool type='dir'><name>ok</name><uuid>zz</uuid><target><path>/x</path></target></pool>", 27),
    ("<pool type='dir'><name>ok</name><target><path>/x</path><permissions><mode>999</mode></permissions>"
     "</target></pool>", 27),
    ("<pool type='logical'><name>vg</name><source><format type='x'/></source></pool>", 27),
    ("<pool type='rbd'><name>r</name></pool>", 1), ("<pool type='dir'><name>x</name>", 35),
]
BAD_VOLUMES = [
    ("", 35), ("<volume/>", 27), ("<volume><name>a</name><capacity unit='zz'>1</capacity></volume>", 8),
    ("<volume><name>a</name><capacity>-1</capacity></volume>", 27),
    ("<volume><name>a</name><capacity>99999999999999999999999</capacity></volume>", 8),
    ("<volume><name>a\nb</name><capacity>1</capacity></volume>", 35),
    ("<volume><name>.</name><capacity>1</capacity></volume>", 55),
    ("<volume><name>a/b</name><capacity>1</capacity></volume>", 55),
    ("<volume><name>nocap</name></volume>", 27),
    ("<volume><name>d</name><capacity>1</capacity><target><format type='iso'/></target></volume>", 67),
    ("<volume><name>e</name><capacity>1</capacity><target><format type='bogus'/></target></volume>", 67),
    ("<volume><name>" + "x" * 300 + "</name><capacity>1</capacity></volume>", 38),
]


def test_bad_definitions_get_libvirt_errors_only(tmp_path):
    """Every malformed pool or volume definition is a libvirtError with libvirt's code; nothing else escapes."""
    import asyncio

    from pyvirt.driver import ConnectionInfo
    from pyvirt.drivers.storage import StorageDriver
    from pyvirt.errors import libvirtError

    async def scenario() -> list[tuple[str, int | str]]:
        drv = StorageDriver(tmp_path / "root")
        await drv.initialize()
        conn = drv.connect(ConnectionInfo("qemu:///system"))
        got: list[tuple[str, int | str]] = []
        for xml, _ in BAD_POOLS:
            try:
                await conn.storage_pool_define_xml(xml, 0)
                got.append((xml, "accepted"))
            except libvirtError as exc:
                got.append((xml, exc.get_error_code()))
        pool = await conn.storage_pool_create_xml(
            f"<pool type='dir'><name>p</name><target><path>{tmp_path}/p</path></target></pool>", 1)
        for xml, _ in BAD_VOLUMES:
            try:
                await conn.storage_vol_create_xml(pool, xml, 0)
                got.append((xml, "accepted"))
            except libvirtError as exc:
                got.append((xml, exc.get_error_code()))
        assert await conn.storage_pool_list_volumes(pool, 100) == []   # nothing half-made stays
        return got

    assert asyncio.run(scenario()) == BAD_POOLS + BAD_VOLUMES


def test_concurrent_calls_on_one_volume(tmp_path):
    """Two creates of one name: one volume, the other call libvirt's 'exists already'; a pool
    whose volume is being made is not destroyed under it; a volume being made is not listed."""
    import asyncio

    from pyvirt.driver import ConnectionInfo
    from pyvirt.drivers.storage import StorageDriver
    from pyvirt.errors import libvirtError

    async def scenario() -> tuple[list, str, list]:
        drv = StorageDriver(tmp_path / "root")
        await drv.initialize()
        conn = drv.connect(ConnectionInfo("qemu:///system"))
        pool = await conn.storage_pool_create_xml(
            f"<pool type='dir'><name>c</name><target><path>{tmp_path}/c</path></target></pool>", 1)
        xml = "<volume><name>same.qcow2</name><capacity unit='M'>8</capacity><target><format type='qcow2'/></target></volume>"
        first = asyncio.ensure_future(conn.storage_vol_create_xml(pool, xml, 0))
        while "same.qcow2" not in drv.pools["c"].volumes:     # the first call has reserved the name
            await asyncio.sleep(0)
        listed_meanwhile = await conn.storage_pool_list_volumes(pool, 10)
        try:
            await conn.storage_pool_destroy(pool)
            destroyed = "destroyed"
        except libvirtError as exc:
            destroyed = exc.get_error_message()
        results = await asyncio.gather(first, conn.storage_vol_create_xml(pool, xml, 0), return_exceptions=True)
        outcome = [r.name if not isinstance(r, BaseException) else r.get_error_message() for r in results]
        return outcome, destroyed, listed_meanwhile

    outcome, destroyed, listed = asyncio.run(scenario())
    assert outcome == ["same.qcow2", "storage volume 'same.qcow2' exists already"]
    assert destroyed == "Requested operation is not valid: pool 'c' has asynchronous jobs running."
    assert listed == []


def test_volume_of_a_running_guest_is_kept(pyvirtd, dir_pool, guests_built):
    """A real QEMU guest with a pool volume as its disk (<disk type='volume'>): vol-delete and
    vol-upload are refused while it runs, with the guest named; once it stops both work."""
    from guests import READY, tiny_xml, wait_for_text
    virsh(pyvirtd, "vol-create-as", "p1", "disk.qcow2", "16M", "--format", "qcow2")
    log = dir_pool.parent / "guest.log"
    disk = """
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='p1' volume='disk.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""
    xml = dir_pool.parent / "g.xml"
    xml.write_text(tiny_xml("volguest", log, extra_devices=disk))
    virsh(pyvirtd, "create", str(xml))
    try:
        wait_for_text(log, READY)
        err = virsh(pyvirtd, "vol-delete", "--pool", "p1", "disk.qcow2", ok=False).stderr
        assert "volume 'disk.qcow2' is still in use by domain 'volguest'" in err
        src = dir_pool.parent / "junk.bin"
        src.write_bytes(b"x" * 4096)
        err = virsh(pyvirtd, "vol-upload", "--pool", "p1", "disk.qcow2", str(src), ok=False).stderr
        assert "still in use by domain 'volguest'" in err
        assert (dir_pool / "disk.qcow2").exists()
    finally:
        virsh(pyvirtd, "destroy", "volguest")
    virsh(pyvirtd, "vol-delete", "--pool", "p1", "disk.qcow2")
    assert not (dir_pool / "disk.qcow2").exists()
