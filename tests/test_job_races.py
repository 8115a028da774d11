"""Calls that race a guest stopping: a libvirt error, never an assertion; no job left behind.

A save or a migration step checks that the guest runs, then awaits (its job,
a file, a monitor reply) while the guest can go: destroyed, its QEMU killed,
saved by a call that had the job first.  Each step re-checks once it holds
the job and after every await, and answers as libvirt does; a guest that
stops between the calls of a client-driven migration ends the migration's
job at once (libvirt's qemuProcessCleanupMigrationJob), so a start works
straight away, even while the migrating client still lives.

The races are ordered by test hook points (pyvirt.testhooks): the daemon is
held exactly inside the window, the guest is stopped, the daemon is let go.
Real QEMU, real pyvirtd on loopback; the stale-migration case runs stock
python3-libvirt as the client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest

import pyvirt
from daemons import qemu_pid, running_copies
from faults.fault_hooks import HookServer
from guests import wait_for
from invariants import assert_host
from test_migration import make_hosts, start_guest

pytestmark = pytest.mark.qemu

SYSTEM_PYTHON = "/usr/bin/python3"
HOLD = 60          # how long a held daemon may take to reach its point (a bound, not a timing)


@pytest.fixture
def hooked(tmp_path, guests_built):
    """Two daemons, each reporting its hook points to its own HookServer."""
    a, b = make_hosts(tmp_path)
    hooks: list[HookServer] = []
    try:
        for host in (a, b):
            hooks.append(HookServer(tmp_path / f"{host.workdir.name}-hooks.sock"))
            host.extra_env["PYVIRT_TEST_HOOKS"] = str(hooks[-1].path)
            host.start()
        yield a, b, hooks[0], hooks[1]
    finally:
        for server in hooks:
            server.close()
        for host in (a, b):
            host.destroy_all()
        leaked = a.cleanup() + b.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def in_thread(fn, *args):
    result: dict = {}

    def run():
        try:
            result["value"] = fn(*args)
        except pyvirt.libvirtError as exc:
            result["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def finished(thread, result) -> dict:
    thread.join(HOLD)
    assert not thread.is_alive(), "the call never returned"
    return result


def shut_off(dom) -> bool:
    return dom.state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF


def stop_guest(a, dom, how: str) -> None:
    if how == "sigkill":          # the QEMU dies under the daemon (the soak's kill_qemu)
        os.kill(qemu_pid(a, dom.name()), signal.SIGKILL)
        wait_for(lambda: shut_off(dom), HOLD, what="the daemon to notice its QEMU died")
    else:
        dom.destroy()             # let through the job the held call holds
    assert shut_off(dom)


@pytest.mark.parametrize("how", ["sigkill", "destroy"])
def test_save_whose_guest_goes_after_the_job_was_granted(hooked, tmp_path, how):
    """Save holds its job, the guest goes, save goes on: "guest unexpectedly quit"
    (was INTERNAL_ERROR from an assertion), no partial image, the domain starts again."""
    a, _b, hooks, _ = hooked
    _conn, dom, _uid = start_guest(a, name="race", persistent=True)
    image = tmp_path / "race.save"
    hooks.arm("save")
    thread, result = in_thread(dom.save, str(image))
    assert hooks.wait_reached(HOLD), "save never took its job"
    stop_guest(a, dom, how)
    hooks.release()
    err = finished(thread, result).get("error")
    assert err is not None, "the save of a guest that went away succeeded"
    assert err.get_error_code() == pyvirt.VIR_ERR_OPERATION_FAILED, err
    assert "guest unexpectedly quit" in err.get_error_message()
    assert not image.exists()
    dom.create()                   # no job left: starts at once
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    dom.save(str(image))           # and a save works again
    assert shut_off(dom) and image.exists()
    assert_host([a])


@pytest.mark.parametrize("flow", ["client", "p2p"])
def test_begin_waiting_for_its_job_while_a_save_stops_the_guest(hooked, tmp_path, flow):
    """Begin checked the guest runs, then a save takes the job first and stops it:
    Begin, granted the job, answers "domain is not running" (was an assertion in
    _checked_xml); the guest is restored and migrated afterwards."""
    a, b, hooks, _ = hooked
    conn, dom, uid = start_guest(a, name="race", persistent=True)   # (a transient one would be gone: NO_DOMAIN)
    image = tmp_path / "race.save"
    hooks.arm("begin-job")
    if flow == "client":
        thread, result = in_thread(dom.migrate3, pyvirt.open(b.uri), {}, pyvirt.VIR_MIGRATE_LIVE)
    else:
        thread, result = in_thread(dom.migrateToURI3, b.uri, {},
                                   pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_PEER2PEER)
    assert hooks.wait_reached(HOLD), "Begin never got as far as waiting for its job"
    dom.save(str(image))           # the job is free: the save has it and stops the guest
    hooks.release()
    err = finished(thread, result).get("error")
    assert err is not None, "a migration of a saved guest succeeded"
    assert err.get_error_code() == pyvirt.VIR_ERR_OPERATION_INVALID, err
    assert "domain is not running" in err.get_error_message()
    conn.restore(str(image))
    dom = conn.lookupByUUIDString(uid)
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    dom.migrate3(pyvirt.open(b.uri), {}, pyvirt.VIR_MIGRATE_LIVE)
    assert running_copies([a, b], uid) == 1
    assert pyvirt.open(b.uri).lookupByUUIDString(uid).state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert_host([a, b])


def test_guest_destroyed_during_begin_ends_the_migration_job(hooked):
    """Destroyed while Begin itself holds the job: Begin fails "domain is not
    running" and its job is over, so the domain starts again at once."""
    a, b, hooks, _ = hooked
    _conn, dom, uid = start_guest(a, name="race", persistent=True)
    hooks.arm("begin")
    thread, result = in_thread(dom.migrate3, pyvirt.open(b.uri), {}, pyvirt.VIR_MIGRATE_LIVE)
    assert hooks.wait_reached(HOLD), "Begin never took its job"
    stop_guest(a, dom, "destroy")
    hooks.release()
    err = finished(thread, result).get("error")
    assert err is not None and err.get_error_code() == pyvirt.VIR_ERR_OPERATION_INVALID, err
    dom.create()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    dom.migrate3(pyvirt.open(b.uri), {}, pyvirt.VIR_MIGRATE_LIVE)
    assert running_copies([a, b], uid) == 1
    assert_host([a, b])


