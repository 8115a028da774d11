"""The host's own figures, read from /proc and /sys as libvirt's virhostcpu/virhostmem do.

Every function takes ``root`` (``/`` on a real host) so tests can point it at
a copy of the files.  Errors are libvirt's, with its messages: the same
calls against libvirtd and pyvirtd fail alike.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ErrorDomain, ErrorNumber, bare_invalid_arg, error, libvirtError

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
# virNodeGetMemoryStats / virNodeGetCPUStats field names, in libvirt's order.
MEMORY_FIELDS = (("MemTotal", "total"), ("MemFree", "free"), ("Buffers", "buffers"), ("Cached", "cached"))
CPU_FIELDS = ("kernel", "user", "idle", "iowait")
# KVM ioctls for the vCPU limit (linux/kvm.h).
_KVM_CHECK_EXTENSION = 0xAE03
_KVM_CAP_NR_VCPUS, _KVM_CAP_MAX_VCPUS = 9, 66
_KVM_DEFAULT_VCPUS = 4           # what libvirt assumes when KVM does not say
# QEMU's own default for TCG guests (libvirt's qemuConnectGetMaxVcpus).
TCG_MAX_VCPUS = 16


def _none_error(code: ErrorNumber, message: str) -> libvirtError:
    return error(code, ErrorDomain.NONE, message)


def _read(root: Path, rel: str) -> str:
    return (root / rel.lstrip("/")).read_text()


def parse_cpulist(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def meminfo(root: Path, cell: int | None = None) -> dict[str, int]:
    """/proc/meminfo (or a NUMA node's meminfo) as {key: KiB}."""
    rel = "proc/meminfo" if cell is None else f"sys/devices/system/node/node{cell}/meminfo"
    values: dict[str, int] = {}
    for line in _read(root, rel).splitlines():
        if cell is not None:                      # "Node 0 MemFree:   123 kB"
            line = line.split(None, 2)[2] if line.startswith("Node ") else line
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0])
    return values


def numa_nodes(root: Path) -> list[int]:
    """The online NUMA node ids; [] when the kernel exposes no nodes."""
    base = root / "sys/devices/system/node"
    try:
        return parse_cpulist((base / "online").read_text())
    except OSError:
        return sorted(int(p.name[4:]) for p in base.glob("node[0-9]*")) if base.is_dir() else []


def online_cpus(root: Path) -> list[int]:
    try:
        return parse_cpulist(_read(root, "sys/devices/system/cpu/online"))
    except OSError:
        return list(range(os.cpu_count() or 1))


@dataclass
class CPUTopo:
    id: int
    socket: int
    die: int
    core: int
    siblings: str


def _topo_value(root: Path, cpu: int, name: str, default: str = "0") -> str:
    try:
        return _read(root, f"sys/devices/system/cpu/cpu{cpu}/topology/{name}").strip()
    except OSError:
        return default


def cpu_topology(root: Path, cpu: int) -> CPUTopo:
    return CPUTopo(cpu, int(_topo_value(root, cpu, "physical_package_id")),
                   int(_topo_value(root, cpu, "die_id")), int(_topo_value(root, cpu, "core_id")),
                   _topo_value(root, cpu, "thread_siblings_list", str(cpu)))


@dataclass
class Cell:
    id: int
    memory_kib: int
    free_kib: int
    cpus: list[CPUTopo] = field(default_factory=list)
    distances: list[tuple[int, int]] = field(default_factory=list)
    pages: dict[int, int] = field(default_factory=dict)      # page size KiB -> count


def _hugepages(base: Path) -> dict[int, int]:
    pages: dict[int, int] = {}
    for d in base.glob("hugepages-*kB"):
        try:
            pages[int(d.name[len("hugepages-"):-2])] = int((d / "nr_hugepages").read_text())
        except (OSError, ValueError):
            continue
    return dict(sorted(pages.items()))


def hugepage_sizes(root: Path) -> list[int]:
    return sorted(_hugepages(root / "sys/kernel/mm/hugepages"))


