#!/usr/bin/env python3
"""Live migration across implementations: libvirtd 9.0 ⇄ pyvirtd, beside L → L and P → P.

Four hosts on this machine, all started in the same run: two libvirtd 9.0
(bench/libvirt_ref.py) and two pyvirtd (tests/daemons.py).  The same idle
512 MiB guest (the tiny guest, halted; TCG; the same XML everywhere, no
device workarounds) goes back and forth between two hosts with 0.5 s gaps,
driven by Debian's python3-libvirt as ``virsh migrate --live`` drives it
(``migrate3``: client-driven v3; ``--mode p2p`` / ``tunnelled``: the source
daemon drives it, ``migrateToURI3`` as ``virsh migrate --live --p2p
[--tunnelled]``).  Three host pairs give the four hop kinds:

* libvirtd A ⇄ pyvirtd A: the hops libvirtd → pyvirtd and pyvirtd → libvirtd;
* libvirtd A ⇄ libvirtd B: libvirtd → libvirtd (libvirt's own figure);
* pyvirtd A ⇄ pyvirtd B: pyvirtd → pyvirtd.

For each hop: the wall time of the call, QEMU's own migration time (the
source QEMU's MIGRATION events, setup → completed, received through
libvirt-qemu's monitor-event API from whichever daemon is the source) and
their difference, the orchestration overhead.  The first hop out of a
freshly started QEMU is shown apart; the rest are medians.

A hop kind that fails is reported as ``failed: <the error>`` (the first one
seen), never a crash: a failed hop is tried again with a fresh guest, up to
MAX_FAILURES failures of a kind (then counted beside its figures); when one
direction of a cross pair is given up, the other is still measured, each hop
with a fresh guest started on its source.

Usage: bench/crossmigrate.py [--hops N] [--quick] [--mode direct|p2p|tunnelled|all] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

NAME = "crossmig"
KINDS = ("libvirtd → pyvirtd", "pyvirtd → libvirtd", "libvirtd → libvirtd", "pyvirtd → pyvirtd")
# host pairs and the hop kinds each one gives (first → second, second → first)
PAIRS = (("LA", "PA", KINDS[0], KINDS[1]),
         ("LA", "LB", KINDS[2], KINDS[2]),
         ("PA", "PB", KINDS[3], KINDS[3]))
CLIENT_TIMEOUT = 1200.0
# The destination picks a free port of its own migration range (virsh migrate --migrateuri
# tcp://HOST): other hosts on this machine may hold any fixed one.
ANY_PORT = "tcp://127.0.0.1"
MAX_FAILURES = 3         # failed hops of one kind before it is given up (a first failure may be chance)

# Run by /usr/bin/python3 (Debian's python3-libvirt).  One JSON argument; one JSON
# line per hop on stdout, flushed at once, so a client that hangs or dies still
# leaves the hops it made.
CLIENT = r"""
import json, sys, threading, time
import libvirt, libvirt_qemu

cfg = json.loads(sys.argv[1])
libvirt.virEventRegisterDefaultImpl()
threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)], daemon=True).start()
libvirt.registerErrorHandler(lambda *_: None, None)      # errors are reported, not printed twice
hosts = cfg["hosts"]
conns = {h: libvirt.open(u) for h, u in hosts.items()}
events = {}

def on_event(conn, dom, event, seconds, micros, details, host):
    status = json.loads(details or "{}").get("status")
    if status in ("setup", "completed"):
        events.setdefault(host, {})[status] = seconds + micros / 1e6

for h, c in conns.items():
    libvirt_qemu.qemuMonitorEventRegister(c, None, "MIGRATION", on_event, h, 0)

def say(**kw):
    print(json.dumps(kw), flush=True)

def where():
    found = []
    for h, c in conns.items():
        try:
            if c.lookupByName(cfg["name"]).isActive():
                found.append(h)
        except libvirt.libvirtError:
            pass
    return found

def clear():
    for h in where():
        try:
            conns[h].lookupByName(cfg["name"]).destroy()
        except libvirt.libvirtError:
            pass

def start(host):
    clear()
    open(cfg["log"], "w").close()
    conns[host].createXML(cfg["xml"], 0)
    deadline = time.time() + 120
    while cfg["ready"] not in open(cfg["log"], errors="replace").read():
        if time.time() > deadline:
            raise RuntimeError("guest not ready after 120 s")
        time.sleep(0.05)
    time.sleep(1.0)

