"""Faults injected at each migration phase of each flow, reached by hooks, never by sleeps.

For every cell (flow × fault × phase, see fault_cells.py) a heartbeat guest is
migrated at 8 MiB/s with stock virsh; the daemon running the phase's step is
held at its hook point (pyvirt.testhooks) while the fault is injected.  Once
the client has returned and every killed daemon is back, the cell asserts:

* exactly one copy runs its CPUs (none only where the cell allows it: the
  source QEMU itself killed, or v2's known hole), and its heartbeats go on;
* the per-host invariants (tests/invariants.py): no leftover QEMU, the
  daemons' views match /proc and each other; no migration job left;
* the error the client got names the fault, not a cleanup step;
* a new migration of the same guest both ways succeeds, and afterwards no
  migration port of either host is still bound.

``make faults`` (PYVIRT_FAULTS=all) runs the whole matrix; ``make test`` the
bounded set of fault_cells.BOUNDED.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

import pyvirt
from fault_cells import Cell, selected_cells
from fault_hosts import BANDWIDTH, NAME, Hosts, stop_daemon
from guests import pid_alive, wait_for
from invariants import check_host

pytestmark = pytest.mark.qemu

REACH_TIMEOUT = 60      # s for the armed point to be reached
CLIENT_TIMEOUT = 60     # s for virsh to return after the fault

# What the reported error must speak of, per fault (case-insensitive).
_LINK = r"end of file|connection|socket|reset|recv|broken pipe|lost|closed|eof|shut|unable to (read|write)"
CAUSES = {
    "daemon": _LINK,
    # a transient guest whose QEMU died is gone: the next step finds no such domain
    "src-qemu-kill": r"qemu|monitor|not running|no longer running|exited|crash|no domain with matching uuid",
    "dst-qemu-kill": r"qemu|monitor|exited|migration|incoming|not running",
    "link-cut": _LINK + r"|migration",
}
# Errors of cleanup steps, which must never be the one reported.
CLEANUP = re.compile(r"not being migrated|already active|already migrating|being migrated in|"
                     r"cannot acquire state change lock|timed out during operation", re.I)


def _cause(fault: str) -> str:
    if fault.startswith("dst-daemon"):
        # the successor of a destination daemon kills the half-migrated QEMU: the stream breaks
        return CAUSES["daemon"] + r"|migration out job"
    return CAUSES["daemon"] if "daemon" in fault else CAUSES[fault]


@pytest.mark.parametrize("cell", selected_cells(), ids=lambda c: c.id)
def test_fault(cell: Cell, fault_hosts, request):
    reason = cell.not_applicable()
    if reason:
        pytest.skip(f"n/a: {reason}")
    hosts: Hosts = fault_hosts(cell.proto)
    bug = cell.known_bug()
    if bug:
        request.applymarker(pytest.mark.xfail(reason=bug, strict=True))
    try:
        run_cell(hosts, cell, request)
    except BaseException:
        hosts.reset()
        raise


def run_cell(hosts: Hosts, cell: Cell, request) -> None:
    t0 = time.monotonic()
    marks = []

    def mark(what: str) -> None:
        marks.append(f"{what} {time.monotonic() - t0:.1f}")
    request.node.user_properties.append(("timing", marks))
    src = hosts.source()
    dst = hosts.other(src)
    at = src if cell.at_source else dst
    hooks = hosts.hooks[at.uri]
    hooks.arm(cell.phase)
    beats_before = hosts.heartbeat()
    client = hosts.migrate(src, dst, cell.virsh_options, BANDWIDTH)
    down: list = []          # daemons the fault took down, started again after the client returned
    try:
        deadline = time.monotonic() + REACH_TIMEOUT
        while not hooks.wait_reached(0.05):
            if client.poll() is not None or time.monotonic() > deadline:
                out, err = client.communicate()
                pytest.fail(f"point {cell.phase} not reached on {at.uri} (virsh rc {client.returncode}: "
                            f"{err.strip()}; points seen: {hooks.seen})")
        mark("reached")
        inject(hosts, cell, src, dst, client, hooks.release, down)
        mark("injected")
        hooks.release()
        try:
            _out, err = client.communicate(timeout=CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            client.kill()
            _out, err = client.communicate()
            pytest.fail(f"virsh still waiting {CLIENT_TIMEOUT} s after the fault")
    finally:
        hooks.disarm()
        hosts.proxy.heal()
        for d in down:
            d.start()
    rc = client.returncode
    mark("client returned")

    allowed = cell.allowed_running() | ({0} if cell.may_leave_source_paused() else set())
    problems: list[str] = []

    def settled() -> bool:
        try:
            return _settled()
        except pyvirt.libvirtError as exc:     # e.g. a QEMU going away under the question
            problems[:] = [f"asking the hosts failed: {exc}"]
            return False

    def _settled() -> bool:
        where = hosts.where()
        running = hosts.running()
        paused = [u for u, s in where.items() if s == pyvirt.VIR_DOMAIN_PAUSED]
        # the only extra copy allowed: a source left paused after its data was sent (as
        # libvirt's perform3_done recovery leaves it: the administrator decides), while the
        # destination runs
        left_paused = (running == 1 and len(where) == 2 and paused == [src.uri]
                       and cell.phase in ("perform-late", "finish", "confirm"))
        problems[:] = [p for p in check_host(hosts.daemons)
                       if not (left_paused and p.startswith(f"{hosts.uuid}: 2 QEMU processes"))]
        if running not in allowed:
            problems.append(f"{running} running copies (allowed {sorted(allowed)}); active on {where}")
        for uri in where:
            conn = pyvirt.open(uri)
            try:
                if conn.lookupByUUIDString(hosts.uuid).jobInfo()[0] != pyvirt.VIR_DOMAIN_JOB_NONE:
                    problems.append(f"{uri} still has a job on the guest")
            except pyvirt.libvirtError:
                pass
            finally:
                conn.close()
        if len(where) > 1 and not left_paused:
            problems.append(f"the guest is active on {len(where)} hosts: {where}")
        return not problems
    wait_for(lambda: settled(), 20, interval=0.2,
             what=lambda: f"the hosts to settle: {problems}; virsh rc {rc}: {err.strip()}; active on "
                          f"{hosts.where()}, {hosts.running()} running")
    mark("settled")
    for d in hosts.daemons:
        assert d.alive, f"{d.uri} died:\n{d.log_path.read_text(errors='replace')[-3000:]}"

    where = hosts.where()
    running_on = [u for u, s in where.items() if s == pyvirt.VIR_DOMAIN_RUNNING]
    notes = []
    # the first error is the one reported
    if cell.fault != "client-kill":
        if rc == 0:
            assert running_on == [dst.uri], f"virsh reported success but the guest runs on {running_on}"
            notes.append("the migration completed despite the fault")
        else:
            assert re.search(_cause(cell.fault), err, re.I), f"the error does not name the fault: {err.strip()}"
            assert not CLEANUP.search(err), f"a cleanup error was reported instead of the fault: {err.strip()}"
            if running_on and running_on != [src.uri] and not cell.at_source:
                notes.append(f"virsh failed ({err.strip()[:80]}) but the guest runs on the destination")
    # heartbeats go on (the count never goes back: the guest was not rebooted)
    if running_on:
        now = hosts.heartbeat()
        assert now >= beats_before, f"heartbeat went back from {beats_before} to {now}"
        wait_for(lambda: hosts.heartbeat() > now, 10, interval=0.1, what="the next heartbeat")
        for uri in where:
            if uri not in running_on:       # a source left paused: the administrator's call, as in libvirt
                notes.append("source left paused after its data was sent")
                conn = pyvirt.open(uri)
                try:
                    conn.lookupByUUIDString(hosts.uuid).destroy()
                finally:
                    conn.close()
    elif cell.may_leave_source_paused() and where == {src.uri: pyvirt.VIR_DOMAIN_PAUSED}:
        notes.append("no copy runs: the source was left paused after its data was sent; resumed")
        conn = pyvirt.open(src.uri)
        try:
            conn.lookupByUUIDString(hosts.uuid).resume()
        finally:
            conn.close()
        now = hosts.heartbeat()
        wait_for(lambda: hosts.heartbeat() > now, 10, interval=0.1, what="the resumed source's next heartbeat")
        running_on = [src.uri]
    else:
        notes.append(f"no copy runs ({cell.fault}); booted again")
        for uri in where:
            conn = pyvirt.open(uri)
            try:
                conn.lookupByUUIDString(hosts.uuid).destroy()
            finally:
                conn.close()
        hosts.boot()
        running_on = [hosts.daemons[0].uri]

    mark("checked")
    # no leaked job or port: the guest moves there and back again
    here = hosts.daemon(running_on[0])
    there = hosts.other(here)
    for a, b in ((here, there), (there, here)):
        mig = hosts.migrate(a, b, cell.virsh_options)
        _out, err2 = mig.communicate(timeout=CLIENT_TIMEOUT)
        assert mig.returncode == 0, f"the migration {a.uri} -> {b.uri} after the fault failed: {err2.strip()}"
        assert list(hosts.where()) == [b.uri] and hosts.running() == 1
    wait_for(lambda: not hosts.ports_busy(), 10, interval=0.1,
             what=lambda: f"migration ports {hosts.ports_busy()} to be free:\n{hosts.port_holders()}")
    mark("migrated twice")
    problems = check_host(hosts.daemons)
    assert not problems, problems
    mark("done")
    if os.environ.get("PYVIRT_FAULTS_TIMING"):
        print(cell.id, *marks)
    if notes:
        request.node.user_properties.append(("note", "; ".join(notes)))


def inject(hosts: Hosts, cell: Cell, src, dst, client, release, down: list) -> None:
    fault = cell.fault
    if fault.endswith(("daemon-kill", "daemon-term", "daemon-restart")):
        target = src if fault.startswith("src") else dst
        sig = signal.SIGKILL if fault.endswith("kill") else signal.SIGTERM
        stop_daemon(target, sig, release)
        if fault.endswith("restart"):
            target.start()
        else:
            down.append(target)
    elif fault in ("src-qemu-kill", "dst-qemu-kill"):
        target = src if fault.startswith("src") else dst
        pid = hosts.qemu_pid(target)
        assert pid and pid_alive(pid), f"no QEMU of the guest on {target.uri} at {cell.phase}"
        os.kill(pid, signal.SIGKILL)
    elif fault == "client-kill":
        client.kill()
    elif fault == "link-cut":
        hosts.proxy.cut()
    else:
        raise AssertionError(fault)
