"""The QEMU driver's procedures for statistics (domstats, blockStats, interfaceStats, memoryStats, vcpus, getCPUStats).

A mixin of :class:`.connection.QemuConnection`: methods check flags, find the
domain (``self._obj``/``self._active``), take the right job and call into the
driver, as the core methods there do.  Every monitor query runs under a QUERY
job, which every asynchronous job (migration, save, restore) lets through, so
none of these waits for a migration to end; figures from /proc and the taps
need no job at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...conf.devices import parse_mac
from ...enums import GetAllDomainsStatsFlags as F, TypedParamType as T, VcpuState
from ...errors import ErrorDomain, ErrorNumber, check_flags, error, libvirtError
from ...refs import DomainRef
from ..domainlist import matches_list_flags, not_running
from . import stats as qstats
from . import stats_record, statsproc
from .jobs import JobKind

TYPED_PARAM_STRING_OKAY = 1 << 2
AFFECT_LIVE, AFFECT_CONFIG = 1, 2
# remote_protocol.x's limits, which libvirtd checks before calling the driver
BLOCK_STATS_PARAMETERS_MAX = 16
CPU_STATS_NCPUS_MAX = 128
CPU_STATS_MAX = 2048
NODE_CPU_STATS_MAX = 16
VCPUINFO_MAX = 2048
CPUMAPS_MAX = 16384
MEMORY_STATS_MAX = 1024
DISK_ERRORS_MAX = 256
# virDomainBlockStatsFlags' fields, in the order libvirt's QEMU driver fills them.
_BLOCK_STATS_FIELDS = (("wr_bytes", "wr_bytes"), ("wr_operations", "wr_reqs"), ("rd_bytes", "rd_bytes"),
                       ("rd_operations", "rd_reqs"), ("flush_operations", "fl_reqs"),
                       ("wr_total_times", "wr_times"), ("rd_total_times", "rd_times"),
                       ("flush_total_times", "fl_times"))


class StatsAPI:
    # provided by QemuConnection
    driver: Any
    _obj: Any
    _active: Any

    # -- bulk statistics ----------------------------------------------------------
    async def connect_get_all_domain_stats(self, doms: list[DomainRef], stats: int,
                                           flags: int) -> list[tuple[DomainRef, list]]:
        check_flags(flags, stats_record.ALL_FLAGS, "qemuConnectGetAllDomainStats")
        groups = stats_record.requested_groups(stats, flags)
        if doms:
            # domainListGetStats: the domains named, those gone since skipped, filters applied
            objs = []
            for ref in doms:
                try:
                    objs.append(self._obj(ref))
                except libvirtError:
                    continue
        else:
            objs = list(self.driver.domains)
        filters = flags & stats_record.LIST_FILTERS
        objs = [o for o in objs if not filters or matches_list_flags(o, filters)]
        netdev = statsproc.net_dev() if groups & stats_record.G.INTERFACE else None
        records = await asyncio.gather(*(stats_record.domain_record(self.driver, o, groups, flags, netdev)
                                         for o in objs))
        return [(o.ref(), params) for o, params in zip(objs, records)]

    async def node_get_cpu_map(self, need_map: int, need_online: int, flags: int) -> tuple[bytes, int, int]:
        check_flags(flags, 0, "virHostCPUGetMap")
        count = statsproc.host_cpu_count()
        online = statsproc.online_cpus()
        cpumap = _cpumap([cpu in online for cpu in range(count)], (count + 7) // 8) if need_map else b""
        return cpumap, len(online) if need_online else 0, count

    # -- block devices ----------------------------------------------------------------
    async def _block_entries(self, obj: Any, path: str, sizes: bool) -> qstats.BlockEntry:
        """The figures of disk ``path`` (target or source), or of all disks summed for ''."""
        disk = _disk(obj, path, f"invalid path: {path}") if path else None
        async with self.driver.job_guard(obj, JobKind.QUERY):
            if not obj.active or obj.process is None:
                raise not_running(obj)
            entries = (await qstats.sample(obj, block=True, sizes=sizes)).blocks or {}
        if disk is None:
            total = qstats.BlockEntry()
            for entry in entries.values():
                total.add(entry)
            return total
        entry = entries.get(disk.alias or "")
        if entry is None:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                        f"cannot find statistics for device '{disk.alias}'")
        return entry

    async def domain_get_disk_errors(self, dom: DomainRef, maxerrors: int,
                                     flags: int) -> tuple[list[tuple[str, int]], int]:
        """virDomainGetDiskErrors: the disks QEMU stopped on an I/O error (query-block's
        io-status), at most ``maxerrors`` of them; with ``maxerrors`` 0 the number of disks."""
        check_flags(flags, 0, "qemuDomainGetDiskErrors")
        if maxerrors > DISK_ERRORS_MAX:
            # libvirtd's text (filed there as INTERNAL_ERROR); the caller's argument is wrong
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, "maxerrors too large")
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.QUERY):
            if not obj.active or obj.process is None:
                raise not_running(obj)
            disks = obj.current.devices.disks
            if maxerrors == 0:
                return [], len(disks)
            failed = qstats.disk_errors(await obj.process.monitor.execute("query-block"))
        found = [(d.target_dev, failed[d.alias]) for d in disks if d.alias in failed][:maxerrors]
        return found, len(found)

    async def domain_block_stats(self, dom: DomainRef, path: str) -> tuple[int, int, int, int, int]:
        e = await self._block_entries(self._active(dom), path, sizes=False)
        return e.rd_reqs, e.rd_bytes, e.wr_reqs, e.wr_bytes, -1     # QEMU counts no errors

    async def domain_block_stats_flags(self, dom: DomainRef, path: str, nparams: int,
                                       flags: int) -> tuple[list, int]:
        check_flags(flags, TYPED_PARAM_STRING_OKAY, "qemuDomainBlockStatsFlags")
        if nparams < 0 or nparams > BLOCK_STATS_PARAMETERS_MAX:
            raise error(ErrorNumber.RPC, ErrorDomain.RPC, "nparams too large")
        obj = self._active(dom)
        e = await self._block_entries(obj, path, sizes=False)
        if nparams == 0:
            return [], len(_BLOCK_STATS_FIELDS)
        params = [(name, int(T.LLONG), getattr(e, attr)) for name, attr in _BLOCK_STATS_FIELDS][:nparams]
        return params, len(params)

    async def domain_get_block_info(self, dom: DomainRef, path: str, flags: int) -> tuple[int, int, int]:
        check_flags(flags, 0, "qemuDomainGetBlockInfo")
        obj = self._obj(dom)
        disk = _disk(obj, path, f"invalid path {path} not assigned to domain")
        if not disk.source:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        f"disk '{disk.target_dev}' does not currently have a source assigned")
        if not obj.active:
            allocation, capacity, physical = await asyncio.to_thread(qstats.image_sizes, disk.source)
            return allocation, capacity, physical
        e = await self._block_entries(obj, disk.target_dev, sizes=True)
        allocation, physical = e.allocation, e.physical
        # libvirt: a zero, or allocation equal to physical, means a sparse file (or
        # nothing written yet): physical is then the file's size, and allocation what
        # QEMU says the image takes.
        if e.physical == 0 or allocation == 0 or allocation == e.physical:
            if allocation == 0:
                allocation = e.physical
            if disk.storage_type == "file":
                try:
                    physical = (await asyncio.to_thread(qstats.image_sizes, disk.source))[2]
                except libvirtError:
                    physical = e.physical
        return allocation, e.capacity, physical

    # -- network interfaces -----------------------------------------------------------
    async def domain_interface_stats(self, dom: DomainRef, device: str) -> tuple[int, ...]:
        obj = self._active(dom)
        nic = _nic(obj, device)
        if not nic.target_dev:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU, "/proc/net/dev: Interface not found")
        counters = statsproc.net_dev().get(nic.target_dev)
        if counters is None:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU, "/proc/net/dev: Interface not found")
        c = counters.guest_view()
        return (c.rx_bytes, c.rx_packets, c.rx_errs, c.rx_drop,
                c.tx_bytes, c.tx_packets, c.tx_errs, c.tx_drop)

    # -- memory ---------------------------------------------------------------------------
    async def domain_memory_stats(self, dom: DomainRef, maxStats: int, flags: int) -> list[tuple[int, int]]:
        check_flags(flags, 0, "qemuDomainMemoryStats")
        if maxStats > MEMORY_STATS_MAX:
            # libvirtd's text; it files these limit checks under INTERNAL_ERROR, but what is
            # wrong is the caller's argument, so the client learns it as INVALID_ARG
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC,
                        "maxStats > REMOTE_DOMAIN_MEMORY_STATS_MAX")
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.QUERY):
            if not obj.active or obj.process is None:
                raise not_running(obj)
            sample = await qstats.sample(obj, balloon=True)
            out = stats_record.memory_stats(obj, sample)
        return out[:maxStats]

    async def domain_set_memory_stats_period(self, dom: DomainRef, period: int, flags: int) -> None:
        check_flags(flags, AFFECT_LIVE | AFFECT_CONFIG, "qemuDomainSetMemoryStatsPeriod")
        if period < 0:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, "period must be a positive integer")
        obj = self._obj(dom)
        live = bool(flags & AFFECT_LIVE) or (not flags & AFFECT_CONFIG and obj.active)
        config = bool(flags & AFFECT_CONFIG)
        if live and not obj.active:
            raise not_running(obj)
        if config and not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        "cannot change persistent config of a transient domain")
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            if live:
                if not obj.active or obj.process is None:
                    raise not_running(obj)
                if not _has_balloon(obj.current):
                    raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                                "No memory balloon device configured, can not set the collection period")
                await qstats.set_balloon_period(obj, period)
                _set_period(obj.current, period)
                obj.save_status()
            if config:
                if not _has_balloon(obj.definition):
                    raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                                "No memory balloon device configured, can not set the collection period")
                _set_period(obj.definition, period)
                self.driver.save_config(obj)

    # -- vCPUs and CPU time ---------------------------------------------------------------
    async def domain_get_vcpus(self, dom: DomainRef, maxinfo: int, maplen: int) -> tuple[list, bytes]:
        obj = self._obj(dom)
        if not obj.active or obj.process is None:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        "cannot retrieve vcpu information for inactive domain")
        if maxinfo < 0 or maplen < 0:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, "maxinfo and maplen must not be negative")
        if maxinfo > VCPUINFO_MAX:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, "maxinfo > REMOTE_VCPUINFO_MAX")
        if maxinfo * maplen > CPUMAPS_MAX:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, "maxinfo * maplen > REMOTE_CPUMAPS_MAX")
        async with self.driver.job_guard(obj, JobKind.QUERY):
            if not obj.active or obj.process is None:
                raise not_running(obj)
            tids = (await qstats.sample(obj, vcpus=True)).vcpu_tids or []
            pid = obj.process.pid
        info, maps = [], bytearray()
        for n, tid in enumerate(tids[:maxinfo]):
            st = statsproc.thread_stat(pid, tid)
            info.append((n, int(VcpuState.RUNNING), st.time_ns if st else 0, st.processor if st else -1))
            if maplen:
                maps += _cpumap(statsproc.thread_affinity(tid, maplen * 8), maplen)
        return info, bytes(maps)

    async def domain_get_vcpu_pin_info(self, dom: DomainRef, ncpumaps: int, maplen: int,
                                       flags: int) -> tuple[bytes, int]:
        check_flags(flags, AFFECT_LIVE | AFFECT_CONFIG, "qemuDomainGetVcpuPinInfo")
        if ncpumaps < 0 or maplen < 0:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, "ncpumaps and maplen must not be negative")
        if ncpumaps > VCPUINFO_MAX:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, "ncpumaps > REMOTE_VCPUINFO_MAX")
        if ncpumaps * maplen > CPUMAPS_MAX:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, "maxinfo * maplen > REMOTE_CPUMAPS_MAX")
        obj = self._obj(dom)
        if flags & AFFECT_LIVE and not obj.active:
            raise not_running(obj)
        use_live = obj.active and not flags & AFFECT_CONFIG
        d = obj.current if use_live else obj.definition
        count = min(ncpumaps, d.vcpus)
        host = statsproc.host_cpu_count()
        maps = bytearray()
        tids: list[int] = []
        if use_live and obj.process is not None:
            try:
                async with self.driver.job_guard(obj, JobKind.QUERY):
                    tids = (await qstats.sample(obj, vcpus=True)).vcpu_tids or []
            except libvirtError:
                tids = []
        for n in range(count):
            # No <cputune> pinning: every host CPU, as libvirt reports it.
            allowed = (statsproc.thread_affinity(tids[n], host) if n < len(tids) else [True] * host)
            maps += _cpumap(allowed + [False] * max(0, maplen * 8 - host), maplen)
        return bytes(maps), count

    async def domain_get_cpu_stats(self, dom: DomainRef, nparams: int, start_cpu: int, ncpus: int,
                                   flags: int) -> tuple[list, int]:
        check_flags(flags, TYPED_PARAM_STRING_OKAY, "qemuDomainGetCPUStats")
        if nparams > NODE_CPU_STATS_MAX or ncpus > CPU_STATS_NCPUS_MAX or nparams * ncpus > CPU_STATS_MAX:
            raise error(ErrorNumber.RPC, ErrorDomain.RPC, "nparams or ncpus too large")
        if start_cpu < -1:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"start_cpu {start_cpu} is invalid")
        obj = self._active(dom)
        if start_cpu == -1:
            if nparams == 0:
                return [], 3
            st = statsproc.process_stat(obj.process.pid)
            if st is None:
                raise not_running(obj)
            params = [("cpu_time", int(T.ULLONG), st.time_ns), ("user_time", int(T.ULLONG), st.user_ns),
                      ("system_time", int(T.ULLONG), st.system_ns)][:nparams]
            return params, len(params)
        if nparams == 0 and ncpus == 0:
            return [], statsproc.host_cpu_count()
        if nparams == 0:
            return [], 2          # cpu_time and vcpu_time per host CPU
        # The kernel keeps no per-host-CPU account of a process outside cgroup v1's
        # cpuacct controller, which a cgroup v2 host (Debian 12's) does not have:
        # libvirt's answer without that controller.
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "cgroup CPUACCT controller is not mounted")


def _disk(obj: Any, path: str, missing: str) -> Any:
    """virDomainDiskByName: a disk by its target (vda) or its source path."""
    for disk in obj.current.devices.disks:
        if disk.target_dev == path or (disk.source and disk.source == path):
            return disk
    raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, missing)


def _nic(obj: Any, device: str) -> Any:
    """virDomainNetFind: by MAC address if ``device`` is one, else by host device name."""
    try:
        mac = parse_mac(device)
    except libvirtError:
        mac = None
    for nic in obj.current.devices.interfaces:
        if (mac is not None and nic.mac == mac) or (mac is None and nic.target_dev == device):
            return nic
    raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"'{device}' is not a known interface")


def _has_balloon(d: Any) -> bool:
    balloon = d.devices.memballoon
    return balloon is not None and balloon.model != "none"


def _set_period(d: Any, period: int) -> None:
    balloon = d.devices.memballoon
    if hasattr(balloon, "period"):
        balloon.period = period or None


def _cpumap(allowed: list[bool], maplen: int) -> bytes:
    out = bytearray(maplen)
    for cpu, ok in enumerate(allowed[:maplen * 8]):
        if ok:
            out[cpu // 8] |= 1 << (cpu % 8)
    return bytes(out)
