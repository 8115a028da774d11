"""Host and capabilities: node info, memory and CPU figures, free memory, max vCPUs,
sysinfo, capabilities, domain capabilities and CPU model names.

Units read a fake /proc and /sys tree; the rest runs a real pyvirtd (which probes
the real QEMU) and drives it with stock virsh, python3-libvirt and pyvirt, checking
the figures against /proc and /sys and QEMU's own ``-machine help``/``-cpu help``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import pyvirt
from pyvirt.drivers.qemu import hostinfo
from pyvirt.drivers.qemu.domcaps import cpumap
from pyvirt.drivers.qemu.domcaps.cache import CapsCache
from pyvirt.drivers.qemu.domcaps.probe import AccelProbe, CPUModel, Machine, Probe

EMULATOR = "/usr/bin/qemu-system-x86_64"
TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
needs_virsh = pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")
needs_qemu = pytest.mark.skipif(not os.access(EMULATOR, os.X_OK), reason="qemu-system-x86_64 not installed")


# -- a fake host -----------------------------------------------------------------------

def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def fake_host(tmp_path):
    """Two NUMA nodes, each one socket of two cores with two threads: 8 CPUs."""
    root = tmp_path / "host"
    _write(root, "proc/meminfo", "MemTotal:       16000000 kB\nMemFree:         9000000 kB\n"
                                 "MemAvailable:   12000000 kB\nBuffers:          100000 kB\n"
                                 "Cached:          2000000 kB\nSwapCached:            0 kB\n")
    _write(root, "proc/cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                                 "model\t\t: 1\nstepping\t: 1\nmicrocode\t: 0xa0011d1\ncpu MHz\t\t: 2994.374\n"
                                 "flags\t\t: fpu sse sse2\naddress sizes\t: 48 bits physical, 48 bits virtual\n")
    _write(root, "proc/stat", "cpu  100 20 30 400 5 6 7 0 0 0\ncpu0 50 10 15 200 2 3 4 0 0 0\n"
                              "cpu1 50 10 15 200 3 3 3 0 0 0\nintr 12345\n")
    _write(root, "sys/devices/system/cpu/online", "0-7\n")
    _write(root, "sys/devices/system/node/online", "0-1\n")
    for node in (0, 1):
        base = f"sys/devices/system/node/node{node}"
        _write(root, f"{base}/cpulist", f"{node * 4}-{node * 4 + 3}\n")
        _write(root, f"{base}/distance", "10 21\n" if node == 0 else "21 10\n")
        _write(root, f"{base}/meminfo", f"Node {node} MemTotal:       8000000 kB\n"
                                        f"Node {node} MemFree:        {4000000 + node * 1000000} kB\n"
                                        f"Node {node} MemUsed:        1 kB\n")
        _write(root, f"{base}/hugepages/hugepages-2048kB/nr_hugepages", "0\n")
    for cpu in range(8):
        base = f"sys/devices/system/cpu/cpu{cpu}/topology"
        _write(root, f"{base}/physical_package_id", f"{cpu // 4}\n")
        _write(root, f"{base}/die_id", "0\n")
        _write(root, f"{base}/core_id", f"{(cpu % 4) // 2}\n")
        _write(root, f"{base}/thread_siblings_list", f"{cpu - cpu % 2}-{cpu - cpu % 2 + 1}\n")
    return root


def test_node_info_from_the_topology(fake_host):
    info = hostinfo.node_info(fake_host)
    assert (info.memory_kib, info.cpus, info.mhz) == (16000000, 8, 2994)
    assert (info.nodes, info.sockets, info.cores, info.threads) == (2, 1, 2, 2)


def test_node_info_memory_is_the_cells_sum_as_libvirts(fake_host):
    # memory outside every NUMA node (seen on hosts with hot-added memory): libvirt's
    # virNodeGetInfo sums the nodes, not /proc/meminfo's MemTotal
    _write(fake_host, "proc/meminfo", "MemTotal:       24000000 kB\nMemFree:         9000000 kB\n")
    assert hostinfo.node_info(fake_host).memory_kib == 16000000
    assert hostinfo.memory_stats(-1, 4, 0, fake_host)[0][0] == ("total", 24000000)   # the stats keep meminfo's


def test_node_info_flat_when_the_topology_does_not_multiply_out(fake_host):
    _write(fake_host, "sys/devices/system/cpu/online", "0-6\n")     # one CPU offline
    info = hostinfo.node_info(fake_host)
    assert (info.cpus, info.nodes, info.sockets, info.cores, info.threads) == (7, 1, 1, 7, 1)


def test_memory_stats_whole_host_and_per_cell(fake_host):
    assert hostinfo.memory_stats(-1, 0, 0, fake_host) == ([], 4)
    assert hostinfo.memory_stats(-1, 4, 0, fake_host) == (
        [("total", 16000000), ("free", 9000000), ("buffers", 100000), ("cached", 2000000)], 4)
    assert hostinfo.memory_stats(1, 4, 0, fake_host) == ([("total", 8000000), ("free", 5000000)], 2)
    with pytest.raises(pyvirt.libvirtError) as info:
        hostinfo.memory_stats(2, 0, 0, fake_host)
    assert str(info.value) == "cellNum in virHostMemGetStats must be less than or equal to 1"
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    with pytest.raises(pyvirt.libvirtError, match=r"unsupported flags \(0x1\) in function virHostMemGetStats"):
        hostinfo.memory_stats(-1, 4, 1, fake_host)


def test_cpu_stats_are_libvirts_sums_in_nanoseconds(fake_host):
    assert hostinfo.cpu_stats(-1, 0, 0, fake_host) == ([], 4)
    params, n = hostinfo.cpu_stats(-1, 4, 0, fake_host)
    # kernel = system + irq + softirq, user = user + nice
    assert dict(params) == {"kernel": (30 + 6 + 7) * TICK_NS, "user": 120 * TICK_NS,
                            "idle": 400 * TICK_NS, "iowait": 5 * TICK_NS} and n == 4
    assert dict(hostinfo.cpu_stats(1, 4, 0, fake_host)[0])["iowait"] == 3 * TICK_NS
    with pytest.raises(pyvirt.libvirtError, match="^Invalid cpuNum in virHostCPUGetStatsLinux$"):
        hostinfo.cpu_stats(5, 4, 0, fake_host)


def test_free_memory_per_cell_and_in_total(fake_host):
    assert hostinfo.cells_free_memory(0, 4, fake_host) == [4000000 * 1024, 5000000 * 1024]
    assert hostinfo.cells_free_memory(1, 1, fake_host) == [5000000 * 1024]
    assert hostinfo.free_memory(fake_host) == 9000000 * 1024
    with pytest.raises(pyvirt.libvirtError) as info:
        hostinfo.cells_free_memory(2, 1, fake_host)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    assert str(info.value) == "invalid argument: start cell 2 out of range (0-1)"


def test_capabilities_topology_of_the_fake_host(fake_host):
    from pyvirt.drivers.qemu.domcaps.hostxml import HostFacts, capabilities_xml
    root = ET.fromstring(capabilities_xml(None, HostFacts("u-u-i-d", False, None, fake_host)))
    cells = root.findall("./host/topology/cells/cell")
    assert [c.get("id") for c in cells] == ["0", "1"]
    assert cells[1].find("memory").text == "8000000"
    assert [(s.get("id"), s.get("value")) for s in cells[1].findall("distances/sibling")] == [("0", "21"), ("1", "10")]
    cpus = cells[1].findall("cpus/cpu")
    assert [(c.get("id"), c.get("socket_id"), c.get("core_id"), c.get("siblings")) for c in cpus] == [
        ("4", "1", "0", "4-5"), ("5", "1", "0", "4-5"), ("6", "1", "1", "6-7"), ("7", "1", "1", "6-7")]
    cpu = root.find("./host/cpu")
    assert cpu.find("vendor").text == "AMD"
    assert cpu.find("microcode").get("version") == str(0xa0011d1)
    assert cpu.find("signature").attrib == {"family": "25", "model": "1", "stepping": "1"}
    assert cpu.find("topology").attrib == {"sockets": "1", "dies": "1", "cores": "2", "threads": "2"}
    assert cpu.find("maxphysaddr").get("bits") == "48"


# -- sysinfo ------------------------------------------------------------------------------

DMIDECODE = """\
BIOS Information
\tVendor: SeaBIOS
\tVersion: 1.16.2-debian-1.16.2-1
\tRelease Date: 04/01/2014
\tBIOS Revision: 0.0

