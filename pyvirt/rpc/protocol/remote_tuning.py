"""REMOTE procedures for domain tuning: memory, blkio, NUMA, interface and block I/O
parameters, perf events, CPU pinning, the guest's time and hostname, free huge pages.

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
"""

from __future__ import annotations

from ..xdr import Array, Opaque, Struct, TypedParams
from . import Procedure
from .rows import D, _proc, h, i, s, s_, u, uh

# Limits of remote_protocol.x
CPUMAP_MAX = 2048                          # REMOTE_CPUMAP_MAX
CPUMAPS_MAX = 16384                        # REMOTE_CPUMAPS_MAX
IOTHREAD_INFO_MAX = 16384                  # REMOTE_IOTHREAD_INFO_MAX
NODE_MAX_CELLS = 1024                      # REMOTE_NODE_MAX_CELLS
memory_params = TypedParams(16)            # REMOTE_DOMAIN_MEMORY_PARAMETERS_MAX
blkio_params = TypedParams(16)             # REMOTE_DOMAIN_BLKIO_PARAMETERS_MAX
numa_params = TypedParams(16)              # REMOTE_DOMAIN_NUMA_PARAMETERS_MAX
interface_params = TypedParams(16)         # REMOTE_DOMAIN_INTERFACE_PARAMETERS_MAX
block_io_tune_params = TypedParams(32)     # REMOTE_DOMAIN_BLOCK_IO_TUNE_PARAMETERS_MAX
perf_params = TypedParams(64)              # REMOTE_DOMAIN_PERF_EVENTS_MAX
iothread_params = TypedParams(64)          # REMOTE_DOMAIN_IOTHREAD_PARAMS_MAX

IOTHREAD_INFO = Struct("remote_domain_iothread_info", [("iothread_id", u), ("cpumap", Opaque(CPUMAP_MAX))])

PROCEDURES: list[Procedure] = [
    _proc(26, "DOMAIN_PIN_VCPU", [("dom", D), ("vcpu", u), ("cpumap", Opaque(CPUMAP_MAX))], mutates=True),
    _proc(197, "DOMAIN_SET_MEMORY_PARAMETERS", [("dom", D), ("params", memory_params), ("flags", u)],
          mutates=True),
    _proc(198, "DOMAIN_GET_MEMORY_PARAMETERS", [("dom", D), ("nparams", i), ("flags", u)],
          [("params", memory_params), ("nparams", i)]),
    _proc(205, "DOMAIN_SET_BLKIO_PARAMETERS", [("dom", D), ("params", blkio_params), ("flags", u)],
          mutates=True),
    _proc(206, "DOMAIN_GET_BLKIO_PARAMETERS", [("dom", D), ("nparams", i), ("flags", u)],
          [("params", blkio_params), ("nparams", i)]),
    _proc(225, "DOMAIN_PIN_VCPU_FLAGS", [("dom", D), ("vcpu", u), ("cpumap", Opaque(CPUMAP_MAX)), ("flags", u)],
          mutates=True),
    _proc(252, "DOMAIN_SET_BLOCK_IO_TUNE", [("dom", D), ("disk", s), ("params", block_io_tune_params),
                                            ("flags", u)], mutates=True),
    _proc(253, "DOMAIN_GET_BLOCK_IO_TUNE", [("dom", D), ("disk", s_), ("nparams", i), ("flags", u)],
          [("params", block_io_tune_params), ("nparams", i)]),
    _proc(254, "DOMAIN_SET_NUMA_PARAMETERS", [("dom", D), ("params", numa_params), ("flags", u)],
          mutates=True),
    _proc(255, "DOMAIN_GET_NUMA_PARAMETERS", [("dom", D), ("nparams", i), ("flags", u)],
          [("params", numa_params), ("nparams", i)]),
    _proc(256, "DOMAIN_SET_INTERFACE_PARAMETERS", [("dom", D), ("device", s), ("params", interface_params),
                                                   ("flags", u)], mutates=True),
    _proc(257, "DOMAIN_GET_INTERFACE_PARAMETERS", [("dom", D), ("device", s), ("nparams", i), ("flags", u)],
          [("params", interface_params), ("nparams", i)]),
    # the guest's name and clock: libvirt refuses both on read-only connections (they ask the agent)
    _proc(277, "DOMAIN_GET_HOSTNAME", [("dom", D), ("flags", u)], [("hostname", s)], mutates=True),
    _proc(279, "DOMAIN_PIN_EMULATOR", [("dom", D), ("cpumap", Opaque(CPUMAP_MAX)), ("flags", u)], mutates=True),
    _proc(280, "DOMAIN_GET_EMULATOR_PIN_INFO", [("dom", D), ("maplen", i), ("flags", u)],
          [("cpumaps", Opaque(CPUMAPS_MAX)), ("ret", i)]),
    _proc(337, "DOMAIN_GET_TIME", [("dom", D), ("flags", u)], [("seconds", h), ("nseconds", u)], mutates=True),
    _proc(338, "DOMAIN_SET_TIME", [("dom", D), ("seconds", h), ("nseconds", u), ("flags", u)], mutates=True),
    _proc(340, "NODE_GET_FREE_PAGES", [("pages", Array(u, NODE_MAX_CELLS)), ("startCell", i),
                                       ("cellCount", u), ("flags", u)],
          [("counts", Array(uh, NODE_MAX_CELLS))], high=True),
    _proc(351, "DOMAIN_GET_IOTHREAD_INFO", [("dom", D), ("flags", u)],
          [("info", Array(IOTHREAD_INFO, IOTHREAD_INFO_MAX)), ("ret", u)]),
    _proc(352, "DOMAIN_PIN_IOTHREAD", [("dom", D), ("iothreads_id", u), ("cpumap", Opaque(CPUMAP_MAX)),
                                       ("flags", u)], mutates=True),
    _proc(355, "DOMAIN_ADD_IOTHREAD", [("dom", D), ("iothread_id", u), ("flags", u)], mutates=True),
    _proc(356, "DOMAIN_DEL_IOTHREAD", [("dom", D), ("iothread_id", u), ("flags", u)], mutates=True),
    _proc(402, "DOMAIN_SET_IOTHREAD_PARAMS", [("dom", D), ("iothread_id", u), ("params", iothread_params),
                                              ("flags", u)], mutates=True),
    _proc(365, "DOMAIN_GET_PERF_EVENTS", [("dom", D), ("flags", u)], [("params", perf_params)]),
    _proc(366, "DOMAIN_SET_PERF_EVENTS", [("dom", D), ("params", perf_params), ("flags", u)], mutates=True),
]
