"""The test host's tuning calls: memory, blkio, NUMA, interface and block I/O parameters,
perf events, vCPU and emulator pinning, IOThreads, the guest's time and hostname, free pages.

Each answers as libvirt 9.0's test driver does: its parameter lists and order,
its flag checks, its definition choice (virDomainObjGetOneDef) and its words.
The values live in :mod:`.tuning`.
"""

from __future__ import annotations

from typing import Any

from ...enums import DomainState
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import DomainRef
from ..domainlist import DomainObj
from . import tuning
from .tuning import BANDWIDTH_KEYS, BLKIO_DEVICE_FIELDS, IOTUNE_FIELDS, NUMA_MODES, PERF_EVENTS, UNLIMITED

_T = ErrorDomain.TEST
INT, UINT, ULLONG, BOOLEAN, STRING = 1, 2, 4, 6, 7
LIVE_CONFIG = 3
LIVE_CONFIG_STRING = 7            # ... | VIR_TYPED_PARAM_STRING_OKAY
TIME_SECONDS = 627319920          # the clock of a test-host guest nobody set
IOTUNE_MAX = 1000000000000000     # TEST_BLOCK_IOTUNE_MAX
CPUMAPS_MAX = 16384               # REMOTE_CPUMAPS_MAX
NODE_MAX_CELLS = 1024             # REMOTE_NODE_MAX_CELLS
MEMORY_PARAMS = ("hard_limit", "soft_limit", "swap_hard_limit")
IFACE_PARAMS = [(f"inbound.{k}", "inbound", k) for k in BANDWIDTH_KEYS] + \
               [(f"outbound.{k}", "outbound", k) for k in BANDWIDTH_KEYS if k != "floor"]


def _check_maps(ncpumaps: int, maplen: int, api: str) -> None:
    """libvirt's API and daemon bounds on CPU maps asked for."""
    for name, value in (("ncpumaps", ncpumaps), ("maplen", maplen)):
        if value <= 0:
            raise tuning.bare_invalid_arg(f"{name} in {api} must be greater than zero")
    if ncpumaps * maplen > CPUMAPS_MAX:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, "maxinfo * maplen > REMOTE_CPUMAPS_MAX")


def _node_cpus(node_info: tuple) -> int:
    """VIR_NODEINFO_MAXCPUS: nodes x sockets x cores x threads."""
    return node_info[4] * node_info[5] * node_info[6] * node_info[7]


def _find_net(obj: DomainObj, live: bool, device: str) -> Any:
    """virDomainNetFind: by MAC address if ``device`` is one, else by the host-side name."""
    d = obj.live if live and obj.live is not None else obj.definition
    is_mac = len(device.split(":")) == 6 and all(len(p) <= 2 and p and all(c in "0123456789abcdefABCDEF" for c in p)
                                                 for p in device.split(":"))
    for net in d.devices.interfaces:
        if (is_mac and (net.mac or "").lower() == device.lower()) or (not is_mac and net.target_dev == device):
            return net
    raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, f"'{device}' is not a known interface")


def _find_disk(obj: DomainObj, live: bool, path: str) -> str | None:
    """virDomainDiskByName (sources allowed): the disk's target name, or None."""
    d = obj.live if live and obj.live is not None else obj.definition
    for disk in d.devices.disks:
        if path in (disk.target_dev, disk.source):
            return disk.target_dev
    return None


def _parse_blkio_devices(text: str, param: str) -> list[tuple[str, int]]:
    """virDomainDriverParseBlkioDeviceStr: 'path,value[,path,value...]'."""
    if text == "":
        return []
    parts = text.split(",")
    if len(parts) % 2:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, f"unable to parse blkio device '{param}' '{text}'")
    out = []
    for path, value in zip(parts[::2], parts[1::2]):
        if not value.isdigit() or (param == "device_weight" and int(value) > 0xFFFFFFFF):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                        f"invalid value '{value}' for parameter '{param}' of device '{path}'")
        out.append((path, int(value)))
    return out


