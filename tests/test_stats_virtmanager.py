"""virt-manager 4.1's graphs against pyvirtd, by making exactly the calls it makes.

virt-manager itself is not installed here.  Its 4.1 poller (virtManager/lib/
statsmanager.py with connection.py's tick) is replayed with stock
python3-libvirt, call for call:

* the support check ``conn_mem_stats_period`` (virtinst/support.py): the
  binding has virDomain.setMemoryStatsPeriod, getLibVersion() >= 1.1.1 (a
  remote URI asks the daemon) and getVersion() for the "qemu" driver;
* every tick: ``getInfo()`` (its host CPU count is ``[2]``), then
  ``getAllDomainStats(flags, 0)`` with a timestamp taken just before, the
  flags from the preferences: STATE | CPU_TOTAL | VCPU for the CPU graph (on
  by default), BALLOON, BLOCK and INTERFACE when memory, disk and network
  polling are on;
* once per guest with memory polling, when its XML has a virtio memballoon:
  ``setMemoryStatsPeriod(5, VIR_DOMAIN_AFFECT_LIVE)``;
* the figures computed from the records as _sample_cpu_stats,
  _sample_mem_stats, _sample_disk_stats and _sample_net_stats compute them.

The guest is the Linux guest that keeps reading its virtio disk and has the
balloon driver loaded, so every graph has something to draw.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from daemons import qemu_pid
from test_stats import SYSTEM_PYTHON, bracket, proc_times, qmp
from test_stats_disk_io import start_io_guest

pytestmark = pytest.mark.qemu

VIRT_MANAGER = r"""
import json, re, sys, time
import xml.etree.ElementTree as ET
import libvirt
uri, all_prefs = sys.argv[1], sys.argv[2] == "all"
conn = libvirt.open(uri)

# virtinst's conn_mem_stats_period support check
supported = (getattr(libvirt.virDomain, "setMemoryStatsPeriod", None) is not None
             and conn.getLibVersion() >= 1001001 and conn.getVersion() >= 0)

statflags = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_VCPU
if all_prefs:
    statflags |= (libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_BLOCK
                  | libvirt.VIR_DOMAIN_STATS_INTERFACE)

def tick():
    hostinfo = conn.getInfo()
    timestamp = time.time()
    stats = {}
    for dom, rec in conn.getAllDomainStats(statflags, 0):
        rec["virt-manager.timestamp"] = timestamp
        stats[dom.UUIDString()] = (dom, rec)
    return hostinfo[2], stats

