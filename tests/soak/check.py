"""The soak's invariants at a quiet point (no client call in flight).

Per guest UUID, across both hosts:
- every live QEMU process of the guest is the one a daemon's status names
  (no QEMU no daemon knows: a leak, or a second copy on one host);
- a daemon that lists the guest active has its QEMU alive;
- the guest is active on at most one host (no migration is in flight at a
  quiet point, so a second active copy is a half left behind);
- at most one copy runs its CPUs (QMP query-status, QEMU's own account);
- the daemon's state agrees with QEMU's (running / paused);
- no active guest has a job (nothing is in flight to hold one).

The per-host check of tests/invariants.py (``check_host``) is added, and its
process scan is shared.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from daemons import Pyvirtd, qemu_pid
from invariants import check_host, qemu_processes
from guests import pid_alive

QUERY_STATUS = '{"execute":"query-status"}'


def host_view(libvirt, libvirt_qemu, daemon: Pyvirtd) -> dict[str, dict]:
    """What one daemon says about its active guests: {uuid: {name, state, reason, qmp_running}}."""
    conn = libvirt.open(daemon.uri)
    try:
        view = {}
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                state, reason = dom.state()
                job = dom.jobInfo()[0]
                reply = libvirt_qemu.qemuMonitorCommand(dom, QUERY_STATUS, 0)
                status = json.loads(reply)["return"]
            except libvirt.libvirtError as exc:
                status = {"error": exc.get_error_message()}
                state = reason = job = None
            view[dom.UUIDString()] = {"name": dom.name(), "state": state, "reason": reason, "job": job,
                                      "qmp": status}
        return view
    finally:
        conn.close()


def check(libvirt, libvirt_qemu, daemons: list[Pyvirtd], root: Path, names: dict[str, str]) -> list[str]:
    """Violations of the invariants now (empty when all hold); ``names`` maps the soak's UUIDs to names."""
    problems: list[str] = []
    views: dict[str, dict[str, dict]] = {}
    label = {id(d): "AB"[i] if i < 2 else str(i) for i, d in enumerate(daemons)}
    for d in daemons:
        if not d.alive:
            problems.append(f"pyvirtd {label[id(d)]} is not running")
            continue
        try:
            views[label[id(d)]] = host_view(libvirt, libvirt_qemu, d)
        except libvirt.libvirtError as exc:
            problems.append(f"pyvirtd {label[id(d)]} does not answer: {exc.get_error_message()}")
    procs = qemu_processes(under=root)
    for uuid in sorted(set(names) | set(procs)):
        name = names.get(uuid, uuid)
        claimed: dict[int, str] = {}
        active_on = []
        running_on = []
        for d in daemons:
            host = label[id(d)]
            if host not in views or uuid not in views[host]:
                continue
            entry = views[host][uuid]
            active_on.append(host)
            pid = qemu_pid(d, entry["name"])
            if pid is None or not pid_alive(pid):
                problems.append(f"{host} lists {name} active but its QEMU (pid {pid}) is not running")
            else:
                claimed[pid] = host
            qmp = entry["qmp"]
            if qmp.get("running"):
                running_on.append(host)
            libvirt_running = entry["state"] == libvirt.VIR_DOMAIN_RUNNING
            libvirt_paused = entry["state"] == libvirt.VIR_DOMAIN_PAUSED
            if "error" in qmp:
                problems.append(f"{host}: {name} is active but its monitor fails: {qmp['error']}")
            elif libvirt_running != bool(qmp.get("running")) or (libvirt_paused and qmp.get("running")):
                problems.append(f"{host} says {name} is in state {entry['state']} (reason {entry['reason']}) "
                                f"but QEMU says {qmp.get('status')}")
            if entry["job"]:
                problems.append(f"{host}: {name} still has a job (type {entry['job']}) with no call in flight")
        for pid in procs.get(uuid, []):
            if pid not in claimed:
                problems.append(f"QEMU pid {pid} of {name} belongs to no daemon "
                                f"(active on: {', '.join(active_on) or 'none'})")
        if len(active_on) > 1:
            problems.append(f"{name} is active on {' and '.join(active_on)} at once")
        if len(running_on) > 1:
            problems.append(f"TWO RUNNING COPIES: {name} runs its CPUs on {' and '.join(running_on)}")
    problems += [f"check_host: {p}" for p in check_host([d for d in daemons if d.alive])]
    return problems


def settled(libvirt, libvirt_qemu, daemons, root, names, settle: float = 5.0) -> tuple[list[str], list[str]]:
    """(violations that persist for ``settle`` seconds, ones seen only at first).

    A daemon learns of a killed QEMU through its pidfd, asynchronously, so a
    quiet point can still show that for a moment; the check is repeated until it
    holds or ``settle`` passes (nothing signals the daemon's view catching up).
    Two running copies count even when they disappear again."""
    first = check(libvirt, libvirt_qemu, daemons, root, names)
    problems = first
    deadline = time.monotonic() + settle
    while problems and time.monotonic() < deadline:
        time.sleep(0.1)
        problems = check(libvirt, libvirt_qemu, daemons, root, names)
    transient = [p for p in first if p not in problems]
    problems += [p for p in transient if p.startswith("TWO RUNNING COPIES")]
    return problems, [p for p in transient if not p.startswith("TWO RUNNING COPIES")]
