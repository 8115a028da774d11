"""REMOTE procedures for domain checkpoints (virDomainCheckpoint*).

Rows as in :mod:`.remote` (numbers, names and fields exactly as libvirt's
remote_protocol.x), built with the helpers of :mod:`.rows`.
"""

from __future__ import annotations

from ..xdr import NonnullDomainCheckpoint
from . import Procedure
from .rows import _proc, Array, D, s, i, u

CHK = NonnullDomainCheckpoint
CHECKPOINT_LIST_MAX = 16384    # REMOTE_DOMAIN_CHECKPOINT_LIST_MAX
_checkpoints = Array(CHK, CHECKPOINT_LIST_MAX)
XML_SECURE = 1                 # VIR_DOMAIN_CHECKPOINT_XML_SECURE: refused read-only, as libvirt's ACL

PROCEDURES: list[Procedure] = [
    _proc(411, "DOMAIN_CHECKPOINT_CREATE_XML", [("dom", D), ("xml_desc", s), ("flags", u)],
          [("checkpoint", CHK)], mutates=True),
    _proc(412, "DOMAIN_CHECKPOINT_GET_XML_DESC", [("checkpoint", CHK), ("flags", u)], [("xml", s)],
          readonly_flags=XML_SECURE),
    _proc(413, "DOMAIN_LIST_ALL_CHECKPOINTS", [("dom", D), ("need_results", i), ("flags", u)],
          [("checkpoints", _checkpoints), ("ret", i)], high=True),
    _proc(414, "DOMAIN_CHECKPOINT_LIST_ALL_CHILDREN", [("checkpoint", CHK), ("need_results", i), ("flags", u)],
          [("checkpoints", _checkpoints), ("ret", i)], high=True),
    _proc(415, "DOMAIN_CHECKPOINT_LOOKUP_BY_NAME", [("dom", D), ("name", s), ("flags", u)],
          [("checkpoint", CHK)], high=True),
    _proc(416, "DOMAIN_CHECKPOINT_GET_PARENT", [("checkpoint", CHK), ("flags", u)], [("parent", CHK)], high=True),
    _proc(417, "DOMAIN_CHECKPOINT_DELETE", [("checkpoint", CHK), ("flags", u)], mutates=True),
]
