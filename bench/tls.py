#!/usr/bin/env python3
"""TLS: ``dom.info()`` calls per second, and the cost of opening a connection.

Both servers, in the same run, with the same certtool-made certificates
(tests/pki.py) and one running tiny guest: pyvirtd and libvirtd 9.0
(bench/libvirt_ref.py, its TLS listener on).  The client is Debian's
python3-libvirt 9.0 for both, over ``qemu+tls://127.0.0.1:PORT/system?pkipath=``:

* calls/s of ``dom.info()``, 1 thread on 1 connection and 8 threads on 8,
  for a fixed time each after a warm-up (as bench/rpc.py over plain TCP);
* open latency: ``libvirt.open()`` — TCP connect, TLS handshake, the
  server's certificate checks and verdict byte, AUTH_LIST, CONNECT_OPEN —
  the median and 90th percentile over N opens, and each server's CPU time
  per open (from /proc, whatever the machine's load).  One client process
  opens the servers in turn, open by open, before any calls/s are measured:
  both then see the same load at the same moments.  (Measured in blocks
  right after each server's own calls/s, the server that has just burned
  the most CPU on one thread -- pyvirtd's event loop -- waits longest for
  the CPU on a loaded machine, which says nothing about its TLS.)

Migration throughput with ``--tls`` versus without is bench/tls_migration.py's
(its ``run()`` is called, with ``--runs``, when that file exists;
``--no-migration`` skips it).

Both servers run at once, each in its own session as a service would (with
the kernel's autogroup scheduling a daemon in the benchmark's session would
share one CPU share with its client, and wait for the CPU about 2 ms longer
per open on a busy machine); calls/s are measured in alternating rounds
(``--rounds``), so that a machine's changing load weighs on both alike.

Usage: bench/tls.py [--seconds S] [--opens N] [--rounds N] [--runs N] [--no-libvirt] [--no-migration]
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from rpc import measure, start_guest, stop_guest  # noqa: E402

OPEN_CLIENT = r"""
import json, sys, time
import libvirt
n, uris = int(sys.argv[1]), sys.argv[2:]
for uri in uris:
    for _ in range(5):
        libvirt.open(uri).close()          # warm-up
times = {uri: [] for uri in uris}
for _ in range(n):
    for uri in uris:                       # in turn: the same load for every server
        t0 = time.perf_counter()
        c = libvirt.open(uri)
        times[uri].append(time.perf_counter() - t0)
        c.close()
