#!/usr/bin/env python3
"""Storage: pyvirtd's storage driver beside libvirtd 9.0's, same machine, same run.

Both daemons get a ``dir`` pool of their own on the same file system; the
same stock clients drive both, in alternating rounds (a changing machine
load weighs on both alike):

* create + delete of 100 qcow2 volumes (python3-libvirt ``pool.createXML``,
  then ``vol.delete``), total ms;
* upload and download of a 1 GiB sparse raw volume (64 MiB of data in 16
  extents, the rest holes) with stock ``virsh vol-upload --sparse`` /
  ``vol-download --sparse``, MB/s of the volume's size, and the bytes checked;
* ``virt-install --import --virt-type qemu --disk pool=P,size=1 --network
  none --boot kernel=TINY --controller usb,model=none --noautoconsole`` end
  to end (s), the guest destroyed and undefined (with its volume) after each
  round.

Medians of the rounds.  The goal (issue #14): each <= libvirtd's time.

Usage: bench/storage.py [--rounds N] [--volumes N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from daemons import Pyvirtd  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"
GiB = 1 << 30

VOLUMES = r"""
import json, sys, time, libvirt
uri, pool, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = libvirt.open(uri)
p = c.storagePoolLookupByName(pool)
xml = ("<volume><name>b%d.qcow2</name><capacity unit='GiB'>1</capacity>"
       "<target><format type='qcow2'/></target></volume>")
t0 = time.perf_counter()
vols = [p.createXML(xml % i, 0) for i in range(n)]
t1 = time.perf_counter()
for v in vols:
    v.delete(0)
t2 = time.perf_counter()
print(json.dumps({"create_ms": (t1 - t0) * 1000, "delete_ms": (t2 - t1) * 1000}))
"""


def virsh(uri: str, *args: str) -> float:
    start = time.perf_counter()
    out = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {out.stderr.strip()}")
    return took


def sparse_image(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(GiB)
        for n in range(16):
            f.seek(n * (GiB // 16))
            f.write(os.urandom(4 << 20))


def same_bytes(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


class Side:
    def __init__(self, name: str, uri: str, pool_dir: Path, work: Path) -> None:
        self.name, self.uri, self.pool_dir, self.work = name, uri, pool_dir, work
        self.figures: dict[str, list[float]] = {}
        self.notes: list[str] = []

    def add(self, what: str, value: float) -> None:
        self.figures.setdefault(what, []).append(value)

    def setup(self) -> None:
        virsh(self.uri, "pool-create-as", "bench", "dir", "--target", str(self.pool_dir), "--build")

    def volumes(self, n: int) -> None:
        out = subprocess.run([SYSTEM_PYTHON, "-c", VOLUMES, self.uri, "bench", str(n)], capture_output=True,
                             text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        got = json.loads(out.stdout.splitlines()[-1])
        self.add(f"create {n} qcow2 (ms)", got["create_ms"])
        self.add(f"delete {n} qcow2 (ms)", got["delete_ms"])
        self.add(f"create+delete {n} qcow2 (ms)", got["create_ms"] + got["delete_ms"])

    def stream(self, image: Path) -> None:
        virsh(self.uri, "vol-create-as", "bench", "sparse.raw", "1G", "--allocation", "0")
        try:
            up = virsh(self.uri, "vol-upload", "--sparse", "--pool", "bench", "sparse.raw", str(image))
            back = self.work / f"{self.name}-down.raw"
            down = virsh(self.uri, "vol-download", "--sparse", "--pool", "bench", "sparse.raw", str(back))
            if not same_bytes(image, back):
                raise RuntimeError(f"{self.name}: the downloaded volume differs from the uploaded image")
            back.unlink()
        finally:
            virsh(self.uri, "vol-delete", "--pool", "bench", "sparse.raw")
        self.add("upload 1 GiB sparse (MB/s)", GiB / 1e6 / up)
        self.add("download 1 GiB sparse (MB/s)", GiB / 1e6 / down)

    def virt_install(self, kernel: Path, n: int) -> None:
        if shutil.which("virt-install") is None:
            self.notes.append("virt-install not installed")
            return
        name = f"vi{n}"
        # TCG and no USB controller: the tiny guest needs neither KVM's CPU model nor USB,
        # and the same command line goes to both daemons
        argv = ["virt-install", "--connect", self.uri, "--import", "--name", name, "--memory", "128",
                "--virt-type", "qemu", "--disk", "pool=bench,size=1", "--network", "none",
                "--boot", f"kernel={kernel}", "--osinfo", "detect=on,require=off", "--graphics", "none",
                "--controller", "usb,model=none", "--noautoconsole"]
        start = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        took = time.perf_counter() - start
        try:
            if out.returncode != 0:
                self.notes.append(f"virt-install failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
                return
            self.add("virt-install end to end (s)", took)
        finally:
            subprocess.run(["virsh", "-c", self.uri, "destroy", name], capture_output=True)
            subprocess.run(["virsh", "-c", self.uri, "undefine", name, "--remove-all-storage"], capture_output=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--volumes", type=int, default=100)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    from guests import TINY, ensure_guests, private_copy
    ensure_guests()
    from libvirt_ref import LibvirtHost, libvirt_available, pick_free_ports
    with tempfile.TemporaryDirectory(prefix="pyvirt-bench-storage-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o711)   # QEMU runs unprivileged: it must reach the kernel and pools here
        kernel = private_copy(TINY, work)
        image = work / "sparse.img"
        sparse_image(image)
        daemon = Pyvirtd(work / "pyvirtd", new_session=True)
        sides = []
        host = None
        try:
            daemon.start()
            sides.append(Side("pyvirtd", daemon.uri, work / "pool-pyvirtd", work))
            ok, why = libvirt_available()
            if ok:
                host = LibvirtHost(work / "libvirtd", pick_free_ports(1)[0]).start()
                sides.append(Side("libvirtd 9.0", host.uri, work / "pool-libvirtd", work))
            else:
                print(f"libvirtd 9.0 not available ({why}): pyvirtd only", file=sys.stderr)
            for side in sides:
                side.setup()
            for n in range(args.rounds):
                for side in (sides if n % 2 == 0 else sides[::-1]):
                    side.volumes(args.volumes)
                    side.stream(image)
                    side.virt_install(kernel, n)
                    print(f"round {n + 1}: {side.name} done", file=sys.stderr, flush=True)
        finally:
            if host is not None:
                host.stop()
            daemon.cleanup()
    rows = sorted({what for side in sides for what in side.figures}, key=lambda w: (w[0] != "c", w))
    print(f"\nstorage, medians of {args.rounds} rounds, same clients against each daemon, same run")
    print(f"{'':<34}" + "".join(f"{s.name:>16}" for s in sides))
    for what in rows:
        print(f"{what:<34}" + "".join(f"{median(s.figures[what]):>16.1f}" if what in s.figures else f"{'n/a':>16}"
                                      for s in sides))
    for side in sides:
        for note in dict.fromkeys(side.notes):
            print(f"{side.name}: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps({s.name: {"figures": s.figures, "notes": s.notes} for s in sides},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
