#!/usr/bin/env python3
"""Save and restore: pyvirtd in every image format beside libvirtd 9.0 (raw, gzip),
same run, same machine, same client.

The client is Debian's python3-libvirt for both daemons (run with the
system python3): per run it creates the guest, waits for its ready marker
plus 1 s, then times ``dom.save(path)`` and ``conn.restore(path)`` (the
calls ``virsh save`` / ``virsh restore`` make), notes the image's size,
checks the restored guest runs, and destroys it.  The guests have 512 MiB
of RAM (TCG): the tiny guest, halted after loading a 400 MiB module:

* ``random400``: random bytes: nothing to compress;
* ``text400``: Python sources, a 16 MiB stretch repeated: gzip's 32 KiB
  window never sees the repetition, zstd's long mode (128 MiB) does;
* ``letters400``: random letters and spaces in English-like proportions:
  compressible (to ~55%) with no repetition at all, so only the entropy
  coding counts.

Goals (closing note of the save/restore issue): raw save+restore ≤ 0.8×
libvirt's raw; zstd save+restore ≤ 0.3× libvirt's gzip, with a zstd file no
larger than gzip's on memory that compresses.

Usage: bench/save.py [--runs N] [--slow-runs N] [--formats raw,zstd,...]
                     [--guests random400,text400,letters400] [--no-libvirt] [--json FILE]
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
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

FORMATS = ("raw", "gzip", "bzip2", "xz", "lzop", "zstd")
SLOW = ("bzip2", "xz")                   # tens of seconds per save of 400 MiB: fewer runs
LIBVIRT_FORMATS = ("raw", "gzip")
MODULE_MIB = 400
GUESTS = ("random400", "text400", "letters400")
# letters400: byte value -> character, in roughly English proportions (space the commonest)
_LETTERS = {" ": 18, "e": 10, "t": 7, "a": 6, "o": 6, "i": 6, "n": 6, "s": 5, "h": 5, "r": 5, "d": 3,
            "l": 3, "c": 2, "u": 2, "m": 2, "w": 2, "f": 2, "g": 2, "y": 2, "p": 2, "b": 1, "v": 1,
            "k": 1, "\n": 1}

# Run by /usr/bin/python3 with python3-libvirt; one JSON argument, one JSON line back.
CLIENT = r"""
import json, os, sys, time
import libvirt
cfg = json.loads(sys.argv[1])
conn = libvirt.open(cfg["uri"])
runs = []
for _ in range(cfg["runs"]):
    open(cfg["log"], "w").close()
    dom = conn.createXML(cfg["xml"], 0)
    deadline = time.time() + 120
    while "PYVIRT-GUEST-READY" not in open(cfg["log"], errors="replace").read():
        if time.time() > deadline:
            raise SystemExit("guest not ready")
        time.sleep(0.05)
    time.sleep(1.0)
    t0 = time.perf_counter()
    dom.save(cfg["image"])
    t1 = time.perf_counter()
    size = os.path.getsize(cfg["image"])
    conn.restore(cfg["image"])
    t2 = time.perf_counter()
    dom = conn.lookupByName(cfg["name"])
    state = dom.state()[0]
    dom.destroy()
    os.unlink(cfg["image"])
    if state != libvirt.VIR_DOMAIN_RUNNING:
        raise SystemExit(f"restored guest is in state {state}, not running")
    runs.append({"save": t1 - t0, "restore": t2 - t1, "size": size})
    time.sleep(0.5)
print(json.dumps(runs))
"""


def guest_xml(name: str, log: Path, module: Path) -> str:
    from guests import TINY
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{TINY}</kernel>
    <initrd>{module}</initrd>
  </os>
  <devices>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
  </devices>
</domain>"""


