"""The QEMU program (0x20008087): libvirt-qemu's private calls, as a table.

Layouts are libvirt's ``qemu_protocol.x``.  Methods are named after the
libvirt-qemu API (``virDomainQemuMonitorCommand`` -> ``domain_qemu_monitor_command``)
so that they cannot collide with REMOTE procedure names.
"""

from __future__ import annotations

from ..wire import Program
from ..xdr import Domain, Hyper, Int, NonnullDomain, NonnullString, OptString, Struct, UInt
from . import Kind, Procedure, ProgramTable

PROCEDURES: list[Procedure] = [
    Procedure(
        1, "DOMAIN_MONITOR_COMMAND", "domain_qemu_monitor_command",
        Struct("qemu_domain_monitor_command_args",
               [("dom", NonnullDomain), ("cmd", NonnullString), ("flags", UInt)]),
        Struct("qemu_domain_monitor_command_ret", [("result", NonnullString)]),
        mutates=True,
    ),
    # Registering for raw QMP events needs write access in libvirt's ACLs, so
    # read-only connections are refused.
    Procedure(
        4, "CONNECT_DOMAIN_MONITOR_EVENT_REGISTER", "connect_domain_qemu_monitor_event_register",
        Struct("qemu_connect_domain_monitor_event_register_args",
               [("dom", Domain), ("event", OptString), ("flags", UInt)]),
        Struct("qemu_connect_domain_monitor_event_register_ret", [("callbackID", Int)]),
        priority_high=True, mutates=True, kind=Kind.DAEMON,
    ),
    Procedure(
        5, "CONNECT_DOMAIN_MONITOR_EVENT_DEREGISTER", "connect_domain_qemu_monitor_event_deregister",
        Struct("qemu_connect_domain_monitor_event_deregister_args", [("callbackID", Int)]),
        None,
        priority_high=True, kind=Kind.DAEMON,
    ),
    Procedure(
        6, "DOMAIN_MONITOR_EVENT", "domain_qemu_monitor_event",
        Struct("qemu_domain_monitor_event_msg", [
            ("callbackID", Int), ("dom", NonnullDomain), ("event", NonnullString),
            ("seconds", Hyper), ("micros", UInt), ("details", OptString)]),
        None,
        kind=Kind.MESSAGE,
    ),
]

QEMU = ProgramTable(Program.QEMU, "QEMU", PROCEDURES)

__all__ = ["QEMU", "PROCEDURES"]
