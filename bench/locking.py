#!/usr/bin/env python3
"""Lock manager figures: what disk leases add to a start and to a migration, and
how fast a host cut off from etcd fences its guest.

- start latency: ``create()`` of a tiny guest with one disk on a pyvirtd with
  ``lock_manager`` nop, lockd (a lockspace directory) and etcd (a real etcd on
  loopback), median of N; the *added* latency is the difference to nop, and
  also measured where it is spent: the plugin's register + acquire through a
  real pyvirtlockd (goal: lockd ≤ 5 ms, etcd ≤ 20 ms median);
- migration: a live migration A → B (client-driven v3), nop against etcd, and
  the hand-over itself (source inquire + release, destination register +
  acquire with the state), goal ≤ 10 ms;
- fencing: etcd frozen with SIGSTOP while a guest with
  ``<on_lockfailure>pause</on_lockfailure>`` runs; the time until pyvirtd
  reports it paused, over several trials (goal ≤ TTL − 1 s).

Hosts are tests/lease_hosts.py's: pyvirtd in mount namespaces of their own
sharing one disk path.  Usage: bench/locking.py [--starts N] [--migrations N]
[--fences N] [--ttl S] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import pyvirt  # noqa: E402

from etcd_server import EtcdServer  # noqa: E402
from guests import ensure_guests, make_traversable  # noqa: E402
from lease_hosts import LeaseCluster, guest_xml  # noqa: E402


# the hosts' "shared" disk is a local file behind each host's mount namespace: libvirt's
# shared-storage check cannot know, so the migrations say so
MIGRATE_FLAGS = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_UNSAFE


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def start_latency(work: Path, managers: tuple[str, ...], n: int) -> dict[str, list[float]]:
    """create() of a guest with one disk, the managers' hosts taking turns."""
    clusters = {}
    doms = {}
    conns = []
    try:
        for manager in managers:
            cluster = clusters[manager] = LeaseCluster(work / f"start-{manager}", lock_manager=manager)
            cluster.start(("hostA",))
            conn = pyvirt.open(cluster.host("hostA").uri)
            conns.append(conn)
            doms[manager] = conn.defineXML(guest_xml("lat", cluster.disk, cluster.root / "lat.log"))
        times: dict[str, list[float]] = {m: [] for m in managers}
        for i in range(n + 2):
            for manager in (managers if i % 2 == 0 else managers[::-1]):
                dom = doms[manager]
                t0 = time.perf_counter()
                dom.create()
                t1 = time.perf_counter()
                dom.destroy()
                if i >= 2:               # the first starts warm caches
                    times[manager].append(t1 - t0)
        return times
    finally:
        for conn in conns:
            conn.close()
        for cluster in clusters.values():
            cluster.stop()


# each step of the client-driven v3 sequence, timed in this process (where the lease work
# of a migration lands: Begin inquires, Perform releases, Finish acquires, Confirm's end
# of the source QEMU deletes what is left)
STEPS = (("_ClientSource", "begin"), ("_ClientDestination", "prepare"), ("_ClientSource", "perform"),
         ("_ClientDestination", "finish"), ("_ClientSource", "confirm"))
_step_times: dict[tuple[str, str], list[float]] = {}
_current = [""]


def _time_steps() -> None:
    from pyvirt import migration
    for cls_name, step in STEPS:
        cls = getattr(migration, cls_name, None)
        if cls is None or not hasattr(cls, step):
            continue
        original = getattr(cls, step)

        async def timed(self, *args, _original=original, _step=step, **kwargs):
            t0 = time.perf_counter()
            try:
                return await _original(self, *args, **kwargs)
            finally:
                if _current[0]:
                    _step_times.setdefault((_current[0], _step), []).append(time.perf_counter() - t0)
        setattr(cls, step, timed)


