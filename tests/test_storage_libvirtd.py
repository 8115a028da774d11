"""The storage driver against libvirtd 9.0's own: the same stock virsh commands on both
daemons, outputs and error messages compared line by line (UUIDs, timestamps, free
space and each daemon's own pool directory normalised)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemons import Pyvirtd
from guests import REPO

sys.path.insert(0, str(REPO / "bench"))

import libvirt_ref  # noqa: E402
from libvirt_ref import LibvirtHost, pick_free_ports  # noqa: E402

AVAILABLE, WHY = libvirt_ref.libvirt_available()
pytestmark = [pytest.mark.libvirtd,
              pytest.mark.skipif(not AVAILABLE, reason=f"libvirtd not available: {WHY}"),
              pytest.mark.skipif(shutil.which("virsh") is None, reason="stock virsh not installed")]

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STAMP = re.compile(r"<([amcb]time)>[0-9.]+</")
_POOL_SIZES = re.compile(r"<(capacity|allocation|available) unit='bytes'>\d+</")
_HUMAN_POOL = re.compile(r"^(Capacity|Allocation|Available):\s+.*$", re.M)
_HUMAN_SIZE = re.compile(r"\d+\.\d\d [KMGTPE]iB")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    base = tmp_path_factory.mktemp("storage-ref")
    lv = LibvirtHost(base / "libvirtd", pick_free_ports(1)[0], cache_dir=base / "cache")
    pv = Pyvirtd(base / "pyvirtd")
    lv.start()
    try:
        pv.start()
        try:
            yield {"pyvirtd": (pv.uri, base / "pool-pv"), "libvirtd": (lv.uri, base / "pool-lv")}
        finally:
            pv.cleanup()
    finally:
        lv.stop()


def run(uri: str, *args: str) -> tuple[int, str, str]:
    out = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout, out.stderr


def normalise(text: str, pool: Path, *, pool_xml: bool = False) -> str:
    text = text.replace(str(pool), "POOL")
    text = _UUID.sub("UUID", text)
    text = _STAMP.sub(r"<\1>T</", text)
    if pool_xml:
        text = _POOL_SIZES.sub(r"<\1 unit='bytes'>N</", text)
        text = _HUMAN_POOL.sub(r"\1: N", text)
        text = _HUMAN_SIZE.sub("N", text)      # pool-list --details: the file system's free space moves
    return text


# (command words, which output matters); POOL stands for each daemon's own pool directory
STEPS: list[tuple[list[str], str]] = [
    (["pool-define-as", "sp", "dir", "--target", "POOL"], "all"),
    (["pool-build", "sp"], "all"),
    (["pool-start", "sp"], "all"),
    (["pool-start", "sp"], "all"),                                    # already active
    (["pool-dumpxml", "sp"], "pool"),
    (["pool-dumpxml", "--inactive", "sp"], "pool"),
    (["pool-info", "sp"], "pool"),
    (["pool-autostart", "sp"], "all"),
    (["vol-create-as", "sp", "a.qcow2", "10M", "--format", "qcow2"], "all"),
    (["vol-create-as", "sp", "b.raw", "5M", "--allocation", "1M"], "all"),
    (["vol-create-as", "sp", "c.qcow2", "20M", "--format", "qcow2", "--backing-vol", "POOL/a.qcow2",
      "--backing-vol-format", "qcow2"], "all"),
    (["vol-create-as", "sp", "a.qcow2", "1M"], "all"),                # exists already
    (["vol-create-as", "sp", "x/y", "1M"], "all"),                    # '/' in a volume name
    (["vol-create-as", "sp", "..", "1M"], "all"),                     # a name that is a path
    (["pool-define", "REDEFINE"], "all"),                              # while active: the next definition
    (["pool-dumpxml", "--inactive", "sp"], "pool"),
    (["pool-dumpxml", "sp"], "pool"),
    (["vol-dumpxml", "--pool", "sp", "a.qcow2"], "all"),
    (["vol-dumpxml", "--pool", "sp", "b.raw"], "all"),
    (["vol-dumpxml", "--pool", "sp", "c.qcow2"], "all"),
    (["vol-info", "--pool", "sp", "b.raw"], "all"),
    (["vol-info", "--pool", "sp", "--bytes", "c.qcow2"], "all"),
    (["vol-list", "sp", "--details"], "all"),
    (["vol-key", "--pool", "sp", "a.qcow2"], "all"),
    (["vol-pool", "POOL/a.qcow2"], "all"),
    (["vol-name", "POOL/b.raw"], "all"),
    (["vol-path", "--pool", "sp", "b.raw"], "all"),
    (["vol-info", "--pool", "sp", "nosuch"], "all"),
    (["vol-resize", "--pool", "sp", "b.raw", "1M"], "all"),           # shrink without the flag
    (["vol-resize", "--pool", "sp", "b.raw", "8M"], "all"),
    (["vol-info", "--pool", "sp", "b.raw"], "all"),
    (["vol-clone", "--pool", "sp", "a.qcow2", "a2.qcow2"], "all"),
    (["vol-dumpxml", "--pool", "sp", "a2.qcow2"], "all"),
    (["vol-delete", "--pool", "sp", "c.qcow2"], "all"),
    (["pool-delete", "sp"], "all"),                                   # still active
    (["pool-define-as", "sp", "dir", "--target", "/elsewhere"], "all"),  # same name, new uuid
    (["pool-list", "--all", "--details"], "pool"),
    (["pool-list", "--all", "--type", "dir"], "all"),
    (["pool-list", "--all", "--type", "logical,disk"], "all"),
    (["pool-list", "--autostart", "--persistent"], "all"),
    (["pool-list", "--no-autostart"], "all"),
    (["pool-uuid", "sp"], "pool"),
    (["pool-destroy", "sp"], "all"),
    (["pool-destroy", "sp"], "all"),                                  # not active
    (["vol-list", "sp"], "all"),
    (["pool-info", "sp"], "pool"),
    (["pool-autostart", "--disable", "sp"], "all"),
    (["pool-undefine", "sp"], "all"),
    (["pool-info", "sp"], "all"),
    (["pool-define-as", "a/b", "dir", "--target", "POOL"], "all"),
]


def test_same_commands_same_answers(hosts, tmp_path):
    diffs = []
    for words, kind in STEPS:
        seen = {}
        for side, (uri, pool) in hosts.items():
            redefine = tmp_path / f"{side}-redefine.xml"
            _, current, _ = run(uri, "pool-dumpxml", "--inactive", "sp")
            if current:
                redefine.write_text(current.replace("<mode>0711</mode>", "<mode>0750</mode>"))
            argv = [str(redefine) if w == "REDEFINE" else w.replace("POOL", str(pool)) for w in words]
            code, out, err = run(uri, *argv)
            out = out.replace(str(redefine), "REDEFINE")
            pool_xml = kind == "pool"
            seen[side] = (code, normalise(out, pool, pool_xml=pool_xml), normalise(err, pool, pool_xml=pool_xml))
        if seen["pyvirtd"] != seen["libvirtd"]:
            diffs.append(f"virsh {' '.join(words)}:\n  pyvirtd  {seen['pyvirtd']!r}\n  libvirtd {seen['libvirtd']!r}")
    assert not diffs, "\n".join(diffs)


def test_pool_capabilities_for_the_supported_types(hosts):
    def pools(uri: str) -> dict[str, str]:
        _, out, _ = run(uri, "pool-capabilities")
        found = re.finditer(r"  <pool type='(dir|logical)' supported='yes'>.*?\n  </pool>\n", out, re.S)
        return {m.group(1): m.group(0) for m in found}

    ours, theirs = pools(hosts["pyvirtd"][0]), pools(hosts["libvirtd"][0])
    assert len(ours) == 2 and ours == theirs


# A second walk: transient pools, refresh, wipe, create-from, a target that is a file, lists.
STEPS_2: list[tuple[list[str], str]] = [
    (["pool-create-as", "tp", "dir", "--target", "POOL", "--build"], "all"),
    (["pool-list", "--transient"], "all"),
    (["pool-list", "--persistent"], "all"),
    (["pool-info", "tp"], "pool"),
    (["pool-autostart", "tp"], "all"),                                # transient: refused
    (["pool-undefine", "tp"], "all"),                                 # transient: refused
    (["vol-create-as", "tp", "w.raw", "1M"], "all"),
    (["vol-wipe", "--pool", "tp", "w.raw"], "all"),
    (["vol-wipe", "--pool", "tp", "w.raw", "--algorithm", "nnsa"], "all"),   # scrub(1), absent or not
    (["vol-wipe", "--pool", "tp", "w.raw", "--algorithm", "trim"], "all"),
    (["vol-create-as", "tp", "huge.raw", "100T"], "all"),                # larger than any file: the allocation fails
    (["vol-create-as", "tp", "huge.raw", "100T", "--allocation", "0"], "all"),
    (["vol-info", "--pool", "tp", "w.raw"], "all"),
    (["vol-create-as", "tp", "q.qcow2", "2M", "--format", "qcow2"], "all"),
    (["vol-create-as", "tp", "wq.qcow2", "10M", "--format", "qcow2"], "all"),
    (["vol-wipe", "--pool", "tp", "wq.qcow2"], "all"),                 # an image wiped is raw zeros
    (["vol-info", "--pool", "tp", "wq.qcow2"], "all"),
    (["vol-dumpxml", "--pool", "tp", "wq.qcow2"], "all"),
    (["vol-create-from", "tp", "FROMXML", "q.qcow2"], "all"),
    (["vol-info", "--pool", "tp", "from.raw"], "all"),
    (["vol-dumpxml", "--pool", "tp", "from.raw"], "all"),
    (["vol-create-as", "tp", "sp.raw", "4M", "--allocation", "0"], "all"),
    (["vol-info", "--pool", "tp", "sp.raw"], "all"),
    (["vol-resize", "--pool", "tp", "sp.raw", "2M", "--shrink"], "all"),
    (["vol-info", "--pool", "tp", "sp.raw"], "all"),
    (["vol-resize", "--pool", "tp", "sp.raw", "--delta", "1M"], "all"),
    (["vol-info", "--pool", "tp", "--bytes", "sp.raw"], "all"),
    (["vol-delete", "--pool", "tp", "nosuch"], "all"),
    (["vol-create-as", "tp", "pm.qcow2", "10M", "--format", "qcow2", "--prealloc-metadata"], "all"),
    (["vol-create", "tp", "V3XML"], "all"),                            # virt-install's kind of volume
    (["vol-dumpxml", "--pool", "tp", "v3.qcow2"], "all"),
    (["vol-info", "--pool", "tp", "pm.qcow2"], "all"),
    (["vol-download", "--pool", "tp", "sp.raw", "/dev/null", "--offset", "99999999"], "all"),
    (["pool-refresh", "tp"], "all"),
    (["vol-list", "tp"], "all"),
    (["pool-destroy", "tp"], "all"),
    (["pool-info", "tp"], "all"),                                     # transient: gone
    (["pool-define-as", "ow", "dir", "--target", "MISSING"], "all"),
    (["pool-build", "ow", "--overwrite"], "all"),
    (["pool-build", "ow", "--no-overwrite"], "all"),
    (["pool-build", "ow"], "all"),
    (["pool-start", "ow"], "all"),
    (["vol-create-as", "ow", "keep.raw", "1M"], "all"),
    (["pool-destroy", "ow"], "all"),
    (["pool-delete", "ow"], "all"),                                   # not empty
    (["pool-undefine", "ow"], "all"),
    (["pool-define-as", "fp", "dir", "--target", "FILE"], "all"),
    (["pool-build", "fp"], "all"),
    (["pool-start", "fp"], "all"),
    (["pool-undefine", "fp"], "all"),
    (["pool-list", "--all"], "all"),
    (["pool-create-as", "nb", "dir", "--target", "MISSING"], "all"),  # no such directory, no build
    (["vol-list", "nosuchpool"], "all"),
    (["pool-destroy", "nb"], "all"),
]


def test_transient_pools_wipe_clone_and_bad_targets(hosts, tmp_path):
    xml = tmp_path / "from.xml"
    xml.write_text("<volume><name>from.raw</name><capacity>0</capacity>"
                   "<target><format type='raw'/></target></volume>")
    v3xml = tmp_path / "v3.xml"
    v3xml.write_text("<volume><name>v3.qcow2</name><capacity>1073741824</capacity><allocation>0</allocation>"
                     "<target><format type='qcow2'/><compat>1.1</compat><features><lazy_refcounts/></features>"
                     "</target></volume>")
    diffs = []
    for words, kind in STEPS_2:
        seen = {}
        for side, (uri, pool) in hosts.items():
            pool2 = pool.with_name(pool.name + "-2")
            afile = pool.with_name(pool.name + "-file")
            afile.write_text("")
            subst = {"POOL": str(pool2), "FROMXML": str(xml), "FILE": str(afile), "V3XML": str(v3xml),
                     "MISSING": str(pool.with_name(pool.name + "-missing"))}
            argv = [subst.get(w, w) for w in words]
            code, out, err = run(uri, *argv)
            for key in ("FILE", "MISSING", "V3XML"):
                out, err = out.replace(subst[key], key), err.replace(subst[key], key)
            pool_xml = kind == "pool"
            seen[side] = (code, normalise(out, pool2, pool_xml=pool_xml), normalise(err, pool2, pool_xml=pool_xml))
        if seen["pyvirtd"] != seen["libvirtd"]:
            diffs.append(f"virsh {' '.join(words)}:\n  pyvirtd  {seen['pyvirtd']!r}\n  libvirtd {seen['libvirtd']!r}")
    assert not diffs, "\n".join(diffs)


STEPS_LOGICAL: list[tuple[list[str], str]] = [
    (["pool-define-as", "VG", "logical", "--source-dev", "DEV", "--source-name", "VG", "--target", "/dev/VG"], "all"),
    (["pool-build", "VG"], "all"),
    (["pool-start", "VG"], "all"),
    (["pool-dumpxml", "VG"], "all"),
    (["pool-info", "VG"], "all"),
    (["vol-list", "VG", "--details"], "all"),
    (["pool-refresh", "VG"], "all"),
    (["pool-destroy", "VG"], "all"),
    (["pool-delete", "VG"], "all"),
    (["pool-undefine", "VG"], "all"),
]


def test_logical_pools_on_loop_devices(hosts, tmp_path):
    """Each daemon builds a VG of its own on a loop device the test makes (and removes)."""
    import uuid
    if shutil.which("losetup") is None or shutil.which("vgcreate") is None:
        pytest.skip("losetup/LVM not installed")
    lvm_conf = "--config=activation{udev_sync=0 udev_rules=0} devices{obtain_device_list_from_udev=0}"
    devices, vgs = {}, {}
    try:
        for side in hosts:
            image = tmp_path / f"{side}.img"
            image.write_bytes(b"")
            os.truncate(image, 64 << 20)
            dev = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True)
            if dev.returncode:
                pytest.skip(f"no loop device: {dev.stderr.strip()}")
            devices[side] = dev.stdout.strip()
            vgs[side] = f"pyvirt{uuid.uuid4().hex[:8]}"
        diffs = []
        for words, _ in STEPS_LOGICAL:
            seen = {}
            for side, (uri, pool) in hosts.items():
                argv = [w.replace("VG", vgs[side]).replace("DEV", devices[side]) for w in words]
                code, out, err = run(uri, *argv)
                out = normalise(out, pool).replace(vgs[side], "VG").replace(devices[side], "DEV")
                err = normalise(err, pool).replace(vgs[side], "VG").replace(devices[side], "DEV")
                seen[side] = (code, out, err)
            if seen["pyvirtd"] != seen["libvirtd"]:
                diffs.append(f"virsh {' '.join(words)}:\n  pyvirtd  {seen['pyvirtd']!r}\n  libvirtd {seen['libvirtd']!r}")
        assert not diffs, "\n".join(diffs)
    finally:
        for side in devices:
            subprocess.run(["vgremove", lvm_conf, "-f", vgs[side]], capture_output=True)
            subprocess.run(["pvremove", lvm_conf, "-y", devices[side]], capture_output=True)
            subprocess.run(["losetup", "-d", devices[side]], capture_output=True)


def test_refresh_lists_what_libvirt_lists(hosts, tmp_path):
    """A pool directory holding a subdirectory, hidden and tiny files, symlinks (one dangling),
    a FIFO and an image: the same volumes, types, sizes and XML on both daemons."""
    import subprocess as sp
    results = {}
    for side, (uri, pool) in hosts.items():
        d = tmp_path / f"mixed-{side[:2]}"   # same length: the same column widths
        d.mkdir()
        (d / "sub").mkdir()
        (d / ".hidden").write_text("")
        (d / "small.txt").write_text("hi\n")
        os.mkfifo(d / "fifo")
        (d / "target.bin").write_bytes(bytes(3 << 20))
        os.symlink(d / "target.bin", d / "link")
        os.symlink("/nonexistent", d / "dangling")
        sp.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d / "q.qcow2"), "1M"], check=True)
        os.utime(d / "sub")
        steps = [["pool-create-as", "mixed", "dir", "--target", str(d)], ["vol-list", "mixed", "--details"],
                 ["vol-dumpxml", "--pool", "mixed", "sub"], ["vol-info", "--pool", "mixed", "link"],
                 ["vol-dumpxml", "--pool", "mixed", "q.qcow2"], ["pool-destroy", "mixed"]]
        results[side] = [tuple(normalise(x, d) if isinstance(x, str) else x for x in run(uri, *s)) for s in steps]
    assert results["pyvirtd"] == results["libvirtd"]


API_WALK = r"""
import json, sys, libvirt
uri, pool_dir = sys.argv[1], sys.argv[2]
libvirt.registerErrorHandler(lambda *a: None, None)
c = libvirt.open(uri)
out = []
def step(name, fn):
    try:
        value = fn()
        if isinstance(value, (libvirt.virStoragePool, libvirt.virStorageVol)):
            value = value.name()
        elif isinstance(value, list) and value and hasattr(value[0], "name"):
            value = sorted(v.name() for v in value)   # sorted: libvirt lists in its hash table's order
        out.append([name, "ok", value])
    except libvirt.libvirtError as e:
        out.append([name, "error", e.get_error_code(), e.get_error_domain(), e.get_error_message()])
