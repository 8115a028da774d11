"""REMOTE procedures for virtual networks (virNetwork*, DHCP leases and the network events).

Rows as in :mod:`.remote` (numbers, names and fields exactly as libvirt's
remote_protocol.x), built with the helpers of :mod:`.rows`.
"""

from __future__ import annotations

from . import Procedure
from ..xdr import UUID, NonnullNetwork, Struct
from .rows import _proc, Array, D, Direction, s, s_, i, u, h, uh  # noqa: F401

# remote_protocol.x's list bounds
NETWORK_LIST_MAX = 16384           # REMOTE_NETWORK_LIST_MAX
NETWORK_NAME_LIST_MAX = 16384      # REMOTE_NETWORK_NAME_LIST_MAX
NETWORK_DHCP_LEASES_MAX = 65536    # REMOTE_NETWORK_DHCP_LEASES_MAX

N = NonnullNetwork

# struct remote_network_dhcp_lease: a tuple in this field order travels between the layers
DHCP_LEASE = Struct("remote_network_dhcp_lease", [
    ("iface", s), ("expirytime", h), ("type", i), ("mac", s_), ("iaid", s_),
    ("ipaddr", s), ("prefix", u), ("hostname", s_), ("clientid", s_),
])

PROCEDURES: list[Procedure] = [
    # --- lists and lookups (read-only safe) ------------------------------------------------
    _proc(36, "CONNECT_LIST_DEFINED_NETWORKS", [("maxnames", i)],
          [("names", Array(s, NETWORK_NAME_LIST_MAX))], high=True),
    _proc(38, "CONNECT_LIST_NETWORKS", [("maxnames", i)],
          [("names", Array(s, NETWORK_NAME_LIST_MAX))], high=True),
    _proc(50, "CONNECT_NUM_OF_DEFINED_NETWORKS", ret=[("num", i)], high=True),
    _proc(52, "CONNECT_NUM_OF_NETWORKS", ret=[("num", i)], high=True),
    _proc(283, "CONNECT_LIST_ALL_NETWORKS", [("need_results", i), ("flags", u)],
          [("nets", Array(N, NETWORK_LIST_MAX)), ("ret", u)], high=True),
    _proc(46, "NETWORK_LOOKUP_BY_NAME", [("name", s)], [("net", N)], high=True),
    _proc(47, "NETWORK_LOOKUP_BY_UUID", [("uuid", UUID)], [("net", N)], high=True),

    # --- define and lifecycle ---------------------------------------------------------------
    _proc(40, "NETWORK_CREATE_XML", [("xml", s)], [("net", N)], mutates=True),
    _proc(41, "NETWORK_DEFINE_XML", [("xml", s)], [("net", N)], high=True, mutates=True),
    _proc(432, "NETWORK_DEFINE_XML_FLAGS", [("xml", s), ("flags", u)], [("net", N)], high=True, mutates=True),
    _proc(437, "NETWORK_CREATE_XML_FLAGS", [("xml", s), ("flags", u)], [("net", N)], mutates=True),
    _proc(49, "NETWORK_UNDEFINE", [("net", N)], high=True, mutates=True),
    _proc(39, "NETWORK_CREATE", [("net", N)], mutates=True),
    _proc(42, "NETWORK_DESTROY", [("net", N)], high=True, mutates=True),
    _proc(48, "NETWORK_SET_AUTOSTART", [("net", N), ("autostart", i)], high=True, mutates=True),
    _proc(291, "NETWORK_UPDATE", [("net", N), ("command", u), ("section", u), ("parentIndex", i),
                                  ("xml", s), ("flags", u)], high=True, mutates=True),

    # --- queries ------------------------------------------------------------------------
    _proc(43, "NETWORK_GET_XML_DESC", [("net", N), ("flags", u)], [("xml", s)], high=True),
    _proc(44, "NETWORK_GET_AUTOSTART", [("net", N)], [("autostart", i)], high=True),
    _proc(45, "NETWORK_GET_BRIDGE_NAME", [("net", N)], [("name", s)], high=True),
    _proc(152, "NETWORK_IS_ACTIVE", [("net", N)], [("active", i)], high=True),
    _proc(153, "NETWORK_IS_PERSISTENT", [("net", N)], [("persistent", i)], high=True),
    _proc(341, "NETWORK_GET_DHCP_LEASES", [("net", N), ("mac", s_), ("need_results", i), ("flags", u)],
          [("leases", Array(DHCP_LEASE, NETWORK_DHCP_LEASES_MAX)), ("ret", u)]),
]
