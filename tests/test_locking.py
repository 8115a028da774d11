"""Disk leases with the lockd lock manager: two pyvirtd "hosts" with real QEMU share
a disk image and one lockspace directory, each with its own pyvirtlockd.

Host B runs in a mount namespace of its own where the image's path shows a copy:
as on two machines, QEMU's own image locks (which work per kernel and inode)
never see each other, so only the leases in the shared lockspace keep the two
hosts apart.  Whether a lease is held is read from the test with F_OFD_GETLK
on the lease file.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import pyvirt
from pyvirt import aio
from daemons import Pyvirtd, qemu_pid, running_pair
from guests import READY, make_traversable, pid_alive, tiny_xml, wait_for, wait_for_text
from pyvirt.errors import ErrorDomain, ErrorNumber
from pyvirt.lockd.files import lock_holder
from pyvirt.locking.client import LockDaemonClient

pytestmark = pytest.mark.qemu
PYVIRT = Path(sys.executable).with_name("pyvirt")      # the command line, from this venv


@dataclass
class Storage:
    image: Path          # the shared disk, as both hosts name it
    lockspace: Path      # the shared lease directory
    b_view: Path         # what host B's namespace shows at the image's path

    @property
    def lease_file(self) -> Path:
        return self.lockspace / hashlib.sha256(str(self.image).encode()).hexdigest()

    def held(self) -> bool:
        """A host holds the disk's lease (an exclusive lock on its lease file)."""
        return self.lease_file.exists() and lock_holder(str(self.lease_file)) == fcntl.F_WRLCK