class TuningAPI:
    """Mixed into TestConnection (which supplies _obj, host)."""

    # -- memory ---------------------------------------------------------------------------------
    async def domain_get_memory_parameters(self, dom: DomainRef, nparams: int, flags: int) -> tuple[list, int]:
        check_flags(flags, LIVE_CONFIG_STRING, "testDomainGetMemoryParameters", _T)
        if nparams == 0:
            return [], len(MEMORY_PARAMS)
        t, _live = tuning.one_def(self._obj(dom), flags)
        params = [(name, ULLONG, getattr(t, name)) for name in MEMORY_PARAMS][:nparams]
        return params, len(params)

    async def domain_set_memory_parameters(self, dom: DomainRef, params: list, flags: int) -> None:
        check_flags(flags, LIVE_CONFIG, "testDomainSetMemoryParameters", _T)
        tuning.validate(params, dict.fromkeys(MEMORY_PARAMS, ULLONG))
        obj = self._obj(dom)
        t, _live = tuning.one_def(obj, flags)
        values = {name: value for name, _type, value in params}
        if "hard_limit" in values or "swap_hard_limit" in values:
            # libvirt checks against the domain's current definition, whichever one it changes
            cur = tuning.current_tune(obj)
            if values.get("hard_limit", cur.hard_limit) > values.get("swap_hard_limit", cur.swap_hard_limit):
                raise error(ErrorNumber.INVALID_ARG, _T,
                            "memory hard_limit tunable value must be lower than or equal to swap_hard_limit")
        for name, value in values.items():
            setattr(t, name, value)

    # -- blkio ----------------------------------------------------------------------------------
    async def domain_get_blkio_parameters(self, dom: DomainRef, nparams: int, flags: int) -> tuple[list, int]:
        check_flags(flags, LIVE_CONFIG_STRING, "testDomainGetBlkioParameters", _T)
        if nparams == 0:
            return [], 1 + len(BLKIO_DEVICE_FIELDS)
        t, _live = tuning.one_def(self._obj(dom), flags)
        params: list[tuple[str, int, Any]] = [("weight", UINT, t.blkio_weight)]
        for param, tag in BLKIO_DEVICE_FIELDS:
            text = ",".join(f"{d['path']},{d[tag]}" for d in t.blkio_devices if d.get(tag))
            params.append((param, STRING, text))
        params = params[:nparams]
        return params, len(params)

    async def domain_set_blkio_parameters(self, dom: DomainRef, params: list, flags: int) -> None:
        check_flags(flags, LIVE_CONFIG, "testDomainSetBlkioParameters", _T)
        tuning.validate(params, {"weight": UINT, **{p: STRING for p, _tag in BLKIO_DEVICE_FIELDS}})
        t, _live = tuning.one_def(self._obj(dom), flags)
        tags = dict(BLKIO_DEVICE_FIELDS)
        failure = None
        for name, _type, value in params:     # libvirt applies every good one and fails at the end
            if name == "weight":
                t.blkio_weight = value
                continue
            try:
                devices = _parse_blkio_devices(value, name)
            except Exception as exc:      # noqa: BLE001 - kept for after the others, as libvirt does
                failure = failure or exc
                continue
            for path, amount in devices:
                dev = next((d for d in t.blkio_devices if d["path"] == path), None)
                if dev is None:
                    if not amount:
                        continue
                    dev = {"path": path}
                    t.blkio_devices.append(dev)
                dev[tags[name]] = amount
        if failure is not None:
            raise failure

    # -- NUMA -------------------------------------------------------------------------------------
    async def domain_get_numa_parameters(self, dom: DomainRef, nparams: int, flags: int) -> tuple[list, int]:
        check_flags(flags, LIVE_CONFIG_STRING, "testDomainGetNumaParameters", _T)
        if nparams == 0:
            return [], 2
        t, _live = tuning.one_def(self._obj(dom), flags)
        nodeset = tuning.format_cpuset(t.numa_nodeset) if t.numa_nodeset is not None else ""
        params = [("numa_mode", INT, t.numa_mode), ("numa_nodeset", STRING, nodeset)][:nparams]
        return params, len(params)

    async def domain_set_numa_parameters(self, dom: DomainRef, params: list, flags: int) -> None:
        check_flags(flags, LIVE_CONFIG, "testDomainSetNumaParameters", _T)
        tuning.validate(params, {"numa_mode": INT, "numa_nodeset": STRING})
        t, live = tuning.one_def(self._obj(dom), flags)
        mode, nodeset = -1, None
        for name, _type, value in params:
            if name == "numa_mode":
                mode = value
                if not 0 <= mode < len(NUMA_MODES):
                    raise error(ErrorNumber.INVALID_ARG, _T, f"unsupported numatune mode: '{mode}'")
            else:
                nodeset = tuning.parse_cpuset(value)
                if not nodeset:
                    raise error(ErrorNumber.OPERATION_INVALID, _T, f"Invalid nodeset of 'numatune': {value}")
        if live and mode != -1 and t.numa_nodeset is not None and t.numa_mode != mode:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "can't change numatune mode for running domain")
        if nodeset is None and t.numa_nodeset is None:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN,
                        "nodeset for NUMA memory tuning must be set if 'placement' is 'static'")
        if mode != -1:
            t.numa_mode = mode
        if nodeset is not None:
            t.numa_nodeset = nodeset

    # -- interface bandwidth ---------------------------------------------------------------------
    async def domain_get_interface_parameters(self, dom: DomainRef, device: str, nparams: int,
                                              flags: int) -> tuple[list, int]:
        check_flags(flags, LIVE_CONFIG_STRING, "testDomainGetInterfaceParameters", _T)
        if nparams == 0:
            return [], len(IFACE_PARAMS)
        obj = self._obj(dom)
        t, live = tuning.one_def(obj, flags)
        net = _find_net(obj, live, device)
        rates = t.bandwidth.get((net.mac or "").lower(), {})
        params = [(name, UINT, rates.get(direction, {}).get(key, 0)) for name, direction, key in IFACE_PARAMS]
        params = params[:nparams]
        return params, len(params)

    async def domain_set_interface_parameters(self, dom: DomainRef, device: str, params: list,
                                              flags: int) -> None:
        check_flags(flags, LIVE_CONFIG, "testDomainSetInterfaceParameters", _T)
        tuning.validate(params, {name: UINT for name, _d, _k in IFACE_PARAMS})
        obj = self._obj(dom)
        t, live = tuning.one_def(obj, flags)
        net = _find_net(obj, live, device)
        given: dict[str, dict[str, int]] = {"inbound": {}, "outbound": {}}
        where = {name: (direction, key) for name, direction, key in IFACE_PARAMS}
        for name, _type, value in params:
            direction, key = where[name]
            given[direction][key] = value
        rates = t.bandwidth.setdefault((net.mac or "").lower(), {})
        # average (or floor, inbound) makes a direction; naming one of them at 0 clears it
        for direction, mandatory in (("inbound", ("average", "floor")), ("outbound", ("average",))):
            new = given[direction]
            if any(new.get(k) for k in mandatory):
                rates[direction] = {k: v for k, v in new.items() if v}
            elif any(k in new for k in mandatory):
                rates.pop(direction, None)

    # -- block I/O limits --------------------------------------------------------------------------
    async def domain_get_block_io_tune(self, dom: DomainRef, disk: str | None, nparams: int,
                                       flags: int) -> tuple[list, int]:
        check_flags(flags, LIVE_CONFIG_STRING, "testDomainGetBlockIoTune", _T)
        if nparams == 0:
            return [], len(IOTUNE_FIELDS)
        if disk is None:
            raise tuning.bare_invalid_arg("disk in virDomainGetBlockIoTune must not be NULL")
        obj = self._obj(dom)
        t, live = tuning.one_def(obj, flags & LIVE_CONFIG)
        target = _find_disk(obj, live, disk)
        if target is None:
            raise error(ErrorNumber.INVALID_ARG, _T, f"disk '{disk}' was not found in the domain config")
        fields = t.iotune.get(target, {})
        params = [(k, STRING, fields.get(k, "")) if k == "group_name" else (k, ULLONG, fields.get(k, 0))
                  for k in IOTUNE_FIELDS][:nparams]
        return params, len(params)

    async def domain_set_block_io_tune(self, dom: DomainRef, disk: str, params: list, flags: int) -> None:
        check_flags(flags, LIVE_CONFIG, "testDomainSetBlockIoTune", _T)
        tuning.validate(params, {k: STRING if k == "group_name" else ULLONG for k in IOTUNE_FIELDS})
        obj = self._obj(dom)
        t, live = tuning.one_def(obj, flags)
        target = _find_disk(obj, live, disk)
        if target is None:
            raise error(ErrorNumber.INVALID_ARG, _T, f"missing persistent configuration for disk '{disk}'")
        info = dict(t.iotune.get(target, {}))
        for name, ptype, value in params:
            if ptype == ULLONG and value > IOTUNE_MAX:
                raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, _T,
                            f"block I/O throttle limit value must be no more than {IOTUNE_MAX}")
            info[name] = value
        for suffix in ("bytes_sec", "iops_sec", "bytes_sec_max", "iops_sec_max"):
            if info.get(f"total_{suffix}") and (info.get(f"read_{suffix}") or info.get(f"write_{suffix}")):
                raise error(ErrorNumber.INVALID_ARG, _T,
                            f"total and read/write of {suffix} cannot be set at the same time")
        for kind in ("total_bytes_sec", "read_bytes_sec", "write_bytes_sec", "total_iops_sec", "read_iops_sec",
                     "write_iops_sec"):
            if info.get(kind, 0) > info.get(f"{kind}_max", 0):
                raise error(ErrorNumber.INVALID_ARG, _T, f"{kind} cannot be set higher than {kind}_max ")
        t.iotune[target] = info

    # -- perf events ---------------------------------------------------------------------------------
    async def domain_get_perf_events(self, dom: DomainRef, flags: int) -> list:
        check_flags(flags, LIVE_CONFIG_STRING, "testDomainGetPerfEvents", _T)
        t, _live = tuning.one_def(self._obj(dom), flags)
        return [(name, BOOLEAN, bool(t.perf.get(name, False))) for name in PERF_EVENTS]

    async def domain_set_perf_events(self, dom: DomainRef, params: list, flags: int) -> None:
        check_flags(flags, LIVE_CONFIG, "testDomainSetPerfEvents", _T)
        tuning.validate(params, dict.fromkeys(PERF_EVENTS, BOOLEAN))
        t, _live = tuning.one_def(self._obj(dom), flags)
        for name, _type, value in params:
            t.perf[name] = bool(value)

    # -- pinning ----------------------------------------------------------------------------------------
    async def domain_pin_vcpu(self, dom: DomainRef, vcpu: int, cpumap: bytes) -> None:
        await self.domain_pin_vcpu_flags(dom, vcpu, cpumap, 0)

    async def domain_pin_vcpu_flags(self, dom: DomainRef, vcpu: int, cpumap: bytes, flags: int) -> None:
        check_flags(flags, 0, "testDomainPinVcpuFlags", _T)
        obj = self._obj(dom)
        if not obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "cannot pin vcpus on an inactive domain")
        if vcpu >= obj.current.current_vcpus:
            raise error(ErrorNumber.INVALID_ARG, _T, f"requested vcpu '{vcpu}' is not present in the domain")
        tuning.live_tune(obj).vcpupin[vcpu] = tuning.cpus_of(cpumap)

    async def domain_get_vcpu_pin_info(self, dom: DomainRef, ncpumaps: int, maplen: int,
                                       flags: int) -> tuple[bytes, int]:
        check_flags(flags, LIVE_CONFIG, "testDomainGetVcpuPinInfo", _T)
        _check_maps(ncpumaps, maplen, "virDomainGetVcpuPinInfo")
        obj = self._obj(dom)
        t, live = tuning.one_def(obj, flags)
        d = obj.live if live and obj.live is not None else obj.definition
        every = list(range(_node_cpus(self.host.node_info)))
        count = min(ncpumaps, d.vcpus)
        maps = b"".join(tuning.cpumap_of(t.vcpupin.get(n, every), maplen) for n in range(count))
        return maps, count

    async def domain_pin_emulator(self, dom: DomainRef, cpumap: bytes, flags: int) -> None:
        check_flags(flags, LIVE_CONFIG, "testDomainPinEmulator", _T)
        t, _live = tuning.one_def(self._obj(dom), flags)
        cpus = tuning.cpus_of(cpumap)
        if not cpus:
            raise error(ErrorNumber.INVALID_ARG, _T, "Empty cpu list for pinning")
        t.emulatorpin = cpus

    async def domain_get_emulator_pin_info(self, dom: DomainRef, maplen: int, flags: int) -> tuple[bytes, int]:
        check_flags(flags, LIVE_CONFIG, "testDomainGetEmulatorPinInfo", _T)
        _check_maps(1, maplen, "virDomainGetEmulatorPinInfo")
        t, _live = tuning.one_def(self._obj(dom), flags)
        cpus = t.emulatorpin if t.emulatorpin is not None else list(range(_node_cpus(self.host.node_info)))
        return tuning.cpumap_of(cpus, maplen), 1

    async def domain_get_iothread_info(self, dom: DomainRef, flags: int) -> tuple[list, int]:
        check_flags(flags, LIVE_CONFIG, "testDomainGetIOThreadInfo", _T)
        obj = self._obj(dom)
        t, live = tuning.one_def(obj, flags)
        d = obj.live if live and obj.live is not None else obj.definition
        # an unpinned IOThread reports the first N CPUs, N the vCPUs online (libvirt's own sizing)
        default = list(range(d.current_vcpus))
        maplen = (_node_cpus(self.host.node_info) + 7) // 8
        info = [(n, tuning.cpumap_of(t.iothreadpin.get(n, default), maplen)) for n in t.iothreads]
        return info, len(info)

    async def domain_add_iothread(self, dom: DomainRef, iothread_id: int, flags: int) -> None:
        check_flags(flags, LIVE_CONFIG, "testDomainAddIOThread", _T)
        if iothread_id == 0:
            raise error(ErrorNumber.INVALID_ARG, _T, "invalid value of 0 for iothread_id")
        obj = self._obj(dom)
        t, _live = tuning.one_def(obj, flags)
        if iothread_id in t.iothreads:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                        f"an IOThread is already using iothread_id '{iothread_id}'")
        t.iothreads.append(iothread_id)
        tuning.iothread_params(obj).append([iothread_id, *tuning.DEFAULT_POLL])

    async def domain_del_iothread(self, dom: DomainRef, iothread_id: int, flags: int) -> None:
        check_flags(flags, LIVE_CONFIG, "testDomainDelIOThread", _T)
        if iothread_id == 0:
            raise error(ErrorNumber.INVALID_ARG, _T, "invalid value of 0 for iothread_id")
        obj = self._obj(dom)
        t, _live = tuning.one_def(obj, flags)
        if iothread_id not in t.iothreads:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                        f"cannot find IOThread '{iothread_id}' in iothreadids list")
        t.iothreads.remove(iothread_id)
        t.iothreadpin.pop(iothread_id, None)
        params = tuning.iothread_params(obj)
        for entry in params:
            if entry[0] == iothread_id:
                params.remove(entry)
                break

    async def domain_pin_iothread(self, dom: DomainRef, iothreads_id: int, cpumap: bytes, flags: int) -> None:
        check_flags(flags, LIVE_CONFIG, "testDomainPinIOThread", _T)
        t, _live = tuning.one_def(self._obj(dom), flags)
        cpus = tuning.cpus_of(cpumap)
        if not cpus:
            raise error(ErrorNumber.INVALID_ARG, _T, "Empty iothread cpumap list for pinning")
        if iothreads_id not in t.iothreads:
            raise error(ErrorNumber.INVALID_ARG, _T, f"iothreadid {iothreads_id} not found")
        t.iothreadpin[iothreads_id] = cpus
        t.iothreads_auto.discard(iothreads_id)

    async def domain_set_iothread_params(self, dom: DomainRef, iothread_id: int, params: list, flags: int) -> None:
        check_flags(flags, tuning.AFFECT_LIVE, "testDomainSetIOThreadParams", _T)
        if iothread_id == 0:
            raise error(ErrorNumber.INVALID_ARG, _T, "invalid value of 0 for iothread_id")
        obj = self._obj(dom)
        t, _live = tuning.one_def(obj, flags)
        if iothread_id not in t.iothreads:
            raise error(ErrorNumber.INVALID_ARG, _T, f"cannot find IOThread '{iothread_id}' in iothreadids")
        tuning.validate(params, {"poll_max_ns": ULLONG, "poll_grow": UINT, "poll_shrink": UINT})
        slot = {"poll_max_ns": 1, "poll_grow": 2, "poll_shrink": 3}
        for entry in tuning.iothread_params(obj):
            if entry[0] == iothread_id:
                for name, _type, value in params:
                    entry[slot[name]] = value
                break

    def iothread_stats(self, obj: DomainObj) -> list[tuple[str, int, int]]:
        """The domain statistics' iothread group, as libvirt's test driver fills it."""
        entries = tuning.iothread_params(obj)
        if not entries:
            return []
        out = [("iothread.count", UINT, len(entries))]
        for n, max_ns, grow, shrink in entries:
            out += [(f"iothread.{n}.poll-max-ns", ULLONG, max_ns), (f"iothread.{n}.poll-grow", UINT, grow),
                    (f"iothread.{n}.poll-shrink", UINT, shrink)]
        return out

    # -- the guest's clock and name ------------------------------------------------------------------
    async def domain_get_time(self, dom: DomainRef, flags: int) -> tuple[int, int]:
        check_flags(flags, 0, "testDomainGetTime", _T)
        obj = self._obj(dom)
        if obj.state != DomainState.RUNNING:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "domain is not running")
        seconds, nseconds = obj.extra.get("time", (TIME_SECONDS, 0))    # type: ignore[misc]
        return seconds, nseconds

    async def domain_set_time(self, dom: DomainRef, seconds: int, nseconds: int, flags: int) -> None:
        check_flags(flags, 1, "testDomainSetTime", _T)        # VIR_DOMAIN_TIME_SYNC
        obj = self._obj(dom)
        if not obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")
        obj.extra["time"] = (seconds, nseconds)    # type: ignore[assignment]   # kept across restarts, as libvirt's

    async def domain_get_hostname(self, dom: DomainRef, flags: int) -> str:
        check_flags(flags, 0, "testDomainGetHostname", _T)
        obj = self._obj(dom)
        if not obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")
        return f"{dom.name}host"

    async def node_get_free_pages(self, pages: list[int], startCell: int, cellCount: int,  # noqa: N803
                                  flags: int) -> list[int]:
        check_flags(flags, 0, "testNodeGetFreePages", _T)
        if len(pages) * cellCount > NODE_MAX_CELLS:       # what libvirt's daemon refuses
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, "the result won't fit into REMOTE_NODE_MAX_CELLS")
        # libvirt's test driver's made-up counts (virsh freepages prints them); it returns 0 as
        # their number, which only a caller in libvirt's own process can see
        counts, x = [], 6
        for _cell in range(cellCount if pages else 0):
            for _page in pages:
                x = x * 2 + 7
                counts.append(x)
        return counts


__all__ = ["TuningAPI", "UNLIMITED"]
