"""Two hosts of each kind for the migration benchmarks: pyvirtd and libvirtd 9.0.

Each context manager yields ``(uris, miguris)``: the hosts' connection URIs
and the QEMU migration URI each one listens on as a destination.  Everything
started is stopped on the way out, also on failure.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))


@contextlib.contextmanager
def pyvirtd_pair(work: Path, extra_config: str = "",
                 names: tuple[str, str] = ("pa", "pb")) -> Iterator[tuple[list[str], list[str]]]:
    from daemons import Pyvirtd
    hosts = [Pyvirtd(work / name, extra_config=extra_config) for name in names]
    try:
        for h in hosts:
            h.start()
        # tests/daemons.py gives each host migration ports from 50000 + (tcp_port % 1000) * 10
        yield [h.uri for h in hosts], [f"tcp://127.0.0.1:{h.tcp_port % 1000 * 10 + 50000}" for h in hosts]
    finally:
        for h in hosts:
            h.destroy_all()
        for h in hosts:
            h.cleanup()


@contextlib.contextmanager
def libvirtd_pair(work: Path, first_migration_port: int) -> Iterator[tuple[list[str], list[str]] | None]:
    """Yields None (after saying why) when libvirtd cannot run here."""
    from libvirt_ref import LibvirtHost, libvirt_available, pick_free_ports
    ok, why = libvirt_available()
    if not ok:
        print(f"libvirt reference skipped: {why}")
        yield None
        return
    ports = pick_free_ports(2)
    mig = [first_migration_port, first_migration_port + 32]
    hosts = [LibvirtHost(work / f"l{i}", ports[i], mig[i], mig[i] + 15, cache_dir=work / "lvcache")
             for i in range(2)]
    try:
        for h in hosts:
            h.start()
        yield [h.uri for h in hosts], [f"tcp://127.0.0.1:{p}" for p in mig]
    finally:
        for h in hosts:
            h.stop()
