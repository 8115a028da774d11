"""Typed parameters: libvirt's (name, type, value) triples, and the tables
saying which type each known parameter has.

The public API takes plain dicts (as libvirt-python does); the wire and the
drivers use lists of triples.  Converting checks every name and value
against the table, so a typo is an error instead of a silently ignored key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .enums import TypedParamType as T
from .errors import ErrorDomain, ErrorNumber, error

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

    TypedParam = tuple[str, int, Any]

# VIR_MIGRATE_PARAM_*: name -> type (libvirt's migration parameters)
MIGRATION_PARAM_TYPES: dict[str, T] = {
    "migrate_uri": T.STRING,
    "destination_name": T.STRING,
    "destination_xml": T.STRING,
    "persistent_xml": T.STRING,
    "bandwidth": T.ULLONG,
    "graphics_uri": T.STRING,
    "listen_address": T.STRING,
    "migrate_disks": T.STRING,
    "disks_port": T.INT,
    "disks_uri": T.STRING,
    "compression": T.STRING,
    "compression.mt.level": T.INT,
    "compression.mt.threads": T.INT,
    "compression.mt.dthreads": T.INT,
    "compression.xbzrle.cache": T.ULLONG,
    "auto_converge.initial": T.INT,
    "auto_converge.increment": T.INT,
    "bandwidth.postcopy": T.ULLONG,
    "parallel.connections": T.INT,
    "tls.destination": T.STRING,
    "pyvirt.converge": T.INT,       # pyvirt's own: the convergence policy on (1) or off (0)
}

# libvirt-python's constant names for them
MIGRATION_PARAM_CONSTANTS = {
    "VIR_MIGRATE_PARAM_URI": "migrate_uri",
    "VIR_MIGRATE_PARAM_DEST_NAME": "destination_name",
    "VIR_MIGRATE_PARAM_DEST_XML": "destination_xml",
    "VIR_MIGRATE_PARAM_PERSIST_XML": "persistent_xml",
    "VIR_MIGRATE_PARAM_BANDWIDTH": "bandwidth",
    "VIR_MIGRATE_PARAM_GRAPHICS_URI": "graphics_uri",
    "VIR_MIGRATE_PARAM_LISTEN_ADDRESS": "listen_address",
    "VIR_MIGRATE_PARAM_MIGRATE_DISKS": "migrate_disks",
    "VIR_MIGRATE_PARAM_DISKS_PORT": "disks_port",
    "VIR_MIGRATE_PARAM_DISKS_URI": "disks_uri",
    "VIR_MIGRATE_PARAM_COMPRESSION": "compression",
    "VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL": "auto_converge.initial",
    "VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT": "auto_converge.increment",
    "VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY": "bandwidth.postcopy",
    "VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS": "parallel.connections",
    "VIR_MIGRATE_PARAM_TLS_DESTINATION": "tls.destination",
}

_PY_TYPES = {T.INT: int, T.UINT: int, T.LLONG: int, T.ULLONG: int, T.DOUBLE: float, T.BOOLEAN: bool,
             T.STRING: str}


def from_dict(values: Mapping[str, Any], table: Mapping[str, T]) -> list[TypedParam]:
    """A libvirt-python params dict → typed parameters (lists become repeated parameters)."""
    out: list[TypedParam] = []
    for name, value in values.items():
        ptype = table.get(name)
        if ptype is None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, f"parameter '{name}' is not supported")
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if not isinstance(item, _PY_TYPES[ptype]) or (ptype != T.BOOLEAN and isinstance(item, bool)):
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE,
                            f"parameter '{name}' must be of type {ptype.name.lower()}, got {item!r}")
            out.append((name, int(ptype), item))
    return out


def to_dict(params: Iterable[TypedParam]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, _ptype, value in params:
        if name in out:
            prev = out[name]
            out[name] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            out[name] = value
    return out
