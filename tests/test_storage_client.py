"""pyvirt's storage library (virStoragePool, virStorageVol, virConnect's storage calls, sparse
virStream) does what python3-libvirt does, on the same pyvirtd.

One script, run once with ``import libvirt`` (Debian's python3-libvirt, the
system interpreter) and once with ``import pyvirt as libvirt``, walks a pool
and its volumes through every call libvirt-python has for them, recording
return values with their types, errors as (code, domain, message), and the
holes a sparse download reports; the two records must be equal.  The runs
take turns on one daemon and leave it as they found it, so the same names
serve both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
MiB = 1 << 20

SCRIPT = r'''
import importlib, json, os, sys
modname, uri, target, src, outdir = sys.argv[1:]
libvirt = importlib.import_module(modname)
if modname == "libvirt":
    libvirt.registerErrorHandler(lambda *a: None, None)
out = {}


def typed(value):
    if isinstance(value, (list, tuple)):
        return [typed(v) for v in value]
    if isinstance(value, (libvirt.virStoragePool, libvirt.virStorageVol)):
        return [type(value).__name__, value.name()]
    return [type(value).__name__, value if isinstance(value, (int, str, type(None))) else repr(value)]


def record(key, call):
    try:
        out[key] = typed(call())
    except libvirt.libvirtError as e:
        out[key] = ["error", e.get_error_code(), e.get_error_domain(), e.get_error_message()]
    except Exception as e:
        out[key] = ["exception", type(e).__name__]


c = libvirt.open(uri)
xml = f"<pool type='dir'><name>lib</name><target><path>{target}</path></target></pool>"
pool = c.storagePoolDefineXML(xml, 0)
record("defined", lambda: [pool.isActive(), pool.isPersistent(), pool.autostart(), pool.numOfVolumes()])
record("build", lambda: pool.build(0))
record("create", lambda: pool.create(0))
record("create again", lambda: pool.create(0))
record("info types", lambda: [type(v).__name__ for v in pool.info()] + [len(pool.info()), pool.info()[0]])
record("setAutostart", lambda: pool.setAutostart(1))
record("autostart", lambda: pool.autostart())
record("refresh", lambda: pool.refresh(0))
record("by name", lambda: c.storagePoolLookupByName("lib").UUIDString() == pool.UUIDString())
record("by uuid", lambda: c.storagePoolLookupByUUID(pool.UUID()).name())
record("by uuid string", lambda: c.storagePoolLookupByUUIDString(pool.UUIDString()).name())
record("by target path", lambda: c.storagePoolLookupByTargetPath(target).name())
record("uuid type", lambda: [type(pool.UUID()).__name__, len(pool.UUID()), len(pool.UUIDString())])
record("bad uuid string", lambda: c.storagePoolLookupByUUIDString("nope"))
record("no pool", lambda: c.storagePoolLookupByName("nosuch"))
record("lists", lambda: ["lib" in c.listStoragePools(), "lib" in c.listDefinedStoragePools(),
                         c.numOfStoragePools() >= 1, type(c.numOfDefinedStoragePools()).__name__])
record("list all", lambda: [p.name() for p in c.listAllStoragePools(2) if p.name() == "lib"])
record("list all inactive", lambda: [p.name() for p in c.listAllStoragePools(1) if p.name() == "lib"])
record("xml", lambda: pool.XMLDesc(0).startswith("<pool type='dir'>"))
record("inactive xml", lambda: "<target>" in pool.XMLDesc(1))
record("capabilities", lambda: c.getStoragePoolCapabilities(0).startswith("<storagepoolCapabilities"))
record("connect", lambda: pool.connect() is c)

vol = pool.createXML("<volume><name>v</name><capacity unit='M'>64</capacity></volume>", 0)
record("vol", lambda: [vol.name(), vol.key() == vol.path(), vol.path() == os.path.join(target, "v")])
record("vol info", lambda: vol.info()[:2] + [type(vol.info()).__name__])
record("vol info flags", lambda: vol.infoFlags(1)[:2])
record("vol xml", lambda: "<name>v</name>" in vol.XMLDesc(0))
record("vol by name", lambda: pool.storageVolLookupByName("v").key() == vol.key())
record("vol by key", lambda: c.storageVolLookupByKey(vol.key()).name())
record("vol by path", lambda: c.storageVolLookupByPath(vol.path()).name())
record("vol pool", lambda: vol.storagePoolLookupByVolume().name())
record("no vol", lambda: pool.storageVolLookupByName("nosuch"))
record("no vol path", lambda: c.storageVolLookupByPath("/nonexistent/x"))
record("bad name", lambda: pool.createXML("<volume><name>a/b</name><capacity>1</capacity></volume>", 0))
record("vol connect", lambda: vol.connect() is c)

# a sparse upload: islands of data, holes between, sent as holes
with open(src, "rb") as f:
    content = f.read()
fd = os.open(src, os.O_RDONLY)
def in_data(st, opaque):
    here = os.lseek(fd, 0, os.SEEK_CUR)
    end = os.fstat(fd).st_size
    try:
        data = os.lseek(fd, here, os.SEEK_DATA)
    except OSError:
        data = end
    if data > here:
        os.lseek(fd, here, os.SEEK_SET)
        return [False, data - here]
    hole = os.lseek(fd, here, os.SEEK_HOLE)
    os.lseek(fd, here, os.SEEK_SET)
    return [True, hole - here]
st = c.newStream(0)
record("upload", lambda: vol.upload(st, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM))
record("sparseSendAll", lambda: st.sparseSendAll(lambda s, n, o: os.read(fd, n), in_data,
                                                 lambda s, n, o: os.lseek(fd, n, os.SEEK_CUR), None))
record("upload finish", lambda: st.finish())
os.close(fd)
record("uploaded bytes", lambda: open(vol.path(), "rb").read() == content)
record("uploaded allocation small", lambda: os.stat(vol.path()).st_blocks * 512 < 4 << 20)

# a sparse download: the holes come back as holes
st = c.newStream(0)
got, holes = bytearray(), []
def sink(s, data, o):
    got.extend(data)
    return len(data)
def hole(s, length, o):
    holes.append(length)
    got.extend(bytes(length))
    return 0
record("download", lambda: vol.download(st, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM))
record("sparseRecvAll", lambda: st.sparseRecvAll(sink, hole, None))
record("download finish", lambda: st.finish())
out["downloaded"] = [bytes(got) == content, len(holes), sum(holes)]

# recvFlags / recvHole by hand, on a window that starts in data and runs into a hole
st = c.newStream(0)
vol.download(st, 1 << 20, 8 << 20, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
seen = []
while True:
    r = st.recvFlags(256 * 1024, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
    if r == -3:
        seen.append(["hole", st.recvHole(0)])
        continue
    if not r:
        break
    seen.append(["data", len(r)])
st.finish()
out["manual window"] = [sum(n for k, n in seen if k == "hole"), sum(n for k, n in seen if k == "data"),
                        [k for k, n in seen][-1]]

# a plain stream: no holes, and the hole calls refused
st = c.newStream(0)
vol.download(st, 0, 2 << 20, 0)
data = bytearray()
while True:
    r = st.recvFlags(1 << 20, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
    if not r:
        break
    data.extend(r)
out["plain window"] = [bytes(data) == content[:2 << 20]]
record("recvHole on a plain stream", lambda: st.recvHole(0))
st.finish()
st = c.newStream(0)
vol.upload(st, 0, 4096, 0)
record("sendHole on a plain stream", lambda: st.sendHole(100, 0))
record("send", lambda: st.send(b"z" * 4096))
record("plain finish", lambda: st.finish())
record("plain upload bytes", lambda: open(vol.path(), "rb").read(4097) == b"z" * 4096 + content[4096:4097])

clone = pool.createXMLFrom("<volume><name>copy</name><capacity unit='M'>64</capacity></volume>", vol, 0)
record("clone", lambda: [clone.name(), open(clone.path(), "rb").read() == open(vol.path(), "rb").read()])
record("resize", lambda: clone.resize(128 << 20, 0))
record("resized", lambda: clone.info()[1])
record("shrink refused", lambda: clone.resize(1 << 20, 0))
record("wipe", lambda: clone.wipe(0))
record("wipePattern", lambda: clone.wipePattern(0, 0))
record("volumes", lambda: [sorted(pool.listVolumes()), pool.numOfVolumes(),
                           sorted(v.name() for v in pool.listAllVolumes(0))])
record("delete clone", lambda: clone.delete(0))
record("delete vol", lambda: vol.delete(0))
record("delete again", lambda: vol.delete(0))
record("destroy", lambda: pool.destroy())
record("inactive info", lambda: pool.info()[0])
record("volumes of inactive", lambda: pool.listVolumes())
record("delete pool", lambda: pool.delete(0))
record("undefine", lambda: pool.undefine())
record("gone", lambda: c.storagePoolLookupByName("lib"))
transient = c.storagePoolCreateXML(xml, libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)
record("transient", lambda: [transient.isActive(), transient.isPersistent()])
record("transient destroy", lambda: transient.destroy())
record("transient gone", lambda: c.storagePoolLookupByName("lib"))
print(json.dumps(out))
'''


def run_script(python: list[str], module: str, daemon, tmp_path: Path, src: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([*python, "-c", SCRIPT, module, daemon.uri, str(tmp_path / "libpool"), str(src),
                          str(tmp_path)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_storage_calls_match_python3_libvirt(pyvirtd, tmp_path):
    if subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    src = tmp_path / "src.img"
    with open(src, "wb") as f:
        f.truncate(64 * MiB)
        for offset, size in ((0, 2 * MiB), (20 * MiB, 8192), (63 * MiB, 4096)):
            f.seek(offset)
            f.write(os.urandom(size))
    expected = run_script([SYSTEM_PYTHON], "libvirt", pyvirtd, tmp_path, src)
    got = run_script([sys.executable], "pyvirt", pyvirtd, tmp_path, src)
    assert got == expected, {k: (expected.get(k), got.get(k)) for k in expected if expected.get(k) != got.get(k)}
    # the walk did what it says: the upload and download kept their holes, errors are libvirt's
    assert expected["downloaded"][0] is True and expected["downloaded"][1] >= 2
    assert expected["uploaded allocation small"] == ["bool", True]
    assert expected["no pool"][0] == "error" and expected["no vol"][0] == "error"
    assert expected["manual window"][0] > 0 and expected["manual window"][1] == 1 * MiB


def test_embedded_driver_streams_volumes_as_the_daemon_does(pyvirtd, tmp_path):
    """qemu:///embed hands the volume's descriptor to the library itself (no RPC): the same
    walk through pyvirt there gives the record python3-libvirt gets from pyvirtd."""
    if subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    src = tmp_path / "src.img"
    with open(src, "wb") as f:
        f.truncate(64 * MiB)
        for offset, size in ((0, 2 * MiB), (20 * MiB, 8192), (63 * MiB, 4096)):
            f.seek(offset)
            f.write(os.urandom(size))
    expected = run_script([SYSTEM_PYTHON], "libvirt", pyvirtd, tmp_path, src)

    class Embedded:
        uri = f"qemu:///embed?root={tmp_path / 'embed'}"
    (tmp_path / "embed").mkdir()
    got = run_script([sys.executable], "pyvirt", Embedded, tmp_path, src)
    assert got == expected, {k: (expected.get(k), got.get(k)) for k in expected if expected.get(k) != got.get(k)}
