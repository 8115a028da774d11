"""virsh's commands for statistics: domstats, domblkstat, domblkinfo, domblkerror,
domifstat, dommemstat, vcpuinfo, cpu-stats — same options, same output, same errors."""

from __future__ import annotations

import argparse

import pyvirt
from pyvirt.errors import ErrorNumber, libvirtError

from .domain_cmds import add_domain_arg, lookup
from .output import print_table
from .registry import CommandError, Handler, command

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

# domstats: option -> VIR_DOMAIN_STATS_* group
_GROUPS = (("state", 1 << 0), ("cpu-total", 1 << 1), ("balloon", 1 << 2), ("vcpu", 1 << 3),
           ("interface", 1 << 4), ("block", 1 << 5), ("perf", 1 << 6), ("iothread", 1 << 7),
           ("memory", 1 << 8), ("dirtyrate", 1 << 9), ("vm", 1 << 10))
_LIST_FLAGS = (("list-active", 1 << 0), ("list-inactive", 1 << 1), ("list-persistent", 1 << 2),
               ("list-transient", 1 << 3), ("list-running", 1 << 4), ("list-paused", 1 << 5),
               ("list-shutoff", 1 << 6), ("list-other", 1 << 7),
               ("enforce", 1 << 31), ("backing", 1 << 30), ("nowait", 1 << 29))
_DOMSTATS_FLAG_HELP = {"enforce": "fail if the daemon does not know a requested group",
                       "backing": "add backing chain information to the block statistics",
                       "nowait": "do not wait for a job holding the domain; report what can be had"}
# domblkstat: typed-parameter field, virsh's legacy name, its --human wording
_BLKSTAT_FIELDS = (
    ("rd_operations", "rd_req", "number of read operations:"),
    ("rd_bytes", "rd_bytes", "number of bytes read:"),
    ("wr_operations", "wr_req", "number of write operations:"),
    ("wr_bytes", "wr_bytes", "number of bytes written:"),
    ("errs", "errs", "error count:"),
    ("flush_operations", None, "number of flush operations:"),
    ("rd_total_times", None, "total duration of reads (ns):"),
    ("wr_total_times", None, "total duration of writes (ns):"),
    ("flush_total_times", None, "total duration of flushes (ns):"),
)
_IFSTAT_FIELDS = ("rx_bytes", "rx_packets", "rx_errs", "rx_drop", "tx_bytes", "tx_packets", "tx_errs", "tx_drop")
_VCPU_STATES = ("offline", "running", "blocked")
_CPU_TIME_FIELDS = ("cpu_time", "user_time", "system_time", "vcpu_time")


def _failed(what: str, exc: libvirtError) -> CommandError:
    err = CommandError(what)
    err.__cause__ = exc
    return err