def hop(src, dst):
    events.clear()
    dom = conns[src].lookupByName(cfg["name"])
    params = {libvirt.VIR_MIGRATE_PARAM_URI: cfg["miguris"][dst],
              libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "127.0.0.1"}
    flags = libvirt.VIR_MIGRATE_LIVE
    t0 = time.perf_counter()
    if cfg["mode"] == "direct":
        dom.migrate3(conns[dst], params, flags)
    else:
        flags |= libvirt.VIR_MIGRATE_PEER2PEER
        if cfg["mode"] == "tunnelled":
            flags |= libvirt.VIR_MIGRATE_TUNNELLED
            params = {}
        dom.migrateToURI3(hosts[dst], params, flags)
    wall = time.perf_counter() - t0
    for _ in range(300):
        if "completed" in events.get(src, {}):
            break
        time.sleep(0.01)
    ev = events.get(src, {})
    qemu = ev["completed"] - ev["setup"] if "completed" in ev and "setup" in ev else None
    state = conns[dst].lookupByName(cfg["name"]).state()[0]
    if state != libvirt.VIR_DOMAIN_RUNNING:
        raise RuntimeError(f"the guest is in state {state} on the destination, not running")
    return wall, qemu

def error_text(exc):
    return exc.get_error_message() if isinstance(exc, libvirt.libvirtError) else f"{type(exc).__name__}: {exc}"

