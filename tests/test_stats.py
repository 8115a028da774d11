"""Statistics against a real pyvirtd and a real QEMU: domstats, domblkstat, domblkinfo,
dommemstat, vcpuinfo, cpu-stats through stock python3-libvirt, pyvirt's client and
stock virsh (whose output pyvirt's CLI must reproduce).

Values are checked against QEMU's own answers (QMP through qemu-monitor-command)
and against /proc of the guest's QEMU, read before and after the call.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyvirt
from daemons import monitor_command, qemu_pid
from guests import READY, tiny_xml, wait_for_text

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed"),
              pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")]

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
TICK_NS = 1_000_000_000 // __import__("os").sysconf("SC_CLK_TCK")
DISK_MIB = 64


def disk_xml(image: Path, dev: str = "vda") -> str:
    return f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{image}'/>
      <target dev='{dev}' bus='virtio'/>
    </disk>"""


BALLOON = "\n    <memballoon model='virtio'/>"


def make_image(path: Path, mib: int = DISK_MIB) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{mib}M"], check=True, timeout=30)
    return path


def start_stats_guest(daemon, name: str = "st", cmdline: str | None = None, memory_mib: int = 128,
                      persistent: bool = True) -> pyvirt.virDomain:
    image = make_image(daemon.workdir / f"{name}.qcow2")
    log = daemon.workdir / f"{name}.log"
    xml = tiny_xml(name, log, cmdline=cmdline, memory_mib=memory_mib,
                   extra_devices=disk_xml(image) + BALLOON)
    conn = pyvirt.open(daemon.uri)
    dom = conn.defineXML(xml) if persistent else conn.createXML(xml, 0)
    if persistent:
        dom.create()
    wait_for_text(log, "PYVIRT-HEARTBEAT 1" if cmdline and "dirty" in cmdline else READY)
    return dom


def qmp(daemon, cmd: str, args: dict | None = None, name: str = "st"):
    """QEMU's own answer, through the daemon's qemu-monitor-command."""
    request = {"execute": cmd, **({"arguments": args} if args else {})}
    return json.loads(monitor_command(daemon, name, json.dumps(request)))["return"]


def proc_times(pid: int, tid: int | None = None) -> tuple[int, int]:
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    data = Path(path).read_bytes()
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[11]) * TICK_NS, int(fields[12]) * TICK_NS


def bracket(before: int, value: int, after: int) -> bool:
    return before <= value <= after


@pytest.fixture
def guest(pyvirtd, guests_built):
    return start_stats_guest(pyvirtd)


# -- python3-libvirt, the stock client ---------------------------------------------------

PY3_SCRIPT = r"""
import json, sys, libvirt
uri, name = sys.argv[1:3]
conn = libvirt.openReadOnly(uri)
dom = conn.lookupByName(name)
out = {}
out["all"] = [(d.name(), s) for d, s in conn.getAllDomainStats(0, 0)]
out["list"] = [(d.name(), s) for d, s in conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_BLOCK, 0)]
out["blockStats"] = dom.blockStats("vda")
out["blockStatsAll"] = dom.blockStats("")
out["blockStatsFlags"] = dom.blockStatsFlags("vda", 0)
out["blockInfo"] = dom.blockInfo("vda", 0)
out["memoryStats"] = dom.memoryStats()
out["vcpus"] = dom.vcpus()
out["cpuTotal"] = dom.getCPUStats(True)
for call, arg in (("blockStats", "vdz"), ("interfaceStats", "vnet99")):
    try:
        getattr(dom, call)(arg)
    except libvirt.libvirtError as e:
        out[call + "Error"] = [e.get_error_code(), e.get_error_message()]
try:
    dom.setMemoryStatsPeriod(1, 0)
except libvirt.libvirtError as e:
    out["periodReadOnly"] = [e.get_error_code(), e.get_error_message()]
print(json.dumps(out))
"""


