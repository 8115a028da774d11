"""pyvirt's convergence policy between two real pyvirtd: a guest that dirties memory faster than the link.

The guest rewrites 96 MiB at 80 MiB/s over a 20 MiB/s link.  With
post-copy permitted the policy switches to it after the first stalled pass
and the migration finishes; without, it throttles, finds nothing left to
try and cancels at its completion bound, the source running on.  Every
decision is in jobStats (pyvirt.converge.*) and in the daemon's log.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading

import pytest

import pyvirt
from daemons import Pyvirtd, qemu_pid, running_copies, running_pair
from guests import wait_for
from test_migration import heartbeat
from test_migration_postcopy import ROOT_QEMU, job_stats, start_guest, virsh

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]

# The daemon default on; a short bound so that the abort comes soon (30 s at least by default)
POLICY = ROOT_QEMU + ("migration_converge = 1\nmigration_converge_timeout_per_gib = 60\n"
                      "migration_converge_timeout_min = 25\n")


@pytest.fixture
def hosts(tmp_path, guests_built):
    with running_pair(Pyvirtd(tmp_path / "a", extra_config=POLICY),
                      Pyvirtd(tmp_path / "b", extra_config=POLICY)) as pair:
        yield pair


def decisions(a: Pyvirtd) -> list[str]:
    return [l.split("convergence policy: ", 1)[1] for l in a.log_path.read_text(errors="replace").splitlines()
            if "convergence policy: " in l]


def test_policy_finishes_the_too_fast_guest_with_postcopy(hosts):
    a, b = hosts
    uid = start_guest(a)
    src, dst = pyvirt.open(a.uri), pyvirt.open(b.uri)
    dom = src.lookupByName("mig")
    result: dict = {}

    def run():
        try:
            # the policy asked for by the migration itself (the daemon default would do too)
            result["dom"] = dom.migrate3(dst, {"bandwidth": 20, "pyvirt.converge": 1},
                                         pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_POSTCOPY)
        except pyvirt.libvirtError as exc:
            result["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    seen_stages: set[int] = set()
    try:
        def watching():
            stats = job_stats(a.uri)
            if "pyvirt.converge.stage" in stats:
                seen_stages.add(stats["pyvirt.converge.stage"])
                assert stats["pyvirt.converge.bound"] == 25_000     # 60 s/GiB of 256 MiB < 25 s
                return True
            return False
        wait_for(watching, 60, interval=0.5, what="the policy's figures in jobStats")
    finally:
        thread.join(120)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    assert running_copies([a, b], uid) == 1 and qemu_pid(b, "mig") is not None
    said = decisions(a)
    assert any("over the 500 ms downtime bound" in d for d in said), said
    assert any("post-copy permitted, so no vCPU throttling" in d for d in said), said
    assert said[-1].endswith("switched to post-copy"), said
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before + 1, 20, what="heartbeats on B")


def test_policy_aborts_cleanly_at_its_bound_without_postcopy(hosts):
    a, b = hosts
    uid = start_guest(a)
    # stock virsh, no pyvirt parameter: the daemon's default policy acts
    r = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--bandwidth", "20", "mig", b.uri],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[0] == (
        "error: Timed out during operation: migration out job: not finished within the convergence bound of "
        "25 s (60 s per GiB of guest RAM); cancelled")
    said = decisions(a)
    assert any("vCPU throttling on (40 %, +20 % per pass)" in d for d in said), said
    assert any("post-copy not permitted" in d for d in said), said
    assert "past the 25 s bound" in said[-1], said
    # the source runs on, alone, and the throttle is gone with the migration's capabilities
    assert virsh(a.uri, "domstate", "--reason", "mig").stdout.strip() == "running (migration canceled)"
    wait_for(lambda: qemu_pid(b, "mig") is None, 10, what="the destination QEMU to go")
    assert running_copies([a, b], uid) == 1
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before + 1, 10, what="the source guest to keep running")


def pyvirt_cli(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", uri, *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_converge_postcopy_verbose_and_migrate_postcopy_refusal(hosts):
    a, b = hosts
    uid = start_guest(a)
    # migrate-postcopy with no migration: pyvirt's words are stock virsh's
    ours, theirs = pyvirt_cli(a.uri, "migrate-postcopy", "mig"), virsh(a.uri, "migrate-postcopy", "mig", check=False)
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr) == (1, theirs.stderr)
    assert "post-copy can only be started while outgoing migration is in progress" in ours.stderr
    r = pyvirt_cli(a.uri, "migrate", "--live", "--postcopy-after-precopy", "mig", b.uri)
    assert r.returncode == 1
    assert r.stderr.strip() == "error: Option --postcopy is required by option --postcopy-after-precopy"
    # the policy through pyvirt's own option, its decisions shown beside the progress
    r = pyvirt_cli(a.uri, "migrate", "--live", "--postcopy", "--converge", "--bandwidth", "20", "--verbose",
                   "mig", b.uri)
    assert r.returncode == 0, r.stderr
    assert "convergence policy:" in r.stderr and "switched to post-copy" in r.stderr, r.stderr
    assert "Migration: [100 %]" in r.stderr
    assert running_copies([a, b], uid) == 1 and qemu_pid(b, "mig") is not None
