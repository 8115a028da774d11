#!/usr/bin/env python3
"""Convergence: pyvirtd (with its convergence policy) vs libvirtd 9.0, same run, same client.

Two hosts of each kind on this machine; the client is Debian's python3-libvirt
for both (this file re-run under /usr/bin/python3 with --client).

(a) the too-fast guest (256 MiB, 96 MiB rewritten at 80 MiB/s) over a
    20 MiB/s link, live migration with VIR_MIGRATE_POSTCOPY permitted and
    nothing else: libvirtd leaves the switch to the client, so pre-copy goes
    round until the bench gives up (bounded to 60 s here, instead of 120 s,
    to keep the run short: the guest never gets closer, see its remaining
    figure); pyvirtd's policy (``migration_converge = 1``) switches itself.
(b) post-copy by the client on both (virDomainMigrateStartPostCopy after the
    first pass): total time and the downtime QEMU reports (JOB_COMPLETED).
(c) VIR_MIGRATE_PARALLEL with 1/2/4 connections, a fresh 512 MiB guest with
    400 MiB of random bytes (halted): MB/s of the whole migrate call.

QEMU runs as root on both (post-copy needs userfaultfd; see tests).

Usage: bench/converge.py [--no-libvirt] [--bound 60]
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
MIB = 1 << 20


def client(cfg: dict) -> dict:
    """Runs under /usr/bin/python3 with python3-libvirt: the same client for both daemons."""
    import threading
    import time

    import libvirt
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)], daemon=True).start()
    conns = [libvirt.open(u) for u in cfg["uris"]]
    completed: dict = {}
    counter = [0]

    def on_job(conn, dom, params, opaque):
        completed.update(params)
    conns[0].domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, on_job, None)

    def start(xml: str, ready: str) -> None:
        open(cfg["log"], "w").close()
        conns[0].createXML(xml, 0)
        deadline = time.time() + 120
        while ready not in open(cfg["log"], errors="replace").read():
            if time.time() > deadline:
                raise SystemExit("guest not ready")
            time.sleep(0.05)
        time.sleep(1.0)

    def cleanup() -> None:
        for c in conns:
            try:
                c.lookupByName("conv").destroy()
            except libvirt.libvirtError:
                pass

    def migrate(params: dict, flags: int, switch_after_first_pass: bool, bound: float | None) -> dict:
        completed.clear()
        dom = conns[0].lookupByName("conv")
        # a fresh port each time: the last migration's listener may not be gone yet
        base = cfg["miguris"][1].rsplit(":", 1)
        counter[0] += 1
        uri = f"{base[0]}:{int(base[1]) + counter[0] % 8}"
        params = dict(params, migrate_uri=uri, listen_address="127.0.0.1")
        result: dict = {}

        def run() -> None:
            try:
                dom.migrate3(conns[1], params, flags)
                result["ok"] = True
            except libvirt.libvirtError as exc:
                result["error"] = str(exc)
        t0 = time.perf_counter()
        th = threading.Thread(target=run)
        th.start()
        last: dict = {}
        while th.is_alive():
            th.join(0.25)
            if not th.is_alive():
                break
            try:
                last = dom.jobStats()
            except libvirt.libvirtError:
                continue
            if switch_after_first_pass and last.get("memory_iteration", 0) >= 2:
                switch_after_first_pass = False
                dom.migrateStartPostCopy()
            if bound is not None and time.perf_counter() - t0 > bound:
                dom.abortJob()
                th.join()
                return {"finished": False, "wall": time.perf_counter() - t0,
                        "remaining_mib": last.get("memory_remaining", 0) / MIB,
                        "iteration": last.get("memory_iteration", 0)}
        wall = time.perf_counter() - t0
        deadline = time.time() + 10
        while "ok" in result and not completed and time.time() < deadline:
            time.sleep(0.05)
        out = {"finished": "ok" in result, "wall": wall, "error": result.get("error"),
               "downtime_ms": completed.get("downtime"), "processed": completed.get("memory_processed"),
               "postcopy_requests": completed.get("memory_postcopy_requests")}
        return out

    res: dict = {}
    live, postcopy, parallel = libvirt.VIR_MIGRATE_LIVE, libvirt.VIR_MIGRATE_POSTCOPY, libvirt.VIR_MIGRATE_PARALLEL
    try:
        start(cfg["fast_xml"], "PYVIRT-HEARTBEAT 1")
        res["a"] = migrate({"bandwidth": 20}, live | postcopy, False, cfg["bound"])
        cleanup()
        start(cfg["fast_xml"], "PYVIRT-HEARTBEAT 1")
        res["b"] = migrate({"bandwidth": 20}, live | postcopy, True, None)
        cleanup()
        for n in (1, 2, 4):
            start(cfg["fill_xml"], "PYVIRT-GUEST-READY")
            r = migrate({"parallel.connections": n}, live | parallel, False, None)
            r["mb_s"] = 400 * MIB / 1e6 / r["wall"] if r["finished"] else None
            res[f"c{n}"] = r
            cleanup()
    finally:
        cleanup()
    return res


def guest_xml(log: Path, memory_mib: int, cmdline: str | None, module: Path | None) -> str:
    sys.path.insert(0, str(REPO / "tests"))
    from guests import TINY
    extra = (f"\n    <initrd>{module}</initrd>" if module else "") + \
            (f"\n    <cmdline>{cmdline}</cmdline>" if cmdline else "")
    return f"""<domain type='qemu'>
  <name>conv</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{TINY}</kernel>{extra}
  </os>
  <devices>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
  </devices>
