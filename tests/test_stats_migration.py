"""Read-only queries never wait on an asynchronous job: while a throttled live
migration runs, domblkstat (and XML, info, state, job info, memory, vCPU and
bulk statistics) are answered at once, through the migration's allowed set.

The domblkstat latencies are measured and printed (run with -s to see them);
nothing here asserts on a duration.  What is asserted is that every call came
back with the right figures while the migration job was still running.
"""

from __future__ import annotations

import statistics
import subprocess
import time

import pytest

import pyvirt
from guests import wait_for
from test_migration import _migrate_in_thread, _wait_job_active, hosts  # noqa: F401 - the fixture
from test_stats import DISK_MIB, start_stats_guest

pytestmark = pytest.mark.qemu
CALLS = 200


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_queries_answer_during_throttled_migration(hosts):  # noqa: F811
    a, b = hosts
    dom = start_stats_guest(a, cmdline="dirty=64:20", memory_mib=256, persistent=False)
    # its disk is a local file both hosts see (one machine): 'unsafe' to libvirt
    thread, result = _migrate_in_thread(dom, pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_UNSAFE, {"bandwidth": 2})
    watcher = pyvirt.open(a.uri)
    try:
        _wait_job_active(watcher, "st")
        wdom = watcher.lookupByName("st")
        latencies = []
        for _ in range(CALLS):
            start = time.perf_counter()
            figures = wdom.blockStats("vda")
            latencies.append((time.perf_counter() - start) * 1000)
            assert len(figures) == 5 and figures[4] == -1
        virsh_ms = []
        for _ in range(5):
            start = time.perf_counter()
            out = subprocess.run(["virsh", "-c", a.uri, "domblkstat", "st", "vda"], capture_output=True,
                                 text=True, timeout=60)
            virsh_ms.append((time.perf_counter() - start) * 1000)
            assert out.returncode == 0 and "vda rd_req" in out.stdout, out.stderr
        # the rest of the read-only set, each answered while the job runs
        assert wdom.blockInfo("vda")[0] == DISK_MIB << 20
        assert wdom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and wdom.info()[0] == pyvirt.VIR_DOMAIN_RUNNING
        assert "<name>st</name>" in wdom.XMLDesc(0)
        assert wdom.memoryStats()["actual"] == 256 * 1024
        assert wdom.vcpus()[0][0][1] == pyvirt.VIR_VCPU_RUNNING
        (_d, rec), = watcher.domainListGetStats([wdom], 0, 0)
        assert rec["block.0.capacity"] == DISK_MIB << 20 and "vcpu.0.time" in rec and "balloon.rss" in rec
        (_d, rec), = watcher.domainListGetStats([wdom], 0, pyvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
        assert "block.0.rd.reqs" in rec
        job = wdom.jobInfo()
        assert job[0] == pyvirt.VIR_DOMAIN_JOB_UNBOUNDED, "the migration ended before the queries did"
        print(f"\ndomblkstat during a 2 MiB/s migration, {CALLS} calls (pyvirt client): "
              f"p50 {statistics.median(latencies):.2f} ms, p99 {_percentile(latencies, 0.99):.2f} ms, "
              f"max {max(latencies):.2f} ms; virsh domblkstat (process included): "
              f"median {statistics.median(virsh_ms):.1f} ms; migration at "
              f"{job[4] >> 20} of {job[3] >> 20} MiB")
        wdom.abortJob()
    finally:
        thread.join(60)
    assert not thread.is_alive()
    assert result["error"].get_error_code() == pyvirt.VIR_ERR_OPERATION_ABORTED
    wait_for(lambda: dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING, 10, what="the source to run on")


def test_queries_answer_during_save(tmp_path, guests_built, monkeypatch):
    from test_save import _gated_helper, _save_in_thread, make_host as _make_host  # noqa: F401
    import os
    from daemons import Pyvirtd
    bindir, gate = tmp_path / "bin", tmp_path / "gate"
    _gated_helper(bindir, gate, "zstd")        # the compressor waits: the save job stays under way
    host = Pyvirtd(tmp_path / "host", extra_config='save_image_format = "zstd"\n')
    try:
        with monkeypatch.context() as env:
            env.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
            host.start()
        dom = start_stats_guest(host)
        thread, result = _save_in_thread(dom, host.workdir / "st.save")
        watcher = pyvirt.open(host.uri)
        wdom = watcher.lookupByName("st")
        wait_for(lambda: wdom.jobInfo()[4] > 0, 20, interval=0.05,
                 what="QEMU to be writing into the held-back compressor")
        assert wdom.blockStats("vda")[4] == -1 and wdom.blockInfo("vda")[0] == DISK_MIB << 20
        assert wdom.state() == [pyvirt.VIR_DOMAIN_PAUSED, pyvirt.VIR_DOMAIN_PAUSED_SAVE]
        assert "<name>st</name>" in wdom.XMLDesc(0) and wdom.memoryStats()["actual"] == 128 * 1024
        (_d, rec), = watcher.domainListGetStats([wdom], 0, 0)
        assert rec["state.reason"] == pyvirt.VIR_DOMAIN_PAUSED_SAVE and "block.0.rd.reqs" in rec
        assert wdom.jobStats()["operation"] == pyvirt.VIR_DOMAIN_JOB_OPERATION_SAVE
        gate.touch()                           # let the save finish
        thread.join(120)
        assert not thread.is_alive() and "error" not in result, result
        assert wdom.state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_SAVED]
    finally:
        gate.touch()
        leaked = host.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"
