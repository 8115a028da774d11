"""REMOTE procedures for console and graphics: openConsole, screenshot, sendKey, openGraphicsFD.

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
DOMAIN_OPEN_CONSOLE (201) lives in the core table; these are the rest.
Every one reaches the monitor or the guest: refused on read-only connections,
as libvirt's API checks them.
"""

from __future__ import annotations

from . import Procedure
from .rows import _proc, Array, D, Direction, s, s_, i, u, h, uh  # noqa: F401

SEND_KEY_MAX = 16            # REMOTE_DOMAIN_SEND_KEY_MAX

PROCEDURES: list[Procedure] = [
    # the image follows on the call's stream (readstream@1: daemon -> client)
    _proc(211, "DOMAIN_SCREENSHOT", [("dom", D), ("screen", u), ("flags", u)], [("mime", s_)],
          mutates=True, stream=Direction.DOWNLOAD),
    _proc(226, "DOMAIN_SEND_KEY", [("dom", D), ("codeset", u), ("holdtime", u),
                                   ("keycodes", Array(u, SEND_KEY_MAX)), ("flags", u)], mutates=True),
    # no reply fields: the socket comes back as a descriptor of a REPLY_WITH_FDS
    _proc(343, "DOMAIN_OPEN_GRAPHICS_FD", [("dom", D), ("idx", u), ("flags", u)], mutates=True),
]
