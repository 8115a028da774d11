"""A daemon stopped with SIGTERM keeps every guest's recovery state.

Stopping pyvirtd is not the guests stopping: their status files stay as
the daemon last wrote them (the job record of a migration in progress
included), and the daemon that starts next resolves what was interrupted
by job and phase.  Live migrations of a heartbeat guest slowed to 4 MiB/s,
so Perform lasts long enough to stop a daemon in the middle of it; the
moment is an observable condition (the destination's status file holding
the incoming job record, the source's job having sent data), never a
sleep.  Exactly one copy runs its CPUs throughout (asked through QMP, on
the monitor socket itself while its daemon is down).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import threading
import uuid

import pytest

import pyvirt
from daemons import qemu_pid, running_copies
from guests import READY, pid_alive, tiny_xml, wait_for, wait_for_text
from invariants import assert_host
from test_migration import _migrate_in_thread, _wait_job_active, heartbeat, hosts, start_guest  # noqa: F401
from test_migration_p2p import to_uri_in_thread

pytestmark = pytest.mark.qemu

INCOMING = "<job type='none' async='migration in' phase='prepare'"
OUTGOING = "<job type='none' async='migration out' phase='perform3' wasRunning='yes'/>"


def status_path(daemon, name: str = "mig"):
    return daemon.state_dir / "run" / "qemu" / f"{name}.xml"


def status_text(daemon, name: str = "mig") -> str:
    try:
        return status_path(daemon, name).read_text()
    except FileNotFoundError:
        return ""


def sigterm(daemon) -> None:
    """Stop the daemon with SIGTERM and check it stopped cleanly by itself (Pyvirtd.stop
    would SIGKILL a daemon that hangs, which leaves status files alone too)."""
    said = "pyvirtd stopped; guests left running"
    before = daemon.log_path.read_text(errors="replace").count(said)
    daemon.stop(signal.SIGTERM)
    assert daemon.log_path.read_text(errors="replace").count(said) == before + 1, "no clean shutdown"


def domstate(daemon, name: str = "mig") -> str:
    out = subprocess.run(["virsh", "-c", daemon.uri, "domstate", "--reason", name],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_destination_sigterm_mid_perform_kills_its_half_at_restart(hosts):
    a, b = hosts
    _ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    thread, result = _migrate_in_thread(dom, pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE, {"bandwidth": 4})
    wait_for(lambda: INCOMING in status_text(b), 20, what="the destination to record the incoming job")
    _wait_job_active(pyvirt.open(a.uri), "mig")          # Perform: data is being sent
    half = qemu_pid(b, "mig")
    recorded = status_path(b).read_bytes()
    assert running_copies([a, b], uid) == 1

    sigterm(b)
    # Stopping the daemon is not the guest stopping: the record a restart needs is intact.
    assert status_path(b).read_bytes() == recorded
    assert pid_alive(half), "the daemon's shutdown must leave the incoming QEMU for its successor"
    assert running_copies([a, b], uid) == 1

    b.start()
    wait_for(lambda: not pid_alive(half), 15, what="the restarted destination to kill its half")
    log = b.log_path.read_text(errors="replace")
    assert any("WARNING" in line and "mig" in line and "incoming migration" in line and "prepare" in line
               for line in log.splitlines()), log[-3000:]
    assert running_copies([a, b], uid) == 1
    # The leftover is gone, so it can never be resumed into a second running copy.
    out = subprocess.run(["virsh", "-c", b.uri, "resume", "mig"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "mig" in out.stderr, out
    assert running_copies([a, b], uid) == 1

    thread.join(60)
    assert not thread.is_alive() and "error" in result, "the migration should have failed"
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED]
    assert "<job " not in status_text(a)
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before, 10, what="the source guest to keep running")
    assert_host([a, b])

    moved = dom.migrate(pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE)      # a second migration works
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert running_copies([a, b], uid) == 1
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before, 10, what="heartbeats on the destination")
    assert_host([a, b])


def test_an_incoming_qemu_without_a_job_record_is_killed_not_adopted(hosts):
    """A status file without the incoming record (written by an older daemon, say)
    for a QEMU still in 'inmigrate': adopting it as a paused guest would make it
    resumable into a second running copy, so the restarted daemon kills it."""
    a, b = hosts
    _ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    thread, result = _migrate_in_thread(dom, pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE, {"bandwidth": 4})
    wait_for(lambda: INCOMING in status_text(b), 20, what="the destination to record the incoming job")
    _wait_job_active(pyvirt.open(a.uri), "mig")
    half = qemu_pid(b, "mig")
    sigterm(b)
    text = status_text(b)
    status_path(b).write_text("".join(line for line in text.splitlines(keepends=True) if "<job " not in line))
    b.start()
    wait_for(lambda: not pid_alive(half), 15, what="the restarted destination to kill its half")
    log = b.log_path.read_text(errors="replace")
    assert any("WARNING" in line and "mig" in line and "incoming migration" in line
               for line in log.splitlines()), log[-3000:]
    assert running_copies([a, b], uid) == 1
    thread.join(60)
    assert not thread.is_alive() and "error" in result
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED]
    assert_host([a, b])


@pytest.mark.parametrize("flow", ["managed", "p2p"])
def test_source_sigterm_mid_perform_reads_migration_canceled_after_restart(hosts, flow):
    a, b = hosts
    _ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    if flow == "managed":
        thread, result = _migrate_in_thread(dom, pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE, {"bandwidth": 4})
    else:
        thread, result = to_uri_in_thread(dom, b.uri, pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_PEER2PEER,
                                          {"bandwidth": 4})
    _wait_job_active(pyvirt.open(a.uri), "mig")
    assert OUTGOING in status_text(a)
    pid = qemu_pid(a, "mig")
    recorded = status_path(a).read_bytes()

    sigterm(a)
    assert status_path(a).read_bytes() == recorded       # the perform3 record survives the shutdown
    assert pid_alive(pid)
    thread.join(60)
    assert not thread.is_alive() and "error" in result, "the migration should have failed"
    wait_for(lambda: qemu_pid(b, "mig") is None, 15, what="the destination to drop its half")
    assert running_copies([a, b], uid) == 1

    a.start()
    assert qemu_pid(a, "mig") == pid
    assert domstate(a) == "running (migration canceled)"
    assert "<job " not in status_text(a)                 # resolved
    log = a.log_path.read_text(errors="replace")
    assert any("mig" in line and "perform3" in line for line in log.splitlines()), log[-3000:]
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before, 10, what="the source guest to keep running")
    assert running_copies([a, b], uid) == 1
    assert_host([a, b])

    again = pyvirt.open(a.uri).lookupByName("mig")     # the old connection died with the daemon
    if flow == "managed":
        moved = again.migrate(pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE)
    else:
        again.migrateToURI3(b.uri, {}, pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_PEER2PEER)
        moved = pyvirt.open(b.uri).lookupByName("mig")
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert running_copies([a, b], uid) == 1
    assert_host([a, b])


class HoldAt:
    """The test's end of pyvirt.testhooks (PYVIRT_TEST_HOOKS): every point is let
    through at once except ``point``, where the daemon is held until it dies."""

    def __init__(self, path, point: str):
        self.path, self.point = path, point
        self.reached = threading.Event()
        self._held: list[socket.socket] = []
        self._sock = socket.socket(socket.AF_UNIX)
        self._sock.bind(str(path))
        self._sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            name = conn.makefile("rb").readline().decode(errors="replace").split(" ", 1)[0]
            if name == self.point and not self.reached.is_set():
                self._held.append(conn)
                self.reached.set()
            else:
                conn.sendall(b"go\n")
                conn.close()

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()


def test_source_sigterm_after_the_data_was_sent_leaves_it_paused(hosts, tmp_path, monkeypatch):
    """Perform completed, the destination runs the guest, the source daemon stops
    before Confirm: the restarted source must not resume its copy (phase
    perform3_done: left paused, and its log says so)."""
    a, b = hosts
    hooks = HoldAt(tmp_path / "hooks.sock", "confirm")
    try:
        monkeypatch.setenv("PYVIRT_TEST_HOOKS", str(hooks.path))
        a.stop()
        a.start()
        monkeypatch.delenv("PYVIRT_TEST_HOOKS")
        _ca, dom, uid = start_guest(a)
        thread, _result = _migrate_in_thread(dom, pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE)
        assert hooks.reached.wait(60), "the source never reached Confirm"
        assert "phase='perform3_done'" in status_text(a)
        assert running_copies([a, b], uid) == 1                    # the destination's
        recorded = status_path(a).read_bytes()
        sigterm(a)
        assert status_path(a).read_bytes() == recorded
    finally:
        hooks.close()
    thread.join(60)
    assert not thread.is_alive()
    a.start()
    assert domstate(a) == "paused (migrating)"
    assert "<job " not in status_text(a)
    log = a.log_path.read_text(errors="replace")
    assert any("mig" in line and "perform3_done" in line and "left paused" in line
               for line in log.splitlines()), log[-3000:]
    assert running_copies([a, b], uid) == 1
    assert pyvirt.open(b.uri).lookupByName("mig").state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before, 10, what="heartbeats from the destination's copy")


def test_closing_the_monitor_is_not_qemu_going_away(tmp_path):
    """Monitor.close() (the daemon stopping) reports no EOF; QEMU closing its end does, once."""
    from pyvirt.drivers.qemu.monitor import Monitor

    class Seen:
        def __init__(self):
            self.eofs: list[str] = []
            self.eof = asyncio.Event()

        def on_event(self, name, data, timestamp):
            pass

        def on_eof(self, reason):
            self.eofs.append(reason)
            self.eof.set()

    async def qmp_server(path, hang_up: asyncio.Event):
        async def serve(reader, writer):
            writer.write(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
                         b'"package": ""}, "capabilities": []}}\n')
            got = b""
            while b"qmp_capabilities" not in got:     # QMP messages are not line-terminated
                got += await reader.read(4096)
            writer.write(b'{"return": {}}\n')
            # QEMU's side: hold the connection until the client closes it or "QEMU" goes away.
            closed = asyncio.ensure_future(reader.read())
            gone = asyncio.ensure_future(hang_up.wait())
            await asyncio.wait({closed, gone}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            gone.cancel()
            writer.close()
        return await asyncio.start_unix_server(serve, str(path))

    async def run(ours: bool) -> list[str]:
        path = tmp_path / f"qmp-{ours}.sock"
        hang_up = asyncio.Event()
        server = await qmp_server(path, hang_up)
        seen = Seen()
        mon = Monitor("g", seen)
        await mon.connect(str(path))
        if ours:
            pump = mon._event_task           # the only reporter of EOF: done once close() returns
            await mon.close()
            hang_up.set()
            await asyncio.gather(pump, return_exceptions=True)
        else:
            hang_up.set()
            await asyncio.wait_for(seen.eof.wait(), 10)
            await mon.close()
        server.close()
        return seen.eofs

    assert asyncio.run(run(ours=True)) == []
    assert len(asyncio.run(run(ours=False))) == 1


def test_plain_sigterm_leaves_status_files_untouched_and_restart_keeps_state(hosts):
    a, _b = hosts
    conn = pyvirt.open(a.uri)
    guests = {}
    for name in ("run1", "paused1", "persist1"):
        serial = a.workdir / f"{name}.log"
        xml = tiny_xml(name, serial, uuid=str(uuid.uuid4()))
        dom = conn.defineXML(xml) if name == "persist1" else conn.createXML(xml, 0)
        if name == "persist1":
            dom.create()
        wait_for_text(serial, READY)
        guests[name] = dom
    guests["paused1"].suspend()
    expected = {name: dom.state() for name, dom in guests.items()}
    assert expected["paused1"] == [pyvirt.VIR_DOMAIN_PAUSED, pyvirt.VIR_DOMAIN_PAUSED_USER]
    before = {path.name: path.read_bytes() for path in (a.state_dir / "run" / "qemu").glob("*.xml")}
    pids = {name: qemu_pid(a, name) for name in guests}
    assert len(before) == 3 and all(pids.values())
    conn.close()

    sigterm(a)
    after = {path.name: path.read_bytes() for path in (a.state_dir / "run" / "qemu").glob("*.xml")}
    assert after == before, "a daemon's shutdown rewrote or removed a running guest's status"
    assert all(pid_alive(pid) for pid in pids.values())

    a.start()
    conn = pyvirt.open(a.uri)
    for name, state in expected.items():
        assert conn.lookupByName(name).state() == state, name
        assert qemu_pid(a, name) == pids[name]
    assert conn.lookupByName("persist1").isPersistent() == 1
    assert_host([a])
