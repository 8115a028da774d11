"""The chaos soak: random operations from 4 python3-libvirt clients at once on two
pyvirtd hosts (start, destroy, migration both ways in every flow, save/restore,
suspend/resume, daemon restarts and kills, QEMU kills), the invariants checked
after every step (tests/soak/check.py).

A short soak runs in the suite; ``make soak`` runs 1,000 operations.
PYVIRT_SOAK_SEED=N replays a seed (printed at the start and on failure),
PYVIRT_SOAK_OPS=N sets the number of operations, PYVIRT_SOAK_CLIENTS=N the
number of clients.
"""

from __future__ import annotations

import os
import random

import pytest

from daemons import Pyvirtd, running_pair
from soak import stock
from soak.chaos import Soak

pytestmark = pytest.mark.qemu


@pytest.fixture
def stock_libvirt():
    loaded = stock.load()
    if isinstance(loaded, str):
        pytest.skip(loaded)
    return loaded


@pytest.fixture
def soak_hosts(tmp_path, guests_built):
    with running_pair(Pyvirtd(tmp_path / "a"), Pyvirtd(tmp_path / "b"), also_under=tmp_path) as pair:
        yield pair


def test_soak(stock_libvirt, soak_hosts, tmp_path):
    libvirt, libvirt_qemu = stock_libvirt
    seed = int(os.environ.get("PYVIRT_SOAK_SEED") or random.SystemRandom().randrange(1 << 32))
    ops = int(os.environ.get("PYVIRT_SOAK_OPS") or 60)
    clients = int(os.environ.get("PYVIRT_SOAK_CLIENTS") or 4)
    print(f"soak: PYVIRT_SOAK_SEED={seed} PYVIRT_SOAK_OPS={ops} clients={clients}", flush=True)
    soak = Soak(libvirt, libvirt_qemu, list(soak_hosts), tmp_path, seed=seed, ops=ops, clients=clients)
    soak.run()
    print(soak.report(), flush=True)
    assert not soak.violations and not soak.unexpected, soak.failure()