def migration_times(work: Path, managers: tuple[str, ...], n: int) -> dict[str, list[float]]:
    """Live migrations back and forth, the managers' pairs of hosts taking turns
    (so a busy moment of the machine costs all of them alike)."""
    _time_steps()
    clusters = {}
    conns: dict[str, tuple] = {}
    try:
        for manager in managers:
            cluster = clusters[manager] = LeaseCluster(work / f"mig-{manager}", lock_manager=manager).start()
            a, b = pyvirt.open(cluster.host("hostA").uri), pyvirt.open(cluster.host("hostB").uri)
            conns[manager] = (a, b)
            a.defineXML(guest_xml("mig", cluster.disk, cluster.root / "mig.log")).create()
        times: dict[str, list[float]] = {m: [] for m in managers}
        for i in range(n + 2):
            for manager in (managers if i % 2 == 0 else managers[::-1]):
                a, b = conns[manager]
                src, dst = (a, b) if i % 2 == 0 else (b, a)
                dom = src.lookupByName("mig")
                _current[0] = manager if i >= 2 else ""
                t0 = time.perf_counter()
                dom.migrate(dst, MIGRATE_FLAGS)
                if i >= 2:
                    times[manager].append(time.perf_counter() - t0)
        _current[0] = ""
        return times
    finally:
        for a, b in conns.values():
            a.close()
            b.close()
        for cluster in clusters.values():
            cluster.stop()


