"""Unit tests of the lock manager: the lockd plugin's leases, the files backend's
fcntl locks, and pyvirtlockd itself (a real daemon process on a private socket)."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyvirt import locking
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError
from pyvirt.locking import Disk, Guest, Lease
from pyvirt.lockd.backend import Owner, Resource, backend_class
from pyvirt.lockd.files import lock_holder


class _NoHooks:
    async def lease_lost(self, owner, resources, why, expires_at=None):
        raise AssertionError("files leases are never lost")


def plugin(tmp_path: Path, **settings):
    return locking.new_manager("lockd", settings, tmp_path / "run", tmp_path / "log")


# -- which leases a guest takes ------------------------------------------------------
def test_lockd_leases_per_disk(tmp_path):
    p = plugin(tmp_path, lock_file_lockspace_dir=str(tmp_path / "space"))
    g = Guest("u", "vm", 1, disks=(Disk("/img/rw.qcow2"), Disk("/img/ro.iso", readonly=True),
                                   Disk("/img/shared.raw", shareable=True)))
    res = p.resources(g)
    assert [(r.name, r.shared, r.autocreate, r.what) for r in res] == [
        (hashlib.sha256(b"/img/rw.qcow2").hexdigest(), False, True, "/img/rw.qcow2"),
        (hashlib.sha256(b"/img/shared.raw").hexdigest(), True, True, "/img/shared.raw")]
    assert {r.lockspace for r in res} == {str(tmp_path / "space")}


def test_lockd_direct_lease_without_lockspace_dir(tmp_path):
    res = plugin(tmp_path).resources(Guest("u", "vm", 1, disks=(Disk("/img/a.raw"),)))
    assert [(r.lockspace, r.name, r.path) for r in res] == [("", "/img/a.raw", "/img/a.raw")]


def test_lockd_lease_elements_and_their_checks(tmp_path):
    p = plugin(tmp_path, auto_disk_leases=0)
    res = p.resources(Guest("u", "vm", 1, leases=(Lease("space", "key1", "/leases"),)))
    assert [(r.lockspace, r.name) for r in res] == [("/leases/space", "key1")]
    with pytest.raises(libvirtError, match="lease key '../../etc/passwd' must be a file name"):
        p.resources(Guest("u", "vm", 1, leases=(Lease("space", "../../etc/passwd", "/leases"),)))
    with pytest.raises(libvirtError, match="lease lockspace '..' must be a file name"):
        p.resources(Guest("u", "vm", 1, leases=(Lease("..", "k", "/leases"),)))
    with pytest.raises(libvirtError, match="Offset must be zero for this lock manager"):
        p.resources(Guest("u", "vm", 1, leases=(Lease("space", "k", "/l", offset=1024),)))
    # auto_disk_leases = 0 makes leases required (libvirt's default for require_lease_for_disks)
    with pytest.raises(libvirtError) as exc:
        p.resources(Guest("u", "vm", 1, disks=(Disk("/img/a.raw"),)))
    assert exc.value.code == ErrorNumber.CONFIG_UNSUPPORTED
    assert "Read/write, exclusive access, disks were present, but no leases specified" in str(exc.value)
    # read-only and shareable disks need none
    assert p.resources(Guest("u", "vm", 1, disks=(Disk("/a", readonly=True), Disk("/b", shareable=True)))) == []
    assert plugin(tmp_path, auto_disk_leases=0, require_lease_for_disks=0).resources(
        Guest("u", "vm", 1, disks=(Disk("/img/a.raw"),))) == []


def test_unknown_lock_manager_is_a_clear_error(tmp_path):
    with pytest.raises(libvirtError, match="lock manager 'sanlock' is not one of: nop, lockd, etcd"):
        locking.new_manager("sanlock")
    nop = locking.new_manager("nop")
    assert nop.name == "nop" and not nop.uses_state


# -- the files backend ---------------------------------------------------------------
def test_files_backend_exclusive_shared_and_release(tmp_path):
    async def run():
        # two backends: as two hosts' lock daemons on one lockspace directory
        a, b = (backend_class("files")({}, _NoHooks()) for _ in range(2))
        space = str(tmp_path / "space")
        rw = Resource(space, "disk1", autocreate=True, what="/img/one.qcow2")
        sh = Resource(space, "disk2", shared=True, autocreate=True, what="/img/two.raw")
        one, two = Owner("u1", "vm1", 11), Owner("u2", "vm2", 22)
        await a.acquire(one, [rw, sh], None)
        assert lock_holder(rw.path) == fcntl.F_WRLCK
        assert lock_holder(sh.path, shared=True) is None          # readers may share it
        with pytest.raises(libvirtError) as exc:
            await b.acquire(two, [sh, rw], None)
        assert exc.value.code == ErrorNumber.RESOURCE_BUSY and exc.value.domain == ErrorDomain.LOCKSPACE
        assert "Lockspace resource 'disk1' is locked" in str(exc.value)
        assert "/img/one.qcow2" in str(exc.value)
        assert b.held(two) == []                                   # all or nothing
        await b.acquire(two, [sh], None)                           # the shared one alone is fine
        assert a.held(one) == [rw, sh] and b.held(two) == [sh]
        assert await a.release(one, None) is None
        assert lock_holder(rw.path) is None
        await b.acquire(two, [rw], None)
        assert lock_holder(rw.path) == fcntl.F_WRLCK
        await b.close()
        assert lock_holder(rw.path) is None
        await a.close()
    asyncio.run(run())


def test_files_backend_same_host_guests_conflict_too(tmp_path):
    async def run():
        backend = backend_class("files")({}, _NoHooks())
        disk = tmp_path / "disk.raw"
        disk.write_bytes(b"\0" * 512)
        direct = Resource("", str(disk), what=str(disk))
        await backend.acquire(Owner("u1", "vm1", 1), [direct], None)
        with pytest.raises(libvirtError, match=f"Lockspace resource '{disk}' is locked"):
            await backend.acquire(Owner("u2", "vm2", 2), [direct], None)
        await backend.acquire(Owner("u1", "vm1", 1), [direct], None)     # held already: no-op
        await backend.forget(Owner("u1", "vm1", 1))
        await backend.acquire(Owner("u2", "vm2", 2), [direct], None)
        await backend.close()
        for bad in (Resource(str(tmp_path), "../escape", autocreate=True), Resource("", "relative")):
            with pytest.raises(libvirtError) as exc:
                await backend.acquire(Owner("u3", "vm3", 3), [bad], None)
            assert exc.value.code == ErrorNumber.INVALID_ARG
        assert not (tmp_path.parent / "escape").exists()
        with pytest.raises(libvirtError, match="Unable to open/create resource"):
            await backend.acquire(Owner("u3", "vm3", 3), [Resource(str(tmp_path / "none"), "k")], None)
    asyncio.run(run())


# -- pyvirtlockd ------------------------------------------------------------------------
@pytest.fixture
def lock_daemons():
    """Stops every pyvirtlockd a test's plugins started (by the pid in its pidfile)."""
    sockets: list[Path] = []
    yield sockets
    for sock in sockets:
        pidfile = Path(str(sock) + ".pid")
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _owner_process() -> subprocess.Popen:
    """Stands in for a QEMU: it runs until its stdin closes."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def test_lock_daemon_ties_leases_to_the_process(tmp_path, lock_daemons):
    space = tmp_path / "space"
    a = plugin(tmp_path / "a", lock_file_lockspace_dir=str(space))
    b = plugin(tmp_path / "b", lock_file_lockspace_dir=str(space))
    lock_daemons += [a.client.socket_path, b.client.socket_path]
    qa, qb = _owner_process(), _owner_process()
    ga = Guest("u-a", "vm", qa.pid, disks=(Disk("/img/shared-disk.qcow2"),))
    gb = Guest("u-b", "vm-b", qb.pid, disks=(Disk("/img/shared-disk.qcow2"),))
    lease_file = space / hashlib.sha256(b"/img/shared-disk.qcow2").hexdigest()

    async def run():
        await a.register(ga)
        await a.acquire(ga)
        assert a.client.daemon_pid != os.getpid()
        assert lock_holder(str(lease_file)) == fcntl.F_WRLCK
        await b.register(gb)
        with pytest.raises(libvirtError) as exc:
            await b.acquire(gb)
        assert exc.value.code == ErrorNumber.RESOURCE_BUSY
        assert "is locked" in str(exc.value) and "/img/shared-disk.qcow2" in str(exc.value)
        # pyvirtd going away (its client) releases nothing
        await a.close()
        assert lock_holder(str(lease_file)) == fcntl.F_WRLCK
        a2 = plugin(tmp_path / "a", lock_file_lockspace_dir=str(space))
        await a2.adopt(ga, running=True)                # re-registers, the lease already held
        held = await a2.held()
        assert [o["owner"]["uuid"] for o in held] == ["u-a"] and held[0]["resources"][0]["what"] == \
            "/img/shared-disk.qcow2"
        # the owner's process ending releases
        qa.stdin.close()
        qa.wait()
        assert await a2.held() == []
        assert lock_holder(str(lease_file)) is None
        await b.acquire(gb)
        assert await b.release(gb) is None
        assert lock_holder(str(lease_file)) is None
        await a2.close()
        await b.close()
    try:
        asyncio.run(run())
    finally:
        for q in (qa, qb):
            q.kill()
            q.wait()


def test_lock_daemon_answers_bad_requests(tmp_path, lock_daemons):
    p = plugin(tmp_path)
    lock_daemons.append(p.client.socket_path)

    async def run():
        with pytest.raises(libvirtError, match="unknown lock daemon operation 'explode'"):
            await p.client.call("explode")
        with pytest.raises(libvirtError, match="without a valid owner"):
            await p.client.call("acquire", owner={"uuid": "x"})
        with pytest.raises(libvirtError, match="cannot watch process"):
            await p.client.call("register", owner={"uuid": "x", "name": "x", "pid": 2 ** 22 + 12345})
        reader, writer = await asyncio.open_unix_connection(str(p.client.socket_path))
        writer.write(b"not json\n")
        assert b"malformed lock daemon message" in await reader.readline()
        writer.close()
        assert (await p.client.call("owners")) == {"owners": []}     # still serving
        await p.close()
    asyncio.run(run())


# -- the driver's two points, the status XML and the migration checks --------------------
DOMAIN_XML = """<domain type='qemu'><name>vm</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
<memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>
<disk type='file' device='disk'><source file='/img/rw.qcow2'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><source file='/img/boot.iso'/><target dev='hdc' bus='ide'/></disk>
<disk type='file' device='disk'><source file='/img/shared.raw'/><target dev='vdb' bus='virtio'/><shareable/></disk>
<lease><lockspace>space</lockspace><key>key1</key><target path='/leases' offset='0'/></lease>
</devices></domain>"""


class Recorder(locking.LockPlugin):
    """A plugin that uses state and records every call."""

    name = "recorder"
    uses_state = True

    def __init__(self) -> None:
        super().__init__({}, Path("."), Path("."))
        self.calls: list[tuple] = []
        self.refuse = False

    async def acquire(self, guest, state=None):
        self.calls.append(("acquire", guest.pid, state))
        if self.refuse:
            raise libvirtError("busy", ErrorNumber.RESOURCE_BUSY, ErrorDomain.LOCKSPACE)

    async def release(self, guest):
        self.calls.append(("release", guest.pid))
        return "token-7"


def _objects(tmp_path):
    from types import SimpleNamespace
    from pyvirt import conf
    from pyvirt.enums import DomainState
    d = conf.parse(DOMAIN_XML)
    obj = _Obj()
    obj.__dict__.update(uuid=d.uuid, name="vm", live=d, definition=d, process=SimpleNamespace(pid=99),
                        state=DomainState.RUNNING, lock_state=None, leases_held=False,
                        save_status=lambda: None)
    return SimpleNamespace(locks=Recorder()), obj


class _Obj:
    """Stands in for a QemuDomainObj (weakly referenced, as the driver's objects are)."""


def test_guest_seen_by_the_plugin(tmp_path):
    from pyvirt.drivers.qemu import leases
    _, obj = _objects(tmp_path)
    g = leases.guest(obj)
    assert (g.uuid, g.name, g.pid, g.on_lockfailure) == (obj.uuid, "vm", 99, "poweroff")
    # in libvirt's disk order (virDomainDiskInsert: a disk joins the others of its bus, by target)
    assert g.disks == (Disk("/img/rw.qcow2"), Disk("/img/shared.raw", shareable=True),
                       Disk("/img/boot.iso", readonly=True))
    assert g.leases == (Lease("space", "key1", "/leases", 0),)


def test_run_cpus_acquires_from_the_saved_state_and_releases_if_cont_fails(tmp_path):
    from pyvirt.drivers.qemu import leases
    drv, obj = _objects(tmp_path)
    obj.lock_state = "token-6"

    async def failing_cont():
        raise libvirtError("cont failed")

    async def run():
        with pytest.raises(libvirtError, match="cont failed"):
            await leases.run_cpus(drv, obj, failing_cont)
        assert drv.locks.calls == [("acquire", 99, "token-6"), ("release", 99)]
        assert not obj.leases_held and obj.lock_state == "token-7"
        drv.locks.calls.clear()

        async def cont():
            drv.locks.calls.append(("cont",))
        await leases.run_cpus(drv, obj, cont)
        assert drv.locks.calls == [("acquire", 99, "token-7"), ("cont",)]
        assert obj.leases_held and obj.lock_state is None          # spent once the CPUs run
        await leases.cpus_stopped(drv, obj)
        await leases.cpus_stopped(drv, obj)                         # a second stop releases nothing
        assert drv.locks.calls[-1] == ("release", 99) and drv.locks.calls.count(("release", 99)) == 1
        assert obj.lock_state == "token-7"
        drv.locks.refuse = True
        with pytest.raises(libvirtError, match="busy"):
            await leases.run_cpus(drv, obj, cont)
        assert drv.locks.calls[-1] == ("acquire", 99, "token-7") and not obj.leases_held
        # a pause QEMU reported, whose release comes after a resume: it releases nothing
        drv.locks.refuse = False
        await leases.run_cpus(drv, obj, cont)
        seen = leases.conts_so_far(obj)
        await leases.run_cpus(drv, obj, cont)
        drv.locks.calls.clear()
        await leases.cpus_stopped(drv, obj, seen)
        assert drv.locks.calls == [] and obj.leases_held
        await leases.cpus_stopped(drv, obj, leases.conts_so_far(obj))
        assert drv.locks.calls == [("release", 99)] and not obj.leases_held
    asyncio.run(run())


def test_lockstate_in_the_status_xml():
    from pyvirt import conf
    from pyvirt.conf import DomainStatus, parse_status
    from pyvirt.enums import DomainState, PausedReason
    status = DomainStatus(DomainState.PAUSED, PausedReason.USER, 42, None, conf.parse(DOMAIN_XML),
                          lockstate="etcd:token=7&<x>")
    text = status.format()
    assert "<lockstate>etcd:token=7&amp;&lt;x&gt;</lockstate>" in text
    assert parse_status(text).lockstate == "etcd:token=7&<x>"
    assert parse_status(DomainStatus(DomainState.PAUSED, PausedReason.USER, 42, None,
                                     conf.parse(DOMAIN_XML)).format()).lockstate is None


def test_migration_cookie_lock_state_checks_word_for_word():
    from types import SimpleNamespace
    from pyvirt.drivers.qemu import leases
    from pyvirt.drivers.qemu.migration.cookie import CookieLockState
    stateful = SimpleNamespace(locks=Recorder())
    with pytest.raises(libvirtError) as exc:
        leases.cookie_state(stateful, None)
    assert str(exc.value) == "internal error: Missing recorder lock state for migration cookie"
    with pytest.raises(libvirtError) as exc:
        leases.cookie_state(stateful, CookieLockState("lockd", "x"))
    assert str(exc.value) == "internal error: Source host lock driver lockd different from target recorder"
    assert leases.cookie_state(stateful, CookieLockState("recorder", "token-7")) == "token-7"
    with pytest.raises(libvirtError) as exc:
        leases.refuse_v2(stateful)
    assert exc.value.code == ErrorNumber.INTERNAL_ERROR
    assert str(exc.value) == "internal error: Cannot use migrate v2 protocol with lock manager recorder"
    # lockd and nop carry no state: no cookie part needed, v2 allowed
    for name in ("nop", "lockd"):
        plain = SimpleNamespace(locks=locking.new_manager(name))
        assert leases.cookie_state(plain, None) is None
        leases.refuse_v2(plain)


def test_lease_element_parse_errors():
    from pyvirt import conf
    bad = DOMAIN_XML.replace("offset='0'", "offset='x'")
    with pytest.raises(libvirtError, match="Malformed lease target offset x"):
        conf.parse(bad)
    with pytest.raises(libvirtError, match="Missing 'target' element for lease"):
        conf.parse(DOMAIN_XML.replace("<target path='/leases' offset='0'/>", ""))
    assert "<lease>\n      <lockspace>space</lockspace>\n      <key>key1</key>\n" \
           "      <target path='/leases' offset='0'/>\n    </lease>" in conf.parse(DOMAIN_XML).format()


def test_cli_hints_for_lease_errors():
    from pyvirt.cli.hints import hint_for
    from pyvirt.lockd.backend import resource_busy
    busy = resource_busy(Resource("/space", "ab12", what="/img/disk.raw"))
    assert hint_for(busy).startswith("disk '/img/disk.raw' is in use by another running guest")
    lease = resource_busy(Resource("/leases/space", "key1", what="lease space/key1"))
    assert hint_for(lease).startswith("lease space/key1 is in use")
    assert hint_for(libvirtError("Domain not found")) is None
    # the etcd backend's wordings name the disk too, and a lost lease is not "in use"
    from pyvirt.lockd.etcd import _busy, _lost
    etcd_busy = _busy(Resource("", "/img/shared.raw", what="/img/shared.raw"), None)
    assert hint_for(etcd_busy).startswith("disk '/img/shared.raw' is in use by another running guest")
    lost = _lost(Resource("", "/img/shared.raw", what="/img/shared.raw"), 42)
    assert "was lost" in lost.get_error_message()
    assert hint_for(lost).startswith("the guest lost its lease on disk '/img/shared.raw'")
    assert "in use" not in hint_for(lost)


def test_lock_daemon_that_cannot_start_says_why(tmp_path):
    """pyvirtlockd ends at once (etcd unreachable): the error shows its own last log line."""
    import asyncio
    import socket as _socket

    from pyvirt.locking.client import LockDaemonClient
    with _socket.socket() as s:          # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LockDaemonClient(tmp_path / "run" / "lockd.sock", "etcd",
                              {"lock_etcd_endpoints": [f"http://127.0.0.1:{port}"], "lock_etcd_ttl": 3},
                              tmp_path / "log" / "pyvirtlockd.log")

    async def run():
        try:
            with pytest.raises(libvirtError) as info:
                await client.call("hello")
        finally:
            await client.close()
        return info.value.get_error_message()
    message = asyncio.run(run())
    assert message.startswith("pyvirtlockd failed to start: ") and "cannot reach etcd at" in message
    assert "start: pyvirtlockd:" not in message
