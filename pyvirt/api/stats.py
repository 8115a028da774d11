"""libvirt-python's methods for statistics (domstats, blockStats, interfaceStats, memoryStats, vcpus, getCPUStats)."""

from __future__ import annotations

from typing import Any, Callable


class DomainStatsAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference


class ConnectStatsAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: the one place every call goes through
