"""The QEMU driver's procedures for host and capabilities (node info and memory, sysinfo, domain capabilities, CPU models).

A mixin of :class:`.connection.QemuConnection`.  Host figures are read
from /proc and /sys at each call (a few small files); anything from QEMU
comes from the per-binary probe cache (:mod:`.domcaps`), so only the first
call after a binary changed starts a QEMU.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...conf import cpubaseline
from ...errors import ErrorDomain, ErrorNumber, error
from . import domcaps, hostinfo

NODE_MAX_CELLS = 1024       # REMOTE_NODE_MAX_CELLS
NODE_STATS_MAX = 16         # REMOTE_NODE_CPU_STATS_MAX / REMOTE_NODE_MEMORY_STATS_MAX


def _rpc_error(message: str):
    return error(ErrorNumber.RPC, ErrorDomain.RPC, message)


class HostAPI:
    driver: Any

    def _caps(self) -> domcaps.HostCaps:
        return domcaps.for_driver(self.driver)

    async def node_get_info(self) -> tuple:
        return hostinfo.node_info().as_tuple()

    async def connect_get_capabilities(self) -> str:
        return await self._caps().capabilities()

    async def connect_get_sysinfo(self, flags: int) -> str:
        hostinfo.check_flags(flags, 0, "qemuConnectGetSysinfo")
        # dmidecode is a subprocess: off the loop
        return hostinfo.format_sysinfo(await asyncio.to_thread(hostinfo.sysinfo))

    async def connect_get_max_vcpus(self, virt_type: str | None) -> int:
        return hostinfo.max_vcpus(virt_type)

    async def node_get_free_memory(self) -> int:
        return hostinfo.free_memory()

    async def node_get_cells_free_memory(self, start: int, maxcells: int) -> list[int]:
        if maxcells > NODE_MAX_CELLS:
            raise _rpc_error("maxCells > REMOTE_NODE_MAX_CELLS")
        return hostinfo.cells_free_memory(start, maxcells)

    async def node_get_cpu_stats(self, cpu: int, nparams: int, flags: int) -> tuple[list, int]:
        if nparams > NODE_STATS_MAX:
            raise _rpc_error("nparams too large")
        return hostinfo.cpu_stats(cpu, nparams, flags)

    async def node_get_memory_stats(self, nparams: int, cell: int, flags: int) -> tuple[list, int]:
        if nparams > NODE_STATS_MAX:
            raise _rpc_error("nparams too large")
        return hostinfo.memory_stats(cell, nparams, flags)

    async def connect_get_cpu_model_names(self, arch: str, need_results: int, flags: int) -> tuple[list[str], int]:
        models = await self._caps().cpu_model_names(arch, flags)
        return (models if need_results else []), len(models)

    async def connect_baseline_cpu(self, xml_cpus: list[str], flags: int) -> str:
        """libvirt's generic baseline (:mod:`pyvirt.conf.cpubaseline`), less the features QEMU
        is never given; QEMU itself is not asked."""
        hostinfo.check_flags(flags, cpubaseline.EXPAND_FEATURES | cpubaseline.MIGRATABLE, "qemuConnectBaselineCPU")
        return cpubaseline.baseline(list(xml_cpus), flags, cpubaseline.QEMU_DROPPED)

    async def connect_get_domain_capabilities(self, emulatorbin: str | None, arch: str | None,
                                              machine: str | None, virttype: str | None, flags: int) -> str:
        return await self._caps().domain_capabilities(emulatorbin, arch, machine, virttype, flags)
