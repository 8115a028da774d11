"""The protocol between pyvirtd (the lock plugin) and pyvirtlockd.

JSON text, one message a line, over the daemon's UNIX socket.  Sans-I/O:
this module only turns messages into lines and back.

Request:  ``{"id": N, "op": OP, ...arguments}``
Reply:    ``{"id": N, "result": {...}}`` or
          ``{"id": N, "error": {"code": C, "domain": D, "message": M}}``
          (libvirt's error code and domain, so the caller re-raises it as is)
Event:    ``{"event": "lease_lost", "owner": OWNER, "resources": [...], "why": TEXT}``
          (sent to connections that asked with ``watch``)

OWNER is ``{"uuid", "name", "pid"}`` (a guest's QEMU process), a RESOURCE
``{"lockspace", "name", "shared", "autocreate", "what"}``
(:class:`pyvirt.lockd.backend.Resource`).

Operations:

``hello {backend}``
    → ``{backend, uses_state, pid}``; refused when the daemon runs another backend.
``register {owner, on_lockfailure?}``
    Watch the owner's process (a pidfd): when it ends, its leases go.
    Idempotent: a restarted pyvirtd registers its adopted guests again.
``acquire {owner, resources, state?}`` → ``{state}``
    Registers the owner if needed; all the resources or none.
``release {owner, resources?}`` → ``{state}``  (no resources: everything it holds)
``inquire {owner}`` → ``{state}``
``drop {owner}``
    The owner's process is gone (pyvirtd saw it exit): release at once, so a
    start right after a destroy never races the pidfd.
``owners`` → ``{owners: [{owner, resources}]}``
``watch``
    This connection receives ``lease_lost`` events (pyvirtd fences the guest
    as its ``<on_lockfailure>`` says; with no watcher the lock daemon kills QEMU).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ErrorDomain, ErrorNumber, libvirtError

MAX_LINE = 1 << 20      # no request is anywhere near this; a longer line is garbage
OPS = ("hello", "register", "acquire", "release", "inquire", "drop", "owners", "watch")


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise libvirtError(f"malformed lock daemon message: {exc}", ErrorNumber.RPC, ErrorDomain.LOCKING) from None
    if not isinstance(message, dict):
        raise libvirtError("malformed lock daemon message: not an object", ErrorNumber.RPC, ErrorDomain.LOCKING)
    return message


def error_reply(call_id: Any, exc: libvirtError) -> dict[str, Any]:
    return {"id": call_id, "error": {"code": exc.code, "domain": exc.domain, "message": str(exc)}}


def raise_error(body: dict[str, Any]) -> None:
    """A reply's error, raised as the libvirtError the daemon had."""
    raise libvirtError(str(body.get("message", "lock daemon error")),
                       int(body.get("code", ErrorNumber.INTERNAL_ERROR)),
                       int(body.get("domain", ErrorDomain.LOCKING)))
