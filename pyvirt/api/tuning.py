"""libvirt-python's tuning calls: memory, blkio, NUMA, interface and block I/O
parameters, perf events, vCPU/emulator pinning, IOThread info, the guest's time and
hostname, the node's free huge pages.

Shapes are libvirt-python's: every ``*Parameters``/``blockIoTune``/``perfEvents`` a
dict; a setter first reads the current parameters (with the same flags) to learn
each name's type and refuses a name the domain lacks with ``LookupError``, as
libvirt-python does before any call; ``getTime`` ``{'seconds', 'nseconds'}``;
``emulatorPinInfo`` a tuple of booleans per host CPU; ``ioThreadInfo`` a list of
``(id, [bool, ...])``; ``getFreePages`` ``{cell: {page_size: count}}``.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TYPED_PARAM_UINT, TYPED_PARAM_ULLONG, TYPED_PARAM_BOOLEAN, TYPED_PARAM_STRING = 2, 4, 6, 7
TYPED_PARAM_STRING_OKAY = 1 << 2
FEATURE_TYPED_PARAM_STRING = 9       # VIR_DRV_FEATURE_TYPED_PARAM_STRING


# libvirt-python's names for the parameters (libvirt-domain.h's string macros)
PARAM_CONSTANTS = {
    "VIR_DOMAIN_MEMORY_PARAM_UNLIMITED": 9007199254740991,
    # the old per-call names of the typed-parameter types
    **{f"VIR_DOMAIN_{kind}_PARAM_{name}": value for kind in ("MEMORY", "BLKIO")
       for name, value in (("INT", 1), ("UINT", 2), ("LLONG", 3), ("ULLONG", 4), ("DOUBLE", 5), ("BOOLEAN", 6))},
    "VIR_DOMAIN_MEMORY_HARD_LIMIT": "hard_limit", "VIR_DOMAIN_MEMORY_SOFT_LIMIT": "soft_limit",
    "VIR_DOMAIN_MEMORY_MIN_GUARANTEE": "min_guarantee", "VIR_DOMAIN_MEMORY_SWAP_HARD_LIMIT": "swap_hard_limit",
    "VIR_DOMAIN_BLKIO_WEIGHT": "weight", "VIR_DOMAIN_BLKIO_DEVICE_WEIGHT": "device_weight",
    "VIR_DOMAIN_BLKIO_DEVICE_READ_IOPS": "device_read_iops_sec",
    "VIR_DOMAIN_BLKIO_DEVICE_WRITE_IOPS": "device_write_iops_sec",
    "VIR_DOMAIN_BLKIO_DEVICE_READ_BPS": "device_read_bytes_sec",
    "VIR_DOMAIN_BLKIO_DEVICE_WRITE_BPS": "device_write_bytes_sec",
    "VIR_DOMAIN_NUMA_NODESET": "numa_nodeset", "VIR_DOMAIN_NUMA_MODE": "numa_mode",
    "VIR_DOMAIN_BANDWIDTH_IN_AVERAGE": "inbound.average", "VIR_DOMAIN_BANDWIDTH_IN_PEAK": "inbound.peak",
    "VIR_DOMAIN_BANDWIDTH_IN_BURST": "inbound.burst", "VIR_DOMAIN_BANDWIDTH_IN_FLOOR": "inbound.floor",
    "VIR_DOMAIN_BANDWIDTH_OUT_AVERAGE": "outbound.average", "VIR_DOMAIN_BANDWIDTH_OUT_PEAK": "outbound.peak",
    "VIR_DOMAIN_BANDWIDTH_OUT_BURST": "outbound.burst",
    **{f"VIR_DOMAIN_BLOCK_IOTUNE_{name.upper()}": name for name in (
        "total_bytes_sec", "read_bytes_sec", "write_bytes_sec", "total_iops_sec", "read_iops_sec",
        "write_iops_sec", "total_bytes_sec_max", "read_bytes_sec_max", "write_bytes_sec_max",
        "total_iops_sec_max", "read_iops_sec_max", "write_iops_sec_max", "size_iops_sec", "group_name",
        "total_bytes_sec_max_length", "read_bytes_sec_max_length", "write_bytes_sec_max_length",
        "total_iops_sec_max_length", "read_iops_sec_max_length", "write_iops_sec_max_length")},
    **{f"VIR_PERF_PARAM_{name.upper()}": name for name in (
        "cmt", "mbmt", "mbml", "cpu_cycles", "instructions", "cache_references", "cache_misses",
        "branch_instructions", "branch_misses", "bus_cycles", "stalled_cycles_frontend",
        "stalled_cycles_backend", "ref_cpu_cycles", "cpu_clock", "task_clock", "page_faults",
        "context_switches", "cpu_migrations", "page_faults_min", "page_faults_maj", "alignment_faults",
        "emulation_faults")},
}


def _dict(params: list[tuple[str, int, Any]]) -> dict[str, Any]:
    return {name: value for name, _type, value in params}


def _typed(current: list[tuple[str, int, Any]], params: dict[str, Any]) -> list[tuple[str, int, Any]]:
    """The caller's dict as typed parameters, each with its current parameter's type."""
    if not current:
        raise LookupError("Domain has no settable attributes")
    types = {name: ptype for name, ptype, _value in current}
    out = []
    for name, value in params.items():
        if name not in types:
            raise LookupError(f'Attribute name "{name}" could not be recognized')
        ptype = types[name]
        if ptype == TYPED_PARAM_STRING:
            if not isinstance(value, str):
                raise TypeError("Attribute value type must be str")
        elif ptype == TYPED_PARAM_BOOLEAN:
            value = bool(value)
        elif isinstance(value, float) and ptype != 5:
            raise TypeError(f"an integer is required for '{name}'")
        out.append((name, ptype, value))
    return out


def string_okay(conn: Any, flags: int) -> int:
    """libvirt's getters add VIR_TYPED_PARAM_STRING_OKAY for a driver that reports
    VIR_DRV_FEATURE_TYPED_PARAM_STRING (asking it each time, as libvirt does)."""
    if conn._call("connect_supports_feature", FEATURE_TYPED_PARAM_STRING):
        flags |= TYPED_PARAM_STRING_OKAY
    return flags


def _cpu_bytes(cpumap: Any, ncpus: int) -> bytes:
    """A tuple of booleans as libvirt's CPU map bytes (VIR_CPU_MAPLEN of the host's CPUs)."""
    out = bytearray((ncpus + 7) // 8)
    for cpu, used in enumerate(cpumap):
        if used and cpu < ncpus:
            out[cpu // 8] |= 1 << (cpu % 8)
    return bytes(out)


def _cpu_bools(data: bytes, offset: int, ncpus: int) -> list[bool]:
    return [bool(data[offset + cpu // 8] & (1 << (cpu % 8))) if offset + cpu // 8 < len(data) else False
            for cpu in range(ncpus)]


class DomainTuningAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]
    _conn: Any

    # -- the counted getters: ask for the count, then for that many -------------------------
    def _counted(self, method: str, flags: int, *lead: Any) -> list[tuple[str, int, Any]]:
        flags = string_okay(self._conn, flags)
        _params, nparams = self._call(method, *lead, 0, flags)
        if nparams == 0:
            return []
        params, _n = self._call(method, *lead, nparams, flags)
        return params

    def memoryParameters(self, flags: int = 0) -> dict[str, Any]:
        return _dict(self._counted("domain_get_memory_parameters", flags))

    def setMemoryParameters(self, params: dict[str, Any], flags: int = 0) -> int:
        typed = _typed(self._counted("domain_get_memory_parameters", flags), params)
        self._call("domain_set_memory_parameters", typed, flags)
        return 0

    def blkioParameters(self, flags: int = 0) -> dict[str, Any]:
        return _dict(self._counted("domain_get_blkio_parameters", flags))

    def setBlkioParameters(self, params: dict[str, Any], flags: int = 0) -> int:
        typed = _typed(self._counted("domain_get_blkio_parameters", flags), params)
        self._call("domain_set_blkio_parameters", typed, flags)
        return 0

    def numaParameters(self, flags: int = 0) -> dict[str, Any]:
        return _dict(self._counted("domain_get_numa_parameters", flags))

    def setNumaParameters(self, params: dict[str, Any], flags: int = 0) -> int:
        typed = _typed(self._counted("domain_get_numa_parameters", flags), params)
        self._call("domain_set_numa_parameters", typed, flags)
        return 0

    def interfaceParameters(self, device: str, flags: int = 0) -> dict[str, Any]:
        return _dict(self._counted("domain_get_interface_parameters", flags, device))

    def setInterfaceParameters(self, device: str, params: dict[str, Any], flags: int = 0) -> int:
        typed = _typed(self._counted("domain_get_interface_parameters", flags, device), params)
        self._call("domain_set_interface_parameters", device, typed, flags)
        return 0

    def blockIoTune(self, disk: str | None, flags: int = 0) -> dict[str, Any]:
        return _dict(self._counted("domain_get_block_io_tune", flags, disk))

    def setBlockIoTune(self, disk: str, params: dict[str, Any], flags: int = 0) -> int:
        typed = _typed(self._counted("domain_get_block_io_tune", flags, disk), params)
        self._call("domain_set_block_io_tune", disk, typed, flags)
        return 0

    def perfEvents(self, flags: int = 0) -> dict[str, Any]:
        return _dict(self._call("domain_get_perf_events", flags))

    def setPerfEvents(self, params: dict[str, Any], flags: int = 0) -> int:
        typed = _typed(self._call("domain_get_perf_events", flags), params)
        self._call("domain_set_perf_events", typed, flags)
        return 0

    # -- pinning -------------------------------------------------------------------------------
    def _ncpus(self) -> int:
        return self._conn.getCPUMap()[0]

    def pinVcpu(self, vcpu: int, cpumap: Any) -> int:
        self._call("domain_pin_vcpu", vcpu, _cpu_bytes(cpumap, self._ncpus()))
        return 0

    def pinVcpuFlags(self, vcpu: int, cpumap: Any, flags: int = 0) -> int:
        self._call("domain_pin_vcpu_flags", vcpu, _cpu_bytes(cpumap, self._ncpus()), flags)
        return 0

    def pinEmulator(self, cpumap: Any, flags: int = 0) -> int:
        self._call("domain_pin_emulator", _cpu_bytes(cpumap, self._ncpus()), flags)
        return 0

    def emulatorPinInfo(self, flags: int = 0) -> tuple[bool, ...] | None:
        ncpus = self._ncpus()
        cpumaps, ret = self._call("domain_get_emulator_pin_info", (ncpus + 7) // 8, flags)
        if ret == 0:
            return None
        return tuple(_cpu_bools(cpumaps, 0, ncpus))

    def ioThreadInfo(self, flags: int = 0) -> list[tuple[int, list[bool]]]:
        ncpus = self._ncpus()
        info, _count = self._call("domain_get_iothread_info", flags)
        return [(iothread_id, _cpu_bools(cpumap, 0, ncpus)) for iothread_id, cpumap in info]

    def addIOThread(self, iothread_id: int, flags: int = 0) -> int:
        self._call("domain_add_iothread", iothread_id, flags)
        return 0

    def delIOThread(self, iothread_id: int, flags: int = 0) -> int:
        self._call("domain_del_iothread", iothread_id, flags)
        return 0

    def pinIOThread(self, iothread_val: int, cpumap: Any, flags: int = 0) -> int:
        self._call("domain_pin_iothread", iothread_val, _cpu_bytes(cpumap, self._ncpus()), flags)
        return 0

    def setIOThreadParams(self, iothread_val: int, params: dict[str, Any], flags: int = 0) -> int:
        # libvirt-python types them itself: poll_max_ns an unsigned long long, the others unsigned ints
        typed = [(name, TYPED_PARAM_ULLONG if name == "poll_max_ns" else TYPED_PARAM_UINT, value)
                 for name, value in params.items()]
        self._call("domain_set_iothread_params", iothread_val, typed, flags)
        return 0

    # -- the guest's clock and name ------------------------------------------------------------
    def getTime(self, flags: int = 0) -> dict[str, int]:
        seconds, nseconds = self._call("domain_get_time", flags)
        return {"seconds": seconds, "nseconds": nseconds}

    def setTime(self, time: dict[str, int] | None = None, flags: int = 0) -> int:
        if not isinstance(time, dict):
            raise TypeError("time must be a dictionary")
        if "seconds" not in time:
            raise ValueError("Dictionary must contain 'seconds'")
        self._call("domain_set_time", int(time["seconds"]), int(time.get("nseconds", 0)), flags)
        return 0

    def hostname(self, flags: int = 0) -> str:
        return self._call("domain_get_hostname", flags)


class ConnectTuningAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]

    def getFreePages(self, pages: list[int], startCell: int, cellCount: int,
                     flags: int = 0) -> dict[int, dict[int, int]]:
        counts = self._call("node_get_free_pages", list(pages), startCell, cellCount, flags)
        out: dict[int, dict[int, int]] = {}
        if not pages:
            return out
        for n, count in enumerate(counts):
            out.setdefault(startCell + n // len(pages), {})[pages[n % len(pages)]] = count
        return out
