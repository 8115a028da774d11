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

from pairs import libvirtd_pair, pyvirtd_pair  # noqa: E402

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
    from guests import ensure_guests
    ensure_guests()
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="pyvirt-tunnelbench-") as tmp:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        work = Path(tmp)
        module = work / "fill400.bin"
        with open(module, "wb") as f:
            for _ in range(MODULE_MIB):
                f.write(os.urandom(1 << 20))
        with pyvirtd_pair(work) as (uris, miguris):
            results["pyvirtd"] = {m: measure(uris, miguris, work, module, m, args.runs) for m in MODES}
        if not args.no_libvirt:
            with libvirtd_pair(work, 61200) as pair:
                if pair is not None:
                    uris, miguris = pair
                    results["libvirtd 9.0"] = {m: measure(uris, miguris, work, module, m, args.runs)
                                               for m in MODES}
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
