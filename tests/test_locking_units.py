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
    async def lease_lost(self, owner, resources, why):
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
