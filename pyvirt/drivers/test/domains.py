"""The test host's answers to the domain and node queries beyond the lifecycle.

libvirt's test driver answers them from its figures (a 1 TiB disk, weight
50 for the 'fair' scheduler, its security model), so tools reading them see
the values they see on libvirt's ``test:///default``.
"""

from __future__ import annotations

from ...conf import metadata as metadata_xml
from ...enums import EventStoppedDetail, ShutoffReason
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import DomainRef
from . import content
from .tuning import bare_invalid_arg, one_def

_T = ErrorDomain.TEST
VCPU_LIVE, VCPU_CONFIG, VCPU_MAXIMUM = 1, 2, 4
MEM_LIVE, MEM_CONFIG, MEM_MAXIMUM = 1, 2, 4
# virDomainGetBlockInfo of any disk, in the wire's order: allocation, capacity, physical
# (libvirt's test figures: a capacity just under the 1 TiB allocated)
BLOCK_INFO = (1099511627776, 1099506450432, 1099511627776)
TYPED_UINT = 2
SCHED_PARAMS = (("weight", TYPED_UINT, 50),)     # the 'fair' scheduler's one parameter
# virConnectGetCPUModelNames("i686"): the x86 models of libvirt 9.0's CPU map, in its order
CPU_MODELS = (
    "486", "pentium", "pentium2", "pentium3", "pentiumpro", "coreduo", "n270", "core2duo", "qemu32", "kvm32",
    "cpu64-rhel5", "cpu64-rhel6", "qemu64", "kvm64", "Conroe", "Penryn", "Nehalem", "Nehalem-IBRS", "Westmere",
    "Westmere-IBRS", "SandyBridge", "SandyBridge-IBRS", "IvyBridge", "IvyBridge-IBRS", "Haswell-noTSX",
    "Haswell-noTSX-IBRS", "Haswell", "Haswell-IBRS", "Broadwell-noTSX", "Broadwell-noTSX-IBRS", "Broadwell",
    "Broadwell-IBRS", "Skylake-Client", "Skylake-Client-IBRS", "Skylake-Client-noTSX-IBRS", "Skylake-Server",
    "Skylake-Server-IBRS", "Skylake-Server-noTSX-IBRS", "Cascadelake-Server", "Cascadelake-Server-noTSX",
    "Icelake-Client", "Icelake-Client-noTSX", "Icelake-Server", "Icelake-Server-noTSX", "Cooperlake",
    "Snowridge", "athlon", "phenom", "Opteron_G1", "Opteron_G2", "Opteron_G3", "Opteron_G4", "Opteron_G5",
    "EPYC", "EPYC-IBPB", "EPYC-Rome", "EPYC-Milan", "Dhyana",
)


