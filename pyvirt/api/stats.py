"""libvirt-python's methods for statistics (domstats, blockStats, interfaceStats, memoryStats, vcpus, getCPUStats).

Shapes are libvirt-python's: ``blockStats`` a 5-tuple, ``blockInfo``
``[capacity, allocation, physical]``, ``memoryStats`` a dict keyed by
libvirt-python's names, ``vcpus()`` a pair of lists, ``getAllDomainStats`` a
list of ``(virDomain, dict)``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..enums import MemoryStatTags
from ..errors import ErrorDomain, ErrorNumber, error

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

# libvirt-python's memoryStats() keys by virDomainMemoryStatTags
MEMORY_STAT_KEYS = {
    MemoryStatTags.SWAP_IN: "swap_in", MemoryStatTags.SWAP_OUT: "swap_out",
    MemoryStatTags.MAJOR_FAULT: "major_fault", MemoryStatTags.MINOR_FAULT: "minor_fault",
    MemoryStatTags.UNUSED: "unused", MemoryStatTags.AVAILABLE: "available",
    MemoryStatTags.ACTUAL_BALLOON: "actual", MemoryStatTags.RSS: "rss",
    MemoryStatTags.USABLE: "usable", MemoryStatTags.LAST_UPDATE: "last_update",
    MemoryStatTags.DISK_CACHES: "disk_caches", MemoryStatTags.HUGETLB_PGALLOC: "hugetlb_pgalloc",
    MemoryStatTags.HUGETLB_PGFAIL: "hugetlb_pgfail",
}
TYPED_PARAM_STRING_OKAY = 1 << 2
CPU_STATS_CHUNK = 128   # REMOTE_DOMAIN_GET_CPU_STATS_NCPUS_MAX: per-CPU figures come in chunks


def params_dict(params: list[tuple[str, int, Any]]) -> dict[str, Any]:
    return {name: value for name, _type, value in params}


def _cpu_map(data: bytes, offset: int, ncpus: int) -> tuple[bool, ...]:
    return tuple(bool(data[offset + cpu // 8] & (1 << (cpu % 8))) if offset + cpu // 8 < len(data)
                 else False for cpu in range(ncpus))


class DomainStatsAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference
    _conn: Any

    def diskErrors(self, flags: int = 0) -> dict[str, int]:
        """{disk target: virDomainDiskErrorCode} of the disks in error, as libvirt-python's."""
        _errors, count = self._call("domain_get_disk_errors", 0, flags)
        if count == 0:
            return {}
        errors, _count = self._call("domain_get_disk_errors", count, flags)
        return {disk: code for disk, code in errors}

    def blockStats(self, path: str) -> tuple[int, int, int, int, int]:
        return tuple(self._call("domain_block_stats", path))  # type: ignore[return-value]

    def blockStatsFlags(self, path: str, flags: int = 0) -> dict[str, Any]:
        _params, count = self._call("domain_block_stats_flags", path, 0, flags)
        if count == 0:
            return {}
        params, _count = self._call("domain_block_stats_flags", path, count, flags)
        return params_dict(params)

    def blockInfo(self, path: str, flags: int = 0) -> list[int]:
        allocation, capacity, physical = self._call("domain_get_block_info", path, flags)
        return [capacity, allocation, physical]

    def interfaceStats(self, path: str) -> tuple[int, ...]:
        return tuple(self._call("domain_interface_stats", path))

    def memoryStats(self) -> dict[str, int]:
        stats = self._call("domain_memory_stats", int(MemoryStatTags.NR), 0)
        return {MEMORY_STAT_KEYS[MemoryStatTags(tag)]: val for tag, val in stats
                if tag in MEMORY_STAT_KEYS.keys()}

    def setMemoryStatsPeriod(self, period: int, flags: int = 0) -> int:
        self._call("domain_set_memory_stats_period", period, flags)
        return 0

    def _host_cpus(self) -> int:
        return self._conn.getCPUMap()[0]

    def vcpus(self) -> tuple[list[tuple[int, int, int, int]], list[tuple[bool, ...]]]:
        ncpus = self._host_cpus()
        maplen = (ncpus + 7) // 8
        nvcpus = self._call("domain_get_info")[3]
        info, maps = self._call("domain_get_vcpus", nvcpus, maplen)
        return ([tuple(v) for v in info],   # type: ignore[misc]
                [_cpu_map(maps, n * maplen, ncpus) for n in range(len(info))])

    def vcpuPinInfo(self, flags: int = 0) -> list[tuple[bool, ...]]:
        ncpus = self._host_cpus()
        maplen = (ncpus + 7) // 8
        nvcpus = self._call("domain_get_info")[3]
        maps, count = self._call("domain_get_vcpu_pin_info", nvcpus, maplen, flags)
        return [_cpu_map(maps, n * maplen, ncpus) for n in range(count)]

    def getCPUStats(self, total: bool, flags: int = 0) -> list[dict[str, Any]]:
        flags |= TYPED_PARAM_STRING_OKAY
        if total:
            _params, nparams = self._call("domain_get_cpu_stats", 0, -1, 1, flags)
            params, _n = self._call("domain_get_cpu_stats", nparams, -1, 1, flags)
            return [params_dict(params)]
        _params, ncpus = self._call("domain_get_cpu_stats", 0, 0, 0, flags)
        _params, nparams = self._call("domain_get_cpu_stats", 0, 0, 1, flags)
        out: list[dict[str, Any]] = []
        for start in range(0, ncpus, CPU_STATS_CHUNK):
            count = min(CPU_STATS_CHUNK, ncpus - start)
            params, _n = self._call("domain_get_cpu_stats", nparams, start, count, flags)
            for cpu in range(count):
                out.append(params_dict(params[cpu * nparams:(cpu + 1) * nparams]))
        return out


class ConnectStatsAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: the one place every call goes through
    _domain: Callable[..., Any]

    def getCPUMap(self, flags: int = 0) -> tuple[int, list[bool], int]:
        cpumap, online, count = self._call("node_get_cpu_map", 1, 1, flags)
        return count, list(_cpu_map(cpumap, 0, count)), online

    def getAllDomainStats(self, stats: int = 0, flags: int = 0) -> list[tuple[Any, dict[str, Any]]]:
        records = self._call("connect_get_all_domain_stats", [], stats, flags)
        return [(self._domain(ref), params_dict(params)) for ref, params in records]

    def domainListGetStats(self, doms: list[Any], stats: int = 0, flags: int = 0) -> list[tuple[Any, dict[str, Any]]]:
        refs = []
        for dom in doms:
            if getattr(dom, "_conn", None) is not self:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE,
                            "domains from different connections")
            refs.append(dom._ref)
        records = self._call("connect_get_all_domain_stats", refs, stats, flags)
        return [(self._domain(ref), params_dict(params)) for ref, params in records]
