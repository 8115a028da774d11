"""pyvirt: libvirt's client API in pure Python.

``import pyvirt as libvirt`` gives the names libvirt-python scripts use for
the supported calls: ``open``, ``openReadOnly``, ``virConnect``,
``virDomain``, ``libvirtError`` and the ``VIR_*`` constants with libvirt's
values (generated from :mod:`pyvirt.enums` and :mod:`pyvirt.errors`).

The names are loaded on first use (PEP 562), so a program that needs only a
few of them — one ``pyvirt`` command — does not pay for the event loop, the
whole API and every constant at import.
"""

from __future__ import annotations

import importlib

from .errors import libvirtError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it, imported on first access
_LAZY = {
    "open": ".connection", "openReadOnly": ".connection", "virConnect": ".connection",
    "_open_driver": ".connection", "virDomain": ".domain", "virStream": ".api.console",
    "virStoragePool": ".api.storage", "virStorageVol": ".api.storage", "virNetwork": ".api.network",
    "virDomainSnapshot": ".api.snapshot", "virDomainCheckpoint": ".api.checkpoint",
    "virInterface": ".api.iface_nodedev", "virNodeDevice": ".api.iface_nodedev",
    # virDomainBlockCopy's typed parameter names
    "VIR_DOMAIN_BLOCK_COPY_BANDWIDTH": ".api.blockjob", "VIR_DOMAIN_BLOCK_COPY_GRANULARITY": ".api.blockjob",
    "VIR_DOMAIN_BLOCK_COPY_BUF_SIZE": ".api.blockjob",
}


def openAuth(uri: str | None, auth: list | None = None, flags: int = 0) -> "virConnect":  # noqa: F821
    """libvirt's virConnectOpenAuth: ``auth`` is ``[credtypes, callback, cbdata]``; the
    callback fills ``cred[4]`` of each ``[type, prompt, challenge, defresult, result]``
    it is given and returns 0.  auth.conf is read first (:mod:`pyvirt.authconf`)."""
    from . import aio
    from .connection import _open_driver, virConnect
    name = uri or "test:///default"
    return virConnect(aio.run(_open_driver(name, bool(flags & 1), auth)), name)


def _open_oneshot(uri: str, read_only: bool = False) -> "virConnect | None":  # noqa: F821
    """A connection for a few calls in sequence (one command-line call): to a
    daemon over the blocking connection, without an event loop; None where the
    full driver is needed (in-process drivers, TLS, ssh, SASL).  Events,
    streams and descriptors are refused on it
    (:mod:`pyvirt.drivers.remote.blocking`)."""
    from . import uri as urimod
    parsed = urimod.parse(uri)
    if parsed.driver not in ("qemu", "test", "remote") or (not parsed.is_remote and (
            parsed.driver == "test"                   # test:///default and test:///PATH run in process
            or (parsed.driver == "qemu" and parsed.path == "/embed"))):
        return None
    from .connection import virConnect
    from .driver import ConnectionInfo
    from .drivers.remote import blocking
    drv = blocking.open_connection(parsed, ConnectionInfo(uri=uri, read_only=read_only))
    return None if drv is None else virConnect(drv, uri)


def _export_constants() -> list[str]:
    from . import enums as _enums
    from .errors import ErrorDomain, ErrorLevel, ErrorNumber
    from .typedparams import MIGRATION_PARAM_CONSTANTS
    names: list[str] = []
    table = list(_enums.PUBLIC_PREFIXES) + [
        (ErrorNumber, "VIR_ERR_"), (ErrorDomain, "VIR_FROM_"), (ErrorLevel, "VIR_ERR_"),
    ]
    for enum_cls, prefix in table:
        for member in enum_cls.__members__.values():   # zero-valued flags too (AFFECT_CURRENT)
            name = prefix + member.name
            globals().setdefault(name, int(member.value))
            names.append(name)
    globals().update(MIGRATION_PARAM_CONSTANTS)
    names += list(MIGRATION_PARAM_CONSTANTS)
    from .api.tuning import PARAM_CONSTANTS     # the tuning calls' parameter names
    globals().update(PARAM_CONSTANTS)
    names += list(PARAM_CONSTANTS)
    globals()["VIR_ERR_OK"] = 0
    globals()["_CONSTANTS"] = names
    globals()["__all__"] = ["open", "openReadOnly", "openAuth", "virConnect", "virDomain", "virStream",
                            "virNetwork", "virInterface", "virNodeDevice",
                            "virStoragePool", "virStorageVol", "virDomainSnapshot", "virDomainCheckpoint",
                            "libvirtError", *names]
    return names


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value
    if (name.startswith("VIR_") or name in ("__all__", "_CONSTANTS")) and "_CONSTANTS" not in globals():
        _export_constants()
        if name in globals():
            return globals()[name]
    if not name.startswith("_"):
        # ``import pyvirt; pyvirt.enums.X`` worked while the package imported
        # its submodules eagerly; keep it working
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    if "_CONSTANTS" not in globals():
        _export_constants()
    return sorted(set(globals()) | set(_LAZY))
