"""REMOTE procedures for lifecycle and metadata: reset, metadata, title and description;
and the legacy (REGISTER_ANY) event messages.

Rows as in :mod:`.remote` (numbers and fields from libvirt's remote_protocol.x).
The legacy event messages carry the same ``remote_domain_event_<name>_msg``
struct the callback form nests after its callbackID; libvirt only ever
defined them for the event ids up to DEVICE_REMOVED (later events exist in
the callback form only).
"""

from __future__ import annotations

from . import Procedure
from .rows import MESSAGE, _proc, D, s, s_, i, u, h, uh  # noqa: F401

# event name -> legacy message number (REMOTE_PROC_DOMAIN_EVENT_<NAME>)
LEGACY_EVENT_NUMBERS: dict[str, int] = {
    "REBOOT": 169, "RTC_CHANGE": 170, "WATCHDOG": 171, "IO_ERROR": 172, "GRAPHICS": 173,
    "IO_ERROR_REASON": 195, "CONTROL_ERROR": 224, "BLOCK_JOB": 241, "DISK_CHANGE": 248,
    "TRAY_CHANGE": 268, "PMWAKEUP": 269, "PMSUSPEND": 270, "BALLOON_CHANGE": 276,
    "PMSUSPEND_DISK": 292, "DEVICE_REMOVED": 311,
}


def legacy_event_rows(core: list[Procedure]) -> list[Procedure]:
    """The legacy messages, each carrying the msg struct of its callback row in ``core``."""
    by_name = {p.name: p for p in core}
    rows = []
    for name, number in LEGACY_EVENT_NUMBERS.items():
        args = by_name[f"DOMAIN_EVENT_CALLBACK_{name}"].args
        assert args is not None
        msg = dict(args.fields)["msg"]
        rows.append(_proc(number, f"DOMAIN_EVENT_{name}", msg, kind=MESSAGE))
    return rows


PROCEDURES: list[Procedure] = [
    _proc(245, "DOMAIN_RESET", [("dom", D), ("flags", u)], mutates=True),
    _proc(264, "DOMAIN_SET_METADATA", [("dom", D), ("type", i), ("metadata", s_), ("key", s_),
                                       ("uri", s_), ("flags", u)], mutates=True),
    _proc(265, "DOMAIN_GET_METADATA", [("dom", D), ("type", i), ("uri", s_), ("flags", u)],
          [("metadata", s)]),
]


# -- an event message's fields <-> (callbackID, dom, detail) -------------------------------
# ``detail`` is every field after ``dom`` (pyvirt.driver.DomainEvent's convention).  Three
# layouts exist: the first callback messages nest the legacy msg after the callbackID
# ({callbackID, msg}), the PM ones put a reason first ({callbackID, reason, msg}: detail is
# (reason,)), and the later ones are flat ({callbackID, dom, ...}).

def callback_event_args(proc: Procedure, callback_id: int, dom: object, detail: tuple) -> tuple:
    """The argument tuple of callback-form message ``proc``."""
    assert proc.args is not None
    second = proc.args.names[1]
    if second == "reason":
        return (callback_id, detail[0], (dom,))
    if second == "msg":
        return (callback_id, (dom, *detail))
    return (callback_id, dom, *detail)


def callback_event_fields(proc: Procedure, args: tuple) -> tuple[int, object, tuple]:
    """(callbackID, dom, detail) of a decoded callback-form message."""
    assert proc.args is not None
    second = proc.args.names[1]
    if second == "reason":
        callback_id, reason, (dom,) = args
        return callback_id, dom, (reason,)
    if second == "msg":
        callback_id, (dom, *detail) = args
        return callback_id, dom, tuple(detail)
    callback_id, dom, *detail = args
    return callback_id, dom, tuple(detail)


def legacy_event_args(proc: Procedure, dom: object, detail: tuple) -> tuple:
    """The argument tuple of legacy message ``proc`` (the PM ones carry no reason)."""
    assert proc.args is not None
    return (dom, *detail[:len(proc.args.names) - 1])