System Information
\tManufacturer: QEMU
\tProduct Name: Standard PC (Q35 + ICH9, 2009)
\tVersion: pc-q35-7.2
\tSerial Number: Not Specified
\tUUID: 3a1b2c3d-0000-4000-8000-0123456789ab
\tFamily: Not Specified
"""


def test_sysinfo_from_sysfs_when_dmidecode_is_absent(tmp_path):
    dmi = tmp_path / "sys/class/dmi/id"
    for name, value in {"bios_vendor": "SeaBIOS", "bios_version": "1.16", "sys_vendor": "QEMU & Co",
                        "product_name": "Standard PC", "board_vendor": "Acme"}.items():
        _write(tmp_path, f"sys/class/dmi/id/{name}", value + "\n")
    (dmi / "product_serial").write_text("secret\n")
    (dmi / "product_serial").chmod(0)       # unreadable as non-root: left out, never an error
    xml = hostinfo.format_sysinfo(hostinfo.sysinfo(tmp_path, dmidecode=None))
    root = ET.fromstring(xml)
    assert root.tag == "sysinfo" and root.get("type") == "smbios"
    assert {e.get("name"): e.text for e in root.find("system")}["manufacturer"] == "QEMU & Co"
    assert {e.get("name"): e.text for e in root.find("bios")} == {"vendor": "SeaBIOS", "version": "1.16"}
    assert [e.tag for e in root] == ["bios", "system", "baseBoard"]


def test_sysinfo_without_any_source_is_libvirts_error(tmp_path):
    with pytest.raises(pyvirt.libvirtError) as info:
        hostinfo.sysinfo(tmp_path, dmidecode=None)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_CONFIG_UNSUPPORTED
    assert str(info.value) == "unsupported configuration: Host SMBIOS information is not available"


def test_dmidecode_output_parsed():
    info = dict(hostinfo.parse_dmidecode(DMIDECODE))
    assert info["bios"] == [("vendor", "SeaBIOS"), ("version", "1.16.2-debian-1.16.2-1"),
                            ("date", "04/01/2014"), ("release", "0.0")]
    assert ("uuid", "3a1b2c3d-0000-4000-8000-0123456789ab") in info["system"]


def test_max_vcpus():
    assert hostinfo.max_vcpus(None) == hostinfo.max_vcpus("QEMU") == 16
    with pytest.raises(pyvirt.libvirtError, match="unknown type 'xen'"):
        hostinfo.max_vcpus("xen")
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert hostinfo.max_vcpus("kvm") > 16


# -- the probe cache ----------------------------------------------------------------------------

def _tiny_probe(path: str) -> Probe:
    return Probe(path, 7002000, "", "x86_64", [Machine("pc-i440fx-7.2", "pc", 255, True, False)],
                 ["VGA"], ["query-version"], ["vnc"], [],
                 {"tcg": AccelProbe("tcg", "AuthenticAMD", ["fpu"], ["fpu"],
                                    [CPUModel("qemu64", True, "AuthenticAMD", ["fpu"], [])])})


def test_cache_probes_once_per_binary_build_and_keeps_it_on_disk(tmp_path):
    binary = tmp_path / "qemu-system-x86_64"
    binary.write_bytes(b"#!/bin/false\n")
    asked: list[str] = []

    async def prober(path: str) -> Probe:
        asked.append(path)
        return _tiny_probe(path)

    async def scenario() -> None:
        cache = CapsCache(tmp_path / "caps", prober)
        first, again = await asyncio.gather(cache.get(str(binary)), cache.get(str(binary)))
        assert first is again and len(asked) == 1                # concurrent callers share the probe
        assert (await cache.get(str(binary))).machines[0].alias == "pc" and len(asked) == 1
        fresh = CapsCache(tmp_path / "caps", prober)              # a restarted daemon: from disk
        assert (await fresh.get(str(binary))).accels["tcg"].models[0].name == "qemu64"
        assert len(asked) == 1
        binary.write_bytes(b"#!/bin/false\n# rebuilt\n")           # the binary changed
        await fresh.get(str(binary))
        assert len(asked) == 2
        st = binary.stat()
        os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))   # touched only
        await fresh.get(str(binary))
        assert len(asked) == 3
        with pytest.raises(pyvirt.libvirtError) as info:
            await fresh.get(str(tmp_path / "missing"))
        assert info.value.get_error_code() == pyvirt.VIR_ERR_SYSTEM_ERROR
        assert "Cannot check QEMU binary" in str(info.value)

    asyncio.run(scenario())


@needs_qemu
def test_real_probe_of_a_copied_binary_follows_its_changes(tmp_path):
    """The real QEMU probed once per binary; a binary that changes (here a wrapper
    running the real QEMU, rewritten: a new build as far as the stamp can tell)
    is probed again, and the answers match QEMU's own -machine help."""
    from pyvirt.drivers.qemu.domcaps.probe import probe

    async def prober(path: str) -> Probe:
        return await probe(path, ["tcg"], tmp_path, None)

    wrapper = tmp_path / "bin" / "qemu-system-x86_64"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {EMULATOR} "$@"\n')
    wrapper.chmod(0o755)

    async def scenario() -> tuple[Probe, int]:
        cache = CapsCache(tmp_path / "caps", prober)
        p = await cache.get(EMULATOR)
        await cache.get(EMULATOR)
        assert cache.probes == 1
        assert (await cache.get(str(wrapper))).version == p.version
        assert cache.probes == 2
        await cache.get(str(wrapper))
        assert cache.probes == 2
        wrapper.write_text(f'#!/bin/sh\n# rebuilt\nexec {EMULATOR} "$@"\n')
        assert (await cache.get(str(wrapper))).emulator == str(wrapper)
        assert cache.probes == 3
        return p, cache.probes

    p, _ = asyncio.run(scenario())
    names, aliases, default = _qemu_machine_help()
    assert {m.name for m in p.machines} == names
    assert {m.alias: m.name for m in p.machines if m.alias} == aliases
    assert next(m.name for m in p.machines if m.is_default) == default