</domain>"""


def run_side(uris: list[str], miguris: list[str], work: Path, module: Path, bound: float) -> dict:
    log = work / "conv.log"
    cfg = {"uris": uris, "miguris": miguris, "log": str(log), "bound": bound,
           "fast_xml": guest_xml(log, 256, "dirty=96:80", None),
           "fill_xml": guest_xml(log, 512, None, module)}
    out = subprocess.run(["/usr/bin/python3", str(Path(__file__).resolve()), "--client", json.dumps(cfg)],
                         capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-libvirt", action="store_true")
    ap.add_argument("--bound", type=float, default=60.0, help="seconds (a) may take before it counts as never")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        print(json.dumps(client(json.loads(args.client))))
        return 0
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "bench"))
    from guests import ensure_guests
    from pairs import libvirtd_pair, pyvirtd_pair
    ensure_guests()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pyvirt-convbench-") as tmp:
        os.chmod(tmp, 0o711)
        work = Path(tmp)
        module = work / "fill400.bin"
        with open(module, "wb") as f:
            f.write(os.urandom(400 << 20))
        policy = 'user = "root"\ngroup = "root"\nmigration_converge = 1\n'
        with pyvirtd_pair(work, extra_config=policy) as (uris, miguris):
            results["pyvirtd"] = run_side(uris, miguris, work, module, args.bound)
        if not args.no_libvirt:
            with libvirtd_pair(work, 61300) as pair:
                if pair is not None:
                    results["libvirtd 9.0"] = run_side(*pair, work, module, args.bound)
    print_table(results, args.bound)
    return 0


def print_table(results: dict[str, dict], bound: float) -> None:
    sides = list(results)
    print(json.dumps(results, indent=1))
    print("\nConvergence (python3-libvirt client, TCG tiny guest, 20 MiB/s link for a and b)")
    print(f"{'':52}" + "".join(f"{s:>16}" for s in sides))

    def row(label: str, cell) -> None:
        print(f"{label:52}" + "".join(f"{cell(results[s]):>16}" for s in sides))
    row("(a) too-fast guest, post-copy permitted: time (s)",
        lambda r: f"{r['a']['wall']:.1f}" if r["a"]["finished"] else f"never (>{bound:.0f})")
    row("(a) ... left when given up (MiB)",
        lambda r: "-" if r["a"]["finished"] else f"{r['a'].get('remaining_mib', 0):.0f}")
    row("(b) post-copy after first pass: total (s)",
        lambda r: f"{r['b']['wall']:.1f}" if r["b"]["finished"] else "failed")
    row("(b) ... downtime (ms)", lambda r: str(r["b"].get("downtime_ms")))
    for n in (1, 2, 4):
        row(f"(c) parallel, {n} connection(s), 400 MiB random: MB/s",
            lambda r, n=n: f"{r[f'c{n}']['mb_s']:.0f}" if r[f"c{n}"].get("mb_s") else "failed")


if __name__ == "__main__":
    sys.exit(main())