def python3_libvirt(uri: str, name: str) -> dict:
    out = subprocess.run([SYSTEM_PYTHON, "-c", PY3_SCRIPT, uri, name], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check_against_qemu(daemon, pid: int, got: dict, before: tuple[int, int],
                       after: tuple[int, int]) -> None:
    """The figures of one python3-libvirt run against QMP and /proc."""
    (name, rec), = got["all"]
    assert name == "st"
    assert rec["state.state"] == pyvirt.VIR_DOMAIN_RUNNING and rec["state.reason"] == 1
    assert bracket(sum(before), rec["cpu.time"], sum(after))
    assert bracket(before[0], rec["cpu.user"], after[0]) and bracket(before[1], rec["cpu.system"], after[1])
    balloon_kib = qmp(daemon, "query-balloon")["actual"] // 1024
    assert rec["balloon.current"] == balloon_kib == 128 * 1024 and rec["balloon.maximum"] == 128 * 1024
    assert rec["balloon.rss"] > 0 and "balloon.last-update" in rec
    assert rec["vcpu.current"] == rec["vcpu.maximum"] == 1 and rec["vcpu.0.state"] == 1
    assert rec["cpu.cache.monitor.count"] == 0 and "cpu.haltpoll.success.time" in rec
    assert rec["block.0.backingIndex"] == 1 and rec["vcpu.0.delay"] >= 0
    assert 0 <= rec["vcpu.0.time"] <= rec["cpu.time"]
    assert rec["net.count"] == 0          # a guest without host-side NICs
    blockstats, = qmp(daemon, "query-blockstats")
    nodes = {n["node-name"]: n for n in qmp(daemon, "query-named-block-nodes", {"flat": True})}
    image = nodes[blockstats["node-name"]]["image"]
    s = blockstats["stats"]
    assert rec["block.count"] == 1 and rec["block.0.name"] == "vda"
    assert rec["block.0.path"].endswith("st.qcow2")
    assert (rec["block.0.rd.reqs"], rec["block.0.rd.bytes"], rec["block.0.wr.reqs"], rec["block.0.wr.bytes"],
            rec["block.0.fl.reqs"]) == (s["rd_operations"], s["rd_bytes"], s["wr_operations"], s["wr_bytes"],
                                        s["flush_operations"])
    assert rec["block.0.capacity"] == image["virtual-size"] == DISK_MIB << 20
    assert rec["block.0.physical"] == image["actual-size"]
    assert rec["block.0.allocation"] == blockstats["parent"]["stats"]["wr_highest_offset"]
    assert got["list"][0][1]["block.0.capacity"] == DISK_MIB << 20 and "cpu.time" not in got["list"][0][1]
    assert got["blockStats"] == [s["rd_operations"], s["rd_bytes"], s["wr_operations"], s["wr_bytes"], -1]
    assert got["blockStatsAll"] == got["blockStats"]
    assert got["blockStatsFlags"] == {
        "rd_operations": s["rd_operations"], "rd_bytes": s["rd_bytes"], "rd_total_times": s["rd_total_time_ns"],
        "wr_operations": s["wr_operations"], "wr_bytes": s["wr_bytes"], "wr_total_times": s["wr_total_time_ns"],
        "flush_operations": s["flush_operations"], "flush_total_times": s["flush_total_time_ns"]}
    capacity, allocation, physical = got["blockInfo"]
    assert capacity == DISK_MIB << 20
    assert physical == Path(rec["block.0.path"]).stat().st_size and allocation > 0
    mem = got["memoryStats"]
    assert mem["actual"] == balloon_kib and mem["rss"] > 0 and "last_update" in mem
    (vcpu,), (cpumap,) = got["vcpus"]
    assert vcpu[0] == 0 and vcpu[1] == pyvirt.VIR_VCPU_RUNNING and 0 <= vcpu[2] <= rec["cpu.time"] + sum(after)
    assert 0 <= vcpu[3] < len(cpumap) and all(cpumap)
    total = got["cpuTotal"][0]
    assert bracket(sum(before), total["cpu_time"], sum(after)) and set(total) == {
        "cpu_time", "user_time", "system_time"}
    assert got["blockStatsError"] == [pyvirt.VIR_ERR_INVALID_ARG, "invalid argument: invalid path: vdz"]
    assert got["interfaceStatsError"] == [pyvirt.VIR_ERR_INVALID_ARG,
                                          "invalid argument: 'vnet99' is not a known interface"]
    assert got["periodReadOnly"][0] == pyvirt.VIR_ERR_OPERATION_DENIED


def test_python3_libvirt_figures_match_qemu_and_proc(pyvirtd, guest):
    pid = qemu_pid(pyvirtd, "st")
    before = proc_times(pid)
    got = python3_libvirt(pyvirtd.uri, "st")
    after = proc_times(pid)
    check_against_qemu(pyvirtd, pid, got, before, after)


def test_vcpu_time_is_the_vcpu_thread(pyvirtd, guest):
    pid = qemu_pid(pyvirtd, "st")
    tid = qmp(pyvirtd, "query-cpus-fast")[0]["thread-id"]
    before = sum(proc_times(pid, tid))
    rec = pyvirtd_client_stats(pyvirtd)[0][1]
    after = sum(proc_times(pid, tid))
    assert bracket(before, rec["vcpu.0.time"], after)
    info, _maps = guest.vcpus()
    assert info[0][0] == 0 and info[0][2] >= rec["vcpu.0.time"]


def pyvirtd_client_stats(daemon, stats: int = 0, flags: int = 0):
    conn = pyvirt.open(daemon.uri)
    try:
        return [(d.name(), s) for d, s in conn.getAllDomainStats(stats, flags)]
    finally:
        conn.close()


def test_pyvirt_client_same_shapes(pyvirtd, guest):
    pid = qemu_pid(pyvirtd, "st")
    before = proc_times(pid)
    py3 = python3_libvirt(pyvirtd.uri, "st")
    ours = {k: v for k, v in pyvirtd_client_stats(pyvirtd)[0][1].items()}
    after = proc_times(pid)
    assert set(ours) == set(py3["all"][0][1])
    assert bracket(sum(before), ours["cpu.time"], sum(after))
    assert guest.blockStats("vda") == tuple(py3["blockStats"])
    assert guest.blockStatsFlags("vda") == py3["blockStatsFlags"]
    assert guest.blockInfo("vda")[0] == py3["blockInfo"][0]
    assert set(guest.memoryStats()) == set(py3["memoryStats"])
    assert [list(v[:2]) for v in guest.vcpus()[0]] == [v[:2] for v in py3["vcpus"][0]]


def test_groups_filters_and_enforce(pyvirtd, guest):
    conn = pyvirt.open(pyvirtd.uri)
    image = make_image(pyvirtd.workdir / "off.qcow2", 32)
    conn.defineXML(tiny_xml("off", pyvirtd.workdir / "off.log", extra_devices=disk_xml(image)))
    names = lambda recs: sorted(d.name() for d, _ in recs)            # noqa: E731
    assert names(conn.getAllDomainStats(0, 0)) == ["off", "st"]
    assert names(conn.getAllDomainStats(0, pyvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_RUNNING)) == ["st"]
    assert names(conn.getAllDomainStats(0, pyvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_SHUTOFF)) == ["off"]
    state_only = dict(conn.getAllDomainStats(pyvirt.VIR_DOMAIN_STATS_STATE, 0))
    assert all(set(s) == {"state.state", "state.reason"} for s in state_only.values())
    # an inactive domain: what the definition and the image file say, no QEMU figures
    (_, off), = conn.domainListGetStats([conn.lookupByName("off")], 0, 0)
    assert off["state.state"] == pyvirt.VIR_DOMAIN_SHUTOFF and "cpu.time" not in off
    assert off["block.0.capacity"] == 32 << 20 and off["block.0.physical"] == image.stat().st_size
    assert conn.lookupByName("off").blockInfo("vda")[0] == 32 << 20
    # perf (no events enabled) reports nothing, as libvirt's; a group bit libvirt does not
    # know is dropped, or refused with ENFORCE_STATS
    perf = dict(conn.getAllDomainStats(pyvirt.VIR_DOMAIN_STATS_PERF, 0))
    assert all(s == {} for s in perf.values())
    unknown = 1 << 20
    assert all(s == {} for _d, s in conn.getAllDomainStats(unknown, 0))
    with pytest.raises(pyvirt.libvirtError) as exc:
        conn.getAllDomainStats(unknown | pyvirt.VIR_DOMAIN_STATS_STATE,
                               pyvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS)
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_ARGUMENT_UNSUPPORTED
    assert "0x100000" in exc.value.get_error_message()
    # dirtyrate: QEMU's query-dirty-rate, nothing measured yet
    (_d, rate), = conn.domainListGetStats([conn.lookupByName("st")], pyvirt.VIR_DOMAIN_STATS_DIRTYRATE, 0)
    assert rate == {"dirtyrate.calc_status": 0, "dirtyrate.calc_start_time": 0, "dirtyrate.calc_period": 0,
                    "dirtyrate.calc_mode": "page-sampling"}
    # NOWAIT and BACKING are accepted; with no job in the way nothing is left out
    full = dict(conn.getAllDomainStats(0, pyvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
                                       | pyvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_BACKING))
    assert "block.0.rd.reqs" in [s for d, s in full.items() if d.name() == "st"][0]
    with pytest.raises(pyvirt.libvirtError) as exc:
        conn.lookupByName("off").blockStats("vda")
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_INVALID


def test_memory_stats_period_live_and_config(pyvirtd, guest):
    guest.setMemoryStatsPeriod(2, pyvirt.VIR_DOMAIN_AFFECT_LIVE | pyvirt.VIR_DOMAIN_AFFECT_CONFIG)
    path = "/machine/peripheral/balloon0"
    assert qmp(pyvirtd, "qom-get", {"path": path, "property": "guest-stats-polling-interval"}) == 2
    assert "<stats period='2'/>" in guest.XMLDesc(pyvirt.VIR_DOMAIN_XML_INACTIVE)
    with pytest.raises(pyvirt.libvirtError) as exc:
        guest.setMemoryStatsPeriod(-1, 0)
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    # the next start applies the configured period
    guest.destroy()
    guest.create()
    wait_for_text(pyvirtd.workdir / "st.log", READY)
    assert qmp(pyvirtd, "qom-get", {"path": path, "property": "guest-stats-polling-interval"}) == 2


# -- the CLI against stock virsh ------------------------------------------------------

# Figures that move between two runs (CPU time, RSS, the host CPU a thread ran on) are
# masked; everything else, layout and wording included, must be the same.
_VOLATILE = [
    (re.compile(r"^(\s*(?:cpu\.\w+|vcpu\.\d+\.(?:time|wait|delay)|balloon\.rss)=)\d+$", re.M), r"\1N"),
    (re.compile(r"^(rss) \d+$", re.M), r"\1 N"),
    (re.compile(r"^(CPU:\s+)\d+$", re.M), r"\1N"),
    (re.compile(r"^(CPU time:\s+)[\d.]+s$", re.M), r"\1Ns"),
    (re.compile(r"^(\t\w+\s+)\s*\d+\.\d{9} seconds$", re.M), r"\1N seconds"),
]
CLI_COMMANDS = [
    ["domstats"], ["domstats", "--state", "--block", "st"], ["domstats", "--balloon", "--vcpu", "--list-running"],
    ["domstats", "--cpu-total", "--interface", "--list-shutoff"], ["domstats", "--raw", "--nowait", "st"],
    ["domstats", "--perf", "--enforce", "st"],
    ["domblkstat", "st"], ["domblkstat", "st", "vda"], ["domblkstat", "st", "vda", "--human"],
    ["domblkstat", "st", "vdz"],
    ["domblkinfo", "st", "vda"], ["domblkinfo", "st", "vda", "--human"], ["domblkinfo", "st", "--all"],
    ["domblkinfo", "st", "--all", "--human"], ["domblkinfo", "st"], ["domblkinfo", "st", "vdz"],
    ["domifstat", "st", "vnet7"], ["domblkerror", "st"], ["domblkerror", "--domain", "st"],
    ["dommemstat", "st"], ["dommemstat", "st", "--period", "-3"],
    ["vcpuinfo", "st"], ["vcpuinfo", "st", "--pretty"],
    ["cpu-stats", "st", "--total"], ["cpu-stats", "st"],
]


def normalized(text: str) -> str:
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return text


def run_both(uri: str, args: list[str]) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    theirs = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60)
    ours = subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", uri, *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    return theirs, ours