def _bits(flags: list[bool]) -> bytes:
    out = bytearray((len(flags) + 7) // 8)
    for i, on in enumerate(flags):
        if on:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


class DomainExtrasAPI:
    """Mixed into TestConnection (which supplies _obj, _active, host)."""

    # -- node -------------------------------------------------------------------------------
    async def connect_get_max_vcpus(self, type: str | None) -> int:   # noqa: A002 - the wire field
        return content.MAX_VCPUS

    async def node_get_cells_free_memory(self, startCell: int, maxcells: int) -> list[int]:
        cells = self.host.cells
        if startCell < 0 or startCell >= len(cells):
            raise error(ErrorNumber.INVALID_ARG, _T, "Range exceeds available cells")
        return [mem for mem, _ in cells[startCell:startCell + maxcells]]

    async def node_get_free_memory(self) -> int:
        # libvirt's test driver: the cells' memory, halved (what its default host answers)
        return sum(mem for mem, _ in self.host.cells) // 2

    async def node_get_security_model(self) -> tuple[str, str]:
        return content.SECURITY_MODEL

    async def node_get_cpu_map(self, need_map: int, need_online: int, flags: int) -> tuple[bytes, int, int]:
        check_flags(flags, 0, "testNodeGetCPUMap", _T)
        count, online, n_online = content.CPU_MAP
        return (_bits(online) if need_map else b""), (n_online if need_online else 0), count

    async def connect_get_cpu_model_names(self, arch: str, need_results: int, flags: int) -> tuple[list[str], int]:
        check_flags(flags, 1, "testConnectGetCPUModelNames", _T)
        if arch not in ("i686", "x86_64"):
            raise error(ErrorNumber.INVALID_ARG, _T, f"cannot find CPU model list for architecture '{arch}'")
        return (list(CPU_MODELS) if need_results else []), len(CPU_MODELS)

    # -- domain queries -----------------------------------------------------------------------
    async def domain_get_os_type(self, dom: DomainRef) -> str:
        self._obj(dom)
        return "linux"      # libvirt's test driver answers this whatever the XML says

    async def domain_get_max_memory(self, dom: DomainRef) -> int:
        return self._obj(dom).current.memory_kib

    async def domain_get_vcpus_flags(self, dom: DomainRef, flags: int) -> int:
        check_flags(flags, VCPU_LIVE | VCPU_CONFIG | VCPU_MAXIMUM, "testDomainGetVcpusFlags", _T)
        obj = self._obj(dom)
        if flags & VCPU_LIVE and flags & VCPU_CONFIG:
            raise bare_invalid_arg("Flags 'VIR_DOMAIN_AFFECT_LIVE' and 'VIR_DOMAIN_AFFECT_CONFIG' are "
                                   "mutually exclusive")
        if flags & VCPU_LIVE and not obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")
        d = obj.definition if flags & VCPU_CONFIG else obj.current
        return d.vcpus if flags & VCPU_MAXIMUM else d.current_vcpus

    async def domain_get_block_info(self, dom: DomainRef, path: str, flags: int) -> tuple[int, int, int]:
        check_flags(flags, 0, "testDomainGetBlockInfo", _T)
        obj = self._obj(dom)
        if not any(path in (d.target_dev, d.source) for d in obj.current.devices.disks):
            raise error(ErrorNumber.INVALID_ARG, _T, f"invalid path {path} not assigned to domain")
        return BLOCK_INFO

    async def domain_block_stats(self, dom: DomainRef, path: str) -> tuple[int, int, int, int, int]:
        obj = self._active(dom)
        if not any(path in (d.target_dev, d.source) for d in obj.current.devices.disks):
            raise error(ErrorNumber.INVALID_ARG, _T, f"invalid path: {path}")
        return 0, 0, 0, 0, -1

    async def domain_interface_stats(self, dom: DomainRef, device: str) -> tuple[int, ...]:
        obj = self._active(dom)
        if not any(device in (n.target_dev, n.mac) for n in obj.current.devices.interfaces):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, f"'{device}' is not a known interface")
        return 0, 0, 0, 0, 0, 0, 0, 0

    async def domain_get_security_label(self, dom: DomainRef) -> tuple[str, int]:
        if not self._obj(dom).active:
            return "", 0            # libvirt's test driver labels running domains only
        return content.SECURITY_LABEL

    # -- memory and managed save -------------------------------------------------------------
    async def domain_set_memory(self, dom: DomainRef, memory: int) -> None:
        await self.domain_set_memory_flags(dom, memory, MEM_LIVE)

    async def domain_set_max_memory(self, dom: DomainRef, memory: int) -> None:
        await self.domain_set_memory_flags(dom, memory, MEM_MAXIMUM)

    async def domain_set_memory_flags(self, dom: DomainRef, memory: int, flags: int) -> None:
        check_flags(flags, MEM_LIVE | MEM_CONFIG | MEM_MAXIMUM, "testDomainSetMemoryFlags", _T)
        obj = self._obj(dom)
        targets = []
        if flags & MEM_CONFIG or (not flags & MEM_LIVE and not obj.active):
            targets.append(obj.definition)
        if flags & MEM_LIVE or (not flags & MEM_CONFIG and obj.active):
            if not obj.active:
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")
            targets.append(obj.live)
        for d in targets:
            if flags & MEM_MAXIMUM:
                if obj.active and d is obj.live:
                    raise error(ErrorNumber.OPERATION_INVALID, _T, "cannot resize the maximum memory on an active domain")
                d.memory_kib = memory
                d.current_memory_kib = min(d.current_memory_kib, memory)
            else:
                if memory > d.memory_kib:
                    raise error(ErrorNumber.INVALID_ARG, _T, "cannot set memory higher than max memory")
                d.current_memory_kib = memory

    async def domain_managed_save(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, 7, "testDomainManagedSave", _T)   # BYPASS_CACHE, RUNNING, PAUSED
        obj = self._active(dom)
        if not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "cannot do managed save for transient domain")
        self.host.stop(obj, ShutoffReason.SAVED, EventStoppedDetail.SAVED)
        obj.has_managed_save = True

    async def domain_managed_save_remove(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, 0, "testDomainManagedSaveRemove", _T)
        self._obj(dom).has_managed_save = False

    async def domain_reset(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, 0, "testDomainReset", _T)
        self._active(dom)

    async def domain_get_metadata(self, dom: DomainRef, type: int, uri: str | None, flags: int) -> str:   # noqa: A002
        check_flags(flags, 3, "testDomainGetMetadata", _T)
        obj = self._obj(dom)
        _t, live = one_def(obj, flags)          # the definition's checks; the text lives in the model
        return metadata_xml.get_metadata(obj.live if live else obj.definition, type, uri)

    # -- scheduler, max vCPUs, isUpdated -------------------------------------------------------
    async def domain_is_updated(self, dom: DomainRef) -> int:
        self._obj(dom)
        return 0

    async def domain_get_max_vcpus(self, dom: DomainRef) -> int:
        return await self.domain_get_vcpus_flags(dom, VCPU_LIVE | VCPU_MAXIMUM)

    async def domain_get_scheduler_type(self, dom: DomainRef) -> tuple[str, int]:
        self._obj(dom)
        return "fair", len(SCHED_PARAMS)

    async def domain_get_scheduler_parameters(self, dom: DomainRef, nparams: int) -> list:
        return await self.domain_get_scheduler_parameters_flags(dom, nparams, 0)

    async def domain_get_scheduler_parameters_flags(self, dom: DomainRef, nparams: int, flags: int) -> list:
        check_flags(flags, 0, "testDomainGetSchedulerParametersFlags", _T)
        self._obj(dom)
        return list(SCHED_PARAMS[:max(nparams, 0)])

    async def domain_set_scheduler_parameters(self, dom: DomainRef, params: list) -> None:
        await self.domain_set_scheduler_parameters_flags(dom, params, 0)

    async def domain_set_scheduler_parameters_flags(self, dom: DomainRef, params: list, flags: int) -> None:
        check_flags(flags, 0, "testDomainSetSchedulerParametersFlags", _T)
        self._obj(dom)
        for name, ptype, _value in params:
            if name != "weight":
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, f"parameter '{name}' not supported")
            if ptype != TYPED_UINT:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE,
                            f"invalid type for parameter '{name}', expected 'uint'")
        # libvirt's test driver checks the weight and keeps nothing: the next read is 50 again
