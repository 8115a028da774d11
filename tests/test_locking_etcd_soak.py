"""The split-brain soak on etcd leases (tests/soak/leases.py): two pyvirtd hosts
race to start the same guest on the same disk, in random order with random
delays, with random kill -9 of either daemon; never two QEMUs run the disk.

The suite runs 20 rounds; ``make soak-leases`` runs 200.  PYVIRT_LEASE_SOAK_SEED=N
replays a seed (printed at the start), PYVIRT_LEASE_SOAK_ROUNDS=N sets the rounds.
"""

from __future__ import annotations

import os
import random

import pytest

from guests import qemu_available
from lease_hosts import LeaseCluster
from soak.leases import LeaseRace

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(not qemu_available(), reason="QEMU not available")]


@pytest.fixture
def cluster(tmp_path, guests_built):
    c = LeaseCluster(tmp_path, ttl=4)
    try:
        c.start()
        yield c
    finally:
        leaked = c.stop()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def test_split_brain_soak(cluster):
    seed = int(os.environ.get("PYVIRT_LEASE_SOAK_SEED") or random.SystemRandom().randrange(1 << 32))
    rounds = int(os.environ.get("PYVIRT_LEASE_SOAK_ROUNDS") or 20)
    print(f"lease soak: PYVIRT_LEASE_SOAK_SEED={seed} PYVIRT_LEASE_SOAK_ROUNDS={rounds}", flush=True)
    race = LeaseRace(cluster, seed=seed, rounds=rounds)
    race.run()
    print(race.report(), flush=True)
    assert not race.violations, "\n".join(race.violations)
    assert not race.unexpected, "\n".join(race.unexpected)
    # the race is real: starts succeed, and the other host is refused while one runs
    assert any("started" in r.outcomes.values() for r in race.history)
    assert any(any("is locked" in o for o in r.outcomes.values()) for r in race.history)
