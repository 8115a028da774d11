#!/usr/bin/env python3
"""RPC throughput: ``dom.info()`` calls per second through python3-libvirt.

The client is Debian's python3-libvirt 9.0 (system python3) for both
servers, so only the server differs: pyvirtd and libvirtd 9.0, each with
one running tiny guest on its qemu driver, in the same run.  Measured with
1 thread on 1 connection and 8 threads on 8 connections, for a fixed time
each after a warm-up; the figure is calls completed per second.

Usage: bench/rpc.py [--seconds S] [--no-libvirt]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

CLIENT = r"""
import json, sys, threading, time
import libvirt
uri, name, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
conns = [libvirt.open(uri) for _ in range(threads)]
doms = [c.lookupByName(name) for c in conns]
for d in doms:
    for _ in range(200):
        d.info()                       # warm-up
counts = [0] * threads
stop = time.monotonic() + seconds
def run(i):
    d, n = doms[i], 0
    while time.monotonic() < stop:
        for _ in range(50):
            d.info()
        n += 50
    counts[i] = n
ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
t0 = time.monotonic()
for t in ts: t.start()
for t in ts: t.join()
elapsed = time.monotonic() - t0
print(json.dumps({"calls": sum(counts), "seconds": elapsed}))
"""


def measure(uri: str, name: str, threads: int, seconds: float) -> float:
    out = subprocess.run(["/usr/bin/python3", "-c", CLIENT, uri, name, str(threads), str(seconds)],
                         capture_output=True, text=True, timeout=seconds * 4 + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res["calls"] / res["seconds"]


def start_guest(uri: str, workdir: Path) -> str:
    from guests import tiny_xml
    xml = workdir / "rpcbench.xml"
    xml.write_text(tiny_xml("rpcbench", workdir / "rpcbench.log"))
    subprocess.run(["virsh", "-c", uri, "create", str(xml)], check=True, capture_output=True)
    return "rpcbench"


def stop_guest(uri: str) -> None:
    subprocess.run(["virsh", "-c", uri, "destroy", "rpcbench"], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--no-libvirt", action="store_true")
    args = ap.parse_args()
    from guests import ensure_guests
    ensure_guests()
    from daemons import Pyvirtd

    rows: dict[str, dict[int, float]] = {}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pyvirt-rpcbench-") as tmp:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        daemon = Pyvirtd(Path(tmp) / "pyvirtd")
        try:
            daemon.start()
            name = start_guest(daemon.uri, Path(tmp))
            rows["pyvirtd"] = {n: measure(daemon.uri, name, n, args.seconds) for n in (1, 8)}
            rss["pyvirtd"] = _rss(daemon.pid)
            stop_guest(daemon.uri)
        finally:
            daemon.cleanup()
        if not args.no_libvirt:
            try:
                from libvirt_ref import LibvirtHost, libvirt_available
                ok, why = libvirt_available()
            except ImportError as exc:
                ok, why = False, str(exc)
            if not ok:
                print(f"libvirt reference skipped: {why}")
            else:
                with LibvirtHost(Path(tmp) / "libvirtd", tcp_port=16619) as host:
                    name = start_guest(host.uri, Path(tmp))
                    rows["libvirtd 9.0"] = {n: measure(host.uri, name, n, args.seconds) for n in (1, 8)}
                    rss["libvirtd 9.0"] = host.rss_kib() / 1024
                    stop_guest(host.uri)
    print(f"\ndom.info() calls/s, python3-libvirt client, {args.seconds:.0f} s per figure")
    sides = list(rows)
    print(f"{'':28}" + "".join(f"{s:>16}" for s in sides) + ("     ratio" if len(sides) == 2 else ""))
    for n in (1, 8):
        vals = [rows[s][n] for s in sides]
        label = f"{n} thread{'s' if n > 1 else ''}, {n} connection{'s' if n > 1 else ''}"
        line = f"{label:28}" + "".join(f"{v:>16,.0f}" for v in vals)
        if len(vals) == 2:
            line += f"   {vals[0] / vals[1]:>7.2f}"
        print(line)
    print(f"{'server RSS (MiB)':28}" + "".join(f"{rss[s]:>16.1f}" for s in sides))
    return 0


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
