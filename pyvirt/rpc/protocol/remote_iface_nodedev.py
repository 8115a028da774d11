"""REMOTE procedures for host interfaces (virInterface) and node devices (virNodeDevice).

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
Their driver methods are a group of :data:`pyvirt.driver.DRIVER_METHODS`: the
test driver serves them; the qemu driver answers NO_SUPPORT.
"""

from __future__ import annotations

from ..xdr import NonnullInterface, NonnullNodeDevice
from . import Procedure
from .rows import Array, _proc, i, s, s_, u

INTERFACE_NAME_LIST_MAX = 16384    # REMOTE_INTERFACE_NAME_LIST_MAX
INTERFACE_LIST_MAX = 16384         # REMOTE_INTERFACE_LIST_MAX
NODE_DEVICE_NAME_LIST_MAX = 65536  # REMOTE_NODE_DEVICE_NAME_LIST_MAX
NODE_DEVICE_CAPS_LIST_MAX = 65536  # REMOTE_NODE_DEVICE_CAPS_LIST_MAX
NODE_DEVICE_LIST_MAX = 65536       # REMOTE_NODE_DEVICE_LIST_MAX

I, ND = NonnullInterface, NonnullNodeDevice

PROCEDURES: list[Procedure] = [
    # node devices
    _proc(111, "NODE_NUM_OF_DEVICES", [("cap", s_), ("flags", u)], [("num", i)], high=True),
    _proc(112, "NODE_LIST_DEVICES", [("cap", s_), ("maxnames", i), ("flags", u)],
          [("names", Array(s, NODE_DEVICE_NAME_LIST_MAX))], high=True),
    _proc(113, "NODE_DEVICE_LOOKUP_BY_NAME", [("name", s)], [("dev", ND)], high=True),
    _proc(114, "NODE_DEVICE_GET_XML_DESC", [("name", s), ("flags", u)], [("xml", s)]),
    _proc(115, "NODE_DEVICE_GET_PARENT", [("name", s)], [("parent", s_)], high=True),
    _proc(116, "NODE_DEVICE_NUM_OF_CAPS", [("name", s)], [("num", i)], high=True),
    _proc(117, "NODE_DEVICE_LIST_CAPS", [("name", s), ("maxnames", i)],
          [("names", Array(s, NODE_DEVICE_CAPS_LIST_MAX))], high=True),
    # host interfaces
    _proc(126, "CONNECT_NUM_OF_INTERFACES", ret=[("num", i)], high=True),
    _proc(127, "CONNECT_LIST_INTERFACES", [("maxnames", i)], [("names", Array(s, INTERFACE_NAME_LIST_MAX))],
          high=True),
    _proc(128, "INTERFACE_LOOKUP_BY_NAME", [("name", s)], [("iface", I)], high=True),
    _proc(129, "INTERFACE_LOOKUP_BY_MAC_STRING", [("mac", s)], [("iface", I)], high=True),
    _proc(130, "INTERFACE_GET_XML_DESC", [("iface", I), ("flags", u)], [("xml", s)]),
    _proc(131, "INTERFACE_DEFINE_XML", [("xml", s), ("flags", u)], [("iface", I)], high=True, mutates=True),
    _proc(132, "INTERFACE_UNDEFINE", [("iface", I)], high=True, mutates=True),
    _proc(133, "INTERFACE_CREATE", [("iface", I), ("flags", u)], mutates=True),
    _proc(134, "INTERFACE_DESTROY", [("iface", I), ("flags", u)], high=True, mutates=True),
    _proc(137, "CONNECT_NUM_OF_DEFINED_INTERFACES", ret=[("num", i)], high=True),
    _proc(138, "CONNECT_LIST_DEFINED_INTERFACES", [("maxnames", i)],
          [("names", Array(s, INTERFACE_NAME_LIST_MAX))], high=True),
    _proc(156, "INTERFACE_IS_ACTIVE", [("iface", I)], [("active", i)], high=True),
    _proc(284, "CONNECT_LIST_ALL_INTERFACES", [("need_results", i), ("flags", u)],
          [("ifaces", Array(I, INTERFACE_LIST_MAX)), ("ret", u)], high=True),
    _proc(285, "CONNECT_LIST_ALL_NODE_DEVICES", [("need_results", i), ("flags", u)],
          [("devices", Array(ND, NODE_DEVICE_LIST_MAX)), ("ret", u)], high=True),
    # node devices made and removed (the test driver's vHBAs)
    _proc(123, "NODE_DEVICE_CREATE_XML", [("xml_desc", s), ("flags", u)], [("dev", ND)], mutates=True),
    _proc(124, "NODE_DEVICE_DESTROY", [("name", s)], mutates=True),
    # host interface transactions (a restore point of every interface definition)
    _proc(220, "INTERFACE_CHANGE_BEGIN", [("flags", u)], mutates=True),
    _proc(221, "INTERFACE_CHANGE_COMMIT", [("flags", u)], mutates=True),
    _proc(222, "INTERFACE_CHANGE_ROLLBACK", [("flags", u)], mutates=True),
]