@pytest.fixture
def storage(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    image = shared / "disk.raw"
    with open(image, "wb") as f:
        f.truncate(1 << 20)
    view = tmp_path / "b-view"
    view.mkdir()
    shutil.copyfile(image, view / "disk.raw")
    make_traversable(shared)
    make_traversable(view)
    return Storage(image, shared / "lockd", view / "disk.raw")


def _lockd_pid(host: Pyvirtd) -> int | None:
    try:
        return int((host.state_dir / "run" / "pyvirtlockd.sock.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _can_unshare_mounts() -> bool:
    try:
        return subprocess.run(["unshare", "--mount", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def lock_hosts(tmp_path, guests_built, storage):
    if not _can_unshare_mounts():
        pytest.skip("needs a mount namespace (unshare --mount, as root) for host B's view of the storage")
    conf = f'lock_manager = "lockd"\nlock_file_lockspace_dir = "{storage.lockspace}"\n'
    a = Pyvirtd(tmp_path / "a", extra_config=conf)
    b = Pyvirtd(tmp_path / "b", extra_config=conf, argv_prefix=[
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", f'mount --bind "{storage.b_view}" "{storage.image}" && exec "$@"', "sh"])
    try:
        with running_pair(a, b) as pair:
            yield pair
    finally:
        for host in (a, b):           # the lock daemons pyvirtd started, by their pidfiles
            pid = _lockd_pid(host)
            if pid is not None and pid_alive(pid):
                os.kill(pid, signal.SIGTERM)


def guest_xml(host: Pyvirtd, name: str, storage: Storage, uid: str | None = None) -> str:
    disk = (f"\n    <disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            f"<source file='{storage.image}'/><target dev='vda' bus='virtio'/></disk>")
    return tiny_xml(name, host.workdir / f"{name}.log", uuid=uid or str(uuid.uuid4()), extra_devices=disk)


def start(host: Pyvirtd, name: str, storage: Storage) -> tuple[pyvirt.virConnect, pyvirt.virDomain]:
    conn = pyvirt.open(host.uri)
    return conn, conn.createXML(guest_xml(host, name, storage), 0)


def assert_refused_naming_the_disk(exc: pyvirt.libvirtError, storage: Storage) -> None:
    assert exc.get_error_code() == ErrorNumber.RESOURCE_BUSY
    assert exc.get_error_domain() == ErrorDomain.LOCKSPACE
    message = exc.get_error_message()
    assert f"Lockspace resource '{storage.lease_file.name}' is locked" in message
    assert str(storage.image) in message


def owners(host: Pyvirtd) -> list[dict]:
    """What the host's lock daemon holds, asked on its socket."""
    async def ask():
        client = LockDaemonClient(host.state_dir / "run" / "pyvirtlockd.sock", "files")
        try:
            return (await client.call("owners"))["owners"]
        finally:
            await client.close()
    return asyncio.run(ask())


def test_second_host_start_refused_naming_the_disk(lock_hosts, storage, tmp_path):
    a, b = lock_hosts
    conn_a, dom = start(a, "holder", storage)
    assert storage.held()
    # stock virsh on host B: refused, and it says which disk and which lease
    xml = tmp_path / "second.xml"
    xml.write_text(guest_xml(b, "second", storage))
    out = subprocess.run(["virsh", "-c", b.uri, "create", str(xml)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"error: resource busy: Lockspace resource '{storage.lease_file.name}' is locked" in out.stderr
    assert str(storage.image) in out.stderr
    assert qemu_pid(b, "second") is None                 # no QEMU left running the disk on B
    # pyvirt prints the same error, then says in plain words what it means
    out = subprocess.run([str(PYVIRT), "-c", b.uri, "create", str(xml)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"error: resource busy: Lockspace resource '{storage.lease_file.name}' is locked" in out.stderr
    assert (f"hint: disk '{storage.image}' is in use by another running guest, on this host or on another "
            "host sharing the storage") in out.stderr
    conn_b = pyvirt.open(b.uri)
    with pytest.raises(pyvirt.libvirtError) as exc:
        conn_b.createXML(guest_xml(b, "second", storage), 0)
    assert_refused_naming_the_disk(exc.value, storage)
    assert conn_b.listAllDomains() == []
    dom.destroy()
    assert not storage.held()
    second = conn_b.createXML(guest_xml(b, "second", storage), 0)
    assert storage.held()
    with pytest.raises(pyvirt.libvirtError) as exc:       # and now the other way round
        conn_a.createXML(guest_xml(a, "holder", storage), 0)
    assert_refused_naming_the_disk(exc.value, storage)
    second.destroy()


def test_suspend_resume_save_restore_release_and_reacquire(lock_hosts, storage, tmp_path):
    a, b = lock_hosts
    conn_a, dom = start(a, "cycle", storage)
    wait_for_text(a.workdir / "cycle.log", READY)
    assert storage.held()
    dom.suspend()
    assert not storage.held()
    dom.resume()
    assert storage.held()
    # while A's guest is paused another host may take the disk; A then cannot resume
    dom.suspend()
    conn_b, other = start(b, "taker", storage)
    with pytest.raises(pyvirt.libvirtError) as exc:
        dom.resume()
    assert_refused_naming_the_disk(exc.value, storage)
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_PAUSED
    other.destroy()
    dom.resume()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and storage.held()
    image = tmp_path / "cycle.save"
    dom.save(str(image))
    assert not storage.held()
    conn_a.restore(str(image))
    assert conn_a.lookupByName("cycle").state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert storage.held()
    conn_a.lookupByName("cycle").destroy()
    assert not storage.held()


def test_migration_hands_the_lease_over(lock_hosts, storage):
    a, b = lock_hosts
    conn_a, dom = start(a, "mover", storage)
    wait_for_text(a.workdir / "mover.log", READY)
    conn_b = pyvirt.open(b.uri)
    # one disk both hosts see (one machine): "unsafe" to libvirt's shared-storage check
    moved = dom.migrate(conn_b, pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_UNSAFE)
    assert moved.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert storage.held()
    held_by_b = owners(b)
    assert [o["owner"]["uuid"] for o in held_by_b] == [moved.UUIDString()]
    assert held_by_b[0]["resources"][0]["what"] == str(storage.image)
    assert owners(a) == []
    with pytest.raises(pyvirt.libvirtError) as exc:      # A gave the disk away
        conn_a.createXML(guest_xml(a, "again", storage), 0)
    assert_refused_naming_the_disk(exc.value, storage)
    moved.destroy()
    assert not storage.held()
    again = conn_a.createXML(guest_xml(a, "again", storage), 0)
    assert storage.held()
    again.destroy()


def test_killed_pyvirtd_keeps_the_lease_and_the_restarted_one_adopts(lock_hosts, storage):
    a, b = lock_hosts
    _, dom = start(a, "kept", storage)
    uid = dom.UUIDString()
    pid = qemu_pid(a, "kept")
    lockd = _lockd_pid(a)
    a.stop(signal.SIGKILL)
    assert pid_alive(pid) and lockd is not None and pid_alive(lockd)
    assert storage.held()
    conn_b = pyvirt.open(b.uri)
    with pytest.raises(pyvirt.libvirtError) as exc:
        conn_b.createXML(guest_xml(b, "intruder", storage), 0)
    assert_refused_naming_the_disk(exc.value, storage)
    a.start()
    conn_a = pyvirt.open(a.uri)
    adopted = conn_a.lookupByUUIDString(uid)
    assert adopted.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and qemu_pid(a, "kept") == pid
    assert _lockd_pid(a) == lockd                       # the same lock daemon, never restarted
    assert [(o["owner"]["uuid"], o["owner"]["pid"]) for o in owners(a)] == [(uid, pid)]
    adopted.suspend()                                  # the adopted guest's leases are managed again
    assert not storage.held()
    adopted.resume()
    assert storage.held()
    adopted.destroy()
    assert not storage.held()
    conn_b.createXML(guest_xml(b, "intruder", storage), 0).destroy()


def test_qemu_that_dies_releases_its_lease(lock_hosts, storage):
    a, b = lock_hosts
    conn_a, dom = start(a, "crasher", storage)
    assert storage.held()
    os.kill(qemu_pid(a, "crasher"), signal.SIGKILL)
    wait_for(lambda: not conn_a.listAllDomains(), what="the crashed guest gone from host A")
    assert not storage.held()
    conn_b = pyvirt.open(b.uri)
    conn_b.createXML(guest_xml(b, "next", storage), 0).destroy()


def test_a_pause_qemu_reports_itself_releases(lock_hosts, storage):
    """QEMU stopped behind the daemon's back (as on an I/O error, a watchdog or a
    panic): its STOP event releases the lease; resuming takes it again."""
    a, b = lock_hosts
    _, dom = start(a, "stopper", storage)
    out = subprocess.run(["virsh", "-c", a.uri, "qemu-monitor-command", "stopper", '{"execute":"stop"}'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: not storage.held(), what="the lease released after QEMU's STOP")
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_PAUSED
    dom.resume()
    assert storage.held()
    # and a cont behind the daemon's back takes the lease after the fact
    dom.suspend()
    assert not storage.held()
    out = subprocess.run(["virsh", "-c", a.uri, "qemu-monitor-command", "stopper", '{"execute":"cont"}'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    wait_for(storage.held, what="the lease taken after QEMU's RESUME")
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    # ... and without it the guest is paused again
    dom.suspend()
    _, other = start(b, "other", storage)
    out = subprocess.run(["virsh", "-c", a.uri, "qemu-monitor-command", "stopper", '{"execute":"cont"}'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: dom.state() == [pyvirt.VIR_DOMAIN_PAUSED, pyvirt.VIR_DOMAIN_PAUSED_UNKNOWN]
             and "paused" in subprocess.run(["virsh", "-c", a.uri, "qemu-monitor-command", "stopper",
                                             '{"execute":"query-status"}'], capture_output=True, text=True).stdout,
             what="the guest resumed without its lease paused again")
    other.destroy()
    dom.destroy()


def test_failed_migration_reacquires_on_the_source(lock_hosts, storage):
    """Finish acquires before cont: with the disk's lease taken by a third party after
    Perform, Finish fails naming the disk and kills the destination; Confirm (cancelled)
    takes the lease again on the source and resumes it."""
    from pyvirt.lockd.files import try_lock
    a, b = lock_hosts
    conn_a, dom = start(a, "mover", storage)
    wait_for_text(a.workdir / "mover.log", READY)
    src, dst = conn_a._drv, pyvirt.open(b.uri)._drv
    flags = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_UNSAFE     # the disk is local (one machine)
    cookie, xml = aio.run(src.domain_migrate_begin3(dom._ref, None, flags, None, 0))
    cookie, uri = aio.run(dst.domain_migrate_prepare3(cookie, None, flags, None, 0, xml))
    cookie = aio.run(src.domain_migrate_perform3(dom._ref, None, cookie, None, uri, flags, None, 0))
    assert not storage.held()              # the source paused at the end of Perform: released
    third = os.open(storage.lease_file, os.O_RDWR | os.O_CLOEXEC)
    try:
        assert try_lock(third, shared=False)
        with pytest.raises(pyvirt.libvirtError) as exc:
            aio.run(dst.domain_migrate_finish3("mover", cookie, None, uri, flags, 0))
    finally:
        os.close(third)
    assert_refused_naming_the_disk(exc.value, storage)
    assert qemu_pid(b, "mover") is None
    aio.run(src.domain_migrate_confirm3(dom._ref, b"", flags, 1))
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED]
    assert storage.held() and [o["owner"]["uuid"] for o in owners(a)] == [dom.UUIDString()]
    dom.destroy()


def test_lockd_has_no_state_so_protocol_v2_hands_the_lease_over(lock_hosts, storage):
    a, b = lock_hosts
    conn_a, dom = start(a, "v2", storage)
    wait_for_text(a.workdir / "v2.log", READY)
    src, dst = conn_a._drv, pyvirt.open(b.uri)._drv
    flags = pyvirt.VIR_MIGRATE_LIVE
    xml = dom.XMLDesc(pyvirt.VIR_DOMAIN_XML_MIGRATABLE)
    _, uri = aio.run(dst.domain_migrate_prepare2(None, flags, None, 0, xml))
    aio.run(src.domain_migrate_perform(dom._ref, b"", uri, flags, None, 0))
    aio.run(dst.domain_migrate_finish2("v2", b"", uri, flags, 0))
    assert [o["owner"]["uuid"] for o in owners(b)] == [dom.UUIDString()] and storage.held()
    assert owners(a) == []
    pyvirt.open(b.uri).lookupByName("v2").destroy()
    assert not storage.held()


def test_a_lock_daemon_that_dies_is_replaced_and_the_leases_taken_again(lock_hosts, storage):
    """Its fcntl locks die with pyvirtlockd; pyvirtd starts another one at once and its
    running guests take their leases again (a paused one only registers)."""
    a, _ = lock_hosts
    _, dom = start(a, "survivor", storage)
    old = _lockd_pid(a)
    assert storage.held() and old is not None
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _lockd_pid(a) not in (None, old) and storage.held(),
             what="a new lock daemon holding the running guest's lease again")
    assert [o["owner"]["uuid"] for o in owners(a)] == [dom.UUIDString()]
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    dom.destroy()
    assert not storage.held()


def test_a_hotplugged_disk_takes_its_lease_and_an_unplugged_one_gives_it_back(lock_hosts, storage):
    a, b = lock_hosts
    conn_a = pyvirt.open(a.uri)
    xml = tiny_xml("plug", a.workdir / "plug.log", uuid=str(uuid.uuid4()))
    dom = conn_a.createXML(xml.replace("</os>", "</os>\n  <features><acpi/></features>", 1), 0)   # PCI hot-plug
    assert not storage.held()
    disk = (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            f"<source file='{storage.image}'/><target dev='sda' bus='scsi'/></disk>")
    dom.attachDeviceFlags(disk, pyvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert storage.held()
    with pytest.raises(pyvirt.libvirtError) as exc:
        pyvirt.open(b.uri).createXML(guest_xml(b, "other", storage), 0)
    assert_refused_naming_the_disk(exc.value, storage)
    dom.detachDeviceFlags(disk, pyvirt.VIR_DOMAIN_AFFECT_LIVE)
    wait_for(lambda: "sda" not in dom.XMLDesc(0), what="the SCSI disk removed (DEVICE_DELETED)")
    assert not storage.held()
    # the other host has it now: attaching it here is refused, and nothing is left plugged in
    other = pyvirt.open(b.uri).createXML(guest_xml(b, "other", storage), 0)
    with pytest.raises(pyvirt.libvirtError) as exc:
        dom.attachDeviceFlags(disk, pyvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert_refused_naming_the_disk(exc.value, storage)
    assert "sda" not in dom.XMLDesc(0)
    other.destroy()
    dom.destroy()


def test_snapshot_revert_and_managed_save_release_and_reacquire(lock_hosts, storage):
    """Item 5's other ways of stopping and starting CPUs: a running internal snapshot
    (paused around the save), a revert that leaves the guest paused, managed save and
    the start that restores it — each through the same two lease points."""
    a, _b = lock_hosts
    image = storage.image.parent / "snap.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    qcow2 = Storage(image, storage.lockspace, image)
    disk = (f"\n    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{image}'/><target dev='vda' bus='virtio'/></disk>")
    conn = pyvirt.open(a.uri)
    dom = conn.defineXML(tiny_xml("snappy", a.workdir / "snappy.log", uuid=str(uuid.uuid4()), extra_devices=disk))
    try:
        dom.create()
        wait_for_text(a.workdir / "snappy.log", READY)
        assert qcow2.held()
        dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>", 0)
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and qcow2.held()      # resumed: taken again
        snap = dom.snapshotLookupByName("s1")
        dom.revertToSnapshot(snap, pyvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED)
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_PAUSED and not qcow2.held()
        dom.resume()
        assert qcow2.held()
        dom.managedSave(0)
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF and not qcow2.held()
        dom.create()                       # restores the managed save, then runs: the lease again
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and qcow2.held()
        dom.destroy()
        assert not qcow2.held()
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(pyvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | pyvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
