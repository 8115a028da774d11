#!/usr/bin/env python3
"""Command-line start-up: one ``pyvirt`` call beside one stock ``virsh`` call.

Both drive the same pyvirtd in the same run, in alternating rounds (so a
changing machine load weighs on both alike): ``list --all``, ``dominfo``,
``domstate`` of an idle running guest, and ``migrate --live`` of that guest
to a second pyvirtd and back (each tool migrates in turn).  Wall time per
call, process start to exit, medians (and min / p90).  The interpreter's own
start (``python -c pass``) is given for scale.  The project's goal for
``list``: <= 60 ms and <= 4x virsh; measured here, not asserted.

Usage: bench/cli.py [--rounds N] [--migrations N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from pairs import pyvirtd_pair  # noqa: E402

PYVIRT = str(Path(sys.executable).parent / "pyvirt")
PYTHON = sys.executable


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {out.stderr}")
    return took * 1000


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "min": ordered[0],
            "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], "n": len(ordered)}


def run(work: Path, args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    import pyvirt
    from guests import READY, tiny_xml, wait_for_text
    results: dict[str, dict[str, dict[str, float]]] = {}
    with pyvirtd_pair(work) as (uris, _):
        a, b = uris
        conn = pyvirt.open(a)
        log = work / "idle.log"
        conn.createXML(tiny_xml("idle", log), 0)
        wait_for_text(log, READY)
        for n in range(5):            # a list worth printing
            conn.defineXML(tiny_xml(f"spare{n}", work / f"spare{n}.log"))
        conn.close()
        queries = {"list --all": ["list", "--all"], "dominfo": ["dominfo", "idle"], "domstate": ["domstate", "idle"]}
        times: dict[str, dict[str, list[float]]] = {q: {"pyvirt": [], "virsh": []} for q in queries}
        times["python -c pass"] = {"python": []}
        for _ in range(args.rounds):
            times["python -c pass"]["python"].append(wall([PYTHON, "-c", "pass"]))
            for name, words in queries.items():
                times[name]["pyvirt"].append(wall([PYVIRT, "-c", a, *words]))
                times[name]["virsh"].append(wall(["virsh", "-c", a, *words]))
        # migrate the idle guest A -> B -> A ..., the tools taking turns in each direction
        times["migrate --live"] = {"pyvirt": [], "virsh": []}
        where = 0
        for n in range(2 * args.migrations):
            tool = ("pyvirt", "virsh")[(n // 2) % 2]
            src, dst = uris[where], uris[1 - where]
            argv = [PYVIRT if tool == "pyvirt" else "virsh", "-c", src, "migrate", "--live", "idle", dst]
            times["migrate --live"][tool].append(wall(argv))
            where = 1 - where
        for name, by_tool in times.items():
            results[name] = {tool: summary(v) for tool, v in by_tool.items()}
    return results


def compile_bytecode() -> None:
    """Write the package's bytecode cache first, as pip install does: with
    PYTHONDONTWRITEBYTECODE set, an edited checkout would otherwise recompile
    every changed module on every call and the figures would measure that."""
    import compileall
    compileall.compile_dir(str(REPO / "pyvirt"), quiet=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30, help="calls per tool and query command")
    ap.add_argument("--migrations", type=int, default=4, help="migrations per tool")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="pyvirt-bench-cli-") as tmp:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        results = run(Path(tmp), args)
    print("\nwall time per call, ms (median; min / p90), pyvirt and virsh 9.0 on the same pyvirtd, same run")
    print(f"{'command':<16}{'pyvirt':>26}{'virsh':>26}{'ratio':>8}")
    for name, by_tool in results.items():
        if name == "python -c pass":
            continue
        p, v = by_tool["pyvirt"], by_tool["virsh"]
        print(f"{name:<16}{p['median']:>10.1f} ({p['min']:.1f} / {p['p90']:.1f}){'':>3}"
              f"{v['median']:>10.1f} ({v['min']:.1f} / {v['p90']:.1f}){'':>3}{p['median'] / v['median']:>6.1f}x")
    base = results["python -c pass"]["python"]
    print(f"{'python -c pass':<16}{base['median']:>10.1f} ({base['min']:.1f} / {base['p90']:.1f})")
    lst = results["list --all"]
    print(f"\ngoal for list: <= 60 ms and <= 4x virsh: {lst['pyvirt']['median']:.1f} ms, "
          f"{lst['pyvirt']['median'] / lst['virsh']['median']:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