xml = "<pool type='dir'><name>api</name><target><path>%s</path></target></pool>" % pool_dir
step("define", lambda: c.storagePoolDefineXML(xml, 0))
p = c.storagePoolLookupByName("api")
step("define again", lambda: c.storagePoolDefineXML(xml.replace("api", "api2"), 0))
step("undefine the other", lambda: c.storagePoolLookupByName("api2").undefine())
step("info inactive", lambda: p.info())
step("isActive", lambda: p.isActive())
step("isPersistent", lambda: p.isPersistent())
step("autostart", lambda: p.autostart())
step("listVolumes inactive", lambda: p.listVolumes())
step("numOfVolumes inactive", lambda: p.numOfVolumes())
step("build", lambda: p.build(0))
step("build both flags", lambda: p.build(libvirt.VIR_STORAGE_POOL_BUILD_OVERWRITE | libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE))
step("create", lambda: p.create(0))
step("create bad flag", lambda: p.create(64))
step("numOfVolumes", lambda: p.numOfVolumes())
step("vol create", lambda: p.createXML("<volume><name>v.qcow2</name><capacity unit='M'>3</capacity>"
                                        "<target><format type='qcow2'/></target></volume>", 0))
step("vol create no capacity", lambda: p.createXML("<volume><name>nocap</name></volume>", 0))
step("vol create bad xml", lambda: p.createXML("<volume><name>x</name>", 0))
step("vol create bad format", lambda: p.createXML("<volume><name>bf</name><capacity>1</capacity>"
                                                  "<target><format type='nonsense'/></target></volume>", 0))
