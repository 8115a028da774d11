"""Helpers the test host's object kinds share."""

from __future__ import annotations

from typing import Any

# virConnectListAll{Networks,StoragePools,Interfaces}Flags share their first bits
LIST_INACTIVE, LIST_ACTIVE, LIST_PERSISTENT, LIST_TRANSIENT, LIST_AUTOSTART, LIST_NO_AUTOSTART = 1, 2, 4, 8, 16, 32


def _pair(flags: int, yes: int, no: int, value: bool) -> bool:
    if not flags & (yes | no):
        return True
    return bool((flags & yes and value) or (flags & no and not value))


def matches_list_flags(obj: Any, flags: int) -> bool:
    """libvirt's list filter on an object with ``active``, ``persistent``, ``autostart``."""
    return (_pair(flags, LIST_ACTIVE, LIST_INACTIVE, obj.active)
            and _pair(flags, LIST_PERSISTENT, LIST_TRANSIENT, obj.persistent)
            and _pair(flags, LIST_AUTOSTART, LIST_NO_AUTOSTART, obj.autostart))