# -- QEMU's own word, for comparison ---------------------------------------------------------

def _qemu_machine_help() -> tuple[set[str], dict[str, str], str]:
    out = subprocess.run([EMULATOR, "-machine", "help"], capture_output=True, text=True, check=True).stdout
    names, aliases, default = set(), {}, ""
    for line in out.splitlines()[1:]:
        name = line.split()[0]
        alias = re.search(r"\(alias of (\S+)\)", line)
        if alias:
            aliases[name] = alias.group(1)
            continue
        if name != "none":
            names.add(name)
        if "(default)" in line:
            default = name
    return names, aliases, default


def _qemu_cpu_models() -> set[str]:
    out = subprocess.run([EMULATOR, "-machine", "none", "-cpu", "help"], capture_output=True,
                         text=True, check=True).stdout
    models = set()
    for line in out.splitlines():
        m = re.match(r"x86 (\S+)", line)
        if m and not re.search(r"-v\d+$", m.group(1)) and m.group(1) not in ("host", "max", "base"):
            models.add(m.group(1))
    return models


def _meminfo() -> dict[str, int]:
    return hostinfo.meminfo(Path("/"))


def _proc_stat_cpu() -> dict[str, int]:
    return dict(hostinfo.cpu_stats(-1, 4, 0)[0])


