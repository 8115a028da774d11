"""One domain's record for virConnectGetAllDomainStats, group by group, with
libvirt's field names, types and order (``state.state``, ``cpu.time``,
``balloon.current``, ``vcpu.0.time``, ``net.0.rx.bytes``, ``block.0.rd.reqs``...).

Figures that need QEMU's monitor come from one :func:`.stats.sample` per
domain, taken under a QUERY job; the rest (state, /proc, taps) never wait.
"""

from __future__ import annotations

from typing import Any

from ...enums import DomainStatsTypes as G, GetAllDomainsStatsFlags as F, TypedParamType as T
from ...enums import VcpuState
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from . import stats as qstats
from . import statsproc

# Every group libvirt 9.0 knows.  perf (no perf events enabled), iothread (no
# iothreads), memory (no resctrl monitors) and vm report nothing here, as
# libvirt's do for such guests; a bit outside these is refused with ENFORCE_STATS.
SUPPORTED = int(sum(G))
ALL_FLAGS = int(sum(F))
LIST_FILTERS = int(F.ACTIVE | F.INACTIVE | F.PERSISTENT | F.TRANSIENT | F.RUNNING | F.PAUSED
                   | F.SHUTOFF | F.OTHER)
# libvirt's balloon.* names for memoryStats tags (ACTUAL_BALLOON is balloon.current itself)
BALLOON_FIELDS = {
    qstats.SWAP_IN: "swap_in", qstats.SWAP_OUT: "swap_out", qstats.MAJOR_FAULT: "major_fault",
    qstats.MINOR_FAULT: "minor_fault", qstats.UNUSED: "unused", qstats.AVAILABLE: "available",
    qstats.RSS: "rss", qstats.LAST_UPDATE: "last-update", qstats.USABLE: "usable",
    qstats.DISK_CACHES: "disk_caches", qstats.HUGETLB_PGALLOC: "hugetlb_pgalloc",
    qstats.HUGETLB_PGFAIL: "hugetlb_pgfail",
}

Params = list[tuple[str, int, Any]]


def requested_groups(stats: int, flags: int) -> int:
    """The groups to report: all supported ones for 0; unsupported ones dropped,
    or refused with ENFORCE_STATS, as libvirt's qemuDomainGetStatsCheckSupport."""
    if stats == 0:
        return int(SUPPORTED)
    unsupported = stats & ~int(SUPPORTED)
    if unsupported and flags & F.ENFORCE_STATS:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                    f"Stats types bits 0x{unsupported:x} are not supported by this daemon")
    return stats & int(SUPPORTED)


def _u(name: str, value: int) -> tuple[str, int, int]:
    return name, int(T.ULLONG), int(value)


def memory_stats(obj: Any, sample: qstats.MonitorSample) -> list[tuple[int, int]]:
    """virDomainMemoryStats: the balloon's size, what the guest reports, QEMU's RSS."""
    out: list[tuple[int, int]] = []
    actual = sample.balloon_kib if sample.balloon_kib is not None else obj.current.current_memory_kib
    out.append((qstats.ACTUAL_BALLOON, actual))
    out += sample.guest_stats or []
    proc = statsproc.process_stat(obj.process.pid) if obj.process is not None else None
    if proc is not None:
        out.append((qstats.RSS, proc.rss_kib))
    return out


async def domain_record(driver: Any, obj: Any, groups: int, flags: int,
                        netdev: dict[str, statsproc.NetCounters] | None) -> Params:
    params: Params = []
    d = obj.current
    needs_monitor = groups & (G.BALLOON | G.VCPU | G.BLOCK | G.DIRTYRATE)
    sample = qstats.MonitorSample()
    # Groups that need no monitor (state, cpu-total, interface) take no job, as libvirt's.
    async with qstats.query_job(driver, obj, nowait=bool(flags & F.NOWAIT), needed=bool(needs_monitor)) \
            as have_job:
        if have_job:
            try:
                sample = await qstats.sample(obj, block=bool(groups & G.BLOCK),
                                             balloon=bool(groups & G.BALLOON),
                                             vcpus=bool(groups & G.VCPU),
                                             dirtyrate=bool(groups & G.DIRTYRATE))
            except libvirtError:
                sample = qstats.MonitorSample()   # QEMU went away meanwhile: report the rest
        active = obj.active and obj.process is not None
        proc = statsproc.process_stat(obj.process.pid) if active else None

        if groups & G.STATE:
            params += [("state.state", int(T.INT), int(obj.state)),
                       ("state.reason", int(T.INT), int(obj.reason))]
        if groups & G.CPU_TOTAL and proc is not None:
            success, fail = statsproc.halt_poll_ns(obj.process.pid)
            params += [_u("cpu.time", proc.time_ns), _u("cpu.user", proc.user_ns),
                       _u("cpu.system", proc.system_ns),
                       ("cpu.cache.monitor.count", int(T.UINT), 0),      # no resctrl monitors
                       _u("cpu.haltpoll.success.time", success), _u("cpu.haltpoll.fail.time", fail)]
        if groups & G.BALLOON:
            current = sample.balloon_kib if sample.balloon_kib is not None else d.current_memory_kib
            params += [_u("balloon.current", current), _u("balloon.maximum", d.memory_kib)]
            if have_job and active:
                for tag, value in memory_stats(obj, sample):
                    if tag in BALLOON_FIELDS:
                        params.append(_u(f"balloon.{BALLOON_FIELDS[tag]}", value))
        if groups & G.VCPU:
            params += [("vcpu.current", int(T.UINT), d.current_vcpus),
                       ("vcpu.maximum", int(T.UINT), d.vcpus)]
            if active and sample.vcpu_tids is not None:
                params += _vcpu_params(obj.process.pid, sample.vcpu_tids)
        if groups & G.INTERFACE and active:
            params += _net_params(d, netdev if netdev is not None else statsproc.net_dev())
        if groups & G.BLOCK:
            params += _block_params(d, sample.blocks if active else None, active,
                                    backing=bool(flags & F.BACKING))
        if groups & G.DIRTYRATE and active and sample.dirtyrate is not None:
            params += _dirtyrate_params(sample.dirtyrate)
    return params


