"""REMOTE procedures that reach into the guest or its control state: core dumps, rename, the guest
agent's calls (password, file-system freeze/thaw/trim/info, interface addresses), NMI and
process signals, the control channel's state, lifecycle actions.

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
"""

from __future__ import annotations

from ..xdr import Array, Opaque, Struct
from . import Procedure
from .rows import D, _proc, h, i, s, s_, u, uh

FSFREEZE_MOUNTPOINTS_MAX = 256     # REMOTE_DOMAIN_FSFREEZE_MOUNTPOINTS_MAX
FSINFO_MAX = 256                   # REMOTE_DOMAIN_FSINFO_MAX
FSINFO_DISKS_MAX = 256             # REMOTE_DOMAIN_FSINFO_DISKS_MAX
INTERFACE_MAX = 2048               # REMOTE_DOMAIN_INTERFACE_MAX
IP_ADDR_MAX = 2048                 # REMOTE_DOMAIN_IP_ADDR_MAX

FSINFO = Struct("remote_domain_fsinfo", [("mountpoint", s), ("name", s), ("fstype", s),
                                         ("dev_aliases", Array(s, FSINFO_DISKS_MAX))])
IP_ADDR = Struct("remote_domain_ip_addr", [("type", i), ("addr", s), ("prefix", u)])
INTERFACE = Struct("remote_domain_interface", [("name", s), ("hwaddr", s_), ("addrs", Array(IP_ADDR, IP_ADDR_MAX))])
mountpoints = Array(s, FSFREEZE_MOUNTPOINTS_MAX)

PEEK_BUFFER_MAX = 4194304          # REMOTE_DOMAIN_MEMORY_PEEK_BUFFER_MAX

PROCEDURES: list[Procedure] = [
    # reads the guest's memory: libvirt refuses it on read-only connections
    _proc(104, "DOMAIN_MEMORY_PEEK", [("dom", D), ("offset", uh), ("size", u), ("flags", u)],
          [("buffer", Opaque(PEEK_BUFFER_MAX))], mutates=True),
    # a dump of the guest's memory into a file the caller names
    _proc(53, "DOMAIN_CORE_DUMP", [("dom", D), ("to", s), ("flags", u)], mutates=True),
    _proc(334, "DOMAIN_CORE_DUMP_WITH_FORMAT", [("dom", D), ("to", s), ("dumpformat", u), ("flags", u)],
          mutates=True),
    _proc(210, "DOMAIN_INJECT_NMI", [("dom", D), ("flags", u)], mutates=True),
    _proc(229, "DOMAIN_GET_CONTROL_INFO", [("dom", D), ("flags", u)],
          [("state", u), ("details", u), ("stateTime", uh)], high=True),
    _proc(294, "DOMAIN_FSTRIM", [("dom", D), ("mountPoint", s_), ("minimum", uh), ("flags", u)], mutates=True),
    _proc(295, "DOMAIN_SEND_PROCESS_SIGNAL", [("dom", D), ("pid_value", h), ("signum", u), ("flags", u)],
          mutates=True),
    _proc(335, "DOMAIN_FSFREEZE", [("dom", D), ("mountpoints", mountpoints), ("flags", u)],
          [("filesystems", i)], mutates=True),
    _proc(336, "DOMAIN_FSTHAW", [("dom", D), ("mountpoints", mountpoints), ("flags", u)],
          [("filesystems", i)], mutates=True),
    # the guest agent answers these: libvirt refuses them on read-only connections
    _proc(349, "DOMAIN_GET_FSINFO", [("dom", D), ("flags", u)],
          [("info", Array(FSINFO, FSINFO_MAX)), ("ret", u)], mutates=True),
    # read-only callers may ask the lease and ARP sources; the agent's is refused by the driver
    _proc(353, "DOMAIN_INTERFACE_ADDRESSES", [("dom", D), ("source", u), ("flags", u)],
          [("ifaces", Array(INTERFACE, INTERFACE_MAX))]),
    _proc(357, "DOMAIN_SET_USER_PASSWORD", [("dom", D), ("user", s_), ("password", s_), ("flags", u)],
          mutates=True),
    _proc(358, "DOMAIN_RENAME", [("dom", D), ("new_name", s_), ("flags", u)], [("retcode", i)], mutates=True),
    _proc(390, "DOMAIN_SET_LIFECYCLE_ACTION", [("dom", D), ("type", u), ("action", u), ("flags", u)],
          mutates=True),
]