# -- against a real pyvirtd ----------------------------------------------------------------------

LIBVIRT_SCRIPT = textwrap.dedent("""
    import json, sys, libvirt
    c = libvirt.open(sys.argv[1])
    out = {"info": c.getInfo(), "mem": c.getMemoryStats(-1), "mem0": c.getMemoryStats(0),
           "cpu": c.getCPUStats(-1), "cpu0": c.getCPUStats(0), "free": c.getFreeMemory(),
           "cells": c.getCellsFreeMemory(0, 8), "max_none": c.getMaxVcpus(None),
           "max_kvm": c.getMaxVcpus("kvm"), "caps": c.getCapabilities(),
           "domcaps": c.getDomainCapabilities(), "domcaps_q35": c.getDomainCapabilities(None, None, "q35", "qemu"),
           "models": c.getCPUModelNames("x86_64"), "models_arm": c.getCPUModelNames("aarch64")}
    errors = {}
    for name, call in [("sysinfo", lambda: c.getSysinfo()), ("xen", lambda: c.getMaxVcpus("xen")),
                       ("cell", lambda: c.getMemoryStats(9)), ("cpu", lambda: c.getCPUStats(999)),
                       ("start", lambda: c.getCellsFreeMemory(99, 1)),
                       ("arch", lambda: c.getCPUModelNames("nosuch")),
                       ("machine", lambda: c.getDomainCapabilities(None, None, "nosuch")),
                       ("virttype", lambda: c.getDomainCapabilities(None, None, None, "xen")),
                       ("flags", lambda: c.getSysinfo(1))]:
        try:
            call()
            errors[name] = None
        except libvirt.libvirtError as e:
            errors[name] = [e.get_error_code(), e.get_error_domain(), e.get_error_message()]
    out["errors"] = errors
    ro = libvirt.openReadOnly(sys.argv[1])
    out["ro_info"] = ro.getInfo()
    try:
        ro.getDomainCapabilities()
        out["ro_domcaps"] = None
    except libvirt.libvirtError as e:
        out["ro_domcaps"] = [e.get_error_code(), e.get_error_message()]
    print(json.dumps(out))
""")


