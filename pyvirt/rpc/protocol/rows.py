"""The building blocks of the REMOTE program's table (see :mod:`.remote`).

The table is split by area (``remote.py`` for the core, ``remote_<area>.py``
for the rest); every part builds its rows with these helpers and the short
type names, so all rows read alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...enums import EventID, XMLFlags
from ..direction import Direction
from ..wire import Program
from ..xdr import (
    AUTH_SASL_DATA_MAX,
    AUTH_TYPE_LIST_MAX,
    DOMAIN_EVENT_GRAPHICS_IDENTITY_MAX,
    DOMAIN_EVENT_TUNABLE_MAX,
    DOMAIN_LIST_MAX,
    DOMAIN_MESSAGES_MAX,
    DOMAIN_SAVE_PARAMS_MAX,
    JOB_STATS_MAX,
    MIGRATE_COOKIE_MAX,
    MIGRATE_PARAM_LIST_MAX,
    SECURITY_DOI_MAX,
    SECURITY_LABEL_MAX,
    SECURITY_MODEL_MAX,
    UUID,
    Array,
    CharArray,
    CharString,
    Domain,
    Hyper,
    Int,
    NonnullDomain,
    NonnullString,
    Opaque,
    OptString,
    Struct,
    Type,
    TypedParams,
    UChar,
    UHyper,
    UInt,
    UShort,
)
from . import Kind, Procedure, ProgramTable

Fields = Sequence[tuple[str, Type]]

# Short names for the table (the doc's notation: s, s?, D, D?, i, u, uh, op, TP<>).
s, s_, D, D_, i, u, h, uh = NonnullString, OptString, NonnullDomain, Domain, Int, UInt, Hyper, UHyper
cookie = Opaque(MIGRATE_COOKIE_MAX)
migrate_params = TypedParams(MIGRATE_PARAM_LIST_MAX)
job_params = TypedParams(JOB_STATS_MAX)
sasl_data = CharArray(AUTH_SASL_DATA_MAX)

DRIVER, DAEMON, MESSAGE = Kind.DRIVER, Kind.DAEMON, Kind.MESSAGE

# Flags a read-only connection may not pass (libvirt's API entry points refuse them).
VCPU_GUEST = 8  # VIR_DOMAIN_VCPU_GUEST


def _struct(name: str, fields: Fields | Struct | None) -> Struct | None:
    if fields is None or isinstance(fields, Struct):
        return fields
    return Struct(name, fields)


def _proc(number: int, name: str, args: Fields | Struct | None = None, ret: Fields | None = None,
          *, high: bool = False, mutates: bool = False, kind: Kind = DRIVER,
          method: str | None = None, stream: Direction | None = None,
          readonly_flags: int = 0) -> Procedure:
    base = f"remote_{name.lower()}"
    suffix = "_msg" if kind is MESSAGE else "_args"
    return Procedure(
        number, name, method or name.lower(),
        _struct(base + suffix, args), _struct(base + "_ret", ret),
        priority_high=high, mutates=mutates, kind=kind, stream=stream,
        readonly_flags=readonly_flags,
    )


def _msg(name: str, *fields: tuple[str, Type]) -> Struct:
    return Struct(f"remote_domain_event_{name}_msg", fields)


def _event(number: int, name: str, *fields: tuple[str, Type]) -> Procedure:
    """A MESSAGE the daemon sends; never answered."""
    return _proc(number, name, list(fields), kind=MESSAGE)


def _cb_event(number: int, name: str, msg: Struct, reason: bool = False) -> Procedure:
    """Old-style callback event: ``{callbackID, [reason,] msg}``."""
    fields: list[tuple[str, Type]] = [("callbackID", i)]
    if reason:
        fields.append(("reason", i))
    fields.append(("msg", msg))
    return _event(number, name, *fields)