# python3-libvirt's virDomainMigrate2 (v3 with change protection): argv = source URI,
# destination URI, domain name; prints the outcome as one JSON line.
_MIGRATE = r'''
import json, sys
import libvirt
libvirt.registerErrorHandler(lambda *_: None, None)
src, dst = libvirt.open(sys.argv[1]), libvirt.open(sys.argv[2])
dom = src.lookupByName(sys.argv[3])
try:
    dom.migrate2(dst, None, libvirt.VIR_MIGRATE_LIVE, None, None, 0)
    print(json.dumps({"code": 0}), flush=True)
except libvirt.libvirtError as exc:
    print(json.dumps({"code": exc.get_error_code(), "message": exc.get_error_message()}), flush=True)
sys.stdin.readline()      # the connections stay open until the test says so
'''


def test_guest_destroyed_between_begin_and_perform_frees_its_job_at_once(hooked):
    """The soak's F4: a client-driven migration holds the source's job from Begin
    to Confirm; the guest is destroyed while the client is in Prepare on the
    destination.  The job ends with the guest (not when the client disconnects):
    a start works while the client is still held, the client's stale Perform is
    refused instead of migrating the new guest, and nothing is left on either host."""
    a, b, _, dest_hooks = hooked
    _conn, dom, uid = start_guest(a, name="race", persistent=True)
    dest_hooks.arm("prepare")
    client = subprocess.Popen([SYSTEM_PYTHON, "-c", _MIGRATE, a.uri, b.uri, "race"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert dest_hooks.wait_reached(HOLD), "the destination never reached Prepare"
        stop_guest(a, dom, "destroy")
        dom.create()               # the migration's job went with the guest
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
        dest_hooks.release()
        outcome = json.loads(client.stdout.readline())
        assert outcome["code"] == pyvirt.VIR_ERR_OPERATION_INVALID, outcome
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING     # the new guest stayed here
        assert running_copies([a, b], uid) == 1
        assert [d.name() for d in pyvirt.open(b.uri).listAllDomains()] == []
        dom.migrate3(pyvirt.open(b.uri), {}, pyvirt.VIR_MIGRATE_LIVE)   # while that client is still connected
    finally:
        client.communicate("\n", timeout=HOLD)
    assert running_copies([a, b], uid) == 1
    assert pyvirt.open(b.uri).lookupByUUIDString(uid).state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert_host([a, b])


def test_incoming_guest_destroyed_before_finish(hooked):
    """The destination's copy is destroyed while Finish waits (all data sent, the
    source paused): Finish says the incoming QEMU exited (was an AttributeError
    on the incoming state its stopping had dropped), Confirm is
    told cancelled and the source runs again; nothing is left on the destination."""
    a, b, _, dest_hooks = hooked
    _conn, dom, uid = start_guest(a, name="race")
    dconn = pyvirt.open(b.uri)
    dest_hooks.arm("finish")
    thread, result = in_thread(dom.migrate3, dconn, {}, pyvirt.VIR_MIGRATE_LIVE)
    assert dest_hooks.wait_reached(HOLD), "the destination never reached Finish"
    dconn.lookupByName("race").destroy()
    dest_hooks.release()
    err = finished(thread, result).get("error")
    assert err is not None and err.get_error_code() == pyvirt.VIR_ERR_OPERATION_FAILED, err
    assert "QEMU exited before Finish" in err.get_error_message()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING       # Confirm(cancelled) resumed it
    assert dconn.listAllDomains() == []
    assert running_copies([a, b], uid) == 1
    dom.migrate3(dconn, {}, pyvirt.VIR_MIGRATE_LIVE)        # no job left on either side
    assert dconn.lookupByUUIDString(uid).state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert_host([a, b])
