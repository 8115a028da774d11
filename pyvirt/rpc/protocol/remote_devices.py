"""REMOTE procedures for devices and tuning: attach/detach/update, memory, vCPUs.

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
"""

from __future__ import annotations

from . import Procedure
from .rows import _proc, D, s, s_, i, u, h, uh  # noqa: F401

PROCEDURES: list[Procedure] = [
    # --- devices ------------------------------------------------------------------
    _proc(8, "DOMAIN_ATTACH_DEVICE", [("dom", D), ("xml", s)], mutates=True),
    _proc(13, "DOMAIN_DETACH_DEVICE", [("dom", D), ("xml", s)], mutates=True),
    _proc(160, "DOMAIN_ATTACH_DEVICE_FLAGS", [("dom", D), ("xml", s), ("flags", u)], mutates=True),
    _proc(161, "DOMAIN_DETACH_DEVICE_FLAGS", [("dom", D), ("xml", s), ("flags", u)], mutates=True),
    _proc(174, "DOMAIN_UPDATE_DEVICE_FLAGS", [("dom", D), ("xml", s), ("flags", u)], mutates=True),
    _proc(392, "DOMAIN_DETACH_DEVICE_ALIAS", [("dom", D), ("alias", s), ("flags", u)], mutates=True),

    # --- memory and vCPUs ---------------------------------------------------------
    _proc(30, "DOMAIN_SET_MAX_MEMORY", [("dom", D), ("memory", uh)], high=True, mutates=True),
    _proc(31, "DOMAIN_SET_MEMORY", [("dom", D), ("memory", uh)], mutates=True),
    _proc(204, "DOMAIN_SET_MEMORY_FLAGS", [("dom", D), ("memory", uh), ("flags", u)], mutates=True),
    _proc(32, "DOMAIN_SET_VCPUS", [("dom", D), ("nvcpus", u)], mutates=True),
    _proc(199, "DOMAIN_SET_VCPUS_FLAGS", [("dom", D), ("nvcpus", u), ("flags", u)], mutates=True),
]