def cells(root: Path = Path("/")) -> list[Cell]:
    """NUMA cells with their memory, CPUs and distances (one cell for the whole host without NUMA)."""
    online = set(online_cpus(root))
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    result: list[Cell] = []
    nodes = numa_nodes(root)
    for node in nodes:
        base = root / f"sys/devices/system/node/node{node}"
        info = meminfo(root, node)
        try:
            cpus = [c for c in parse_cpulist((base / "cpulist").read_text()) if c in online]
        except OSError:
            cpus = []
        try:
            dist = [int(x) for x in (base / "distance").read_text().split()]
        except (OSError, ValueError):
            dist = []
        cell = Cell(node, info.get("MemTotal", 0), info.get("MemFree", 0),
                    [cpu_topology(root, c) for c in cpus], list(zip(nodes, dist)))
        huge = _hugepages(base / "hugepages")
        cell.pages = {page_kib: (cell.memory_kib - sum(k * n for k, n in huge.items())) // page_kib, **huge}
        result.append(cell)
    if not result:
        info = meminfo(root)
        result.append(Cell(0, info.get("MemTotal", 0), info.get("MemFree", 0),
                           [cpu_topology(root, c) for c in sorted(online)], [(0, 10)]))
    return result


def _cpuinfo_value(root: Path, key: str) -> str:
    try:
        for line in _read(root, "proc/cpuinfo").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return ""


def cpuinfo_value(key: str, root: Path = Path("/")) -> str:
    return _cpuinfo_value(root, key)


@dataclass
class NodeInfo:
    model: str
    memory_kib: int
    cpus: int
    mhz: int
    nodes: int
    sockets: int
    cores: int
    threads: int

    def as_tuple(self) -> tuple[str, int, int, int, int, int, int, int]:
        return (self.model, self.memory_kib, self.cpus, self.mhz, self.nodes, self.sockets,
                self.cores, self.threads)


def node_info(root: Path = Path("/")) -> NodeInfo:
    """virNodeGetInfo: per node, the largest socket, core and thread counts (libvirt's
    virHostCPUGetInfoPopulateLinux); a topology that does not multiply out to the CPU
    count is reported flat, as libvirt does."""
    all_cells = cells(root)
    cpus = sum(len(c.cpus) for c in all_cells)
    sockets = cores = threads = 1
    for cell in all_cells:
        by_socket: dict[tuple[int, int], dict[int, int]] = {}
        for t in cell.cpus:
            by_socket.setdefault((t.socket, t.die), {}).setdefault(t.core, 0)
            by_socket[(t.socket, t.die)][t.core] += 1
        if by_socket:
            sockets = max(sockets, len(by_socket))
            cores = max(cores, max(len(c) for c in by_socket.values()))
            threads = max(threads, max(n for c in by_socket.values() for n in c.values()))
    nodes = len(all_cells)
    if nodes * sockets * cores * threads != cpus:
        nodes, sockets, cores, threads = 1, 1, cpus, 1
    try:
        mhz = int(float(_cpuinfo_value(root, "cpu MHz") or 0))
    except ValueError:
        mhz = 0
    # memory summed over the NUMA cells, as libvirt's virHostMemGetInfo: a host whose
    # nodes do not cover /proc/meminfo's total (memory outside any node) shows less
    return NodeInfo(os.uname().machine, sum(c.memory_kib for c in all_cells), cpus, mhz,
                    nodes, sockets, cores, threads)


def _max_cell(root: Path) -> int:
    nodes = numa_nodes(root)
    return max(nodes) if nodes else 0


def memory_stats(cell: int, nparams: int, flags: int, root: Path = Path("/")) -> tuple[list[tuple[str, int]], int]:
    """virNodeGetMemoryStats: (params, nparams); with nparams 0 only the count."""
    if flags:
        raise bare_invalid_arg(f"unsupported flags (0x{flags:x}) in function virHostMemGetStats")
    if cell != -1:                                  # VIR_NODE_MEMORY_STATS_ALL_CELLS
        top = _max_cell(root)
        if cell < 0 or cell > top:
            raise bare_invalid_arg(f"cellNum in virHostMemGetStats must be less than or equal to {top}")
    count = len(MEMORY_FIELDS)
    if nparams == 0:
        return [], count
    if nparams != count:
        raise bare_invalid_arg(f"nparams in virHostMemGetStatsLinux must be {count}")
    info = meminfo(root, cell) if cell != -1 and numa_nodes(root) else meminfo(root)
    params = [(name, info[key]) for key, name in MEMORY_FIELDS if key in info]
    return params, len(params)


def cpu_stats(cpu: int, nparams: int, flags: int, root: Path = Path("/")) -> tuple[list[tuple[str, int]], int]:
    """virNodeGetCPUStats from /proc/stat, in nanoseconds: kernel is system + irq + softirq,
    user is user + nice (libvirt's virHostCPUGetStatsLinux)."""
    if flags:
        raise bare_invalid_arg(f"unsupported flags (0x{flags:x}) in function virHostCPUGetStats")
    count = len(CPU_FIELDS)
    if nparams == 0:
        return [], count
    if nparams != count:
        raise bare_invalid_arg(f"nparams in virHostCPUGetStatsLinux must be equal to {count}")
    want = "cpu" if cpu == -1 else f"cpu{cpu}"      # VIR_NODE_CPU_STATS_ALL_CPUS
    for line in _read(root, "proc/stat").splitlines():
        fields = line.split()
        if fields and fields[0] == want:
            user, nice, system, idle, iowait, irq, softirq = (int(x) for x in (fields[1:8] + ["0"] * 7)[:7])
            values = ((system + irq + softirq), (user + nice), idle, iowait)
            return [(name, v * _TICK_NS) for name, v in zip(CPU_FIELDS, values)], count
    raise bare_invalid_arg("Invalid cpuNum in virHostCPUGetStatsLinux")


def cells_free_memory(start: int, maxcells: int, root: Path = Path("/")) -> list[int]:
    """virNodeGetCellsFreeMemory: free bytes of cells start .. start + maxcells - 1."""
    top = _max_cell(root)
    if start < 0 or start > top:
        # libvirt's text; its code is INTERNAL_ERROR, but the caller's argument is what is wrong
        raise _none_error(ErrorNumber.INVALID_ARG, f"start cell {start} out of range (0-{top})")
    last = min(start + maxcells - 1, top)
    by_id = {c.id: c for c in cells(root)}
    return [by_id[n].free_kib * 1024 if n in by_id else 0 for n in range(start, last + 1)]


def free_memory(root: Path = Path("/")) -> int:
    """virNodeGetFreeMemory: free bytes summed over the NUMA cells."""
    return sum(c.free_kib for c in cells(root)) * 1024


def kvm_max_vcpus(device: str = "/dev/kvm") -> int:
    """What KVM says a guest may have (KVM_CAP_MAX_VCPUS, else NR_VCPUS, else libvirt's 4)."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return _KVM_DEFAULT_VCPUS
    try:
        for cap in (_KVM_CAP_MAX_VCPUS, _KVM_CAP_NR_VCPUS):
            n = fcntl.ioctl(fd, _KVM_CHECK_EXTENSION, cap)
            if n > 0:
                return n
    except OSError:
        pass
    finally:
        os.close(fd)
    return _KVM_DEFAULT_VCPUS


def max_vcpus(virt_type: str | None) -> int:
    """virConnectGetMaxVcpus of the QEMU driver."""
    if virt_type is None or virt_type.lower() == "qemu":
        return TCG_MAX_VCPUS
    if virt_type.lower() == "kvm":
        return kvm_max_vcpus()
    raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"unknown type '{virt_type}'")


# -- SMBIOS (sysinfo) ------------------------------------------------------------------

# <sysinfo type='smbios'> sections: element, [(entry name, /sys/class/dmi/id file, dmidecode key)]
SMBIOS_SECTIONS: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    ("bios", "BIOS Information", [("vendor", "bios_vendor", "Vendor"), ("version", "bios_version", "Version"),
                                  ("date", "bios_date", "Release Date"),
                                  ("release", "bios_release", "BIOS Revision")]),
    ("system", "System Information", [
        ("manufacturer", "sys_vendor", "Manufacturer"), ("product", "product_name", "Product Name"),
        ("version", "product_version", "Version"), ("serial", "product_serial", "Serial Number"),
        ("uuid", "product_uuid", "UUID"), ("sku", "product_sku", "SKU Number"),
        ("family", "product_family", "Family")]),
    ("baseBoard", "Base Board Information", [
        ("manufacturer", "board_vendor", "Manufacturer"), ("product", "board_name", "Product Name"),
        ("version", "board_version", "Version"), ("serial", "board_serial", "Serial Number"),
        ("asset", "board_asset_tag", "Asset Tag"), ("location", "", "Location In Chassis")]),
    ("chassis", "Chassis Information", [
        ("manufacturer", "chassis_vendor", "Manufacturer"), ("version", "chassis_version", "Version"),
        ("serial", "chassis_serial", "Serial Number"), ("asset", "chassis_asset_tag", "Asset Tag"),
        ("sku", "", "SKU Number")]),
]

Sysinfo = list[tuple[str, list[tuple[str, str]]]]


def _dmidecode(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "-q", "-t", "0,1,2,3"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 and out.stdout.strip() else None


def parse_dmidecode(text: str) -> Sysinfo:
    """``dmidecode -q -t 0,1,2,3`` output -> sections of (entry, value); only set values."""
    blocks: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            current = blocks.setdefault(line.strip(), {})
        elif current is not None and ":" in line:
            key, _, value = line.strip().partition(":")
            current.setdefault(key.strip(), value.strip())
    out: Sysinfo = []
    for element, title, entries in SMBIOS_SECTIONS:
        block = blocks.get(title, {})
        values = [(name, block[key]) for name, _f, key in entries if block.get(key)]
        if values:
            out.append((element, values))
    return out


def read_dmi_sysfs(base: Path) -> Sysinfo:
    """The same sections from /sys/class/dmi/id (unreadable files, such as serials as non-root, left out)."""
    out: Sysinfo = []
    for element, _title, entries in SMBIOS_SECTIONS:
        values = []
        for name, fname, _key in entries:
            if not fname:
                continue
            try:
                value = (base / fname).read_text(errors="replace").strip()
            except OSError:
                continue
            if value:
                values.append((name, value))
        if values:
            out.append((element, values))
    return out


def sysinfo(root: Path = Path("/"), dmidecode: str | None = "") -> Sysinfo:
    """The host's SMBIOS tables: dmidecode's where it works, /sys/class/dmi/id otherwise."""
    binary = shutil.which("dmidecode") if dmidecode == "" else dmidecode
    if binary and root == Path("/"):
        text = _dmidecode(binary)
        if text is not None:
            parsed = parse_dmidecode(text)
            if parsed:
                return parsed
    base = root / "sys/class/dmi/id"
    parsed = read_dmi_sysfs(base) if base.is_dir() else []
    if not parsed:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU, "Host SMBIOS information is not available")
    return parsed


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")


def format_sysinfo(info: Sysinfo) -> str:
    """libvirt's ``<sysinfo type='smbios'>`` (virSysinfoFormat)."""
    lines = ["<sysinfo type='smbios'>"]
    for element, entries in info:
        lines.append(f"  <{element}>")
        lines += [f"    <entry name='{name}'>{_esc(value)}</entry>" for name, value in entries]
        lines.append(f"  </{element}>")
    lines.append("</sysinfo>")
    return "\n".join(lines) + "\n"


def vendor_name(qemu_vendor: str) -> str:
    """CPUID vendor string -> libvirt's vendor name."""
    return {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon",
            "CentaurHauls": "VIA", "  Shanghai  ": "Zhaoxin"}.get(qemu_vendor, qemu_vendor or "unknown")


def address_bits(root: Path = Path("/")) -> int:
    m = re.search(r"(\d+) bits physical", _cpuinfo_value(root, "address sizes"))
    return int(m.group(1)) if m else 0


def check_flags(flags: int, allowed: int, function: str) -> None:
    """virCheckFlags in a QEMU driver entry point (its message has no prefix)."""
    if flags & ~allowed:
        raise bare_invalid_arg(f"unsupported flags (0x{flags & ~allowed:x}) in function {function}",
                               ErrorDomain.QEMU)
