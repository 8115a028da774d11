"""REMOTE procedures for host and capabilities: node info and memory, sysinfo, domain capabilities, CPU models.

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
NODE_GET_INFO, CONNECT_GET_CAPABILITIES and CONNECT_GET_SYSINFO sit with the
connection rows in :mod:`.remote`.
"""

from __future__ import annotations

from . import Procedure
from .rows import Array, Struct, _proc, i, s, s_, u, uh

NODE_CPU_STATS_MAX = 16          # REMOTE_NODE_CPU_STATS_MAX
NODE_MEMORY_STATS_MAX = 16       # REMOTE_NODE_MEMORY_STATS_MAX
NODE_MAX_CELLS = 1024            # REMOTE_NODE_MAX_CELLS
CONNECT_CPU_MODELS_MAX = 8192    # REMOTE_CONNECT_CPU_MODELS_MAX

CPU_STAT = Struct("remote_node_get_cpu_stats", [("field", s), ("value", uh)])
MEMORY_STAT = Struct("remote_node_get_memory_stats", [("field", s), ("value", uh)])

PROCEDURES: list[Procedure] = [
    _proc(5, "CONNECT_GET_MAX_VCPUS", [("type", s_)], [("max_vcpus", i)], high=True),
    _proc(101, "NODE_GET_CELLS_FREE_MEMORY", [("startCell", i), ("maxcells", i)],
          [("cells", Array(uh, NODE_MAX_CELLS))], high=True),
    _proc(102, "NODE_GET_FREE_MEMORY", ret=[("freeMem", uh)], high=True),
    _proc(227, "NODE_GET_CPU_STATS", [("cpuNum", i), ("nparams", i), ("flags", u)],
          [("params", Array(CPU_STAT, NODE_CPU_STATS_MAX)), ("nparams", i)], high=True),
    _proc(228, "NODE_GET_MEMORY_STATS", [("nparams", i), ("cellNum", i), ("flags", u)],
          [("params", Array(MEMORY_STAT, NODE_MEMORY_STATS_MAX)), ("nparams", i)], high=True),
    _proc(312, "CONNECT_GET_CPU_MODEL_NAMES", [("arch", s), ("need_results", i), ("flags", u)],
          [("models", Array(s, CONNECT_CPU_MODELS_MAX)), ("ret", i)]),
    # acl connect:write: it may run a binary the caller names, so refused read-only (as libvirt).
    _proc(342, "CONNECT_GET_DOMAIN_CAPABILITIES",
          [("emulatorbin", s_), ("arch", s_), ("machine", s_), ("virttype", s_), ("flags", u)],
          [("capabilities", s)], mutates=True),
]
