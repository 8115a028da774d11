"""Migration without shared storage (--copy-storage-all / --copy-storage-inc) between two
real pyvirtd hosts, real QEMU: the disks go over NBD mirrors while the guest runs.

Each test checks what an administrator would: the destination's image has the
source's content (``qemu-img compare``), the guest keeps beating on the
destination, exactly one copy runs, and after an abort the source runs on its
own image and the destination keeps no image it created.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import pyvirt
from daemons import qemu_pid, running_copies, running_pair
from guests import wait_for
from test_migration import _migrate_in_thread, assert_only_on, heartbeat, make_hosts, start_guest

pytestmark = pytest.mark.qemu

COPY_ALL = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_NON_SHARED_DISK
COPY_INC = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_NON_SHARED_INC


@pytest.fixture
def hosts(tmp_path, guests_built):
    with running_pair(*make_hosts(tmp_path)) as pair:
        yield pair


def qemu_img(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True)


def make_image(path: Path, size: str = "64M", fmt: str = "qcow2", backing: Path | None = None) -> None:
    extra = ["-b", str(backing), "-F", "qcow2"] if backing else []
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, *extra, str(path), size], check=True)


def write_pattern(path: Path, pattern: int, offset: str, length: str) -> None:
    subprocess.run(["qemu-io", "-c", f"write -P {pattern:#x} {offset} {length}", str(path)],
                   check=True, capture_output=True)


def disk_xml(path: Path, target: str = "vda", extra: str = "") -> str:
    return f"""
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'{extra}/>
      <source file='{path}'/><target dev='{target}' bus='virtio'/></disk>"""


def moved_xml(dom: pyvirt.virDomain, moves: dict[Path, Path]) -> str:
    xml = dom.XMLDesc(pyvirt.VIR_DOMAIN_XML_MIGRATABLE)
    for old, new in moves.items():
        xml = xml.replace(f"file='{old}'", f"file='{new}'")
    return xml


def source_paths(dom: pyvirt.virDomain) -> list[str]:
    return re.findall(r"<source file='([^']+)'", dom.XMLDesc(0))


def test_copy_storage_all_to_other_paths(hosts):
    """Two disks, each moved to a path only the destination has: both images created there
    with the source's size, content identical, heartbeats go on, job stats count the disks."""
    a, b = hosts
    src1, src2 = a.workdir / "root.qcow2", a.workdir / "data.qcow2"
    make_image(src1, "64M")
    make_image(src2, "32M")
    write_pattern(src1, 0xA5, "0", "24M")
    write_pattern(src2, 0x5A, "4M", "8M")
    dst1, dst2 = b.workdir / "moved-root.qcow2", b.workdir / "moved-data.qcow2"
    ca, dom, uid = start_guest(a, extra_devices=disk_xml(src1) + disk_xml(src2, "vdb"))
    cb = pyvirt.open(b.uri)
    before = heartbeat(a)
    moved = dom.migrate3(cb, {pyvirt.VIR_MIGRATE_PARAM_DEST_XML: moved_xml(dom, {src1: dst1, src2: dst2})},
                         COPY_ALL)
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_only_on(b, uid, "mig", hosts)
    assert source_paths(moved) == [str(dst1), str(dst2)]
    wait_for(lambda: heartbeat(a) > before + 1, 15, what="the guest to keep running on B")
    moved.destroy()
    for src, dst in ((src1, dst1), (src2, dst2)):
        info = qemu_img("info", "--output=json", str(dst))
        assert '"virtual-size": %d' % (64 << 20 if src is src1 else 32 << 20) in info.stdout
        assert '"format": "qcow2"' in info.stdout
        cmp = qemu_img("compare", str(src), str(dst))
        assert cmp.returncode == 0, cmp.stdout + cmp.stderr


