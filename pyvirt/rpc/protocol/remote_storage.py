"""REMOTE procedures for storage pools and volumes (libvirt's virStoragePool*/virStorageVol*).

Rows as in :mod:`.remote` (numbers, names and fields exactly as libvirt's
remote_protocol.x), built with the helpers of :mod:`.rows`.  Read-only
connections may list, look up and read (libvirt's API checks refuse the
rest, FIND_STORAGE_POOL_SOURCES and STORAGE_VOL_DOWNLOAD included: both make
the daemon read what the caller names).  The pool events' rows live in
:mod:`.remote_object_events`.
"""

from __future__ import annotations

from ..xdr import UUID, Char, NonnullStoragePool, NonnullStorageVol, UChar
from . import Procedure
from .rows import _proc, Array, Direction, s, s_, i, u, uh

STORAGE_POOL_LIST_MAX = 4096     # REMOTE_STORAGE_POOL_LIST_MAX
STORAGE_VOL_LIST_MAX = 16384     # REMOTE_STORAGE_VOL_LIST_MAX

P, V = NonnullStoragePool, NonnullStorageVol
_names = Array(s, STORAGE_POOL_LIST_MAX)
_vol_info = [("type", Char), ("capacity", uh), ("allocation", uh)]

PROCEDURES: list[Procedure] = [
    # --- pools: lists and lookups ------------------------------------------------
    _proc(71, "CONNECT_NUM_OF_STORAGE_POOLS", ret=[("num", i)], high=True),
    _proc(72, "CONNECT_LIST_STORAGE_POOLS", [("maxnames", i)], [("names", _names)], high=True),
    _proc(73, "CONNECT_NUM_OF_DEFINED_STORAGE_POOLS", ret=[("num", i)], high=True),
    _proc(74, "CONNECT_LIST_DEFINED_STORAGE_POOLS", [("maxnames", i)], [("names", _names)], high=True),
    _proc(75, "CONNECT_FIND_STORAGE_POOL_SOURCES", [("type", s), ("srcSpec", s_), ("flags", u)],
          [("xml", s)], mutates=True),
    # --- pools: lifecycle --------------------------------------------------------
    _proc(76, "STORAGE_POOL_CREATE_XML", [("xml", s), ("flags", u)], [("pool", P)], mutates=True),
    _proc(77, "STORAGE_POOL_DEFINE_XML", [("xml", s), ("flags", u)], [("pool", P)], high=True,
          mutates=True),
    _proc(78, "STORAGE_POOL_CREATE", [("pool", P), ("flags", u)], mutates=True),
    _proc(79, "STORAGE_POOL_BUILD", [("pool", P), ("flags", u)], mutates=True),
    _proc(80, "STORAGE_POOL_DESTROY", [("pool", P)], high=True, mutates=True),
    _proc(81, "STORAGE_POOL_DELETE", [("pool", P), ("flags", u)], mutates=True),
    _proc(82, "STORAGE_POOL_UNDEFINE", [("pool", P)], high=True, mutates=True),
    _proc(83, "STORAGE_POOL_REFRESH", [("pool", P), ("flags", u)], mutates=True),
    _proc(84, "STORAGE_POOL_LOOKUP_BY_NAME", [("name", s)], [("pool", P)], high=True),
    _proc(85, "STORAGE_POOL_LOOKUP_BY_UUID", [("uuid", UUID)], [("pool", P)], high=True),
    _proc(86, "STORAGE_POOL_LOOKUP_BY_VOLUME", [("vol", V)], [("pool", P)], high=True),
    _proc(87, "STORAGE_POOL_GET_INFO", [("pool", P)],
          [("state", UChar), ("capacity", uh), ("allocation", uh), ("available", uh)], high=True),
    _proc(88, "STORAGE_POOL_GET_XML_DESC", [("pool", P), ("flags", u)], [("xml", s)], high=True),
    _proc(89, "STORAGE_POOL_GET_AUTOSTART", [("pool", P)], [("autostart", i)], high=True),
    _proc(90, "STORAGE_POOL_SET_AUTOSTART", [("pool", P), ("autostart", i)], high=True, mutates=True),
    _proc(91, "STORAGE_POOL_NUM_OF_VOLUMES", [("pool", P)], [("num", i)], high=True),
    _proc(92, "STORAGE_POOL_LIST_VOLUMES", [("pool", P), ("maxnames", i)],
          [("names", Array(s, STORAGE_VOL_LIST_MAX))], high=True),
    # --- volumes -------------------------------------------------------------------
    _proc(93, "STORAGE_VOL_CREATE_XML", [("pool", P), ("xml", s), ("flags", u)], [("vol", V)],
          mutates=True),
    _proc(94, "STORAGE_VOL_DELETE", [("vol", V), ("flags", u)], mutates=True),
    _proc(95, "STORAGE_VOL_LOOKUP_BY_NAME", [("pool", P), ("name", s)], [("vol", V)], high=True),
    _proc(96, "STORAGE_VOL_LOOKUP_BY_KEY", [("key", s)], [("vol", V)], high=True),
    _proc(97, "STORAGE_VOL_LOOKUP_BY_PATH", [("path", s)], [("vol", V)], high=True),
    _proc(98, "STORAGE_VOL_GET_INFO", [("vol", V)], _vol_info, high=True),
    _proc(99, "STORAGE_VOL_GET_XML_DESC", [("vol", V), ("flags", u)], [("xml", s)], high=True),
    _proc(100, "STORAGE_VOL_GET_PATH", [("vol", V)], [("name", s)], high=True),
    _proc(125, "STORAGE_VOL_CREATE_XML_FROM", [("pool", P), ("xml", s), ("clonevol", V), ("flags", u)],
          [("vol", V)], mutates=True),
    _proc(154, "STORAGE_POOL_IS_ACTIVE", [("pool", P)], [("active", i)], high=True),
    _proc(155, "STORAGE_POOL_IS_PERSISTENT", [("pool", P)], [("persistent", i)], high=True),
    _proc(165, "STORAGE_VOL_WIPE", [("vol", V), ("flags", u)], mutates=True),
    # writestream@1: client -> daemon; readstream@1: daemon -> client
    _proc(208, "STORAGE_VOL_UPLOAD", [("vol", V), ("offset", uh), ("length", uh), ("flags", u)],
          mutates=True, stream=Direction.UPLOAD),
    _proc(209, "STORAGE_VOL_DOWNLOAD", [("vol", V), ("offset", uh), ("length", uh), ("flags", u)],
          mutates=True, stream=Direction.DOWNLOAD),
    _proc(259, "STORAGE_VOL_WIPE_PATTERN", [("vol", V), ("algorithm", u), ("flags", u)], mutates=True),
    _proc(260, "STORAGE_VOL_RESIZE", [("vol", V), ("capacity", uh), ("flags", u)], mutates=True),
    _proc(281, "CONNECT_LIST_ALL_STORAGE_POOLS", [("need_results", i), ("flags", u)],
          [("pools", Array(P, STORAGE_POOL_LIST_MAX)), ("ret", u)], high=True),
    _proc(282, "STORAGE_POOL_LIST_ALL_VOLUMES", [("pool", P), ("need_results", i), ("flags", u)],
          [("vols", Array(V, STORAGE_VOL_LIST_MAX)), ("ret", u)], high=True),
    _proc(378, "STORAGE_VOL_GET_INFO_FLAGS", [("vol", V), ("flags", u)], _vol_info, high=True),
    _proc(391, "STORAGE_POOL_LOOKUP_BY_TARGET_PATH", [("path", s)], [("pool", P)], high=True),
    _proc(403, "CONNECT_GET_STORAGE_POOL_CAPABILITIES", [("flags", u)], [("capabilities", s)],
          high=True),
]

STORAGE_PROCEDURE_NUMBERS = frozenset(p.number for p in PROCEDURES)
MUTATING_STORAGE = frozenset(p.number for p in PROCEDURES if p.mutates)