for a, b, kind_ab, kind_ba in cfg["pairs"]:
    kinds = {(a, b): kind_ab, (b, a): kind_ba}
    if kind_ab == kind_ba:
        wanted = {kind_ab: cfg["hops"]}
    else:
        wanted = {kind_ab: (cfg["hops"] + 1) // 2, kind_ba: cfg["hops"] // 2}
    done = {k: 0 for k in wanted}
    failures = {k: 0 for k in wanted}
    failed = set()
    fresh = True
    try:
        start(a)
    except Exception as exc:
        for k in wanted:
            say(kind=k, error="cannot start the guest on " + a + ": " + error_text(exc))
        continue
    src, dst = a, b
    while any(done[k] < wanted[k] and k not in failed for k in wanted):
        kind = kinds[(src, dst)]
        if kind in failed or done[kind] >= wanted[kind]:
            # this direction is finished or broken: a fresh guest for the other one
            src, dst = dst, src
            try:
                start(src)
            except Exception as exc:
                say(kind=kinds[(src, dst)], error="cannot start the guest on " + src + ": " + error_text(exc))
                failed.add(kinds[(src, dst)])
                continue
            fresh = True
            continue
        try:
            wall, qemu = hop(src, dst)
        except Exception as exc:
            say(kind=kind, error=error_text(exc), running_on=where())
            failures[kind] += 1
            if failures[kind] >= cfg["max_failures"]:
                failed.add(kind)
                continue
            try:
                start(src)          # one failure may be chance: again, with a fresh guest
                fresh = True
            except Exception as exc:
                say(kind=kind, error="cannot start the guest on " + src + ": " + error_text(exc))
                failed.add(kind)
            continue
        say(kind=kind, wall=wall, qemu=qemu, first=fresh)
        fresh = False
        done[kind] += 1
        src, dst = dst, src
        time.sleep(0.5)
    clear()
"""


def guest_xml(name: str, log: Path, kernel: Path) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
  </os>
  <devices>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
  </devices>
</domain>"""


def free_port_block(start: int, size: int) -> int:
    """The first port from ``start`` (in steps of ``size``) with ``size`` free ports after it."""
    import socket
    for base in range(start, 65535 - size, size):
        try:
            for port in range(base, base + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {size} free ports from {start}")


@contextlib.contextmanager
def four_hosts(work: Path, first_libvirt_port: int) -> Iterator[tuple[dict, dict, dict]]:
    """Yields (uris, migration URIs, {host: why it did not start})."""
    from pairs import libvirtd_pair, pyvirtd_pair
    uris: dict[str, str] = {}
    miguris: dict[str, str] = {}
    broken: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        try:
            p_uris, _ = stack.enter_context(pyvirtd_pair(work, names=("pva", "pvb")))
            uris.update(PA=p_uris[0], PB=p_uris[1])
            miguris.update(PA=ANY_PORT, PB=ANY_PORT)
        except Exception as exc:   # noqa: BLE001 - reported per pairing
            broken.update(PA=f"pyvirtd did not start: {exc}", PB=f"pyvirtd did not start: {exc}")
        try:
            pair = stack.enter_context(libvirtd_pair(work, first_libvirt_port))
            if pair is None:
                broken.update(LA="libvirtd cannot run here", LB="libvirtd cannot run here")
            else:
                uris.update(LA=pair[0][0], LB=pair[0][1])
                miguris.update(LA=ANY_PORT, LB=ANY_PORT)
        except Exception as exc:   # noqa: BLE001
            broken.update(LA=f"libvirtd did not start: {exc}", LB=f"libvirtd did not start: {exc}")
        yield uris, miguris, broken


def run_client(cfg: dict[str, Any]) -> tuple[list[dict], str | None]:
    """The hops the client made, and why it stopped early (None: it finished)."""
    proc = subprocess.Popen(["/usr/bin/python3", "-c", CLIENT, json.dumps(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=CLIENT_TIMEOUT)
        why = None if proc.returncode == 0 else (err.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        why = f"the client did not finish within {CLIENT_TIMEOUT:.0f} s"
    hops = []
    for line in out.splitlines():
        try:
            hops.append(json.loads(line))
        except ValueError:
            continue
    return hops, why


def summarize(hops: list[dict], kind: str) -> dict[str, Any]:
    mine = [h for h in hops if h.get("kind") == kind]
    errors = [h["error"] for h in mine if "error" in h]
    good = [h for h in mine if "wall" in h]
    if not good:
        return {"error": errors[0] if errors else "no hop made"}
    first = next((h for h in good if h.get("first")), None)
    later = [h for h in good if h is not first] or good
    timed = [h for h in later if h["qemu"] is not None]
    return {
        "wall": statistics.median(h["wall"] for h in later),
        "qemu": statistics.median(h["qemu"] for h in timed) if timed else None,
        "overhead": statistics.median(h["wall"] - h["qemu"] for h in timed) if timed else None,
        "first_wall": first["wall"] if first else None,
        "n": len(later),
        "error": errors[0] if errors else None,
        "failures": len(errors),
    }


def measure(hops_per_pair: int, first_libvirt_port: int, modes: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{mode: {hop kind: figures or error}}, every mode on the same four hosts."""
    from guests import ensure_guests, private_copy, TINY
    ensure_guests()
    results: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in modes}
    with tempfile.TemporaryDirectory(prefix="pyvirt-crossmig-") as tmp:
        os.chmod(tmp, 0o711)   # pyvirtd's QEMU runs unprivileged: it must reach the files here
        work = Path(tmp)
        log = work / f"{NAME}.log"
        xml = guest_xml(NAME, log, private_copy(TINY, work))
        with four_hosts(work, first_libvirt_port) as (uris, miguris, broken):
            pairs = []
            for a, b, kind_ab, kind_ba in PAIRS:
                down = [broken[h] for h in (a, b) if h in broken]
                if down:
                    for mode in modes:
                        for kind in (kind_ab, kind_ba):
                            results[mode].setdefault(kind, {"error": down[0]})
                else:
                    pairs.append([a, b, kind_ab, kind_ba])
            for mode in modes if pairs else ():
                cfg = {"hosts": uris, "miguris": miguris, "pairs": pairs, "xml": xml, "log": str(log),
                       "ready": "PYVIRT-GUEST-READY", "name": NAME, "hops": hops_per_pair, "mode": mode,
                       "max_failures": MAX_FAILURES}
                t0 = time.monotonic()
                hops, why = run_client(cfg)
                print(f"({mode}: {len(hops)} hops in {time.monotonic() - t0:.0f} s)", file=sys.stderr)
                for kind in {k for p in pairs for k in p[2:]}:
                    results[mode][kind] = summarize(hops, kind)
                    if why and "wall" not in results[mode][kind] and results[mode][kind]["error"] == "no hop made":
                        results[mode][kind]["error"] = why
    return results


def cell(value: float | None) -> str:
    return f"{value * 1000:>12.1f}" if value is not None else f"{'-':>12}"


MODES = {"direct": "migrate3 (client-driven v3)", "p2p": "migrateToURI3, peer-to-peer",
         "tunnelled": "migrateToURI3, peer-to-peer tunnelled"}


def print_table(results: dict[str, dict[str, Any]], mode: str = "direct") -> None:
    print(f"\nLive migration across implementations: idle 512 MiB TCG guest, python3-libvirt {MODES[mode]}; "
          "medians of the hops after the first")
    print(f"{'hop':22}{'wall ms':>12}{'QEMU ms':>12}{'overhead ms':>12}{'first hop ms':>14}{'n':>4}")
    for kind in KINDS:
        r = results.get(kind, {"error": "not measured"})
        if "wall" not in r:
            print(f"{kind:22}failed: {r['error']}")
            continue
        print(f"{kind:22}{cell(r['wall'])}{cell(r['qemu'])}{cell(r['overhead'])}  {cell(r['first_wall'])}"
              f"{r['n']:>4}")
        if r.get("error"):
            times = "once" if r["failures"] == 1 else f"{r['failures']} times"
            print(f"{'':22}(also failed {times}, first: {r['error']})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hops", type=int, default=11,
                    help="migrations per host pair (a cross pair splits them between its two directions)")
    ap.add_argument("--quick", action="store_true", help="a short run: 5 hops per pair, client-driven only")
    ap.add_argument("--libvirt-port", type=int, default=None,
                    help="first migration port of the libvirtd hosts (they use 48 from here; "
                         "default: the first free block from 61300)")
    ap.add_argument("--mode", choices=[*MODES, "all"], default=None,
                    help="who drives the migration (default: all three, one after the other; --quick: direct)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    hops = 5 if args.quick else args.hops
    if hops < 3:
        ap.error("--hops: at least 3 (a first hop and one of each direction)")
    mode = args.mode or ("direct" if args.quick else "all")
    modes = list(MODES) if mode == "all" else [mode]
    results = measure(hops, args.libvirt_port or free_port_block(61300, 48), modes)
    for m in modes:
        print_table(results[m], m)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