def param_text(value: Any) -> str:
    """vshGetTypedParamValue: yes/no for booleans, %f for doubles, the rest as is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:f}"
    return str(value)


def pretty_capacity(value: int) -> tuple[float, str]:
    """vshPrettyCapacity: the value in the largest binary unit below it."""
    for power, unit in enumerate(("B", "KiB", "MiB", "GiB", "TiB", "PiB")):
        if value < 1024 ** (power + 1):
            return value / 1024 ** power, unit
    return value / 1024 ** 6, "EiB"


def _lookup_any(conn: pyvirt.virConnect, name: str) -> pyvirt.virDomain:
    ns = argparse.Namespace(domain=name, domain_opt=None)
    return lookup(conn, ns)


@command("domstats", "get statistics about one or multiple domains")
def _domstats(p: argparse.ArgumentParser) -> Handler:
    for name, _bit in _GROUPS:
        p.add_argument(f"--{name}", action="store_true", help=f"report the {name} statistics group")
    for name, _bit in _LIST_FLAGS:
        p.add_argument(f"--{name}", action="store_true", help=_DOMSTATS_FLAG_HELP.get(name)
                       or f"list only {name[len('list-'):]} domains")
    p.add_argument("--raw", action="store_true", help="do not pretty-print the fields")
    p.add_argument("domains", nargs="*", metavar="DOMAIN")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        stats = sum(bit for name, bit in _GROUPS if getattr(args, name.replace("-", "_")))
        flags = sum(bit for name, bit in _LIST_FLAGS if getattr(args, name.replace("-", "_")))
        if args.domains:
            doms = [_lookup_any(conn, name) for name in args.domains]
            records = conn.domainListGetStats(doms, stats, flags)
        else:
            records = conn.getAllDomainStats(stats, flags)
        for n, (dom, params) in enumerate(records):
            if n:
                print()
            print(f"Domain: '{dom.name()}'")
            for field, value in params.items():
                print(f"  {field}={param_text(value)}")
        print()
    return run


@command("domblkstat", "get device block stats for a domain")
def _domblkstat(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("device", nargs="?", default="", metavar="DEVICE")
    p.add_argument("--human", action="store_true", help="print a more human readable output")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        device = args.device or ""
        try:
            params = dom.blockStatsFlags(device, 0)
        except libvirtError as exc:
            if exc.get_error_code() != ErrorNumber.NO_SUPPORT:
                raise
            params = None
        if params is None:
            try:
                rd_req, rd_bytes, wr_req, wr_bytes, errs = dom.blockStats(device)
            except libvirtError as exc:
                raise _failed(f"Failed to get block stats {dom.name()} {device}", exc)
            params = {"rd_operations": rd_req, "rd_bytes": rd_bytes, "wr_operations": wr_req,
                      "wr_bytes": wr_bytes, "errs": errs}
            params = {k: v for k, v in params.items() if v >= 0}
        if args.human:
            print(f"Device: {device}")
            device = ""
        remaining = dict(params)
        for field, legacy, human in _BLKSTAT_FIELDS:
            if field not in remaining:
                continue
            value = remaining.pop(field)
            label = human if args.human else (legacy or field)
            print(f"{device} {label:<{31 if args.human else 0}} {param_text(value)}")
        for field, value in remaining.items():
            print(f"{device} {field} {param_text(value)}")
        print()
    return run


def _blkinfo_cells(capacity: int, allocation: int, physical: int, human: bool) -> list[str]:
    values = (capacity, allocation, physical)
    if not any(values):
        return ["-", "-", "-"]
    if not human:
        return [str(v) for v in values]
    return ["%.3f %s" % pretty_capacity(v) for v in values]


@command("domblkinfo", "domain block device size information")
def _domblkinfo(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("device", nargs="?", metavar="DEVICE")
    p.add_argument("--human", action="store_true", help="Human readable output")
    p.add_argument("--all", action="store_true", help="display all block devices info")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        if args.all and args.device:
            raise CommandError("Options --all and --device are mutually exclusive")
        dom = lookup(conn, args)
        if not args.all and not args.device:
            raise CommandError("command 'domblkinfo' requires <device> option")
        if not args.all:
            cells = _blkinfo_cells(*dom.blockInfo(args.device, 0), args.human)
            for label, cell in zip(("Capacity:", "Allocation:", "Physical:"), cells):
                print(f"{label:<15} {cell}")
            print()
            return
        from lxml import etree     # here: lxml costs the other commands of this module 10 ms
        root = etree.fromstring(dom.XMLDesc(0).encode())
        rows = []
        for disk in root.findall("./devices/disk"):
            target = disk.find("target")
            dev = target.get("dev", "") if target is not None else ""
            info = (0, 0, 0)
            if disk.find("source") is not None:
                info = tuple(dom.blockInfo(dev, 0))   # type: ignore[assignment]
            rows.append([dev, *_blkinfo_cells(*info, args.human)])
        print_table(["Target", "Capacity", "Allocation", "Physical"], rows)
    return run


@command("domifstat", "get network interface stats for a domain")
def _domifstat(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("interface", metavar="INTERFACE")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        try:
            values = dom.interfaceStats(args.interface)
        except libvirtError as exc:
            raise _failed(f"Failed to get interface stats {dom.name()} {args.interface}", exc)
        for name, value in zip(_IFSTAT_FIELDS, values):
            if value >= 0:
                print(f"{args.interface} {name} {value}")
        print()
    return run


# virshDomainIOErrorToString, by virDomainDiskErrorCode
_DISK_ERRORS = ("no error", "unspecified error", "no space")


@command("domblkerror", "Show errors on block devices")
def _domblkerror(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        errors = dom.diskErrors()        # a failure is reported as libvirt's error alone, as virsh does
        if not errors:
            print("No errors found")
        for disk, code in errors.items():
            print(f"{disk}: {_DISK_ERRORS[code] if 0 <= code < len(_DISK_ERRORS) else 'unknown error'}")
        print()
    return run


@command("dommemstat", "get memory statistics for a domain")
def _dommemstat(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--period", type=int, metavar="SECONDS", help="period in seconds to set collection")
    p.add_argument("--config", action="store_true", help="affect next boot")
    p.add_argument("--live", action="store_true", help="affect running domain")
    p.add_argument("--current", action="store_true", help="affect current domain")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        if args.current and args.live:
            raise CommandError("Options --current and --live are mutually exclusive")
        if args.current and args.config:
            raise CommandError("Options --current and --config are mutually exclusive")
        flags = (pyvirt.VIR_DOMAIN_AFFECT_CONFIG if args.config else 0) | \
                (pyvirt.VIR_DOMAIN_AFFECT_LIVE if args.live else 0)
        dom = lookup(conn, args)
        if not (args.current or args.live or args.config) and dom.isActive() == 1:
            flags |= pyvirt.VIR_DOMAIN_AFFECT_LIVE
        if args.period is not None:
            if args.period < 0:
                raise CommandError(f"Invalid collection period value '{args.period}'")
            try:
                dom.setMemoryStatsPeriod(args.period, flags)
            except libvirtError as exc:
                raise _failed("Unable to change balloon collection period.", exc)
            print()
            return
        try:
            stats = dom.memoryStats()
        except libvirtError as exc:
            raise _failed(f"Failed to get memory statistics for domain {dom.name()}", exc)
        for name, value in stats.items():
            print(f"{name} {value}")
        print()
    return run


def host_cpu_count(conn: pyvirt.virConnect) -> int:
    """virshNodeGetCPUCount: the host's CPU map, or its node info where there is none."""
    get_map = getattr(conn, "getCPUMap", None)
    if get_map is not None:
        try:
            return get_map(0)[0]
        except libvirtError as exc:
            if exc.get_error_code() != ErrorNumber.NO_SUPPORT:
                raise
    _model, _mem, _cpus, _mhz, nodes, sockets, cores, threads = conn.getInfo()
    return nodes * sockets * cores * threads


