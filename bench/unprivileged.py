#!/usr/bin/env python3
"""What running QEMU unprivileged costs per start: the labelling step and the spawn.

Starts the tiny guest N times (default 50) under the QEMU driver in three
configurations and prints medians:

* ``root``: QEMU as root, ``dynamic_ownership = 0`` (nothing labelled, no switch);
* ``hook``: the default — libvirt-qemu:kvm, the DAC driver labelling the
  guest's kernel and serial file (xattrs, lock, chown), ids and capabilities
  dropped in the child before exec (what pyvirtd does on uvloop);
* ``setpriv``: the same with the ids dropped by util-linux's setpriv (what
  the embedded driver does on asyncio's loop, which then keeps vfork).

For each: the labelling step (set + restore), the spawn call (until the
event loop gets control back: after the exec of setpriv, or of QEMU
itself), and the whole start (until QEMU answers QMP and its CPUs run).
The configurations take turns, so the host's load hits all alike.  Run as
root; on uvloop like pyvirtd (``--loop asyncio``: like the embedded driver).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from guests import ensure_guests, tiny_xml  # noqa: E402
from pyvirt import conf  # noqa: E402
from pyvirt.drivers.qemu import process as procmod  # noqa: E402
from pyvirt.drivers.qemu.command import DOMAIN_TYPES  # noqa: E402
from pyvirt.drivers.qemu.config import QemuConfig  # noqa: E402
from pyvirt.drivers.qemu.driver import QemuDriver  # noqa: E402
from pyvirt.drivers.qemu.jobs import JobKind  # noqa: E402
from pyvirt.enums import EventStoppedDetail, ShutoffReason  # noqa: E402

CONFIGS = {
    "root": dict(user="root", group="root", dynamic_ownership=False),
    "hook": {},          # ids dropped in the child before exec (pyvirtd's way on uvloop)
    "setpriv": {},       # ids dropped by setpriv between its exec and QEMU's (asyncio's way)
}


def _timed(record: list[float], fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - t)
    return wrapper


def _timed_async(record: list[float], fn):
    async def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - t)
    return wrapper


class Bench:
    """One QEMU driver in one configuration, with its steps timed."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        os.chmod(self.dir, 0o711)
        self.drv = QemuDriver(QemuConfig(root=self.dir / "root", **CONFIGS[name]))
        self.sets: list[float] = []
        self.restores: list[float] = []
        self.spawns: list[float] = []
        self.starts: list[float] = []
        sec = self.drv.security
        sec.set_all_label = _timed(self.sets, sec.set_all_label)              # type: ignore[method-assign]
        sec.restore_all_label = _timed(self.restores, sec.restore_all_label)  # type: ignore[method-assign]

    async def once(self, i: int, real_exec) -> None:
        d = conf.parse(tiny_xml(f"u{i}", self.dir / f"u{i}.log"), DOMAIN_TYPES, "qemu", inactive=True)
        obj = self.drv._new_obj(d, persistent=False)
        self.drv.domains.add(obj)
        procmod._hook_is_cheaper = lambda: self.name != "setpriv"  # type: ignore[assignment]
        procmod.asyncio.create_subprocess_exec = _timed_async(self.spawns, real_exec)  # type: ignore[attr-defined]
        t = time.perf_counter()
        async with self.drv.job_guard(obj, JobKind.MODIFY):
            await self.drv.start(obj)
        self.starts.append(time.perf_counter() - t)
        await self.drv.kill(obj, ShutoffReason.DESTROYED, EventStoppedDetail.DESTROYED)

    def figures(self) -> dict[str, tuple[float, float]]:
        """(median, minimum) of each step; the first start warms caches up."""
        label = [a + b for a, b in zip(self.sets[1:], self.restores[1:])] or [0.0]
        return {key: (statistics.median(v), min(v))
                for key, v in (("label", label), ("spawn", self.spawns[1:]), ("start", self.starts[1:]))}


async def run(workdir: Path, count: int) -> dict[str, dict[str, float]]:
    benches = [Bench(name, workdir) for name in CONFIGS]
    for b in benches:
        await b.drv.initialize()
    real_exec, real_choice = asyncio.create_subprocess_exec, procmod._hook_is_cheaper
    try:
        for i in range(count + 1):        # interleaved, so the host's load hits all alike
            for b in benches:
                await b.once(i, real_exec)
    finally:
        procmod.asyncio.create_subprocess_exec = real_exec  # type: ignore[attr-defined]
        procmod._hook_is_cheaper = real_choice  # type: ignore[assignment]
        for b in benches:
            await b.drv.close()
    return {b.name: b.figures() for b in benches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=50)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="uvloop as pyvirtd, or asyncio's own as the embedded driver")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the unprivileged start switches QEMU's user")
    ensure_guests()
    with tempfile.TemporaryDirectory(prefix="pyvirt-unpriv-") as tmp:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        if args.loop == "uvloop":
            import uvloop                    # what pyvirtd runs on
            results = uvloop.run(run(Path(tmp), args.count))
        else:
            results = asyncio.run(run(Path(tmp), args.count))
    print(f"tiny guest, {args.count} starts each on {args.loop}; median (minimum), ms")
    print(f"{'configuration':<14} {'label+restore':>16} {'spawn call':>16} {'whole start':>18}")
    for name, r in results.items():
        cells = [f"{m * 1e3:.2f} ({lo * 1e3:.2f})" for m, lo in (r["label"], r["spawn"], r["start"])]
        print(f"{name:<14} {cells[0]:>16} {cells[1]:>16} {cells[2]:>18}")
    base = results["root"]
    for name in ("hook", "setpriv"):
        r = results[name]
        print(f"{name}: labelling {(r['label'][0] - base['label'][0]) * 1e3:.2f} ms, whole start "
              f"{(r['start'][0] - base['start'][0]) * 1e3:+.1f} ms (median) over root")

if __name__ == "__main__":
    main()
