"""REMOTE procedures for domain snapshots (virDomainSnapshot*).

Rows as in :mod:`.remote` (numbers, names and fields exactly as libvirt's
remote_protocol.x), built with the helpers of :mod:`.rows`.
"""

from __future__ import annotations

from . import Procedure
from .rows import _proc, Array, D, Direction, s, s_, i, u, h, uh  # noqa: F401

PROCEDURES: list[Procedure] = [
]
