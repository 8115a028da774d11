#!/usr/bin/env python3
"""Live migration without shared storage (``--copy-storage-all``): pyvirtd vs libvirtd 9.0.

Same run, same client (Debian's python3-libvirt, ``migrate3`` with
``VIR_MIGRATE_LIVE | VIR_MIGRATE_NON_SHARED_DISK``, the disk moved to the
destination host's directory by ``destination_xml``).  The guest is the tiny
test guest (halted, 128 MiB) with one 1 GiB qcow2 disk of which 512 MiB are
written.  The destination image is created beforehand on both sides
(libvirt 9.0 pre-creates a missing file only inside a storage pool), so both
measure the copy itself: NBD server, mirror to READY, RAM, switchover.

Almost all of the wall time is QEMU's mirror pushing 512 MiB through NBD,
the same QEMU code under both daemons, so on a shared machine the figure
follows the load of the moment more than the daemon.  Both pairs of daemons
therefore run side by side and take turns, one migration each per round,
the order swapped every round (ABBA...), after one warm-up migration per
pair that is not counted (each daemon's first QEMU, a cold page cache):
both sides see the same machine.

Reported per daemon: median wall time of the migrate call over ``--runs``
fresh guests, and MB/s = 512 MiB written / wall time.

Usage: bench/storage_migration.py [--runs N] [--no-libvirt]
(:func:`measure` is the row (d) function for bench/converge.py.)
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from pairs import libvirtd_pair, pyvirtd_pair  # noqa: E402

DISK_SIZE = 1 << 30
WRITTEN = 512 << 20

# The client, run by /usr/bin/python3 (python3-libvirt) for both daemons.
CLIENT = r'''
import json, sys, time, libvirt
cfg = json.loads(sys.argv[1])
src, dst = libvirt.open(cfg["uris"][0]), libvirt.open(cfg["uris"][1])
dom = src.createXML(cfg["xml"], 0)
deadline = time.monotonic() + 60
while cfg["ready"] not in open(cfg["log"], errors="replace").read():
    if time.monotonic() > deadline:
        sys.exit("guest not ready")
    time.sleep(0.05)
dest_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE).replace(cfg["src"], cfg["dst"])
params = {"destination_xml": dest_xml, "migrate_uri": cfg["miguri"], "listen_address": "127.0.0.1"}
flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_NON_SHARED_DISK
t0 = time.perf_counter()
moved = dom.migrate3(dst, params, flags)
wall = time.perf_counter() - t0
moved.destroy()
print(json.dumps({"wall": wall}))
'''


def _qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def make_source_image(path: Path) -> None:
    """1 GiB qcow2, its first 512 MiB written (64 MiB patterns, so nothing is zero)."""
    _qemu_img("create", "-q", "-f", "qcow2", str(path), str(DISK_SIZE))
    cmds = []
    for n in range(WRITTEN >> 26):
        cmds += ["-c", f"write -P {0x11 + n:#x} {n << 26} {1 << 26}"]
    subprocess.run(["qemu-io", *cmds, str(path)], check=True, capture_output=True)


def guest_xml(name: str, log: Path, disk: Path) -> str:
    from guests import TINY
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{TINY}</kernel></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
  </devices>
</domain>"""


def measure_one(uris: list[str], miguris: list[str], work: Path, n: int) -> float:
    """One ``--copy-storage-all`` migration of a fresh guest A → B: the migrate call's wall seconds
    (the destination image checked identical to the source afterwards)."""
    src_dir, dst_dir = work / f"src{n}", work / f"dst{n}"
    src_dir.mkdir(parents=True, exist_ok=True)
    dst_dir.mkdir(parents=True, exist_ok=True)
    for d in (src_dir, dst_dir):
        os.chmod(d, 0o777)
    src, dst = src_dir / "disk.qcow2", dst_dir / "disk.qcow2"
    make_source_image(src)
    _qemu_img("create", "-q", "-f", "qcow2", str(dst), str(DISK_SIZE))
    for image in (src, dst):
        os.chmod(image, 0o666)
    log = src_dir / "serial.log"
    xml = guest_xml("benchstorage", log, src)
    # RAM on a port inside the destination's range but not its first, which both
    # daemons give the NBD server
    host, port = miguris[1].rsplit(":", 1)
    cfg = {"uris": uris, "miguri": f"{host}:{int(port) + 5}", "xml": xml, "src": f"'{src}'", "dst": f"'{dst}'",
           "log": str(log), "ready": "PYVIRT-GUEST-READY"}
    out = subprocess.run(["/usr/bin/python3", "-c", CLIENT, json.dumps(cfg)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    wall = json.loads(out.stdout.strip().splitlines()[-1])["wall"]
    cmp = subprocess.run(["qemu-img", "compare", str(src), str(dst)], capture_output=True, text=True)
    if cmp.returncode != 0:
        raise RuntimeError(f"destination image differs: {cmp.stdout}")
    src.unlink()
    dst.unlink()
    return wall


def summary(walls: list[float]) -> dict:
    wall = statistics.median(walls)
    return {"wall": wall, "mb_s": WRITTEN / 1e6 / wall, "walls": walls}


def measure(uris: list[str], miguris: list[str], work: Path, runs: int = 3) -> dict:
    """Row (d): ``--copy-storage-all`` of a 1 GiB disk with 512 MiB written, A → B,
    ``runs`` fresh guests after one warm-up; median wall seconds and MB/s (written bytes / wall)."""
    measure_one(uris, miguris, work, 0)
    return summary([measure_one(uris, miguris, work, n) for n in range(1, runs + 1)])


def interleaved(sides: dict[str, tuple[list[str], list[str], Path]], runs: int) -> dict[str, dict]:
    """One warm-up per side, then ``runs`` rounds of one migration per side, the order swapped
    every round, so that a load change on the machine falls on both."""
    for name, (uris, miguris, work) in sides.items():
        measure_one(uris, miguris, work, 0)
    walls: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for n in range(1, runs + 1):
        for name in (order if n % 2 else order[::-1]):
            uris, miguris, work = sides[name]
            walls[name].append(measure_one(uris, miguris, work, n))
    return {name: summary(w) for name, w in walls.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-libvirt", action="store_true")
    args = ap.parse_args()
    from guests import ensure_guests
    ensure_guests()
    with tempfile.TemporaryDirectory(prefix="pyvirt-storagebench-") as tmp:
        os.chmod(tmp, 0o711)
        work = Path(tmp)
        with contextlib.ExitStack() as stack:
            uris, miguris = stack.enter_context(pyvirtd_pair(work))
            sides = {"pyvirtd": (uris, miguris, work / "p")}
            if not args.no_libvirt:
                pair = stack.enter_context(libvirtd_pair(work, 61300))
                if pair is not None:
                    sides["libvirtd 9.0"] = (pair[0], pair[1], work / "l")
            results = interleaved(sides, args.runs)
    print("\n--copy-storage-all, 1 GiB qcow2 disk with 512 MiB written, tiny guest (128 MiB); "
          f"median of {args.runs}, taking turns after a warm-up each")
    print(f"{'':12}{'wall (s)':>10}{'MB/s':>10}   runs (s)")
    for side, r in results.items():
        print(f"{side:12}{r['wall']:>10.2f}{r['mb_s']:>10.0f}   " + ", ".join(f"{w:.2f}" for w in r["walls"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