def test_copy_storage_inc_with_backing_on_destination(hosts):
    """--copy-storage-inc copies only the top image: the destination has the base and an
    empty overlay on it; afterwards its chain reads as the source's."""
    a, b = hosts
    base = a.workdir / "base.qcow2"
    make_image(base, "32M")
    write_pattern(base, 0x11, "0", "16M")
    top = a.workdir / "top.qcow2"
    make_image(top, "32M", backing=base)
    write_pattern(top, 0x22, "8M", "4M")            # the top image's own data
    dst_base = b.workdir / "base.qcow2"
    subprocess.run(["cp", str(base), str(dst_base)], check=True)
    dst_top = b.workdir / "top.qcow2"
    make_image(dst_top, "32M", backing=dst_base)
    ca, dom, uid = start_guest(a, extra_devices=disk_xml(top))
    cb = pyvirt.open(b.uri)
    # no image on B: libvirt will not make one for an incremental copy (no chain under it)
    with pytest.raises(pyvirt.libvirtError) as exc:
        dom.migrate3(cb, {pyvirt.VIR_MIGRATE_PARAM_DEST_XML: moved_xml(dom, {top: b.workdir / "none.qcow2"})},
                     COPY_INC)
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_UNSUPPORTED
    assert "incremental storage migration is not supported" in str(exc.value)
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and not (b.workdir / "none.qcow2").exists()
    moved = dom.migrate3(pyvirt.open(b.uri), {pyvirt.VIR_MIGRATE_PARAM_DEST_XML: moved_xml(dom, {top: dst_top})},
                         COPY_INC)
    assert_only_on(b, uid, "mig", hosts)
    moved.destroy()
    cmp = qemu_img("compare", str(top), str(dst_top))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    # only the top's data went: the destination's overlay holds about 4 MiB, not the base's 16
    extents = json.loads(qemu_img("map", "--output=json", str(dst_top)).stdout)
    own = sum(e["length"] for e in extents if e["depth"] == 0 and e["data"])
    assert 0 < own <= 8 << 20, extents


def test_abort_during_mirror_keeps_source_and_removes_created_images(hosts):
    """domjobabort while the disk is being copied (a slow mirror): the source runs on its
    own image, the destination QEMU is gone, and so is the image it created."""
    a, b = hosts
    src = a.workdir / "big.qcow2"
    make_image(src, "256M")
    write_pattern(src, 0x77, "0", "128M")
    dst = b.workdir / "created.qcow2"
    ca, dom, uid = start_guest(a, extra_devices=disk_xml(src))
    params = {pyvirt.VIR_MIGRATE_PARAM_DEST_XML: moved_xml(dom, {src: dst}), pyvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 2}
    thread, result = _migrate_in_thread(dom, pyvirt.open(b.uri), COPY_ALL, params)
    watcher = pyvirt.open(a.uri)

    def copying():
        info = watcher.lookupByName("mig").jobInfo()
        return info[0] != pyvirt.VIR_DOMAIN_JOB_NONE and info[10] > 0      # disk_processed
    wait_for(copying, 30, interval=0.05, what="the disk copy to be under way")
    assert dst.exists()
    watcher.lookupByName("mig").abortJob()
    thread.join(60)
    assert not thread.is_alive()
    assert result["error"].get_error_code() == pyvirt.VIR_ERR_OPERATION_ABORTED
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    wait_for(lambda: qemu_pid(b, "mig") is None, 15, what="the destination QEMU to go")
    assert running_copies([a, b], uid) == 1
    assert not dst.exists()
    assert source_paths(dom) == [str(src)]
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before, 10, what="the source guest to keep running")
    # the source's image is untouched and still its own (no leftover NBD node or job)
    assert "migration-vda" not in (subprocess.run(
        ["virsh", "-c", a.uri, "qemu-monitor-command", "mig", '{"execute":"query-named-block-nodes"}'],
        capture_output=True, text=True).stdout)
    dom.destroy()
    assert qemu_img("check", str(src)).returncode == 0