v = p.storageVolLookupByName("v.qcow2")
step("vol info", lambda: v.info())
step("vol infoFlags physical", lambda: v.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL))
step("vol path", lambda: v.path())
step("vol lookup missing", lambda: p.storageVolLookupByName("missing"))
step("vol by key missing", lambda: c.storageVolLookupByKey("/no/such/key"))
step("vol by path missing", lambda: c.storageVolLookupByPath("/no/such/path"))
step("pool by uuid missing", lambda: c.storagePoolLookupByUUIDString("00000000-0000-0000-0000-000000000001"))
step("pool by name missing", lambda: c.storagePoolLookupByName("missing"))
step("resize shrink", lambda: v.resize(1 << 20, 0))
step("resize grow", lambda: v.resize(8 << 20, 0))
step("vol info after", lambda: v.info())
step("wipe bad alg", lambda: v.wipePattern(42, 0))
def upload(vol, data, offset=0, length=0):
    st = c.newStream(0)
    vol.upload(st, offset, length, 0)
    st.send(data)
    st.finish()
    return len(data)
def download(vol, offset=0, length=0):
    st = c.newStream(0)
    vol.download(st, offset, length, 0)
    got = b""
    while True:
        chunk = st.recv(65536)
        if not chunk:
            break
        got += chunk
    st.finish()
    return [len(got), got[:8].hex(), got[-8:].hex()]
