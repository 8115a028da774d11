#!/usr/bin/env python3
"""Migration orchestration overhead: pyvirtd vs libvirtd 9.0, same run, same client.

Two hosts of each kind run on this machine.  The client is Debian's
python3-libvirt for both, driving a managed live migration (``migrate3``,
as ``virsh migrate --live`` does) back and forth with 0.5 s gaps.  For each
hop we take the wall time of the call and QEMU's own migration time: the
timestamps QEMU puts on the source's MIGRATION events (setup → completed),
received through libvirt-qemu's monitor-event API from either daemon
(bench/migclient.py is the client).
Overhead = wall − QEMU time.  Two guests (512 MiB, TCG): ``idle`` (the tiny
guest halted) and ``dirty256`` (256 MiB rewritten at 100 MiB/s).  The first
hop out of a freshly started QEMU is reported separately: it is the stable
throughput figure on these machines.

Usage: bench/migrate.py [--hops N] [--no-libvirt]
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

def guest_xml(name: str, log: Path, module: Path | None, cmdline: str | None) -> str:
    from guests import TINY
    extra = (f"\n    <initrd>{module}</initrd>" if module else "") + \
            (f"\n    <cmdline>{cmdline}</cmdline>" if cmdline else "")
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{TINY}</kernel>{extra}
  </os>
  <devices>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
  </devices>
</domain>"""


def run_pair(uris: list[str], miguris: list[str], workdir: Path, guest: str, hops: int,
             module: Path) -> list[dict]:
    log = workdir / f"{guest}.log"
    if guest == "idle":
        xml, ready = guest_xml("benchmig", log, None, None), "PYVIRT-GUEST-READY"
    else:
        xml, ready = guest_xml("benchmig", log, module, "dirty=256:100"), "PYVIRT-HEARTBEAT 1"
    cfg = {"uris": uris, "miguris": miguris, "xml": xml, "log": str(log), "ready": ready,
           "runs": hops, "name": "benchmig", "mode": "direct"}
    out = subprocess.run(["/usr/bin/python3", str(REPO / "bench" / "migclient.py"), json.dumps(cfg)],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(hops: list[dict]) -> dict:
    later = hops[1:] or hops
    ok = [h for h in later if h["qemu"] is not None]
    return {
        "first_wall": hops[0]["wall"], "first_qemu": hops[0]["qemu"],
        "wall": statistics.median(h["wall"] for h in later),
        "qemu": statistics.median(h["qemu"] for h in ok) if ok else None,
        "overhead": statistics.median(h["wall"] - h["qemu"] for h in ok) if ok else None,
        "n": len(later),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hops", type=int, default=11, help="migrations per guest (first + 5 each way)")
    ap.add_argument("--no-libvirt", action="store_true")
    args = ap.parse_args()
    from guests import ensure_guests
    ensure_guests()
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="pyvirt-migbench-") as tmp:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        work = Path(tmp)
        module = work / "dirty256.bin"
        with open(module, "wb") as f:
            f.write(os.urandom(256 << 20))
        guests = ("idle", "dirty256")
        with pyvirtd_pair(work) as (uris, miguris):
            results["pyvirtd"] = {g: summarize(run_pair(uris, miguris, work, g, args.hops, module)) for g in guests}
        if not args.no_libvirt:
            with libvirtd_pair(work, 61100) as pair:
                if pair is not None:
                    uris, miguris = pair
                    results["libvirtd 9.0"] = {g: summarize(run_pair(uris, miguris, work, g, args.hops, module))
                                               for g in guests}
    print_table(results)
    return 0


def print_table(results: dict[str, dict[str, dict]]) -> None:
    sides = list(results)
    print("\nManaged live migration (python3-libvirt client), 512 MiB TCG guest; medians of later hops")
    print(f"{'':36}" + "".join(f"{s:>16}" for s in sides) + ("     ratio" if len(sides) == 2 else ""))
    for guest in ("idle", "dirty256"):
        for key, label in (("wall", "wall (ms)"), ("qemu", "QEMU migration time (ms)"),
                           ("overhead", "orchestration overhead (ms)"),
                           ("first_wall", "first hop wall (ms)")):
            vals = [results[s][guest][key] for s in sides]
            cells = "".join(f"{v * 1000:>16.1f}" if v is not None else f"{'-':>16}" for v in vals)
            ratio = ""
            if len(vals) == 2 and None not in vals and vals[1]:
                ratio = f"   {vals[0] / vals[1]:>7.2f}"
            print(f"{guest + ' ' + label:36}{cells}{ratio}")
    n = results[sides[0]]["idle"]["n"]
    print(f"(hops per guest after the first: {n})")


if __name__ == "__main__":
    sys.exit(main())
