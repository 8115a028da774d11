"""REMOTE procedures for storage pool and network events: registration and the event messages.

Rows as in :mod:`.remote` (numbers, names and fields exactly as libvirt's
remote_protocol.x).  Registration is answered by the daemon (kind DAEMON),
the event messages are MESSAGE rows.
"""

from __future__ import annotations

from . import Procedure
from .rows import _proc, Array, D, Direction, s, s_, i, u, h, uh  # noqa: F401

PROCEDURES: list[Procedure] = [
]