def _python3_libvirt(uri: str, workdir: Path) -> dict:
    if subprocess.run(["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    script = workdir / "host_calls.py"
    script.write_text(LIBVIRT_SCRIPT)
    out = subprocess.run(["/usr/bin/python3", str(script), uri], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from daemons import Pyvirtd
    d = Pyvirtd(tmp_path_factory.mktemp("hostcaps") / "host")
    try:
        d.start()
        yield d
    finally:
        leaked = d.cleanup()
    assert not leaked


@needs_qemu
def test_python3_libvirt_figures_match_the_host(daemon):
    before_mem, before_cpu = _meminfo(), _proc_stat_cpu()
    got = _python3_libvirt(daemon.uri, daemon.workdir)
    after_mem, after_cpu = _meminfo(), _proc_stat_cpu()
    nodes = hostinfo.numa_nodes(Path("/")) or [0]

    model, memory_mib, cpus, mhz, n_nodes, sockets, cores, threads = got["info"]
    cells_kib = sum(c.memory_kib for c in hostinfo.cells(Path("/")))     # libvirt sums the NUMA nodes
    assert model == os.uname().machine and memory_mib == cells_kib // 1024
    assert cpus == len(hostinfo.online_cpus(Path("/"))) == n_nodes * sockets * cores * threads
    assert n_nodes in (1, len(nodes))
    assert got["mem"]["total"] == before_mem["MemTotal"] and set(got["mem"]) == {"total", "free", "buffers", "cached"}
    slack = 256 * 1024                                   # KiB other processes may take or give back meanwhile
    lo, hi = min(before_mem["MemFree"], after_mem["MemFree"]) - slack, max(before_mem["MemFree"], after_mem["MemFree"]) + slack
    assert lo <= got["mem"]["free"] <= hi
    # free memory is the cells' sum (libvirt's virNodeGetFreeMemory), which is meminfo's
    # only where the NUMA nodes cover all of the host's memory
    cells_free = [sum(c.free_kib for c in hostinfo.cells(Path("/"))) for _ in range(2)]
    flo, fhi = min(cells_free) - slack, max(cells_free) + slack
    assert flo * 1024 <= got["free"] <= fhi * 1024
    assert len(got["cells"]) == len(nodes) and flo * 1024 <= sum(got["cells"]) <= fhi * 1024
    for field in ("kernel", "user", "idle", "iowait"):   # monotonic counters: between two readings
        assert before_cpu[field] <= got["cpu"][field] <= after_cpu[field]
    assert got["cpu0"]["idle"] <= got["cpu"]["idle"]
    assert got["max_none"] == 16
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert got["max_kvm"] == hostinfo.kvm_max_vcpus()

    errors = got["errors"]
    assert errors["sysinfo"] is None or errors["sysinfo"][2] == \
        "unsupported configuration: Host SMBIOS information is not available"
    assert errors["xen"] == [pyvirt.VIR_ERR_INVALID_ARG, pyvirt.VIR_FROM_QEMU, "invalid argument: unknown type 'xen'"]
    assert errors["cell"][0] == pyvirt.VIR_ERR_INVALID_ARG and "cellNum in virHostMemGetStats" in errors["cell"][2]
    assert errors["cpu"] == [pyvirt.VIR_ERR_INVALID_ARG, 0, "Invalid cpuNum in virHostCPUGetStatsLinux"]
    assert errors["start"][0] == pyvirt.VIR_ERR_INVALID_ARG and "start cell 99 out of range" in errors["start"][2]
    assert errors["arch"] == [pyvirt.VIR_ERR_INVALID_ARG, pyvirt.VIR_FROM_QEMU,
                              "invalid argument: cannot find architecture nosuch"]
    assert errors["machine"][2] == f"invalid argument: the machine 'nosuch' is not supported by emulator '{EMULATOR}'"
    assert errors["virttype"][2] == f"invalid argument: Emulator '{EMULATOR}' does not support virt type 'xen'"
    assert errors["flags"][2] == "unsupported flags (0x1) in function qemuConnectGetSysinfo"
    assert got["ro_info"] == got["info"]
    assert got["ro_domcaps"] == [pyvirt.VIR_ERR_OPERATION_DENIED,
                                 "operation forbidden: read only access prevents virConnectGetDomainCapabilities"]


@needs_qemu
def test_capabilities_and_domain_capabilities_say_what_qemu_says(daemon):
    got = _python3_libvirt(daemon.uri, daemon.workdir)
    names, aliases, default = _qemu_machine_help()
    caps = ET.fromstring(got["caps"])
    assert caps.find("./host/uuid").text == daemon.host_uuid
    guest = caps.find("./guest/arch[@name='x86_64']")
    assert guest.find("emulator").text == EMULATOR
    machines = guest.findall("machine")
    assert {m.text for m in machines if m.get("canonical") is None} == names
    assert {m.text: m.get("canonical") for m in machines if m.get("canonical")} == aliases
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
    assert [d.get("type") for d in guest.findall("domain")] == (["qemu", "kvm"] if kvm else ["qemu"])
    # NUMA cells as /sys has them
    nodes = hostinfo.numa_nodes(Path("/")) or [0]
    cells = caps.findall("./host/topology/cells/cell")
    assert [int(c.get("id")) for c in cells] == nodes
    cpu_ids = sorted(int(c.get("id")) for cell in cells for c in cell.findall("cpus/cpu"))
    assert cpu_ids == hostinfo.online_cpus(Path("/"))
    # the host CPU is one of QEMU's named models
    qemu_models = _qemu_cpu_models()
    host_model = caps.find("./host/cpu/model")
    assert host_model is not None and host_model.text in qemu_models

    dom = ET.fromstring(got["domcaps"])
    assert dom.find("path").text == EMULATOR
    assert dom.find("domain").text == ("kvm" if kvm else "qemu")
    assert dom.find("machine").text == default
    custom = dom.findall("./cpu/mode[@name='custom']/model")
    assert {m.text for m in custom} == qemu_models
    # getCPUModelNames is libvirt's CPU map (its order, models QEMU may lack), not QEMU's list
    assert got["models"] == cpumap.X86 and got["models"][:3] == ["486", "pentium", "pentium2"]
    assert "cpu64-rhel6" in got["models"] and got["models_arm"] == []
    assert all(m.get("usable") in ("yes", "no") for m in custom)
    hm = dom.find("./cpu/mode[@name='host-model']/model")
    assert hm is not None and hm.text in qemu_models
    assert dom.find("./cpu/mode[@name='host-passthrough']").get("supported") == ("yes" if kvm else "no")
    video = {v.text for v in dom.findall("./devices/video/enum[@name='modelType']/value")}
    assert {"vga", "virtio", "none"} <= video
    assert {v.text for v in dom.findall("./devices/disk/enum[@name='bus']/value")} >= {"virtio", "scsi", "usb", "sata"}
    q35 = ET.fromstring(got["domcaps_q35"])
    assert (q35.find("machine").text, q35.find("domain").text) == (aliases["q35"], "qemu")
    assert q35.find("vcpu").get("max") == "288"
    assert q35.find("./cpu/mode[@name='host-passthrough']").get("supported") == "no"
    assert got["models_arm"] == []


@needs_qemu
def test_qemu_is_probed_once_and_the_cache_survives_a_restart(daemon):
    """The probe's answers are on disk after the first call and not rewritten by later calls
    or by the next daemon (whose answers come from that file)."""
    conn = pyvirt.open(daemon.uri)
    try:
        first = conn.getDomainCapabilities()
        # one file per binary (getCapabilities probes the other architectures' emulators too)
        files = [f for f in (daemon.state_dir / "cache" / "qemu" / "capabilities").glob("*.json")
                 if json.loads(f.read_text())["stamp"]["path"] == EMULATOR]
        assert len(files) == 1
        stamp = files[0].stat()
        for _ in range(3):
            assert conn.getDomainCapabilities() == first
        assert conn.getCPUModelNames("x86_64")
    finally:
        conn.close()
    daemon.stop()
    daemon.start()
    conn = pyvirt.open(daemon.uri)
    try:
        assert conn.getDomainCapabilities() == first
    finally:
        conn.close()
    again = files[0].stat()
    assert (again.st_ino, again.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)
    stamp_data = json.loads(files[0].read_text())["stamp"]
    assert stamp_data["path"] == EMULATOR and stamp_data["size"] == os.stat(EMULATOR).st_size


@needs_qemu
def test_pyvirt_client_returns_libvirt_pythons_shapes(daemon):
    theirs = _python3_libvirt(daemon.uri, daemon.workdir)
    conn = pyvirt.open(daemon.uri)
    try:
        ours = {"info": conn.getInfo(), "mem": conn.getMemoryStats(pyvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS),
                "cpu": conn.getCPUStats(pyvirt.VIR_NODE_CPU_STATS_ALL_CPUS), "free": conn.getFreeMemory(),
                "cells": conn.getCellsFreeMemory(0, 8), "max": conn.getMaxVcpus(None),
                "models": conn.getCPUModelNames("x86_64"), "domcaps": conn.getDomainCapabilities()}
        with pytest.raises(pyvirt.libvirtError) as info:
            conn.getCPUStats(999)
        assert info.value.get_error_message() == theirs["errors"]["cpu"][2]
    finally:
        conn.close()
    assert ours["info"] == theirs["info"] and isinstance(ours["info"], list)
    assert set(ours["mem"]) == set(theirs["mem"]) and set(ours["cpu"]) == set(theirs["cpu"])
    assert all(isinstance(v, int) for v in [*ours["mem"].values(), *ours["cpu"].values(), ours["free"]])
    assert isinstance(ours["cells"], list) and len(ours["cells"]) == len(theirs["cells"])
    assert ours["max"] == theirs["max_none"]
    assert ours["models"] == theirs["models"] and ours["domcaps"] == theirs["domcaps"]


# -- the command line against stock virsh, on the same daemon -----------------------------------

def _run(tool: list[str], uri: str, command: str) -> tuple[int, str, str]:
    out = subprocess.run([*tool, "-c", uri, *command.split()], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)))
    # after a failed command virsh still prints its blank separator line; pyvirt's CLI
    # does not (as for every command, see test_cli.py): compare the rest
    stdout = out.stdout if out.returncode == 0 else out.stdout.strip()
    return out.returncode, stdout, out.stderr


STABLE = ["nodeinfo", "capabilities", "domcapabilities", "domcapabilities --virttype qemu --machine q35",
          "domcapabilities --machine nosuch", "domcapabilities --arch aarch64", "cpu-models x86_64",
          "cpu-models aarch64", "cpu-models nosuch", "cpu-models ppc64le", "cpu-models riscv64", "maxvcpus", "maxvcpus --type qemu", "sysinfo",
          "freecell --cellno 99", "nodecpustats --cpu 999", "nodememstats --cell 99",
          "freecell --all --cellno 0"]
# figures that move between two calls: compared with the numbers masked
MOVING = ["nodememstats", "nodememstats --cell 0", "nodecpustats", "nodecpustats --cpu 0", "freecell",
          "freecell --all", "freecell --cellno 0", "nodecpustats --percent"]


@needs_virsh
@needs_qemu
@pytest.mark.parametrize("command", STABLE + MOVING)
def test_cli_output_matches_virsh(daemon, command):
    theirs = _run(["virsh"], daemon.uri, command)
    ours = _run([sys.executable, "-m", "pyvirt.cli"], daemon.uri, command)
    if command in MOVING:
        # a figure and the padding before it (its width moves with it)
        mask = lambda r: (r[0], re.sub(r" *\d+(\.\d+)?", " N", r[1]), r[2])  # noqa: E731
        theirs, ours = mask(theirs), mask(ours)
    assert ours == theirs


@needs_virsh
@needs_qemu
def test_cli_read_only_maxvcpus_falls_back_like_virsh(daemon):
    for command in ("maxvcpus", "domcapabilities"):
        theirs = _run(["virsh", "-r"], daemon.uri, command)
        ours = _run([sys.executable, "-m", "pyvirt.cli", "-r"], daemon.uri, command)
        assert ours == theirs


# -- beside a real libvirtd 9.0 on the same machine ------------------------------------------------

def _strip_cpu_lists(text: str) -> str:
    """Domain capabilities without the per-model lines: libvirt names models and features
    from its own CPU map, pyvirt from QEMU's definitions (compared separately)."""
    return "\n".join(line for line in text.splitlines()
                     if "<feature policy=" not in line and "<model usable=" not in line)


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory):
    from daemons import running_libvirtd
    with running_libvirtd(tmp_path_factory.mktemp("libvirtd-host")) as host:
        yield host


