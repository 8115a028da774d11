#!/usr/bin/env python3
"""Tunnelled vs direct migration throughput: pyvirtd and libvirtd 9.0, same run.

The guest holds 400 MiB of random bytes (the tiny guest's module, loaded by
QEMU into RAM) in 512 MiB, halted.  Each figure is the first migration out
of a freshly started QEMU (the stable throughput figure on these machines),
repeated ``--runs`` times, median.  Throughput = 400 MiB / QEMU's own
migration time (setup → completed events of the source QEMU); wall time is
the whole API call.  Modes: direct (client-driven), p2p, tunnelled.
The client is python3-libvirt for both daemons (bench/migclient.py).

Usage: bench/tunnel.py [--runs N] [--no-libvirt]
"""

from __future__ import annotations

import argparse
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

MODULE_MIB = 400
MODES = ("direct", "p2p", "tunnelled")


def fill_xml(log: Path, module: Path) -> str:
    from guests import TINY
    return f"""<domain type='qemu'>
  <name>fill400</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{TINY}</kernel>
    <initrd>{module}</initrd>
  </os>
  <devices>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
  </devices>
</domain>"""


def measure(uris: list[str], miguris: list[str], work: Path, module: Path, mode: str, runs: int) -> dict:
    log = work / "fill400.log"
    cfg = {"uris": uris, "miguris": miguris, "xml": fill_xml(log, module), "log": str(log),
           "ready": "PYVIRT-GUEST-READY", "runs": runs, "name": "fill400", "mode": mode, "fresh": True}
    out = subprocess.run(["/usr/bin/python3", str(REPO / "bench" / "migclient.py"), json.dumps(cfg)],
                         capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(f"{mode}: {out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    qemu = [r["qemu"] for r in res if r["qemu"]]
    return {"wall": statistics.median(r["wall"] for r in res),
            "qemu": statistics.median(qemu) if qemu else None,
            "mbps": statistics.median(MODULE_MIB * (1 << 20) / q / 1e6 for q in qemu) if qemu else None,
            "runs": len(res)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-libvirt", action="store_true")
    args = ap.parse_args()
    from daemons import Pyvirtd
    from guests import ensure_guests
    ensure_guests()
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="pyvirt-tunnelbench-") as tmp:
        work = Path(tmp)
        module = work / "fill400.bin"
        with open(module, "wb") as f:
            for _ in range(MODULE_MIB):
                f.write(os.urandom(1 << 20))
        hosts = [Pyvirtd(work / "pa"), Pyvirtd(work / "pb")]
        try:
            for h in hosts:
                h.start()
            miguris = [f"tcp://127.0.0.1:{h.tcp_port % 1000 * 10 + 50000}" for h in hosts]
            results["pyvirtd"] = {m: measure([h.uri for h in hosts], miguris, work, module, m, args.runs)
                                  for m in MODES}
        finally:
            for h in hosts:
                h.destroy_all()
            for h in hosts:
                h.cleanup()
        if not args.no_libvirt:
            from libvirt_ref import LibvirtHost, libvirt_available, pick_free_ports
            ok, why = libvirt_available()
            if not ok:
                print(f"libvirt reference skipped: {why}")
            else:
                ports = pick_free_ports(2)
                cache = work / "lvcache"
                la = LibvirtHost(work / "la", ports[0], 61200, 61215, cache_dir=cache)
                lb = LibvirtHost(work / "lb", ports[1], 61232, 61247, cache_dir=cache)
                try:
                    la.start()
                    lb.start()
                    miguris = ["tcp://127.0.0.1:61200", "tcp://127.0.0.1:61232"]
                    results["libvirtd 9.0"] = {m: measure([la.uri, lb.uri], miguris, work, module, m, args.runs)
                                               for m in MODES}
                finally:
                    la.stop()
                    lb.stop()
    print_table(results, args.runs)
    return 0


def print_table(results: dict[str, dict[str, dict]], runs: int) -> None:
    print(f"\nfill400 (400 MiB random in 512 MiB, TCG), first hop out of a fresh QEMU, median of {runs}")
    print(f"{'':30}" + "".join(f"{s:>16}" for s in results))
    for mode in MODES:
        print(f"{mode + ' MB/s':30}" + "".join(f"{results[s][mode]['mbps'] or 0:>16.0f}" for s in results))
        print(f"{mode + ' wall (ms)':30}" + "".join(f"{results[s][mode]['wall'] * 1000:>16.0f}" for s in results))
    for s in results:
        d, t = results[s]["direct"]["mbps"], results[s]["tunnelled"]["mbps"]
        if d and t:
            print(f"{s}: tunnelled / direct throughput = {t / d:.2f}")
    if len(results) == 2:
        ours, theirs = (results[s]["tunnelled"]["mbps"] for s in results)
        if ours and theirs:
            print(f"pyvirtd tunnelled / libvirtd tunnelled = {ours / theirs:.2f}")


if __name__ == "__main__":
    sys.exit(main())