def test_unsafe_refusal_and_unsafe_flag(hosts):
    """A local disk neither shared nor copied: libvirt's "Unsafe migration" refusal,
    nothing started on B; with VIR_MIGRATE_UNSAFE the migration goes (the images are
    the same file here, both hosts being one machine)."""
    a, b = hosts
    src = a.workdir / "local.qcow2"
    make_image(src, "16M")
    ca, dom, uid = start_guest(a, extra_devices=disk_xml(src))
    cb = pyvirt.open(b.uri)
    with pytest.raises(pyvirt.libvirtError) as exc:
        dom.migrate(cb, pyvirt.VIR_MIGRATE_LIVE)
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_MIGRATE_UNSAFE
    assert str(exc.value) == "Unsafe migration: Migration without shared storage is unsafe"
    assert qemu_pid(b, "mig") is None and dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    # a read-only or copied disk is no reason to refuse; both copy flags at once are
    with pytest.raises(pyvirt.libvirtError) as exc:
        dom.migrate(cb, COPY_ALL | pyvirt.VIR_MIGRATE_NON_SHARED_INC)
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    with pytest.raises(pyvirt.libvirtError) as exc:
        dom.migrate3(cb, {pyvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vdz"]}, COPY_ALL)
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG and "disk target vdz not found" in str(exc.value)
    moved = dom.migrate(cb, pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_UNSAFE)
    assert_only_on(b, uid, "mig", hosts)
    moved.destroy()


def test_virsh_copy_storage_all_verbose_and_synchronous_writes(hosts, tmp_path):
    """Stock virsh: migrate --copy-storage-all --copy-storage-synchronous-writes --xml,
    with the progress bar; the image arrives identical."""
    a, b = hosts
    src = a.workdir / "v.qcow2"
    make_image(src, "48M")
    write_pattern(src, 0x3C, "1M", "20M")
    dst = b.workdir / "v-moved.qcow2"
    ca, dom, uid = start_guest(a, extra_devices=disk_xml(src))
    xml = tmp_path / "dest.xml"
    xml.write_text(moved_xml(dom, {src: dst}))
    out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--verbose", "--copy-storage-all",
                          "--copy-storage-synchronous-writes", "--xml", str(xml), "mig", b.uri],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Migration: [100 %]" in out.stderr
    assert_only_on(b, uid, "mig", hosts)
    pyvirt.open(b.uri).lookupByName("mig").destroy()
    cmp = qemu_img("compare", str(src), str(dst))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


def _pool(d, target: Path) -> None:
    for args in (("pool-define-as", "vp", "dir", "--target", str(target)), ("pool-build", "vp"),
                 ("pool-start", "vp")):
        out = subprocess.run(["virsh", "-c", d.uri, *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr


def test_copy_storage_all_creates_the_volume_in_its_pool(hosts):
    """A <disk type='volume'>: the destination's pool of the same name gets the volume
    (the storage driver makes it, with the source's size), the copy fills it; a
    refused migration would have removed it again."""
    a, b = hosts
    _pool(a, a.workdir / "pool")
    _pool(b, b.workdir / "pool")
    subprocess.run(["virsh", "-c", a.uri, "vol-create-as", "vp", "v.qcow2", "24M", "--format", "qcow2"],
                   check=True, capture_output=True)
    src = a.workdir / "pool" / "v.qcow2"
    write_pattern(src, 0x6B, "0", "12M")
    extra = """
    <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
      <source pool='vp' volume='v.qcow2'/><target dev='vda' bus='virtio'/></disk>"""
    ca, dom, uid = start_guest(a, extra_devices=extra)
    cb = pyvirt.open(b.uri)
    moved = dom.migrate(cb, COPY_ALL)
    assert_only_on(b, uid, "mig", hosts)
    assert "<source pool='vp' volume='v.qcow2'/>" in moved.XMLDesc(0)
    vol = cb.storagePoolLookupByName("vp").storageVolLookupByName("v.qcow2")
    assert vol.info()[1] == 24 << 20
    moved.destroy()
    dst = b.workdir / "pool" / "v.qcow2"
    cmp = qemu_img("compare", str(src), str(dst))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


def test_virsh_p2p_copies_only_the_disks_named(hosts, tmp_path):
    """virsh migrate --p2p --copy-storage-all --migrate-disks vda: vda is copied to its new
    path; vdb, read-only, stays where it is (safe to leave behind, as libvirt judges)."""
    a, b = hosts
    src = a.workdir / "root.qcow2"
    make_image(src, "16M")
    write_pattern(src, 0x21, "0", "8M")
    shared = a.workdir / "ro.raw"
    make_image(shared, "4M", fmt="raw")
    ro = f"""
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{shared}'/><target dev='vdb' bus='virtio'/><readonly/></disk>"""
    dst = b.workdir / "root-moved.qcow2"
    ca, dom, uid = start_guest(a, extra_devices=disk_xml(src) + ro)
    xml = tmp_path / "dest.xml"
    xml.write_text(moved_xml(dom, {src: dst}))
    out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--p2p", "--copy-storage-all",
                          "--migrate-disks", "vda", "--xml", str(xml), "mig", b.uri],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert_only_on(b, uid, "mig", hosts)
    moved = pyvirt.open(b.uri).lookupByName("mig")
    assert source_paths(moved) == [str(dst), str(shared)]
    moved.destroy()
    cmp = qemu_img("compare", str(src), str(dst))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


def test_destination_qemu_killed_during_mirror(hosts):
    """The destination's QEMU dies while the disk is being copied (a slow mirror): the
    migration fails naming the disk, the source runs on its own image with no NBD node
    left, and the image the destination created is gone."""
    import os
    import signal
    a, b = hosts
    src = a.workdir / "big.qcow2"
    make_image(src, "256M")
    write_pattern(src, 0x4D, "0", "96M")
    dst = b.workdir / "created.qcow2"
    ca, dom, uid = start_guest(a, extra_devices=disk_xml(src))
    params = {pyvirt.VIR_MIGRATE_PARAM_DEST_XML: moved_xml(dom, {src: dst}), pyvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 2}
    thread, result = _migrate_in_thread(dom, pyvirt.open(b.uri), COPY_ALL, params)
    watcher = pyvirt.open(a.uri)

    def copying():
        info = watcher.lookupByName("mig").jobInfo()
        return info[0] != pyvirt.VIR_DOMAIN_JOB_NONE and info[10] > 0
    wait_for(copying, 30, interval=0.05, what="the disk copy to be under way")
    os.kill(qemu_pid(b, "mig"), signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive()
    err = result["error"]
    assert err.get_error_code() == pyvirt.VIR_ERR_OPERATION_FAILED
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert running_copies([a, b], uid) == 1
    wait_for(lambda: not dst.exists(), 15, what="the destination's image to be removed")
    nodes = subprocess.run(["virsh", "-c", a.uri, "qemu-monitor-command", "mig",
                            '{"execute":"query-named-block-nodes"}'], capture_output=True, text=True).stdout
    assert "migration-vda" not in nodes
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before, 10, what="the source guest to keep running")
    dom.destroy()
    assert qemu_img("check", str(src)).returncode == 0


def test_disks_port_and_disks_uri(hosts):
    """disks_port puts the destination's NBD server on that port; disks_uri (tcp://) on that
    address and port."""
    from daemons import free_port
    a, b = hosts
    cb = pyvirt.open(b.uri)
    for n, extra in enumerate(({pyvirt.VIR_MIGRATE_PARAM_DISKS_PORT: free_port()},
                               {pyvirt.VIR_MIGRATE_PARAM_DISKS_URI: f"tcp://127.0.0.1:{free_port()}"})):
        src = a.workdir / f"p{n}.qcow2"
        make_image(src, "16M")
        write_pattern(src, 0x30 + n, "0", "4M")
        dst = b.workdir / f"p{n}-moved.qcow2"
        ca, dom, uid = start_guest(a, name=f"dp{n}", extra_devices=disk_xml(src))
        moved = dom.migrate3(cb, {pyvirt.VIR_MIGRATE_PARAM_DEST_XML: moved_xml(dom, {src: dst}), **extra}, COPY_ALL)
        moved.destroy()
        assert qemu_img("compare", str(src), str(dst)).returncode == 0


def test_disks_uri_unix_socket(hosts):
    """disks_uri=unix:///PATH: the destination's NBD server listens on that socket and the
    source's mirrors connect to it (nothing else: no TCP port is sent for the disks), the
    copy is complete and the socket gone afterwards; malformed disks URIs get libvirt 9.0's
    refusals with the source left running and nothing left on B."""
    import pwd
    a, b = hosts
    cb = pyvirt.open(b.uri)
    # QEMU (the unprivileged user) creates the socket: the directory is the operator's to give it
    sockdir = b.workdir / "nbd"
    sockdir.mkdir()
    qemu_user = pwd.getpwnam("libvirt-qemu")
    os.chown(sockdir, qemu_user.pw_uid, qemu_user.pw_gid)
    sock = sockdir / "disks.sock"
    src = a.workdir / "u.qcow2"
    make_image(src, "16M")
    write_pattern(src, 0x3C, "2M", "6M")
    dst = b.workdir / "u-moved.qcow2"
    ca, dom, uid = start_guest(a, name="du", extra_devices=disk_xml(src))
    for bad, message in (("tcp://:10809", "URI with tcp scheme did not provide a server part: tcp://:10809"),
                         ("unix://", "UNIX disks URI does not include path"),
                         ("nbd://127.0.0.1", "Unsupported scheme in disks URI: nbd"),
                         ("127.0.0.1", "No URI scheme specified: 127.0.0.1")):
        with pytest.raises(pyvirt.libvirtError) as exc:
            dom.migrate3(cb, {pyvirt.VIR_MIGRATE_PARAM_DEST_XML: moved_xml(dom, {src: dst}),
                              pyvirt.VIR_MIGRATE_PARAM_DISKS_URI: bad}, COPY_ALL)
        assert exc.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG, bad
        assert message in str(exc.value)
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and qemu_pid(b, "du") is None
        assert not dst.exists()
    moved = dom.migrate3(cb, {pyvirt.VIR_MIGRATE_PARAM_DEST_XML: moved_xml(dom, {src: dst}),
                              pyvirt.VIR_MIGRATE_PARAM_DISKS_URI: f"unix://{sock}"}, COPY_ALL)
    assert_only_on(b, uid, "du", hosts)
    assert not sock.exists()          # the server is gone with the copy
    moved.destroy()
    cmp = qemu_img("compare", str(src), str(dst))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


def test_no_migration_while_a_block_job_runs(hosts):
    """As libvirt: 'domain has active block job' while a copy runs; once it is finished
    the storage migration goes."""
    a, b = hosts
    src = a.workdir / "bj.qcow2"
    make_image(src, "16M")
    ca, dom, uid = start_guest(a, extra_devices=disk_xml(src))
    copy = a.workdir / "bj-copy.qcow2"
    out = subprocess.run(["virsh", "-c", a.uri, "blockcopy", "mig", "vda", str(copy), "--wait"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cb = pyvirt.open(b.uri)
    with pytest.raises(pyvirt.libvirtError) as exc:
        dom.migrate(cb, COPY_ALL)
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_INVALID
    assert "domain has active block job" in str(exc.value)
    dom.blockJobAbort("vda", 0)
    moved = dom.migrate3(cb, {pyvirt.VIR_MIGRATE_PARAM_DEST_XML: moved_xml(dom, {src: b.workdir / "bj.qcow2"})},
                         COPY_ALL)
    assert_only_on(b, uid, "mig", hosts)
    moved.destroy()
