"""REMOTE procedures for scheduler parameters and the domain queries tools ask the test driver.

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
"""

from __future__ import annotations

from ..xdr import TypedParams
from . import Procedure
from .rows import D, _proc, i, s, u

SCHEDULER_PARAMETERS_MAX = 16      # REMOTE_DOMAIN_SCHEDULER_PARAMETERS_MAX
sched_params = TypedParams(SCHEDULER_PARAMETERS_MAX)

PROCEDURES: list[Procedure] = [
    _proc(18, "DOMAIN_GET_MAX_VCPUS", [("dom", D)], [("num", i)], high=True),
    _proc(56, "DOMAIN_GET_SCHEDULER_TYPE", [("dom", D)], [("type", s), ("nparams", i)]),
    _proc(57, "DOMAIN_GET_SCHEDULER_PARAMETERS", [("dom", D), ("nparams", i)], [("params", sched_params)]),
    _proc(58, "DOMAIN_SET_SCHEDULER_PARAMETERS", [("dom", D), ("params", sched_params)], mutates=True),
    _proc(202, "DOMAIN_IS_UPDATED", [("dom", D)], [("updated", i)], high=True),
    _proc(219, "DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS", [("dom", D), ("params", sched_params), ("flags", u)],
          mutates=True),
    _proc(223, "DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS", [("dom", D), ("nparams", i), ("flags", u)],
          [("params", sched_params)]),
]
