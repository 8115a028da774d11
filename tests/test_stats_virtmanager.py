"""virt-manager 4.1's CPU graph against pyvirtd, by making the calls it makes.

virt-manager itself is not installed here; its statistics poller
(virtManager/lib/statsmanager.py) is replayed with stock python3-libvirt:
the host's CPU count from getInfo(), then getAllDomainStats() with the
groups its default preferences enable (STATE | CPU_TOTAL | VCPU, plus
BALLOON, BLOCK and INTERFACE when memory, disk and network polling are on)
and flags 0, from which it draws the guest's and the host's CPU usage.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from daemons import qemu_pid
from test_stats import SYSTEM_PYTHON, bracket, proc_times, start_stats_guest

pytestmark = pytest.mark.qemu

# What statsmanager.py does between two polls, reduced to the figures of the graph.
VIRT_MANAGER_POLL = r"""
import json, sys, time, libvirt
uri, name = sys.argv[1:3]
conn = libvirt.open(uri)
host_cpus = conn.getInfo()[2]
flags = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
         | libvirt.VIR_DOMAIN_STATS_VCPU)
everything = flags | (libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_BLOCK
                      | libvirt.VIR_DOMAIN_STATS_INTERFACE)

def poll(statflags):
    now = time.time()
    return now, {dom.UUIDString(): (dom.name(), stats) for dom, stats in conn.getAllDomainStats(statflags, 0)}

t0, first = poll(flags)
# The graph needs two samples that differ: poll (as its timer does) until the guest
# has used CPU time, which /proc counts in clock ticks.
deadline = time.time() + 60
while True:
    t1, second = poll(flags)
    if all(second[u][1]["cpu.time"] > first[u][1]["cpu.time"] for u in first) or time.time() > deadline:
        break
    time.sleep(0.05)
out = {}
for uuid, (dname, stats) in second.items():
    prev = first[uuid][1]
    base = (stats["cpu.time"] - prev["cpu.time"]) * 100.0 / ((t1 - t0) * 1e9)
    out[dname] = {"state": stats["state.state"], "guestcpus": stats["vcpu.current"],
                  "cpu_time": stats["cpu.time"], "host_pcent": max(0.0, min(100.0, base / host_cpus)),
                  "guest_pcent": max(0.0, min(100.0, base / stats["vcpu.current"])), "raw_base": base}
t2, full = poll(everything)
out["full_keys"] = sorted(next(iter(full.values()))[1])
out["host_cpus"] = host_cpus
print(json.dumps(out))
"""


def test_virt_manager_cpu_graph_calls(pyvirtd, guests_built):
    start_stats_guest(pyvirtd, cmdline="dirty=16:32")     # a guest that keeps its vCPU busy
    pid = qemu_pid(pyvirtd, "st")
    before = sum(proc_times(pid))
    run = subprocess.run([SYSTEM_PYTHON, "-c", VIRT_MANAGER_POLL, pyvirtd.uri, "st"], capture_output=True,
                         text=True, timeout=120)
    after = sum(proc_times(pid))
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    graph = got["st"]
    assert graph["state"] == 1 and graph["guestcpus"] == 1
    assert bracket(before, graph["cpu_time"], after)
    # a moving graph: the guest used CPU between the samples, within what one vCPU can
    assert graph["raw_base"] > 0 and 0 < graph["host_pcent"] <= 100 and 0 < graph["guest_pcent"] <= 100
    for key in ("balloon.current", "balloon.maximum", "block.count", "block.0.rd.bytes", "block.0.wr.bytes",
                "net.count", "vcpu.0.time"):
        assert key in got["full_keys"], key