@command("vcpuinfo", "detailed domain vcpu information")
def _vcpuinfo(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--pretty", action="store_true", help="return human readable output")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        maxcpu = host_cpu_count(conn)
        state = dom.info()[0]
        try:
            info, maps = dom.vcpus()
        except libvirtError:
            if state != pyvirt.VIR_DOMAIN_SHUTOFF:
                raise
            info, maps = None, dom.vcpuPinInfo(pyvirt.VIR_DOMAIN_AFFECT_CONFIG)
        for n, cpumap in enumerate(maps):
            print(f"{'VCPU:':<15} {n}")
            if info is not None:
                _number, vstate, cpu_time, cpu = info[n]
                print(f"{'CPU:':<15} {cpu}")
                words = _VCPU_STATES[vstate] if 0 <= vstate < len(_VCPU_STATES) else "no state"
                print(f"{'State:':<15} {words}")
                if cpu_time:
                    print(f"{'CPU time:':<15} {cpu_time / 1e9:.1f}s")
            else:
                print(f"{'CPU:':<15} N/A")
                print(f"{'State:':<15} N/A")
                print(f"{'CPU time':<15} N/A")
            cells = list(cpumap[:maxcpu]) + [False] * max(0, maxcpu - len(cpumap))
            if args.pretty:
                print(f"{'CPU Affinity:':<15} {cpu_list(cells)} (out of {maxcpu})")
            else:
                print(f"{'CPU Affinity:':<15} {''.join('y' if c else '-' for c in cells)}")
            if n < len(maps) - 1:
                print()
        print()
    return run


def cpu_list(cells: list[bool]) -> str:
    """virBitmapFormat: '0-3,5'."""
    parts, start = [], None
    for i, on in enumerate(cells + [False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            parts.append(str(start) if i - 1 == start else f"{start}-{i - 1}")
            start = None
    return ",".join(parts)


def _seconds(value: int) -> str:
    return f"{value // 1_000_000_000:9d}.{value % 1_000_000_000:09d} seconds"


@command("cpu-stats", "show domain cpu statistics")
def _cpu_stats(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--total", action="store_true", help="Show total statistics only")
    p.add_argument("--start", type=int, metavar="CPU", help="Show statistics from this CPU")
    p.add_argument("--count", type=int, metavar="N", help="Number of shown CPUs at most")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        show_total, show_per_cpu = args.total, False
        cpu, count = 0, -1
        if args.start is not None:
            if args.start < 0:
                raise CommandError("Invalid value for start CPU")
            cpu, show_per_cpu = args.start, True
        if args.count is not None:
            if args.count < 0:
                raise CommandError("Invalid value for number of CPUs to show")
            count, show_per_cpu = args.count, True
        if not show_total and not show_per_cpu:
            show_total = show_per_cpu = True
        failed = f"Failed to retrieve CPU statistics for domain '{dom.name()}'"
        try:
            if show_per_cpu:
                _per_cpu(conn, dom, cpu, count)
            if show_total:
                stats = dom.getCPUStats(True)[0]
                print("Total:")
                for field, value in stats.items():
                    text = _seconds(value) if field in _CPU_TIME_FIELDS and isinstance(value, int) \
                        else param_text(value)
                    print(f"\t{field:<12} {text}")
        except libvirtError as exc:
            raise _failed(failed, exc)
        print()
    return run


def _per_cpu(conn: pyvirt.virConnect, dom: pyvirt.virDomain, cpu: int, count: int) -> None:
    """The per-host-CPU part, asked in virsh's order (so it fails where virsh's does)."""
    stats = dom.getCPUStats(False)
    max_id = len(stats)
    if cpu >= max_id:
        raise CommandError(f"Start CPU {cpu} is out of range (min: 0, max: {max_id - 1})")
    if count < 0 or count > max_id:
        if count > max_id:
            print(f"Only {max_id} CPUs available to show")
        count = max_id - cpu
    for n in range(cpu, min(cpu + count, max_id)):
        print(f"CPU{n}:")
        for field, value in stats[n].items():
            text = _seconds(value) if field in _CPU_TIME_FIELDS and isinstance(value, int) else param_text(value)
            print(f"\t{field:<12} {text}")
