#!/usr/bin/env python3
"""Migration throughput with and without ``--tls``: pyvirtd and libvirtd 9.0, same run.

The guest is bench/tunnel.py's: 400 MiB of random bytes (no page is zero or
repeats, so nothing compresses or is skipped) in 512 MiB, halted.  Each
figure is the first migration out of a freshly started QEMU, client-driven
(``migrate3``, python3-libvirt for both daemons: bench/migclient.py),
repeated ``--runs`` times, median; throughput = 400 MiB / QEMU's own
migration time (setup → completed events of the source QEMU).  With TLS both
QEMUs hold the test certificates (tests/pki.py, made with certtool in the
temporary directory) as ``migrate_tls_x509_cert_dir``; the server
certificate is for 127.0.0.1, the address the stream goes to.

Goal: pyvirt's TLS migration at least 0.9× its plain migration.  QEMU does
the encryption in both cases (GnuTLS on its migration thread), so the
daemons differ only in how they set it up.

bench/tls.py calls :func:`run` for its migration section; alone:
``bench/tls_migration.py [--runs N] [--no-libvirt]``.
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

import pairs  # noqa: E402
from tunnel import MODULE_MIB, fill_xml  # noqa: E402

MODES = ("plain", "tls")


def _pyvirtd_pair(work: Path, cert_dir: Path):
    return pairs.pyvirtd_pair(work, f'migrate_tls_x509_cert_dir = "{cert_dir}"', ("ta", "tb"))


@contextlib.contextmanager
def _libvirtd_pair(work: Path, cert_dir: Path, first_migration_port: int
                   ) -> Iterator[tuple[list[str], list[str]] | None]:
    from libvirt_ref import LibvirtHost, libvirt_available, pick_free_ports
    ok, why = libvirt_available()
    if not ok:
        print(f"libvirt reference skipped: {why}")
        yield None
        return

    class TLSHost(LibvirtHost):
        """A reference host whose qemu.conf also names the migration certificates."""

        def _qemu_conf(self) -> str:
            return super()._qemu_conf() + f'migrate_tls_x509_cert_dir = "{cert_dir}"\n'

    ports = pick_free_ports(2)
    mig = [first_migration_port, first_migration_port + 32]
    hosts = [TLSHost(work / f"tl{i}", ports[i], mig[i], mig[i] + 15, cache_dir=work / "lvcache")
             for i in range(2)]
    try:
        for h in hosts:
            h.start()
        yield [h.uri for h in hosts], [f"tcp://127.0.0.1:{p}" for p in mig]
    finally:
        for h in hosts:
            h.stop()


def _measure(uris: list[str], miguris: list[str], work: Path, module: Path, tls: bool, runs: int) -> dict:
    log = work / "fill400.log"
    cfg = {"uris": uris, "miguris": miguris, "xml": fill_xml(log, module), "log": str(log),
           "ready": "PYVIRT-GUEST-READY", "runs": runs, "name": "fill400", "mode": "direct",
           "fresh": True, "tls": tls}
    out = subprocess.run(["/usr/bin/python3", str(REPO / "bench" / "migclient.py"), json.dumps(cfg)],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{'tls' if tls else 'plain'}: {out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    qemu = [r["qemu"] for r in res if r["qemu"]]
    return {"wall": statistics.median(r["wall"] for r in res),
            "qemu": statistics.median(qemu) if qemu else None,
            "mbps": statistics.median(MODULE_MIB * (1 << 20) / q / 1e6 for q in qemu) if qemu else None,
            "runs": len(res)}


def _interleaved(uris: list[str], miguris: list[str], work: Path, module: Path, runs: int) -> dict[str, dict]:
    """plain and TLS one run at a time, alternating, so that a noisy moment of this
    shared machine hits both alike."""
    samples: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(runs):
        for mode in MODES:
            samples[mode].append(_measure(uris, miguris, work, module, mode == "tls", 1))
    out = {}
    for mode, got in samples.items():
        mbps = [s["mbps"] for s in got if s["mbps"]]
        out[mode] = {"wall": statistics.median(s["wall"] for s in got),
                     "mbps": statistics.median(mbps) if mbps else None, "runs": len(got)}
    return out


def run(runs: int = 3, libvirt: bool = True, work: Path | None = None, quiet: bool = False) -> dict[str, dict]:
    """Measure; return ``{daemon: {"plain"|"tls": {"mbps", "wall", "runs"}}}`` and print the table."""
    from guests import ensure_guests
    from pki import make_pki
    ensure_guests()
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyvirt-tlsmigbench-")))
        else:
            work = Path(work)
            work.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o711)   # QEMU runs unprivileged: it must reach the files here
        cert_dir = make_pki(work / "pki").qemu_dir
        module = work / "fill400.bin"
        with open(module, "wb") as f:
            for _ in range(MODULE_MIB):
                f.write(os.urandom(1 << 20))
        results: dict[str, dict] = {}
        with _pyvirtd_pair(work, cert_dir) as (uris, miguris):
            results["pyvirtd"] = _interleaved(uris, miguris, work, module, runs)
        if libvirt:
            with _libvirtd_pair(work, cert_dir, 61400) as pair:
                if pair is not None:
                    results["libvirtd 9.0"] = _interleaved(*pair, work, module, runs)
    if not quiet:
        print_table(results, runs)
    return results


def print_table(results: dict[str, dict], runs: int) -> None:
    print(f"\nmigration with --tls vs without: fill400 (400 MiB random in 512 MiB, TCG), "
          f"first hop, client-driven, median of {runs}")
    print(f"{'':24}" + "".join(f"{s:>16}" for s in results))
    for mode in MODES:
        print(f"{mode + ' MB/s':24}" + "".join(f"{results[s][mode]['mbps'] or 0:>16.0f}" for s in results))
        print(f"{mode + ' wall (ms)':24}" + "".join(f"{results[s][mode]['wall'] * 1000:>16.0f}" for s in results))
    for s in results:
        plain, tls = results[s]["plain"]["mbps"], results[s]["tls"]["mbps"]
        if plain and tls:
            goal = "  (goal >= 0.90)" if s == "pyvirtd" else ""
            print(f"{s}: TLS / plain throughput = {tls / plain:.2f}{goal}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-libvirt", action="store_true")
    args = ap.parse_args()
    run(args.runs, libvirt=not args.no_libvirt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
