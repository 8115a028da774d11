#!/usr/bin/env python3
"""Lifecycle figures: start, destroy and autodestroy of 20 tiny guests.

The same measuring code drives pyvirt (``import pyvirt as libvirt``) and
libvirt 9.0 (real python3-libvirt against a private libvirtd started by
bench/libvirt_ref.py), in the same run, on the same guest:

- start: ``createXML`` until it returns with the guest running;
- destroy: ``destroy()`` until it returns (the QEMU is gone by then);
- autodestroy: ``close()`` of the connection that started the guest with
  VIR_DOMAIN_START_AUTODESTROY, until its QEMU process has exited
  (watched through a pidfd, so the figure has no polling slack);
- each sequentially and with all 20 at once (one thread per guest);
- the manager's resident memory afterwards.

Three sides: pyvirt's embedded driver (no daemon), pyvirtd and libvirtd 9.0,
the last two driven by the same python3-libvirt client.

Usage: bench/lifecycle.py [--guests N] [--no-libvirt]
Run as a child with --measure MODULE URI (what the parent does for each side).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "build" / "guests" / "tiny.elf"


def guest_xml(name: str, uid: str, log: Path) -> str:
    return f"""<domain type='qemu'><name>{name}</name><uuid>{uid}</uuid>
<memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>{TINY}</kernel></os>
<devices><serial type='file'><source path='{log}'/><target port='0'/></serial></devices></domain>"""


def qemu_pid_for(uid: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    args = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if args and b"qemu-system" in args[0] and uid.encode() in args:
                    return int(entry.name)
        time.sleep(0.01)
    raise RuntimeError(f"no QEMU found for {uid}")


def wait_exit(pidfd: int, timeout: float = 30.0) -> None:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if not poller.poll(timeout * 1000):
        raise RuntimeError("QEMU did not exit")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(module: str, uri: str, n: int, workdir: Path) -> dict:
    lv = importlib.import_module(module)
    results: dict[str, list[float]] = {}

    def names(tag: str) -> list[tuple[str, str]]:
        return [(f"bench-{tag}-{i}", str(uuid.uuid4())) for i in range(n)]

    conn = lv.open(uri)
    # warm-up: the first start pays one-time costs (capability probe, imports)
    warm = conn.createXML(guest_xml("bench-warm", str(uuid.uuid4()), workdir / "warm.log"), 0)
    warm.destroy()

    # sequential
    starts, destroys = [], []
    for name, uid in names("seq"):
        t0 = time.perf_counter()
        dom = conn.createXML(guest_xml(name, uid, workdir / f"{name}.log"), 0)
        starts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dom.destroy()
        destroys.append(time.perf_counter() - t0)
    results["start_seq"], results["destroy_seq"] = starts, destroys

    # concurrent: all guests at once, each in its own thread on one connection
    doms: dict[int, object] = {}
    lat: dict[str, list[float]] = {"start": [], "destroy": []}
    lock = threading.Lock()

    def run_all(fn) -> float:
        threads = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    conc = names("conc")

    def start_one(i: int) -> None:
        name, uid = conc[i]
        t0 = time.perf_counter()
        doms[i] = conn.createXML(guest_xml(name, uid, workdir / f"{name}.log"), 0)
        with lock:
            lat["start"].append(time.perf_counter() - t0)

    def destroy_one(i: int) -> None:
        t0 = time.perf_counter()
        doms[i].destroy()
        with lock:
            lat["destroy"].append(time.perf_counter() - t0)

    results["start_conc_wall"] = [run_all(start_one)]
    results["start_conc"] = lat["start"]
    results["destroy_conc_wall"] = [run_all(destroy_one)]
    results["destroy_conc"] = lat["destroy"]

    # autodestroy: close the owning connection, time until QEMU has exited
    autod = []
    for name, uid in names("ad"):
        owner = lv.open(uri)
        owner.createXML(guest_xml(name, uid, workdir / f"{name}.log"), lv.VIR_DOMAIN_START_AUTODESTROY)
        pidfd = os.pidfd_open(qemu_pid_for(uid))
        t0 = time.perf_counter()
        owner.close()
        wait_exit(pidfd)
        autod.append(time.perf_counter() - t0)
        os.close(pidfd)
    results["autodestroy"] = autod
    conn.close()
    return results


def run_side(python: str, module: str, uri: str, n: int, env: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="pyvirt-bench-") as tmp:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        out = subprocess.run([python, __file__, "--measure", module, uri, "--guests", str(n), "--workdir", tmp],
                             capture_output=True, text=True, env=env, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{module} side failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guests", type=int, default=20)
    ap.add_argument("--no-libvirt", action="store_true", help="measure pyvirt only")
    ap.add_argument("--measure", nargs=2, metavar=("MODULE", "URI"), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.measure:
        module, uri = args.measure
        res = measure(module, uri, args.guests, Path(args.workdir))
        res["rss_kib"] = [rss_kib(os.getpid())]   # embedded: the manager lives in this process
        print(json.dumps(res))
        return 0

    if not TINY.exists():
        subprocess.run(["bash", str(REPO / "guests" / "build.sh")], check=True)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pyvirt-bench-root-") as root:
        os.chmod(root, 0o711)   # QEMU runs unprivileged: it must reach the files here
        env = dict(os.environ, PYTHONPATH=str(REPO))
        rows["pyvirt (embedded)"] = run_side(sys.executable, "pyvirt", f"qemu:///embed?root={root}",
                                             args.guests, env)
    sys.path.insert(0, str(REPO / "tests"))
    from daemons import Pyvirtd
    with tempfile.TemporaryDirectory(prefix="pyvirtd-bench-") as wd:
        os.chmod(wd, 0o711)   # QEMU runs unprivileged: it must reach the files here
        daemon = Pyvirtd(Path(wd) / "host")
        try:
            daemon.start()
            side = run_side("/usr/bin/python3", "libvirt", daemon.uri, args.guests)
            side["rss_kib"] = [rss_kib(daemon.pid)]
            rows["pyvirtd (python3-libvirt)"] = side
        finally:
            daemon.cleanup()
    if not args.no_libvirt:
        sys.path.insert(0, str(REPO / "bench"))
        try:
            from libvirt_ref import LibvirtHost, libvirt_available
        except ImportError as exc:
            print(f"libvirt reference skipped: {exc}")
        else:
            ok, why = libvirt_available()
            if not ok:
                print(f"libvirt reference skipped: {why}")
            else:
                with tempfile.TemporaryDirectory(prefix="libvirt-ref-") as wd:
                    with LibvirtHost(Path(wd), tcp_port=16609) as host:
                        side = run_side("/usr/bin/python3", "libvirt", host.uri, args.guests)
                        side["rss_kib"] = [host.rss_kib()]
                        rows["libvirtd 9.0 (python3-libvirt)"] = side
    print_table(rows, args.guests)
    return 0


LABELS = [("start_seq", "start, sequential (median ms)"), ("destroy_seq", "destroy, sequential (median ms)"),
          ("start_conc", "start, all at once (median ms)"), ("start_conc_wall", "start, all at once (wall ms)"),
          ("destroy_conc", "destroy, all at once (median ms)"), ("destroy_conc_wall", "destroy, all at once (wall ms)"),
          ("autodestroy", "autodestroy: close → QEMU gone (median ms)")]


def print_table(rows: dict[str, dict], n: int) -> None:
    sides = list(rows)
    print(f"\nLifecycle of {n} tiny TCG guests (128 MiB), medians; ratio = pyvirtd / libvirtd")
    for side in sides:
        print(f"  [{sides.index(side) + 1}] {side}")
    print(f"{'':44}" + "".join(f"{'[' + str(i + 1) + ']':>10}" for i in range(len(sides))) + "   ratio")
    for key, label in LABELS:
        vals = [statistics.median(rows[s][key]) * 1000 for s in sides]
        line = f"{label:44}" + "".join(f"{v:>10.1f}" for v in vals)
        if len(vals) == 3 and vals[2]:
            line += f"   {vals[1] / vals[2]:.2f}"
        print(line)
    rss = [rows[s]["rss_kib"][0] / 1024 for s in sides]
    print(f"{'manager RSS (MiB)':44}" + "".join(f"{v:>10.1f}" for v in rss))


if __name__ == "__main__":
    sys.exit(main())