period_set = {}
def sample(hostcpus, dom, rec, prev):
    out = {}
    state, guestcpus, cpu_abs = rec.get("state.state", 0), rec.get("vcpu.current", 0), rec.get("cpu.time", 0)
    timestamp = rec.get("virt-manager.timestamp")
    base = (cpu_abs - prev["cpuTimeAbs"]) * 100.0 / ((timestamp - prev["timestamp"]) * 1e9)
    out.update(state=state, guestcpus=guestcpus, cpuTimeAbs=cpu_abs, timestamp=timestamp, base=base,
               cpuHostPercent=max(0.0, min(100.0, base / hostcpus)),
               cpuGuestPercent=max(0.0, min(100.0, guestcpus > 0 and base / guestcpus or 0)))
    if all_prefs:
        if dom.UUIDString() not in period_set:
            if supported and any(b.get("model") == "virtio"
                                 for b in ET.fromstring(dom.XMLDesc(0)).findall("./devices/memballoon")):
                dom.setMemoryStatsPeriod(5, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            period_set[dom.UUIDString()] = True
        total = rec.get("balloon.current", 1)
        cur = max(0, total - rec.get("balloon.unused", total))
        out.update(curmem=cur, currMemPercent=max(0.0, min(cur / float(total) * 100, 100.0)))
        rd = sum(v for k, v in rec.items() if re.match(r"block.[0-9]+.rd.bytes", k))
        wr = sum(v for k, v in rec.items() if re.match(r"block.[0-9]+.wr.bytes", k))
        rx = sum(v for k, v in rec.items() if re.match(r"net.[0-9]+.rx.bytes", k))
        tx = sum(v for k, v in rec.items() if re.match(r"net.[0-9]+.tx.bytes", k))
        out.update(diskRdKiB=rd // 1024, diskWrKiB=wr // 1024, netRxKiB=rx // 1024, netTxKiB=tx // 1024,
                   unused_reported="balloon.unused" in rec)
        if "diskRdKiB" in prev:
            out["diskRdRate"] = max(0.0, (out["diskRdKiB"] - prev["diskRdKiB"]) / (timestamp - prev["timestamp"]))
    return out

# The first tick has no previous record: virt-manager's records start at zero.
hostcpus, stats = tick()
records = {u: sample(hostcpus, d, r, {"cpuTimeAbs": 0, "timestamp": 0.0}) for u, (d, r) in stats.items()}
first = dict(records)
# Then it ticks on a timer: poll until every graph moved (or give up after a minute).
deadline = time.time() + 60
while True:
    hostcpus, stats = tick()
    new = {u: sample(hostcpus, d, r, records[u]) for u, (d, r) in stats.items()}
    moved = all(n["cpuTimeAbs"] > records[u]["cpuTimeAbs"] for u, n in new.items())
    if all_prefs:
        moved = moved and all(n["diskRdRate"] > 0 and n["unused_reported"] for n in new.values())
    records = new
    if moved or time.time() > deadline:
        break
    time.sleep(0.2)
print(json.dumps({"hostcpus": hostcpus, "supported": supported, "first": first, "last": records,
                  "names": {u: d.name() for u, (d, r) in stats.items()}}))
"""


def replay(uri: str, prefs: str) -> dict:
    run = subprocess.run([SYSTEM_PYTHON, "-c", VIRT_MANAGER, uri, prefs], capture_output=True, text=True,
                         timeout=180)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("prefs", ["default", "all"])
def test_virt_manager_graphs(pyvirtd, guests_built, prefs):
    dom, image, log = start_io_guest(pyvirtd, loop=True)
    try:
        pid = qemu_pid(pyvirtd, "st")
        before = sum(proc_times(pid))
        rd_before = qmp(pyvirtd, "query-blockstats")[0]["stats"]["rd_bytes"]
        got = replay(pyvirtd.uri, prefs)
        after = sum(proc_times(pid))
        rd_after = qmp(pyvirtd, "query-blockstats")[0]["stats"]["rd_bytes"]
        host_cpus = __import__("os").cpu_count()
        assert got["hostcpus"] == host_cpus and got["supported"] is True
        (uuid, rec), = got["last"].items()
        assert got["names"][uuid] == "st" and uuid == dom.UUIDString()
        assert rec["state"] == 1 and rec["guestcpus"] == 1
        assert bracket(before, got["first"][uuid]["cpuTimeAbs"], rec["cpuTimeAbs"])
        assert rec["cpuTimeAbs"] <= after
        # the CPU graph moves: the guest used CPU between the two samples, within one vCPU's worth
        assert rec["base"] > 0 and 0 < rec["cpuHostPercent"] <= 100 and 0 < rec["cpuGuestPercent"] <= 100
        if prefs == "all":
            # memory graph: the guest's balloon driver reports its unused memory once the
            # period is set; what is used is below what the balloon gives it
            balloon_kib = qmp(pyvirtd, "query-balloon")["actual"] // 1024
            assert 0 < rec["curmem"] < balloon_kib and 0 < rec["currMemPercent"] < 100
            # disk graph: the guest's reads, as QEMU counted them
            assert rd_before // 1024 <= rec["diskRdKiB"] <= rd_after // 1024 and rec["diskRdRate"] > 0
            assert rec["diskWrKiB"] == qmp(pyvirtd, "query-blockstats")[0]["stats"]["wr_bytes"] // 1024 > 0
            assert rec["netRxKiB"] == rec["netTxKiB"] == 0     # no host-side NIC
    finally:
        dom.destroy()
