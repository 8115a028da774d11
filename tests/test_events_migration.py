"""MIGRATION_ITERATION and JOB_COMPLETED from a throttled live migration between two pyvirtd.

The tiny guest keeps rewriting memory faster than the 8 MiB/s the migration
may use, so QEMU goes round its passes (MIGRATION_PASS → migration-iteration
on the source) until the test lifts the limit; then the migration converges
and each side reports its finished job (job-completed: outgoing on the
source, incoming on the destination) with QEMU's final figures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

from daemons import Pyvirtd, running_pair
from guests import tiny_xml, wait_for_text
from test_events import listener

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]

MIGRATION_IN, MIGRATION_OUT = 4, 5      # VIR_DOMAIN_JOB_OPERATION_*


@pytest.fixture
def hosts(tmp_path, guests_built):
    with running_pair(Pyvirtd(tmp_path / "a"), Pyvirtd(tmp_path / "b")) as pair:
        yield pair


def events_of(watcher, event_id: int) -> list[list]:
    return [e for e in (json.loads(l) for l in watcher.lines if l.startswith("[")) if e[0] == event_id]


def test_throttled_migration_reports_iterations_and_completed_jobs(hosts):
    a, b = hosts
    log = a.workdir / "mig.log"
    (a.workdir / "mig.xml").write_text(tiny_xml("mig", log, cmdline="dirty=32:10", uuid=str(uuid.uuid4())))
    subprocess.run(["virsh", "-c", a.uri, "create", str(a.workdir / "mig.xml")], check=True, capture_output=True)
    wait_for_text(log, "PYVIRT-HEARTBEAT 1")
    src, dst = listener("pyvirt", a.uri), listener("pyvirt", b.uri)
    mig = None
    try:
        for w in (src, dst):
            assert w.wait_for(lambda l: l.startswith("registered")) == "registered 27"
        mig = subprocess.Popen(["virsh", "-c", a.uri, "migrate", "--live", "--bandwidth", "8", "mig", b.uri],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # a second pass means the first did not converge: the guest dirtied memory meanwhile
        src.wait_for(lambda l: l.startswith("[20,") and json.loads(l)[2] >= 2, 60, what="iteration 2")
        subprocess.run(["virsh", "-c", a.uri, "migrate-setspeed", "mig", "10000"], check=True, capture_output=True)
        out, err = mig.communicate(timeout=120)
        assert mig.returncode == 0, err
        src.wait_for(lambda l: l.startswith("[21,"), what="the source's job-completed")
        dst.wait_for(lambda l: l.startswith("[21,"), what="the destination's job-completed")
    finally:
        if mig is not None and mig.poll() is None:
            mig.kill()
            mig.communicate()
        src.stop()
        dst.stop()
    iterations = [e[2] for e in events_of(src, 20)]
    assert iterations[:2] == [1, 2] and iterations == sorted(iterations)
    assert not events_of(dst, 20)                      # QEMU counts passes on the sending side
    (out_job,), (in_job,) = events_of(src, 21), events_of(dst, 21)
    assert out_job[1] == in_job[1] == "mig"
    assert out_job[2]["operation"] == MIGRATION_OUT and in_job[2]["operation"] == MIGRATION_IN
    # QEMU's figures: every pass counted, all of the guest's memory sent at least once
    assert out_job[2]["memory_iteration"] >= iterations[-1]
    assert out_job[2]["memory_total"] >= 128 * 2**20
    assert out_job[2]["memory_processed"] >= out_job[2]["memory_normal_bytes"] > 0
    lifecycle = [e[2:] for e in (json.loads(l) for l in src.lines if l.startswith("[")) if e[0] == 0]
    assert lifecycle[-1] == [5, 3]                     # Stopped: migrated
