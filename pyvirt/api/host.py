"""libvirt-python's methods for host and capabilities (node info and memory, sysinfo, domain capabilities, CPU models).

Shapes are libvirt-python's: ``getCPUStats``/``getMemoryStats`` a dict of
field -> value (asked for twice, count first, as libvirt-python does),
``getCellsFreeMemory`` a list of bytes per cell, ``getCPUModelNames`` a list.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any


class DomainHostAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference


class ConnectHostAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: the one place every call goes through

    def getMaxVcpus(self, type: str | None) -> int:  # noqa: A002 - libvirt-python's parameter name
        return self._call("connect_get_max_vcpus", type)

    def getFreeMemory(self) -> int:
        return self._call("node_get_free_memory")

    def getCellsFreeMemory(self, startCell: int, maxCells: int) -> list[int]:
        return list(self._call("node_get_cells_free_memory", startCell, maxCells))

    def getCPUStats(self, cpuNum: int, flags: int = 0) -> dict[str, int]:
        _params, count = self._call("node_get_cpu_stats", cpuNum, 0, flags)
        if count == 0:
            return {}
        params, _count = self._call("node_get_cpu_stats", cpuNum, count, flags)
        return dict(params)

    def getMemoryStats(self, cellNum: int, flags: int = 0) -> dict[str, int]:
        _params, count = self._call("node_get_memory_stats", 0, cellNum, flags)
        if count == 0:
            return {}
        params, _count = self._call("node_get_memory_stats", count, cellNum, flags)
        return dict(params)

    def getSysinfo(self, flags: int = 0) -> str:
        return self._call("connect_get_sysinfo", flags)

    def getDomainCapabilities(self, emulatorbin: str | None = None, arch: str | None = None,
                              machine: str | None = None, virttype: str | None = None, flags: int = 0) -> str:
        return self._call("connect_get_domain_capabilities", emulatorbin, arch, machine, virttype, flags)

    def getCPUModelNames(self, arch: str, flags: int = 0) -> list[str]:
        models, _count = self._call("connect_get_cpu_model_names", arch, 1, flags)
        return list(models)
