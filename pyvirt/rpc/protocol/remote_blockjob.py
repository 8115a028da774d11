"""REMOTE procedures for block jobs: copy, commit, pull/rebase, and the job's info, speed and abort.

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
"""

from __future__ import annotations

from . import Procedure
from .rows import _proc, D, s, s_, i, u, uh
from ..xdr import TypedParams

DOMAIN_BLOCK_COPY_PARAMETERS_MAX = 16     # REMOTE_DOMAIN_BLOCK_COPY_PARAMETERS_MAX

PROCEDURES: list[Procedure] = [
    _proc(237, "DOMAIN_BLOCK_JOB_ABORT", [("dom", D), ("path", s), ("flags", u)], mutates=True),
    _proc(238, "DOMAIN_GET_BLOCK_JOB_INFO", [("dom", D), ("path", s), ("flags", u)],
          [("found", i), ("type", i), ("bandwidth", uh), ("cur", uh), ("end", uh)]),
    _proc(239, "DOMAIN_BLOCK_JOB_SET_SPEED", [("dom", D), ("path", s), ("bandwidth", uh), ("flags", u)],
          mutates=True),
    _proc(240, "DOMAIN_BLOCK_PULL", [("dom", D), ("path", s), ("bandwidth", uh), ("flags", u)], mutates=True),
    _proc(266, "DOMAIN_BLOCK_REBASE", [("dom", D), ("path", s), ("base", s_), ("bandwidth", uh), ("flags", u)],
          mutates=True),
    _proc(290, "DOMAIN_BLOCK_COMMIT",
          [("dom", D), ("disk", s), ("base", s_), ("top", s_), ("bandwidth", uh), ("flags", u)], mutates=True),
    _proc(345, "DOMAIN_BLOCK_COPY",
          [("dom", D), ("path", s), ("destxml", s),
           ("params", TypedParams(DOMAIN_BLOCK_COPY_PARAMETERS_MAX)), ("flags", u)], mutates=True),
]