def plugin_figures(work: Path, n: int) -> dict[str, dict[str, float]]:
    """The lease work itself, through real lock daemons (and etcd): a start's register +
    acquire, a destroy's forget, and a migration's hand-over between two hosts."""
    from pyvirt import locking
    from pyvirt.locking import Disk, Guest

    out: dict[str, dict[str, float]] = {}
    etcd = EtcdServer(work / "plugin-etcd").start()
    owners = [subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
              for _ in range(2)]
    sockets = []
    try:
        for manager in ("lockd", "etcd"):
            def plugin(host: str):
                settings = {"lock_file_lockspace_dir": str(work / "plugin-lockspace"),
                            "lock_etcd_endpoints": [etcd.endpoint], "lock_etcd_ttl": 10,
                            "lock_etcd_prefix": "/bench/", "host_uuid": host}
                p = locking.new_manager(manager, settings, work / f"plugin-{manager}-{host}" / "run",
                                        work / f"plugin-{manager}-{host}" / "log")
                sockets.append(p.client.socket_path)
                return p

            async def run() -> dict[str, float]:
                a, b = plugin("A"), plugin("B")
                disks = (Disk(str(work / "plugin-disk.img")),)
                starts, forgets, handovers = [], [], []
                for i in range(n + 5):
                    g = Guest(f"00000000-0000-0000-0000-{i:012d}", f"g{i}", owners[0].pid, disks=disks)
                    t0 = time.perf_counter()
                    await a.register(g)
                    await a.acquire(g)
                    t1 = time.perf_counter()
                    # hand-over: Begin's inquire and the end's release on A, Finish's acquire on B
                    state = await a.inquire(g)
                    state = await a.release(g) or state
                    gb = Guest(g.uuid, g.name, owners[1].pid, disks=disks)
                    await b.register(gb)
                    await b.acquire(gb, state)
                    t2 = time.perf_counter()
                    await a.forget(g)
                    t3 = time.perf_counter()
                    await b.forget(gb)
                    if i >= 5:
                        starts.append(t1 - t0)
                        handovers.append(t2 - t1)
                        forgets.append(t3 - t2)
                await a.close()
                await b.close()
                return {"start_ms": median_ms(starts), "handover_ms": median_ms(handovers),
                        "forget_ms": median_ms(forgets)}
            out[manager] = asyncio.run(run())
    finally:
        for p in owners:
            p.kill()
            p.wait()
        for sock in sockets:
            try:
                os.kill(int(Path(str(sock) + ".pid").read_text().split()[0]), signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                pass
        etcd.stop()
    return out


def fencing_times(work: Path, trials: int, ttl: int) -> list[float]:
    cluster = LeaseCluster(work / "fence", ttl=ttl).start(("hostA",))
    try:
        conn = pyvirt.open(cluster.host("hostA").uri)
        try:
            dom = conn.defineXML(guest_xml("fence", cluster.disk, cluster.root / "fence.log", "pause"))
            dom.create()
            times = []
            for _ in range(trials):
                paused = threading.Event()

                def watch() -> None:
                    own = pyvirt.open(cluster.host("hostA").uri)
                    try:
                        mine = own.lookupByName("fence")
                        deadline = time.monotonic() + ttl * 3
                        while time.monotonic() < deadline:
                            if mine.state()[0] == pyvirt.VIR_DOMAIN_PAUSED:
                                paused.set()
                                return
                            time.sleep(0.005)
                    finally:
                        own.close()
                # a random phase of the renewal period: etcd freezes at any moment
                time.sleep(ttl / 3 * (len(times) % 3) / 3)
                t0 = time.perf_counter()
                cluster.etcd.pause()
                watcher = threading.Thread(target=watch)
                watcher.start()
                try:
                    if not paused.wait(ttl * 3):
                        raise RuntimeError("the guest was not paused")
                    times.append(time.perf_counter() - t0)
                finally:
                    cluster.etcd.resume()
                    watcher.join()
                try:
                    dom.resume()            # the same lease, if etcd came back within its TTL
                except pyvirt.libvirtError:
                    dom.destroy()
                    dom.create()
            dom.destroy()
            return times
        finally:
            conn.close()
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=30)
    parser.add_argument("--migrations", type=int, default=20)
    parser.add_argument("--plugin-rounds", type=int, default=100)
    parser.add_argument("--fences", type=int, default=6)
    parser.add_argument("--ttl", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/locking.py: needs root (each host is a mount namespace)", file=sys.stderr)
        return 1
    ensure_guests()
    with tempfile.TemporaryDirectory(prefix="pyvirt-bench-locking-") as tmp:
        work = Path(tmp)
        make_traversable(work)
        result: dict = {"start_ms": {}, "migration_ms": {}}
        for manager, t in start_latency(work, ("nop", "lockd", "etcd"), args.starts).items():
            result["start_ms"][manager] = {"median": median_ms(t), "min": min(t) * 1000, "n": len(t)}
        for manager, t in migration_times(work, ("nop", "lockd", "etcd"), args.migrations).items():
            result["migration_ms"][manager] = {"median": median_ms(t), "min": min(t) * 1000, "n": len(t)}
        result["migration_steps_ms"] = {f"{m}/{step}": median_ms(t) for (m, step), t in _step_times.items()}
        result["plugin_ms"] = plugin_figures(work, args.plugin_rounds)
        fences = fencing_times(work, args.fences, args.ttl)
        result["fencing_s"] = {"ttl": args.ttl, "max": max(fences), "median": statistics.median(fences),
                               "min": min(fences), "all": fences}
    s, m, p, f = result["start_ms"], result["migration_ms"], result["plugin_ms"], result["fencing_s"]
    rows = [
        ("start, nop (median)", f"{s['nop']['median']:.1f} ms", ""),
        ("start, lockd (median)", f"{s['lockd']['median']:.1f} ms",
         f"+{s['lockd']['median'] - s['nop']['median']:.1f} ms vs nop; lease work {p['lockd']['start_ms']:.2f} ms "
         "(goal ≤ 5 ms)"),
        ("start, etcd (median)", f"{s['etcd']['median']:.1f} ms",
         f"+{s['etcd']['median'] - s['nop']['median']:.1f} ms vs nop; lease work {p['etcd']['start_ms']:.2f} ms "
         "(goal ≤ 20 ms)"),
        ("live migration, nop (median)", f"{m['nop']['median']:.1f} ms", ""),
        ("live migration, etcd (median)", f"{m['etcd']['median']:.1f} ms",
         f"+{m['etcd']['median'] - m['nop']['median']:.1f} ms vs nop; hand-over {p['etcd']['handover_ms']:.2f} ms "
         "(goal ≤ 10 ms)"),
        ("fencing after etcd froze", f"max {f['max']:.2f} s", f"median {f['median']:.2f} s, TTL {f['ttl']} s "
         f"(goal ≤ {f['ttl'] - 1} s)"),
    ]
    steps = result["migration_steps_ms"]
    for _, step in STEPS:
        if f"etcd/{step}" in steps and f"nop/{step}" in steps:
            rows.append((f"  migration step {step}", f"{steps[f'etcd/{step}']:.1f} ms",
                         f"{steps[f'etcd/{step}'] - steps[f'nop/{step}']:+.1f} ms vs nop, "
                         f"{steps[f'etcd/{step}'] - steps[f'lockd/{step}']:+.1f} ms vs lockd"))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
