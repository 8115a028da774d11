"""virsh's commands for statistics (domstats, blockStats, interfaceStats, memoryStats, vcpus, getCPUStats)."""

from __future__ import annotations