step("upload", lambda: upload(v, bytes(range(256)) * 4096))
step("download", lambda: download(v))
step("download window", lambda: download(v, 1000, 5000))
step("upload window", lambda: upload(v, b"\xff" * 100, 10, 100))
step("download after", lambda: download(v, 0, 200))
# (on a scratch volume: whether the bytes that fit land before the error is a race in both daemons)
scratch = p.createXML("<volume><name>scratch</name><capacity>4096</capacity></volume>", 0)
step("upload too long", lambda: upload(scratch, b"\xee" * 100, 0, 10))
scratch.delete(0)
step("vol info uploaded", lambda: v.info())
step("createXMLFrom", lambda: p.createXMLFrom("<volume><name>copy</name><capacity>0</capacity>"
                                              "<target><format type='raw'/></target></volume>", v, 0))
step("copy info", lambda: p.storageVolLookupByName("copy").info())
step("copy download", lambda: download(p.storageVolLookupByName("copy"), 0, 64))
step("wipe copy", lambda: p.storageVolLookupByName("copy").wipe(0))
step("copy after wipe", lambda: download(p.storageVolLookupByName("copy"), 0, 64))
step("copy delete", lambda: p.storageVolLookupByName("copy").delete(0))
step("listAllVolumes", lambda: p.listAllVolumes(0))
step("listAllVolumes flags", lambda: p.listAllVolumes(1))
step("listAll active", lambda: c.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE))
step("listAll inactive", lambda: c.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_INACTIVE))
step("setAutostart", lambda: p.setAutostart(1))
step("autostart now", lambda: p.autostart())
step("delete active", lambda: p.delete(0))
step("undefine active", lambda: p.undefine())
step("vol delete", lambda: v.delete(0))
step("vol delete again", lambda: v.delete(0))
step("destroy", lambda: p.destroy())
step("destroy again", lambda: p.destroy())
step("refresh inactive", lambda: p.refresh(0))
step("delete", lambda: p.delete(0))
step("undefine", lambda: p.undefine())
step("lookup undefined", lambda: c.storagePoolLookupByName("api"))
step("create transient bad type", lambda: c.storagePoolCreateXML("<pool type='nonsense'><name>r</name></pool>", 0))
step("create transient zfs", lambda: c.storagePoolCreateXML("<pool type='zfs'><name>r</name><source><name>z</name></source></pool>", 0))
step("create transient no type", lambda: c.storagePoolCreateXML("<pool><name>r</name></pool>", 0))
step("create transient no target", lambda: c.storagePoolCreateXML("<pool type='dir'><name>r</name></pool>", 0))
print(json.dumps(out))
"""


def test_python3_libvirt_walk_matches(hosts, tmp_path):
    """The same python3-libvirt calls on both daemons: values, error codes, domains and messages."""
    import json as jsonmod
    if subprocess.run(["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    results = {}
    for side, (uri, pool) in hosts.items():
        target = tmp_path / f"api-{side[:2]}"
        out = subprocess.run(["/usr/bin/python3", "-c", API_WALK, uri, str(target)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        steps = jsonmod.loads(normalise(out.stdout.strip().splitlines()[-1], target))
        for row in steps:       # sizes of the file system under the pool move between the runs
            if row[0] in ("info inactive",):
                continue
        results[side] = steps
    diffs = [f"{a[0]}:\n  pyvirtd  {a}\n  libvirtd {b}" for a, b in zip(results["pyvirtd"], results["libvirtd"])
             if a != b]
    assert not diffs, "\n".join(diffs)


READ_ONLY_WALK = r"""
import json, sys, libvirt
uri, pool_dir = sys.argv[1], sys.argv[2]
libvirt.registerErrorHandler(lambda *a: None, None)
rw = libvirt.open(uri)
p = rw.storagePoolCreateXML("<pool type='dir'><name>ro</name><target><path>%s</path></target></pool>" % pool_dir, 1)
p.createXML("<volume><name>v</name><capacity>4096</capacity></volume>", 0)
c = libvirt.openReadOnly(uri)
out = []
def step(name, fn):
    try:
        value = fn()
        if isinstance(value, (libvirt.virStoragePool, libvirt.virStorageVol)):
            value = value.name()
        elif isinstance(value, list) and value and hasattr(value[0], "name"):
            value = sorted(v.name() for v in value)   # sorted: libvirt lists in its hash table's order
        out.append([name, "ok", value])
    except libvirt.libvirtError as e:
        out.append([name, "error", e.get_error_code(), e.get_error_domain(), e.get_error_message()])
