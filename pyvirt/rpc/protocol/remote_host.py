"""REMOTE procedures for host and capabilities: node info and memory, sysinfo, domain capabilities, CPU models.

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
"""

from __future__ import annotations

from . import Procedure
from .rows import _proc, D, s, s_, i, u, h, uh  # noqa: F401

PROCEDURES: list[Procedure] = [
]
