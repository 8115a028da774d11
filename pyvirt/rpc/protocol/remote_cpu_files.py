"""REMOTE procedures for CPU models and descriptors passed in: baseline and compare
(the host's and a hypervisor's), launch-security info, and the two starts that
take file descriptors (CALL_WITH_FDS).

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
The compare and baseline calls of a hypervisor are refused read-only by
libvirt's API, the host ones are not; so is the launch-security query.
"""

from __future__ import annotations

from ..xdr import Array, TypedParams
from . import Procedure
from .rows import D, _proc, i, s, s_, u

CPU_BASELINE_MAX = 256                   # REMOTE_CPU_BASELINE_MAX
LAUNCH_SECURITY_INFO_PARAMS_MAX = 64     # REMOTE_DOMAIN_LAUNCH_SECURITY_INFO_PARAMS_MAX

_HYPERVISOR = [("emulator", s_), ("arch", s_), ("machine", s_), ("virttype", s_)]

PROCEDURES: list[Procedure] = [
    _proc(158, "CONNECT_COMPARE_CPU", [("xml", s), ("flags", u)], [("result", i)], high=True),
    _proc(162, "CONNECT_BASELINE_CPU", [("xmlCPUs", Array(s, CPU_BASELINE_MAX)), ("flags", u)], [("cpu", s)]),
    # the descriptors travel after the call (CALL_WITH_FDS); the driver gets them as a last argument
    _proc(309, "DOMAIN_CREATE_XML_WITH_FILES", [("xml_desc", s), ("flags", u)], [("dom", D)], mutates=True),
    _proc(310, "DOMAIN_CREATE_WITH_FILES", [("dom", D), ("flags", u)], [("dom", D)], mutates=True),
    _proc(393, "CONNECT_COMPARE_HYPERVISOR_CPU", [*_HYPERVISOR, ("xmlCPU", s), ("flags", u)], [("result", i)],
          mutates=True),
    _proc(394, "CONNECT_BASELINE_HYPERVISOR_CPU",
          [*_HYPERVISOR, ("xmlCPUs", Array(s, CPU_BASELINE_MAX)), ("flags", u)], [("cpu", s)], mutates=True),
    _proc(396, "DOMAIN_GET_LAUNCH_SECURITY_INFO", [("dom", D), ("flags", u)],
          [("params", TypedParams(LAUNCH_SECURITY_INFO_PARAMS_MAX))], mutates=True),
]

FDS_IN: frozenset[str] = frozenset({"domain_create_xml_with_files", "domain_create_with_files"})
"""Methods whose call may bring descriptors: the driver takes them as a list after the wire arguments."""

NULL_WHEN_EMPTY: dict[str, tuple[int, str]] = {
    "connect_baseline_cpu": (0, "xmlCPUs"),
    "connect_baseline_hypervisor_cpu": (4, "xmlCPUs"),
}
"""Array arguments libvirt's API refuses as NULL (virCheckNonNullArg): libvirtd's XDR decodes an
empty array to NULL, so over RPC an empty list gets that error, not the driver's (index, name)."""