print(json.dumps(times))
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_latency(uris: dict[str, str], pids: dict[str, int], n: int) -> dict[str, tuple[float, float, float]]:
    """side -> (median ms, p90 ms, server CPU ms per open) over ``n`` opens of each server, in turn."""
    before = {side: _cpu_seconds(pid) for side, pid in pids.items()}
    out = subprocess.run(["/usr/bin/python3", "-c", OPEN_CLIENT, str(n), *uris.values()],
                         capture_output=True, text=True, timeout=n * len(uris) + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    after = {side: _cpu_seconds(pid) for side, pid in pids.items()}
    times = json.loads(out.stdout.strip().splitlines()[-1])
    rows = {}
    for side, uri in uris.items():
        t = sorted(times[uri])
        rows[side] = (statistics.median(t) * 1000, t[int(len(t) * 0.9)] * 1000,
                      (after[side] - before[side]) / (n + 5) * 1000)
    return rows


def bench(uris: dict[str, str], pids: dict[str, int], workdir: Path, seconds: float, opens: int,
          rounds: int) -> dict[str, dict]:
    """Every figure for every server: open latency first, the servers opened in turn;
    then calls/s in alternating rounds (the machine's load then weighs on both alike),
    the median round."""
    names = {side: start_guest(uri, workdir / side.split()[0]) for side, uri in uris.items()}
    rows: dict[str, dict] = {side: {1: [], 8: []} for side in uris}
    try:
        for side, figures in open_latency(uris, pids, opens).items():
            rows[side]["open"] = figures
        for _ in range(rounds):
            for side, uri in uris.items():
                for n in (1, 8):
                    rows[side][n].append(measure(uri, names[side], n, seconds / rounds))
    finally:
        for uri in uris.values():
            stop_guest(uri)
    return {side: {1: statistics.median(r[1]), 8: statistics.median(r[8]), "open": r["open"]}
            for side, r in rows.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--opens", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds the time and opens are split into")
    ap.add_argument("--no-libvirt", action="store_true")
    ap.add_argument("--runs", type=int, default=3, help="migrations per figure (bench/tls_migration.py)")
    ap.add_argument("--no-migration", action="store_true")
    args = ap.parse_args()
    from daemons import Pyvirtd, free_port
    from guests import ensure_guests
    from pki import make_pki
    ensure_guests()

    with tempfile.TemporaryDirectory(prefix="pyvirt-tlsbench-") as tmp, contextlib.ExitStack() as stack:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        work = Path(tmp)
        pki = make_pki(work / "pki")
        uris: dict[str, str] = {}
        port = free_port()
        # its own session, as libvirt_ref starts libvirtd: with the autogroup scheduler a
        # daemon in the client's session shares one CPU share with the client
        daemon = Pyvirtd(work / "pyvirtd", extra_config=pki.daemon_config(port=port), new_session=True)
        stack.callback(daemon.cleanup)
        daemon.start()
        uris["pyvirtd"] = f"qemu+tls://127.0.0.1:{port}/system?pkipath={pki.pkipath()}"
        pids = {"pyvirtd": daemon.pid}
        if not args.no_libvirt:
            try:
                from libvirt_ref import LibvirtHost, libvirt_available
                ok, why = libvirt_available()
            except ImportError as exc:
                ok, why = False, str(exc)
            if not ok:
                print(f"libvirt reference skipped: {why}")
            else:
                lport = free_port()
                host = stack.enter_context(LibvirtHost(work / "libvirtd", tcp_port=free_port(),
                                                       tls_config=pki.daemon_config(port=lport)))
                uris["libvirtd 9.0"] = f"qemu+tls://127.0.0.1:{lport}/system?pkipath={pki.pkipath()}"
                pids["libvirtd 9.0"] = host.pid
        for side in uris:
            (work / side.split()[0]).mkdir(exist_ok=True)
            os.chmod(work / side.split()[0], 0o711)
        rows = bench(uris, pids, work, args.seconds, args.opens, args.rounds)
        stack.close()
        print(f"\nover TLS, python3-libvirt client, both servers up: {args.opens} opens of each, in turn; "
              f"{args.seconds:.0f} s of calls per figure in {args.rounds} alternating rounds")
        sides = list(rows)
        two = len(sides) == 2
        print(f"{'':34}" + "".join(f"{s:>16}" for s in sides) + ("     ratio" if two else ""))
        for n in (1, 8):
            vals = [rows[s][n] for s in sides]
            label = f"dom.info()/s, {n} thread{'s' if n > 1 else ''}, {n} conn{'s' if n > 1 else ''}"
            print(f"{label:34}" + "".join(f"{v:>16,.0f}" for v in vals)
                  + (f"   {vals[0] / vals[1]:>7.2f}" if two else ""))
        for i, what in enumerate(("median", "p90", "server CPU")):
            vals = [rows[s]["open"][i] for s in sides]
            label = f"open (TLS + CONNECT_OPEN) ms, {what}"
            print(f"{label:34}" + "".join(f"{v:>16.2f}" for v in vals)
                  + (f"   {vals[0] / vals[1]:>7.2f}" if two else ""))

        # -- call point for helper work: migration throughput with --tls vs without --
        if not args.no_migration and (REPO / "bench" / "tls_migration.py").exists():
            import tls_migration
            tls_migration.run(args.runs, libvirt=not args.no_libvirt, work=Path(tmp) / "migration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
