"""Per-host invariants the fault, chaos and concurrency tests check after each step.

``check_host(daemons)`` returns what is wrong (an empty list when all holds):

* for every guest UUID at most one QEMU process on the machine;
* at most one copy whose CPUs run (QMP ``query-status``, asked through the
  daemon, or on the monitor socket directly when that daemon is down);
* each running daemon's view matches ``/proc``: a domain it lists as active
  has its QEMU alive, and every QEMU of a known UUID is the process of a
  domain some daemon lists as active (no QEMU behind a "shut off").

Only the UUIDs these daemons know count (their active and inactive domains,
their state directories' definitions and status files), so QEMUs other tests
run on the same machine are never looked at.
"""

from __future__ import annotations

import re
from pathlib import Path

from daemons import Pyvirtd, running_copies
from guests import pid_alive

_UUID = re.compile(r"<uuid>\s*([0-9a-fA-F-]{36})\s*</uuid>")
_PID = re.compile(r"<domstatus\b[^>]*\bpid='(\d+)'")


def qemu_processes(under: Path | None = None) -> dict[str, list[int]]:
    """Every live QEMU on the machine by the UUID on its command line (``-uuid U``);
    with ``under``, only those whose command line names a path below that directory
    (the guests of one test's hosts)."""
    mark = str(under).encode() if under is not None else None
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"qemu-system" not in argv[0] or b"-uuid" not in argv[:-1]:
            continue
        if mark is not None and not any(mark in arg for arg in argv):
            continue
        pid = int(entry.name)
        if not pid_alive(pid):               # a zombie has finished running the guest
            continue
        uuid = argv[argv.index(b"-uuid") + 1].decode(errors="replace").lower()
        found.setdefault(uuid, []).append(pid)
    return found


def _state_dir_uuids(daemon: Pyvirtd) -> set[str]:
    """UUIDs named by the daemon's persistent definitions and running-guest status files."""
    uuids = set()
    root = daemon.state_dir
    for path in [*(root / "etc" / "qemu").glob("*.xml"), *(root / "run" / "qemu").glob("*.xml")]:
        try:
            match = _UUID.search(path.read_text(errors="replace"))
        except OSError:
            continue
        if match:
            uuids.add(match.group(1).lower())
    return uuids


def _status_pids(daemon: Pyvirtd) -> dict[str, int]:
    """UUID -> QEMU pid from the daemon's status files (what it records as running)."""
    pids = {}
    for path in (daemon.state_dir / "run" / "qemu").glob("*.xml"):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        uuid, pid = _UUID.search(text), _PID.search(text)
        if uuid and pid and int(pid.group(1)) > 0:
            pids[uuid.group(1).lower()] = int(pid.group(1))
    return pids


def _daemon_view(daemon: Pyvirtd) -> tuple[dict[str, int], set[str]]:
    """(active UUID -> libvirt state, inactive UUIDs) as the daemon reports them."""
    import pyvirt
    active, inactive = {}, set()
    conn = pyvirt.open(daemon.uri)
    try:
        for dom in conn.listAllDomains(0):
            uuid = dom.UUIDString().lower()
            try:
                state = dom.state()[0]
                is_active = dom.isActive()
            except pyvirt.libvirtError as exc:
                if exc.get_error_code() == pyvirt.VIR_ERR_NO_DOMAIN:
                    continue                 # undefined between the listing and the question
                raise
            if is_active:
                active[uuid] = state
            else:
                inactive.add(uuid)
    finally:
        conn.close()
    return active, inactive


def check_host(daemons: list[Pyvirtd], *, allow_transient_gap: bool = False) -> list[str]:
    """The violations of the per-host invariants on these daemons' guests (empty: all hold).

    ``allow_transient_gap`` tolerates the one gap a fault injected just now may
    leave: a domain still listed as active whose QEMU has already gone (the
    daemon learns it from the monitor's EOF, asynchronously).  Extra or leaked
    QEMUs and extra running copies are violations either way.
    """
    problems: list[str] = []
    known: set[str] = set()
    claimed: dict[int, str] = {}             # QEMU pid -> the daemon that lists it as active
    views: list[tuple[Pyvirtd, dict[str, int]]] = []
    for daemon in daemons:
        known |= _state_dir_uuids(daemon)
        status_pids = _status_pids(daemon)
        if daemon.alive:
            try:
                active, inactive = _daemon_view(daemon)
            except Exception as exc:         # the daemon must answer; report, do not crash the check
                problems.append(f"{daemon.uri}: cannot list domains: {exc}")
                continue
            known |= set(active) | inactive
            views.append((daemon, active))
            for uuid in active:
                if uuid in status_pids:
                    claimed[status_pids[uuid]] = daemon.uri
        else:
            # A daemon that is down keeps its guests' QEMUs by its status files.
            for uuid, pid in status_pids.items():
                claimed[pid] = f"{daemon.uri} (down)"

    processes = qemu_processes()
    for uuid in sorted(known):
        pids = processes.get(uuid, [])
        if len(pids) > 1:
            problems.append(f"{uuid}: {len(pids)} QEMU processes {sorted(pids)}")
        for pid in pids:
            if pid not in claimed:
                problems.append(f"{uuid}: QEMU pid {pid} runs but no daemon lists it as active")

    for daemon, active in views:
        for uuid, state in active.items():
            pid = _status_pids(daemon).get(uuid)
            if pid is not None and pid in processes.get(uuid, []):
                continue
            if not allow_transient_gap:
                problems.append(f"{daemon.uri}: {uuid} is active (state {state}) but its QEMU "
                                f"(pid {pid}) is not running")

    for uuid in sorted(u for u in known if processes.get(u)):
        try:
            copies = running_copies(daemons, uuid)
        except Exception as exc:
            problems.append(f"{uuid}: cannot ask QEMU for its status: {exc}")
            continue
        if copies > 1:
            problems.append(f"{uuid}: {copies} copies run their CPUs")
    return problems


def assert_host(daemons: list[Pyvirtd], *, allow_transient_gap: bool = False) -> None:
    """Fails listing every violated invariant (see :func:`check_host`)."""
    problems = check_host(daemons, allow_transient_gap=allow_transient_gap)
    assert not problems, "host invariants violated:\n  " + "\n  ".join(problems)
