"""REMOTE procedures for domain snapshots (virDomainSnapshot*).

Rows as in :mod:`.remote` (numbers, names and fields exactly as libvirt's
remote_protocol.x), built with the helpers of :mod:`.rows`.
DOMAIN_SNAPSHOT_NUM (187) is a core row in :mod:`.remote`.
"""

from __future__ import annotations

from ..xdr import NonnullDomainSnapshot
from . import Procedure
from .rows import _proc, Array, D, s, i, u

SNAP = NonnullDomainSnapshot
SNAPSHOT_LIST_MAX = 1024       # REMOTE_DOMAIN_SNAPSHOT_LIST_MAX
_names = Array(s, SNAPSHOT_LIST_MAX)
_snaps = Array(SNAP, SNAPSHOT_LIST_MAX)
XML_SECURE = 1                 # VIR_DOMAIN_SNAPSHOT_XML_SECURE: refused read-only, as libvirt's ACL

PROCEDURES: list[Procedure] = [
    _proc(185, "DOMAIN_SNAPSHOT_CREATE_XML", [("dom", D), ("xml_desc", s), ("flags", u)], [("snap", SNAP)],
          mutates=True),
    _proc(186, "DOMAIN_SNAPSHOT_GET_XML_DESC", [("snap", SNAP), ("flags", u)], [("xml", s)],
          high=True, readonly_flags=XML_SECURE),
    _proc(188, "DOMAIN_SNAPSHOT_LIST_NAMES", [("dom", D), ("maxnames", i), ("flags", u)],
          [("names", _names)], high=True),
    _proc(189, "DOMAIN_SNAPSHOT_LOOKUP_BY_NAME", [("dom", D), ("name", s), ("flags", u)], [("snap", SNAP)],
          high=True),
    _proc(190, "DOMAIN_HAS_CURRENT_SNAPSHOT", [("dom", D), ("flags", u)], [("result", i)]),
    _proc(191, "DOMAIN_SNAPSHOT_CURRENT", [("dom", D), ("flags", u)], [("snap", SNAP)]),
    _proc(192, "DOMAIN_REVERT_TO_SNAPSHOT", [("snap", SNAP), ("flags", u)], mutates=True),
    _proc(193, "DOMAIN_SNAPSHOT_DELETE", [("snap", SNAP), ("flags", u)], mutates=True),
    _proc(244, "DOMAIN_SNAPSHOT_GET_PARENT", [("snap", SNAP), ("flags", u)], [("snap", SNAP)], high=True),
    _proc(246, "DOMAIN_SNAPSHOT_NUM_CHILDREN", [("snap", SNAP), ("flags", u)], [("num", i)], high=True),
    _proc(247, "DOMAIN_SNAPSHOT_LIST_CHILDREN_NAMES", [("snap", SNAP), ("maxnames", i), ("flags", u)],
          [("names", _names)], high=True),
    _proc(271, "DOMAIN_SNAPSHOT_IS_CURRENT", [("snap", SNAP), ("flags", u)], [("current", i)]),
    _proc(272, "DOMAIN_SNAPSHOT_HAS_METADATA", [("snap", SNAP), ("flags", u)], [("metadata", i)]),
    _proc(274, "DOMAIN_LIST_ALL_SNAPSHOTS", [("dom", D), ("need_results", i), ("flags", u)],
          [("snapshots", _snaps), ("ret", i)], high=True),
    _proc(275, "DOMAIN_SNAPSHOT_LIST_ALL_CHILDREN", [("snapshot", SNAP), ("need_results", i), ("flags", u)],
          [("snapshots", _snaps), ("ret", i)], high=True),
]
