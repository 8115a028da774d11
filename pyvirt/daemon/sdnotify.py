"""systemd's readiness protocol (sd_notify) without libsystemd.

A service started with ``Type=notify`` finds ``NOTIFY_SOCKET`` in its
environment: a UNIX datagram socket (a path, or ``@name`` in the abstract
namespace) to which it sends newline-separated ``KEY=VALUE`` assignments —
``READY=1`` once it serves, ``STOPPING=1`` when it begins to stop,
``STATUS=...`` for ``systemctl status``.  Outside systemd the variable is
unset and every call does nothing.  A failure to notify is logged, never
raised: it must not stop the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Mapping

log = logging.getLogger(__name__)


def address(value: str) -> str | None:
    """The socket address NOTIFY_SOCKET names, or None if it names none we can use."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]          # abstract namespace
    if value.startswith("/"):
        return value
    return None                          # vsock:... and relative paths: not supported


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. "READY=1\\nSTATUS=serving") to the service manager;
    True if a manager was told."""
    value = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not value:
        return False
    target = address(value)
    if target is None:
        log.warning("NOTIFY_SOCKET=%r: not a UNIX socket address; systemd not notified", value)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), target)
    except OSError as exc:
        log.warning("could not notify systemd through %s: %s", value, exc)
        return False
    return True
