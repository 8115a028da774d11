"""The KEEPALIVE program (0x6b656570, "keep"): PING and PONG, both empty MESSAGEs.

Either side may PING; the other must answer PONG.  libvirtd pings only
clients that asked SUPPORTS_FEATURE(PROGRAM_KEEPALIVE), after 5 s idle, and
drops a peer silent for interval * (count + 1) seconds.
"""

from __future__ import annotations

from ..wire import Program
from . import Kind, Procedure, ProgramTable

PING = 1
PONG = 2

PROCEDURES: list[Procedure] = [
    Procedure(PING, "PING", "keepalive_ping", None, None, priority_high=True, kind=Kind.MESSAGE),
    Procedure(PONG, "PONG", "keepalive_pong", None, None, priority_high=True, kind=Kind.MESSAGE),
]

KEEPALIVE = ProgramTable(Program.KEEPALIVE, "KEEPALIVE", PROCEDURES)

INTERVAL = 5
"""libvirtd's default keepalive_interval, in seconds."""
COUNT = 5
"""libvirtd's default keepalive_count: unanswered pings before giving up."""

__all__ = ["KEEPALIVE", "PROCEDURES", "PING", "PONG", "INTERVAL", "COUNT"]