@pytest.mark.libvirtd
@needs_virsh
@needs_qemu
def test_same_answers_as_libvirtd(daemon, libvirtd, tmp_path):
    virsh = lambda uri, cmd: _run(["virsh"], uri, cmd)  # noqa: E731
    # emulator binaries libvirt will not probe: missing, a directory, a file without x bits
    tmp_path.chmod(0o755)
    (tmp_path / "dir").mkdir()
    (tmp_path / "plain").write_text("#!/bin/sh\n")
    for name in ("missing", "dir", "plain"):
        command = f"domcapabilities --emulatorbin {tmp_path / name}"
        assert virsh(daemon.uri, command) == virsh(libvirtd.uri, command), command
    for command in ("nodeinfo", "maxvcpus", "maxvcpus --type qemu", "sysinfo", "cpu-models x86_64",
                    "cpu-models i686", "cpu-models ppc64le", "cpu-models aarch64", "cpu-models s390x",
                    "cpu-models riscv64", "nodememstats --cell 99"):
        assert virsh(daemon.uri, command) == virsh(libvirtd.uri, command), command
    # a start cell out of range: libvirtd's text, but filed as the caller's error (libvirtd: INTERNAL_ERROR)
    for command in ("freecell --cellno 5", "freecell --cellno -1"):
        ours, theirs = virsh(daemon.uri, command), virsh(libvirtd.uri, command)
        assert ours[2].replace("error: invalid argument: ", "") == theirs[2].replace("error: internal error: ", "")
    for command in ("domcapabilities", "domcapabilities --virttype qemu", "domcapabilities --machine q35"):
        ours, theirs = virsh(daemon.uri, command), virsh(libvirtd.uri, command)
        assert _strip_cpu_lists(ours[1]) == _strip_cpu_lists(theirs[1]), command
        ours_x, theirs_x = ET.fromstring(ours[1]), ET.fromstring(theirs[1])
        hm = "./cpu/mode[@name='host-model']/"
        assert ours_x.find(hm + "model").text == theirs_x.find(hm + "model").text, command
        usable = lambda root: {m.text: (m.get("usable"), m.get("vendor"))  # noqa: E731
                               for m in root.findall("./cpu/mode[@name='custom']/model")}
        ours_u, theirs_u = usable(ours_x), usable(theirs_x)
        common = set(ours_u) & set(theirs_u)
        assert len(common) >= len(theirs_u) - 2 and {n: ours_u[n] for n in common} == {n: theirs_u[n] for n in common}

    ours, theirs = (ET.fromstring(virsh(uri, "capabilities")[1]) for uri in (daemon.uri, libvirtd.uri))
    machines = lambda root, arch="x86_64": [(m.text, m.get("canonical"), m.get("maxCpus"),  # noqa: E731
                                             m.get("deprecated"))
                                            for m in root.findall(f"./guest/arch[@name='{arch}']/machine")]
    assert sorted(machines(ours)) == sorted(machines(theirs)) and machines(ours)[:2] == machines(theirs)[:2]
    # a guest for every architecture an emulator is installed for, in libvirt's order, with its binary
    guests = lambda root: [(g.find("arch").get("name"), g.find("arch/emulator").text)  # noqa: E731
                           for g in root.findall("guest")]
    assert guests(ours) == guests(theirs)
    for arch in [a for a, _e in guests(theirs) if a != "x86_64"]:
        assert sorted(machines(ours, arch)) == sorted(machines(theirs, arch)), arch
        command = f"domcapabilities --arch {arch}"
        ours_d, theirs_d = virsh(daemon.uri, command), virsh(libvirtd.uri, command)
        assert ours_d[0] == theirs_d[0] == 0, (ours_d, theirs_d)
        for path in ("path", "arch", "machine", "vcpu"):
            assert ET.tostring(ET.fromstring(ours_d[1]).find(path)) == ET.tostring(ET.fromstring(theirs_d[1]).find(path))
    # the same named model; its extra features from /proc/cpuinfo (libvirt reads CPUID itself)
    assert ours.find("./host/cpu/model").text == theirs.find("./host/cpu/model").text
    features = lambda root: {f.get("name") for f in root.findall("./host/cpu/feature")}  # noqa: E731
    assert len(features(ours) ^ features(theirs)) <= len(features(theirs)) // 10
    for path in ("./host/cpu/vendor", "./host/cpu/microcode", "./host/cpu/signature", "./host/cpu/topology",
                 "./host/cpu/maxphysaddr"):
        assert ET.tostring(ours.find(path)) == ET.tostring(theirs.find(path)), path
    assert ET.tostring(ours.find("./host/topology")) == ET.tostring(theirs.find("./host/topology"))


@needs_qemu
def test_capabilities_keep_the_host_when_the_emulator_cannot_be_probed(tmp_path):
    """An emulator that does not start: the host part is still answered, with no guest."""
    broken = tmp_path / "qemu-system-x86_64"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    conn = pyvirt.open(f"qemu:///embed?root={tmp_path / 'root'}")
    try:
        drv = conn._drv.driver
        drv.cfg.emulator = str(broken)
        caps = ET.fromstring(conn.getCapabilities())
        assert caps.find("./host/topology/cells/cell") is not None
        assert caps.find("./guest/arch[@name='x86_64']") is None      # others on PATH may still answer
        with pytest.raises(pyvirt.libvirtError) as info:
            conn.getDomainCapabilities()
        assert info.value.get_error_code() == pyvirt.VIR_ERR_INTERNAL_ERROR
        assert str(info.value).startswith(f"internal error: Failed to probe capabilities for {broken}: ")
    finally:
        conn.close()