q = c.storagePoolLookupByName("ro")
v = q.storageVolLookupByName("v")
step("list", lambda: c.listAllStoragePools(0))
step("info", lambda: q.info()[0])
step("isActive", lambda: q.isActive())
step("vol path", lambda: v.path())
step("vol info", lambda: v.info())
step("by path", lambda: c.storageVolLookupByPath(v.path()))
step("caps", lambda: len(c.getStoragePoolCapabilities()) > 0)
step("download", lambda: v.download(c.newStream(0), 0, 0, 0))
step("upload", lambda: v.upload(c.newStream(0), 0, 0, 0))
step("create vol", lambda: q.createXML("<volume><name>w</name><capacity>1</capacity></volume>", 0))
step("delete vol", lambda: v.delete(0))
step("wipe", lambda: v.wipe(0))
step("resize", lambda: v.resize(8192, 0))
step("refresh", lambda: q.refresh(0))
step("autostart", lambda: q.setAutostart(1))
step("destroy", lambda: q.destroy())
step("define", lambda: c.storagePoolDefineXML("<pool type='dir'><name>x</name><target><path>/x</path></target></pool>", 0))
step("find sources", lambda: c.findStoragePoolSources("logical", None, 0))
p.destroy()
print(json.dumps(out))
"""


def test_read_only_connections_as_libvirtd(hosts, tmp_path):
    """openReadOnly: lists, lookups and info answer; every call that changes something, or reads
    or writes what the caller names (download, upload, source discovery), is refused as libvirtd refuses it."""
    import json as jsonmod
    if subprocess.run(["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    results = {}
    for side, (uri, _) in hosts.items():
        target = tmp_path / f"ro-{side[:2]}"
        out = subprocess.run(["/usr/bin/python3", "-c", READ_ONLY_WALK, uri, str(target)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        results[side] = jsonmod.loads(normalise(out.stdout.strip().splitlines()[-1], target))
    diffs = [f"{a[0]}:\n  pyvirtd  {a}\n  libvirtd {b}" for a, b in zip(results["pyvirtd"], results["libvirtd"])
             if a != b]
    assert not diffs, "\n".join(diffs)
