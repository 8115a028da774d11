"""The etcd lock manager through pyvirtlockd: real lock daemons (one per "host"),
a real etcd on loopback, real QEMU processes (CPUs stopped) as the lease owners.

Proves: the plugin says it uses state; a second host is refused naming the
disk and the lease; the state hands a lease over host to host with the same
token; a host cut off from etcd (SIGSTOP) tells its pyvirtd (the watcher) the
lease is lost before it can expire, and with no pyvirtd the lock daemon kills
QEMU itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from pyvirt import locking
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError
from pyvirt.locking import Disk, Guest
from pyvirt.lockd.etcd import fencing_margin, parse_state

from etcd_server import EtcdServer
from guests import pid_alive, qemu_available

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(not qemu_available(), reason="QEMU not available")]

TTL = 4


@pytest.fixture
def etcd(tmp_path):
    server = EtcdServer(tmp_path / "etcd").start()
    try:
        yield server
    finally:
        server.stop()          # SIGCONT first: a test that failed while etcd was frozen


@pytest.fixture
def cleanup():
    """Processes and lock daemons a test started, stopped by PID at the end."""
    procs: list[subprocess.Popen] = []
    sockets: list[Path] = []
    yield procs, sockets
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    for sock in sockets:
        try:
            os.kill(int(Path(str(sock) + ".pid").read_text().split()[0]), signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            pass


def plugin(root: Path, etcd: EtcdServer, host: str, sockets: list[Path]):
    p = locking.new_manager("etcd", {"lock_etcd_endpoints": [etcd.endpoint], "lock_etcd_ttl": TTL,
                                     "lock_etcd_prefix": "/leases/", "host_uuid": host},
                            root / host / "run", root / host / "log")
    sockets.append(p.client.socket_path)
    return p


def qemu(disk: Path, procs: list[subprocess.Popen]) -> subprocess.Popen:
    """A real QEMU with the disk open and its CPUs stopped, as a guest is between register and cont."""
    p = subprocess.Popen(["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S",
                          "-blockdev", f"driver=file,filename={disk},node-name=d0,locking=off"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "shared.img"
    path.write_bytes(b"\0" * 65536)
    return path


def test_etcd_plugin_uses_state():
    assert locking.plugin_class("etcd").uses_state
    assert not locking.plugin_class("lockd").uses_state


def test_second_host_refused_naming_disk_and_lease_then_hand_over(tmp_path, etcd, disk, cleanup):
    procs, sockets = cleanup
    a, b = plugin(tmp_path, etcd, "hostA", sockets), plugin(tmp_path, etcd, "hostB", sockets)
    qa, qb = qemu(disk, procs), qemu(disk, procs)
    ga = Guest("11111111-1111-1111-1111-111111111111", "web", qa.pid, disks=(Disk(str(disk)),))
    gb = Guest("11111111-1111-1111-1111-111111111111", "web", qb.pid, disks=(Disk(str(disk)),))
    other = Guest("22222222-2222-2222-2222-222222222222", "intruder", qb.pid, disks=(Disk(str(disk)),))

    async def run():
        await a.register(ga)
        await a.acquire(ga)
        state = await a.inquire(ga)
        assert state and len(parse_state(state)) == 1
        await b.register(other)
        with pytest.raises(libvirtError) as ei:
            await b.acquire(other)
        err = ei.value
        assert err.get_error_code() == ErrorNumber.RESOURCE_BUSY
        assert err.get_error_domain() == ErrorDomain.LOCKSPACE
        assert f"disk '{disk}'" in str(err) and "domain 'web'" in str(err) and "hostA" in str(err)
        assert "etcd lease" in str(err) and f"token {next(iter(parse_state(state).values()))}" in str(err)
        await b.forget(other)
        # migration: the source releases at the end (paused), the destination acquires from the state
        released = await a.release(ga)
        assert released == state
        await b.register(gb)
        await b.acquire(gb, released)
        assert await b.inquire(gb) == state                  # the very same token
        qa.kill()                                            # Confirm: the source QEMU goes
        qa.wait()
        with pytest.raises(libvirtError, match="hostB"):      # its host cannot start the disk
            ga2 = Guest("33333333-3333-3333-3333-333333333333", "again", qb.pid, disks=(Disk(str(disk)),))
            await a.register(ga2)
            await a.acquire(ga2)
        await a.close()
        await b.close()
    asyncio.run(run())


def test_cut_off_host_tells_pyvirtd_before_the_ttl_and_resumes_only_with_the_same_lease(
        tmp_path, etcd, disk, cleanup):
    procs, sockets = cleanup
    a = plugin(tmp_path, etcd, "hostA", sockets)
    q = qemu(disk, procs)
    g = Guest("44444444-4444-4444-4444-444444444444", "db", q.pid, disks=(Disk(str(disk)),),
              on_lockfailure="pause")

    async def run():
        lost: asyncio.Queue = asyncio.Queue()

        async def on_lost(uuid, what, why):
            await lost.put((asyncio.get_running_loop().time(), uuid, what, why))
        a.set_lost_handler(on_lost)
        await a.register(g)
        await a.acquire(g)
        state = await a.inquire(g)
        frozen_at = asyncio.get_running_loop().time()
        etcd.pause()
        try:
            at, uuid, what, why = await asyncio.wait_for(lost.get(), TTL * 3)
        finally:
            etcd.resume()
        assert uuid == g.uuid and what == str(disk)
        assert "not renewed" in why and "unreachable" in why
        # the last renewal was sent before etcd froze, so this is within the TTL of it
        assert at - frozen_at < TTL - fencing_margin(TTL) + 0.001
        assert pid_alive(q.pid)                   # a watcher was told: it pauses, nobody kills
        # pyvirtd paused the guest and released; etcd came back within the TTL, so the same
        # lease is still there and the guest resumes with it
        assert await a.release(g) == state
        await a.acquire(g, state)
        assert await a.inquire(g) == state
        await a.close()
    asyncio.run(run())


def test_with_no_pyvirtd_the_lock_daemon_kills_qemu_before_the_lease_expires(tmp_path, etcd, disk, cleanup):
    procs, sockets = cleanup
    a = plugin(tmp_path, etcd, "hostA", sockets)
    q = qemu(disk, procs)
    g = Guest("55555555-5555-5555-5555-555555555555", "orphan", q.pid, disks=(Disk(str(disk)),))

    async def run():
        await a.register(g)
        await a.acquire(g)
        await a.close()                           # pyvirtd is gone: nobody watches

    asyncio.run(run())
    assert q.poll() is None
    etcd.pause()
    try:
        q.wait(timeout=TTL * 3)                   # killed by the lock daemon while etcd is frozen
    finally:
        etcd.resume()
    # QEMU ends on SIGTERM with status 0 ("terminating on signal 15"); SIGKILL after the grace
    assert q.returncode in (0, -signal.SIGKILL)
    log = (tmp_path / "hostA" / "log" / "pyvirtlockd.log").read_text()
    assert f"lost the lease on '{disk}'" in log and "killing its QEMU" in log
