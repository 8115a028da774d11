"""REMOTE procedures for statistics: domstats, block/interface/memory stats, vCPU and CPU figures.

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
DOMAIN_BLOCK_STATS (64) and DOMAIN_GET_BLOCK_INFO (194) stay in the core table.
"""

from __future__ import annotations

from . import Procedure
from .rows import _proc, D, s, s_, i, u, h, uh  # noqa: F401
from ..xdr import DOMAIN_LIST_MAX, Array, Opaque, Struct, TypedParams

# Limits of remote_protocol.x
VCPUINFO_MAX = 2048                       # REMOTE_VCPUINFO_MAX
CPUMAPS_MAX = 16384                       # REMOTE_CPUMAPS_MAX
DOMAIN_MEMORY_STATS_MAX = 1024            # REMOTE_DOMAIN_MEMORY_STATS_MAX
DOMAIN_BLOCK_STATS_PARAMETERS_MAX = 16    # REMOTE_DOMAIN_BLOCK_STATS_PARAMETERS_MAX
DOMAIN_GET_CPU_STATS_MAX = 2048           # REMOTE_DOMAIN_GET_CPU_STATS_MAX
DOMAIN_GET_CPU_STATS_NCPUS_MAX = 128      # REMOTE_DOMAIN_GET_CPU_STATS_NCPUS_MAX
CONNECT_GET_ALL_DOMAIN_STATS_MAX = 4096   # REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX

VCPU_INFO = Struct("remote_vcpu_info", [("number", u), ("state", i), ("cpu_time", uh), ("cpu", i)])
MEMORY_STAT = Struct("remote_domain_memory_stat", [("tag", i), ("val", uh)])
STATS_RECORD = Struct("remote_domain_stats_record",
                      [("dom", D), ("params", TypedParams(CONNECT_GET_ALL_DOMAIN_STATS_MAX))])

CPUMAP_MAX = 256                          # REMOTE_CPUMAP_MAX
DOMAIN_DISK_ERRORS_MAX = 256              # REMOTE_DOMAIN_DISK_ERRORS_MAX
DISK_ERROR = Struct("remote_domain_disk_error", [("disk", s), ("error", i)])

PROCEDURES: list[Procedure] = [
    # virsh vcpuinfo and libvirt-python's vcpus() size their CPU maps with it
    _proc(293, "NODE_GET_CPU_MAP", [("need_map", i), ("need_online", i), ("flags", u)],
          [("cpumap", Opaque(CPUMAP_MAX)), ("online", u), ("ret", i)], high=True),
    _proc(20, "DOMAIN_GET_VCPUS", [("dom", D), ("maxinfo", i), ("maplen", i)],
          [("info", Array(VCPU_INFO, VCPUINFO_MAX)), ("cpumaps", Opaque(CPUMAPS_MAX))]),
    _proc(65, "DOMAIN_INTERFACE_STATS", [("dom", D), ("device", s)], [
        ("rx_bytes", h), ("rx_packets", h), ("rx_errs", h), ("rx_drop", h),
        ("tx_bytes", h), ("tx_packets", h), ("tx_errs", h), ("tx_drop", h)]),
    _proc(159, "DOMAIN_MEMORY_STATS", [("dom", D), ("maxStats", u), ("flags", u)],
          [("stats", Array(MEMORY_STAT, DOMAIN_MEMORY_STATS_MAX))]),
    _proc(230, "DOMAIN_GET_VCPU_PIN_INFO", [("dom", D), ("ncpumaps", i), ("maplen", i), ("flags", u)],
          [("cpumaps", Opaque(CPUMAPS_MAX)), ("num", i)]),
    _proc(243, "DOMAIN_BLOCK_STATS_FLAGS", [("dom", D), ("path", s), ("nparams", i), ("flags", u)],
          [("params", TypedParams(DOMAIN_BLOCK_STATS_PARAMETERS_MAX)), ("nparams", i)]),
    _proc(262, "DOMAIN_GET_CPU_STATS",
          [("dom", D), ("nparams", u), ("start_cpu", i), ("ncpus", u), ("flags", u)],
          [("params", TypedParams(DOMAIN_GET_CPU_STATS_MAX)), ("nparams", i)]),
    _proc(263, "DOMAIN_GET_DISK_ERRORS", [("dom", D), ("maxerrors", u), ("flags", u)],
          [("errors", Array(DISK_ERROR, DOMAIN_DISK_ERRORS_MAX)), ("nerrors", i)]),
    _proc(308, "DOMAIN_SET_MEMORY_STATS_PERIOD", [("dom", D), ("period", i), ("flags", u)],
          mutates=True),
    _proc(344, "CONNECT_GET_ALL_DOMAIN_STATS",
          [("doms", Array(D, DOMAIN_LIST_MAX)), ("stats", u), ("flags", u)],
          [("retStats", Array(STATS_RECORD, DOMAIN_LIST_MAX))]),
]