_DIRTYRATE_STATUS = {"unstarted": 0, "measuring": 1, "measured": 2}


def _dirtyrate_params(info: dict) -> Params:
    """query-dirty-rate as libvirt's dirtyrate.* fields."""
    status = _DIRTYRATE_STATUS.get(info.get("status", ""), 0)
    out: Params = [("dirtyrate.calc_status", int(T.INT), status),
                   ("dirtyrate.calc_start_time", int(T.LLONG), int(info.get("start-time", 0))),
                   ("dirtyrate.calc_period", int(T.INT), int(info.get("calc-time", 0))),
                   ("dirtyrate.calc_mode", int(T.STRING), info.get("mode", "page-sampling"))]
    if status == 2 and "dirty-rate" in info:
        out.append(("dirtyrate.megabytes_per_second", int(T.LLONG), int(info["dirty-rate"])))
        for vcpu in info.get("vcpu-dirty-rate", ()):
            out.append((f"dirtyrate.vcpu.{vcpu['id']}.megabytes_per_second", int(T.LLONG),
                        int(vcpu["dirty-rate"])))
    return out


def _vcpu_params(pid: int, tids: list[int]) -> Params:
    out: Params = []
    for n, tid in enumerate(tids):
        st = statsproc.thread_stat(pid, tid)
        out.append((f"vcpu.{n}.state", int(T.INT), int(VcpuState.RUNNING)))
        out.append(_u(f"vcpu.{n}.time", st.time_ns if st is not None else 0))
        out.append(_u(f"vcpu.{n}.wait", statsproc.thread_wait_ns(pid, tid)))
        out.append(_u(f"vcpu.{n}.delay", statsproc.thread_delay_ns(pid, tid)))
    return out


def _net_params(d: Any, netdev: dict[str, statsproc.NetCounters]) -> Params:
    # Only NICs with a host device count, as libvirt's (user-mode ones have none).
    nics = [nic for nic in d.devices.interfaces if nic.target_dev]
    out: Params = [("net.count", int(T.UINT), len(nics))]
    for n, nic in enumerate(nics):
        out.append((f"net.{n}.name", int(T.STRING), nic.target_dev))
        counters = netdev.get(nic.target_dev)
        if counters is None:
            continue
        c = counters.guest_view()
        for key, value in (("rx.bytes", c.rx_bytes), ("rx.pkts", c.rx_packets), ("rx.errs", c.rx_errs),
                           ("rx.drop", c.rx_drop), ("tx.bytes", c.tx_bytes), ("tx.pkts", c.tx_packets),
                           ("tx.errs", c.tx_errs), ("tx.drop", c.tx_drop)):
            out.append(_u(f"net.{n}.{key}", value))
    return out


def _block_params(d: Any, blocks: dict[str, qstats.BlockEntry] | None, active: bool,
                  backing: bool = False) -> Params:
    """block.count, then each disk (and with ``backing`` each image below it, numbered on)."""
    out: Params = []
    n = 0
    for disk in d.devices.disks:
        entry = blocks.get(disk.alias) if blocks is not None and disk.alias else None
        out.append((f"block.{n}.name", int(T.STRING), disk.target_dev))
        if disk.source:
            out.append((f"block.{n}.path", int(T.STRING), disk.source))
            if active:
                # the top image's index in its backing chain (<source index='1'/>)
                out.append((f"block.{n}.backingIndex", int(T.UINT), 1))
        if entry is not None:
            for key in ("rd.reqs", "rd.bytes", "rd.times", "wr.reqs", "wr.bytes", "wr.times",
                        "fl.reqs", "fl.times"):
                out.append(_u(f"block.{n}.{key}", getattr(entry, key.replace(".", "_"))))
            out += _sizes(n, entry.allocation, entry.capacity, entry.physical)
        elif not active and disk.source and disk.storage_type == "file":
            try:
                allocation, capacity, physical = qstats.image_sizes(disk.source)
            except libvirtError:
                allocation = None
            if allocation is not None:
                out += [_u(f"block.{n}.allocation", allocation), _u(f"block.{n}.capacity", capacity),
                        _u(f"block.{n}.physical", physical)]
        n += 1
        if backing and entry is not None:
            for index, image in enumerate(entry.backing or (), start=2):
                out += [(f"block.{n}.name", int(T.STRING), disk.target_dev),
                        (f"block.{n}.path", int(T.STRING), image.path),
                        (f"block.{n}.backingIndex", int(T.UINT), index)]
                out += _sizes(n, image.allocation, image.capacity, image.physical)
                n += 1
    return [("block.count", int(T.UINT), n)] + out


def _sizes(n: int, allocation: int, capacity: int, physical: int) -> Params:
    out: Params = [_u(f"block.{n}.allocation", allocation)]
    if capacity:
        out.append(_u(f"block.{n}.capacity", capacity))
    if physical:
        out.append(_u(f"block.{n}.physical", physical))
    return out
