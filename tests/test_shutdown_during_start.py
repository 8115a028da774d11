"""SIGTERM while a start waits for its new QEMU's monitor greeting.

The daemon is held (test hook point ``qemu-launched``: QEMU spawned, its
monitor not yet connected) while a createXML or a start of a defined guest
is in flight, then gets SIGTERM and is never let go.  It must exit by
itself (the soak once saw it log "stopped" and hang for good: the start's
clean-up waited for an exit report the torn-down loop no longer delivered),
and the half-started guest must not outlive it: it was never reported
started, and libvirt's successor kills a guest still "starting up"
(qemuProcessReconnect), so the stopping daemon ends it itself — its status
file does not hold the pid yet, no successor could find it.  The next
daemon starts clean and boots the guest normally.

Real QEMU, real pyvirtd on loopback, python3-libvirt-compatible client.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import uuid

import pytest

import pyvirt
from daemons import Pyvirtd
from faults.fault_hooks import HookServer
from guests import READY, pid_alive, tiny_xml, wait_for, wait_for_text
from invariants import assert_host, qemu_processes

pytestmark = pytest.mark.qemu

HOLD = 60        # bound for reaching the hook point
EXIT_BOUND = 20  # bound for the daemon's own exit after SIGTERM (not a timing claim)


@pytest.fixture
def hooked_daemon(tmp_path, guests_built):
    hooks = HookServer(tmp_path / "hooks.sock")
    daemon = Pyvirtd(tmp_path / "host")
    daemon.extra_env["PYVIRT_TEST_HOOKS"] = str(hooks.path)
    try:
        daemon.start()
        yield daemon, hooks
    finally:
        hooks.close()
        leaked = daemon.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def start_in_thread(daemon: Pyvirtd, xml: str, persistent: bool):
    result: dict = {}
    conn = pyvirt.open(daemon.uri)
    dom = conn.defineXML(xml) if persistent else None

    def run() -> None:
        try:
            if dom is not None:
                dom.create()
            else:
                conn.createXML(xml, 0)
            result["value"] = "started"
        except pyvirt.libvirtError as exc:
            result["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.parametrize("persistent", [False, True], ids=["createXML", "create"])
def test_sigterm_during_greeting_exits_and_leaves_no_qemu(hooked_daemon, persistent):
    daemon, hooks = hooked_daemon
    uid = str(uuid.uuid4())
    serial = daemon.workdir / "held.log"
    xml = tiny_xml("held", serial, uuid=uid)

    hooks.arm("qemu-launched")
    thread, result = start_in_thread(daemon, xml, persistent)
    assert hooks.wait_reached(HOLD), "the start never launched QEMU"
    pids = qemu_processes().get(uid, [])
    assert len(pids) == 1, f"expected the held start's QEMU, found {pids}"
    held = pids[0]

    proc = daemon.proc
    proc.send_signal(signal.SIGTERM)          # the hook is never released
    try:
        code = proc.wait(EXIT_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pyvirtd did not exit within {EXIT_BOUND}s of SIGTERM during a start:\n"
                    + daemon.log_path.read_text(errors="replace")[-3000:])
    daemon.proc = None
    text = daemon.log_path.read_text(errors="replace")
    assert code == 0, f"pyvirtd exited with {code}:\n{text[-3000:]}"
    assert "pyvirtd stopped; guests left running" in text
    assert "Unexpected bottom half exception" not in text
    assert not pid_alive(held), "the half-started QEMU outlived the daemon"
    thread.join(HOLD)
    assert not thread.is_alive(), "the start call never returned"
    assert "error" in result, "a start cut by the shutdown cannot have succeeded"
    assert not (daemon.state_dir / "run" / "qemu" / "held.xml").exists(), "status file left behind"

    daemon.start()
    assert_host([daemon])
    conn = pyvirt.open(daemon.uri)
    if persistent:
        dom = conn.lookupByUUIDString(uid)
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF
        dom.create()
    else:
        with pytest.raises(pyvirt.libvirtError):
            conn.lookupByUUIDString(uid)
        dom = conn.createXML(xml, 0)
    wait_for_text(serial, READY)
    assert qemu_processes().get(uid, []) != [held]
    assert_host([daemon])
    dom.destroy()
    wait_for(lambda: not qemu_processes().get(uid), 30, what="the guest's QEMU to go")
    assert_host([daemon])


@pytest.mark.parametrize("persistent", [False, True], ids=["createXML", "create"])
def test_kill9_during_greeting_the_next_daemon_kills_the_orphan(hooked_daemon, persistent):
    """SIGKILL between spawning QEMU and recording its pid: the status file says
    "starting up" with no pid.  The next daemon finds that QEMU by its command
    line and its stderr (this host's log of the domain) and kills it, so no QEMU
    goes on holding the disks unseen."""
    daemon, hooks = hooked_daemon
    uid = str(uuid.uuid4())
    xml = tiny_xml("orphan", daemon.workdir / "orphan.log", uuid=uid)

    hooks.arm("qemu-launched")
    thread, result = start_in_thread(daemon, xml, persistent)
    assert hooks.wait_reached(HOLD), "the start never launched QEMU"
    pids = qemu_processes().get(uid, [])
    assert len(pids) == 1, f"expected the held start's QEMU, found {pids}"
    held = pids[0]
    daemon.proc.kill()
    daemon.proc.wait(EXIT_BOUND)
    daemon.proc = None
    thread.join(HOLD)
    assert "error" in result, "a start whose daemon was killed cannot have succeeded"
    assert pid_alive(held), "the held QEMU should outlive the killed daemon until the next one"

    hooks.close()
    daemon.extra_env.pop("PYVIRT_TEST_HOOKS")
    daemon.start()
    wait_for(lambda: not pid_alive(held), 30, what="the orphaned QEMU to be killed")
    assert "started by a daemon that died before recording it" in daemon.log_path.read_text(errors="replace")
    conn = pyvirt.open(daemon.uri)
    if persistent:
        assert conn.lookupByUUIDString(uid).state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF
    else:
        with pytest.raises(pyvirt.libvirtError):
            conn.lookupByUUIDString(uid)
    assert_host([daemon])


def test_drain_tasks_does_not_wait_for_a_task_that_ignores_its_cancellation(caplog):
    """The daemon's safety net: what is left on the loop at shutdown is cancelled and waited
    for only up to a bound; a task that will not end is logged by name and counted."""
    import asyncio

    from pyvirt.daemon.main import drain_tasks

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                continue                    # a clean-up that never finishes

    async def polite() -> None:
        await asyncio.Event().wait()

    async def main() -> int:
        asyncio.get_running_loop().create_task(stubborn(), name="stubborn")
        gone = asyncio.get_running_loop().create_task(polite(), name="polite")
        await asyncio.sleep(0)
        left = await drain_tasks(bound=0.2)
        assert gone.cancelled()
        return left

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == 1
    finally:
        loop.close()                        # the stubborn task is dropped with the loop
    assert "shutdown: task stubborn still pending" in caplog.text


def test_guest_left_starting_up_is_killed_by_the_next_daemon(hooked_daemon):
    """A daemon gone after its start wrote the pid but before the guest was fully
    started (SIGKILL; the status file still says 'paused (starting up)'): its successor
    kills that QEMU and reports the guest shut off (failed), as libvirt's reconnect does."""
    daemon, _hooks = hooked_daemon
    uid = str(uuid.uuid4())
    serial = daemon.workdir / "half.log"
    xml = tiny_xml("half", serial, uuid=uid)
    conn = pyvirt.open(daemon.uri)
    dom = conn.defineXML(xml)
    dom.createWithFlags(pyvirt.VIR_DOMAIN_START_PAUSED)
    [pid] = qemu_processes()[uid]
    conn.close()
    daemon.stop(signal.SIGKILL)
    status = daemon.state_dir / "run" / "qemu" / "half.xml"
    text = status.read_text()
    assert "state='paused' reason='user'" in text, text[:300]
    status.write_text(text.replace("state='paused' reason='user'", "state='paused' reason='starting up'"))

    daemon.start()
    assert not pid_alive(pid), "the successor adopted a guest that never finished starting"
    assert "was not fully started; killing it" in daemon.log_path.read_text(errors="replace")
    dom = pyvirt.open(daemon.uri).lookupByUUIDString(uid)
    assert dom.state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_FAILED]
    assert not status.exists()
    assert_host([daemon])