def make_modules(work: Path, which: list[str]) -> dict[str, Path]:
    size = MODULE_MIB << 20
    out: dict[str, Path] = {}
    if "random400" in which:
        out["random400"] = work / "random400.bin"
        with open(out["random400"], "wb") as f:
            for _ in range(MODULE_MIB):
                f.write(os.urandom(1 << 20))
    if "text400" in which:
        stretch = bytearray()
        lib = Path(os.__file__).parent
        for src in sorted(lib.rglob("*.py")):
            stretch += src.read_bytes()
            if len(stretch) >= 16 << 20:
                break
        del stretch[16 << 20:]
        out["text400"] = work / "text400.bin"
        with open(out["text400"], "wb") as f:
            for _ in range(size // len(stretch)):
                f.write(stretch)
            f.write(stretch[:size % len(stretch)])
    if "letters400" in which:
        scale = 256 / sum(_LETTERS.values())
        table = b"".join(ch.encode() * max(1, round(n * scale)) for ch, n in _LETTERS.items())
        table = (table * 2)[:256]
        out["letters400"] = work / "letters400.bin"
        with open(out["letters400"], "wb") as f:
            for _ in range(MODULE_MIB):
                f.write(os.urandom(1 << 20).translate(table))
    return out


def run_client(uri: str, work: Path, guest: str, module: Path, runs: int) -> list[dict]:
    name = f"bench-{guest}"
    log = work / f"{name}.log"
    cfg = {"uri": uri, "xml": guest_xml(name, log, module), "log": str(log), "name": name,
           "image": str(work / f"{name}.save"), "runs": runs}
    out = subprocess.run(["/usr/bin/python3", "-c", CLIENT, json.dumps(cfg)],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"client failed on {uri}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def pyvirtd_host(work: Path, fmt: str) -> Iterator[str]:
    from daemons import Pyvirtd
    host = Pyvirtd(work / f"pyvirtd-{fmt}", extra_config=f'save_image_format = "{fmt}"')
    try:
        host.start()
        yield host.uri
    finally:
        host.cleanup()


@contextlib.contextmanager
def libvirtd_host(work: Path, fmt: str) -> Iterator[str | None]:
    from libvirt_ref import LibvirtHost, libvirt_available, pick_free_ports
    ok, why = libvirt_available()
    if not ok:
        print(f"libvirt reference skipped: {why}", file=sys.stderr)
        yield None
        return
    host = LibvirtHost(work / f"libvirtd-{fmt}", pick_free_ports(1)[0], save_image_format=fmt,
                       cache_dir=work / "lvcache")
    try:
        host.start()
        yield host.uri
    finally:
        host.stop()


def summarize(runs: list[dict]) -> dict:
    return {"save": statistics.median(r["save"] for r in runs),
            "restore": statistics.median(r["restore"] for r in runs),
            "total": statistics.median(r["save"] + r["restore"] for r in runs),
            "size": statistics.median(r["size"] for r in runs), "n": len(runs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="save+restore cycles per format (median)")
    ap.add_argument("--slow-runs", type=int, default=1, help=f"cycles for {', '.join(SLOW)}")
    ap.add_argument("--formats", default=",".join(FORMATS), help="pyvirtd formats to measure")
    ap.add_argument("--guests", default=",".join(GUESTS))
    ap.add_argument("--no-libvirt", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    guests = [g for g in args.guests.split(",") if g]
    from guests import ensure_guests
    ensure_guests()
    results: dict[str, dict[str, dict]] = {g: {} for g in guests}
    with tempfile.TemporaryDirectory(prefix="pyvirt-savebench-") as tmp:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        work = Path(tmp)
        modules = make_modules(work, guests)
        for fmt in formats:
            with pyvirtd_host(work, fmt) as uri:
                for guest in guests:
                    runs = args.slow_runs if fmt in SLOW else args.runs
                    results[guest][f"pyvirtd {fmt}"] = summarize(run_client(uri, work, guest, modules[guest], runs))
                    _progress(guest, f"pyvirtd {fmt}", results[guest][f"pyvirtd {fmt}"])
        if not args.no_libvirt:
            for fmt in LIBVIRT_FORMATS:
                with libvirtd_host(work, fmt) as uri:
                    if uri is None:
                        break
                    for guest in guests:
                        results[guest][f"libvirt {fmt}"] = summarize(
                            run_client(uri, work, guest, modules[guest], args.runs))
                        _progress(guest, f"libvirt {fmt}", results[guest][f"libvirt {fmt}"])
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _progress(guest: str, side: str, r: dict) -> None:
    print(f"  {guest:10} {side:16} save {r['save']:7.2f} s  restore {r['restore']:6.2f} s  "
          f"{r['size'] / 1e6:8.1f} MB", file=sys.stderr, flush=True)


def print_table(results: dict[str, dict[str, dict]]) -> None:
    print("\nSave and restore, 512 MiB TCG guest holding 400 MiB of data (python3-libvirt client; medians)")
    print(f"{'guest':11}{'daemon and format':20}{'save s':>9}{'restore s':>11}{'total s':>9}{'file MB':>10}{'runs':>6}")
    for guest, rows in results.items():
        for side, r in rows.items():
            print(f"{guest:11}{side:20}{r['save']:9.2f}{r['restore']:11.2f}{r['total']:9.2f}"
                  f"{r['size'] / 1e6:10.1f}{r['n']:6d}")
    print("\nGoals")
    for guest, rows in results.items():
        raw, lv_raw = rows.get("pyvirtd raw"), rows.get("libvirt raw")
        zstd, lv_gzip = rows.get("pyvirtd zstd"), rows.get("libvirt gzip")
        if raw and lv_raw:
            ratio = raw["total"] / lv_raw["total"]
            print(f"{guest:11}raw save+restore vs libvirt raw: {ratio:.2f}x (goal <= 0.8) "
                  f"{'met' if ratio <= 0.8 else 'NOT met'}")
        if zstd and lv_gzip:
            ratio = zstd["total"] / lv_gzip["total"]
            print(f"{guest:11}zstd save+restore vs libvirt gzip: {ratio:.2f}x (goal <= 0.3) "
                  f"{'met' if ratio <= 0.3 else 'NOT met'}; file {zstd['size'] / 1e6:.1f} MB vs "
                  f"gzip's {lv_gzip['size'] / 1e6:.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
