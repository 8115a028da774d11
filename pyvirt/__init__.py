"""pyvirt: libvirt's client API in pure Python.

``import pyvirt as libvirt`` gives the names libvirt-python scripts use for
the supported calls: ``open``, ``openReadOnly``, ``virConnect``,
``virDomain``, ``libvirtError`` and the ``VIR_*`` constants with libvirt's
values (generated from :mod:`pyvirt.enums` and :mod:`pyvirt.errors`).
"""

from __future__ import annotations

from . import enums as _enums
from .connection import open, openReadOnly, virConnect
from .connection import _open_driver
from .domain import virDomain
from .api.console import virStream
from .errors import ErrorDomain as _ErrorDomain, ErrorLevel as _ErrorLevel, ErrorNumber as _ErrorNumber
from .errors import libvirtError

__version__ = "0.1.0"


def openAuth(uri: str | None, auth: list | None = None, flags: int = 0) -> virConnect:
    """libvirt's virConnectOpenAuth: ``auth`` is ``[credtypes, callback, cbdata]``; the
    callback fills ``cred[4]`` of each ``[type, prompt, challenge, defresult, result]``
    it is given and returns 0.  auth.conf is read first (:mod:`pyvirt.authconf`)."""
    from . import aio
    name = uri or "test:///default"
    return virConnect(aio.run(_open_driver(name, bool(flags & 1), auth)), name)


def _export_constants() -> list[str]:
    names: list[str] = []
    table = list(_enums.PUBLIC_PREFIXES) + [
        (_ErrorNumber, "VIR_ERR_"), (_ErrorDomain, "VIR_FROM_"), (_ErrorLevel, "VIR_ERR_"),
    ]
    for enum_cls, prefix in table:
        for member in enum_cls.__members__.values():   # zero-valued flags too (AFFECT_CURRENT)
            name = prefix + member.name
            globals().setdefault(name, int(member.value))
            names.append(name)
    return names


_CONSTANTS = _export_constants()
from .typedparams import MIGRATION_PARAM_CONSTANTS as _PARAM_NAMES  # noqa: E402

globals().update(_PARAM_NAMES)
_CONSTANTS += list(_PARAM_NAMES)
VIR_ERR_OK = 0

__all__ = ["open", "openReadOnly", "openAuth", "virConnect", "virDomain", "virStream", "libvirtError",
           *_CONSTANTS]