def test_cli_output_matches_virsh(pyvirtd, guest):
    failures = []
    for args in CLI_COMMANDS:
        theirs, ours = run_both(pyvirtd.uri, args)
        got = (ours.returncode != 0, normalized(ours.stdout), ours.stderr)
        want = (theirs.returncode != 0, normalized(theirs.stdout), theirs.stderr)
        if got != want:
            failures.append(f"{' '.join(args)}:\n virsh: {want!r}\n pyvirt: {got!r}")
    assert not failures, "\n".join(failures)


def test_cli_inactive_domain_matches_virsh(pyvirtd, guest):
    guest.destroy()
    failures = []
    for args in (["vcpuinfo", "st"], ["domblkinfo", "st", "vda"], ["domblkstat", "st", "vda"],
                 ["dommemstat", "st"], ["domstats", "st"], ["domblkerror", "st"]):
        theirs, ours = run_both(pyvirtd.uri, args)
        if (theirs.returncode != 0, theirs.stdout, theirs.stderr) != (ours.returncode != 0, ours.stdout, ours.stderr):
            failures.append(f"{' '.join(args)}:\n virsh: {theirs.stdout!r} {theirs.stderr!r}\n"
                            f" pyvirt: {ours.stdout!r} {ours.stderr!r}")
    assert not failures, "\n".join(failures)


def test_oversized_requests_refused_and_the_daemon_answers_on(pyvirtd, guest):
    conn = pyvirt.open(pyvirtd.uri)
    ref = conn.lookupByName("st")._ref
    huge = 2 ** 31 - 1
    for method, args in (("domain_get_vcpus", (huge, huge)), ("domain_get_vcpus", (1, huge)),
                         ("domain_get_vcpu_pin_info", (huge, huge, 0)), ("domain_memory_stats", (huge, 0)),
                         ("domain_get_cpu_stats", (huge, 0, huge, 0)), ("domain_block_stats_flags", ("vda", huge, 0)),
                         ("domain_get_vcpus", (-1, 1))):
        with pytest.raises(pyvirt.libvirtError):
            conn._call(method, ref, *args)
    assert conn.lookupByName("st").blockStats("vda")[4] == -1
