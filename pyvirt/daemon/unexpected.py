"""The daemon's last line: an exception that is not a libvirtError becomes one.

Drivers report what goes wrong as :class:`~pyvirt.errors.libvirtError`.
Anything else that escapes a call is a path that forgot to; the client still
gets a libvirt error it can act on, with the code its cause deserves — an
``OSError`` is libvirt's SYSTEM_ERROR with the system's words, bad input
(``ValueError``, a string that is not UTF-8) is INVALID_ARG, a timeout is
OPERATION_TIMEOUT — and INTERNAL_ERROR only for what is left.  The message
names the API and carries the exception's own text, never a traceback or a
Python class name; the traceback goes to the daemon's log.
"""

from __future__ import annotations

import asyncio

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError


def _text(exc: BaseException) -> str:
    return str(exc).strip() or "no detail (see the daemon log)"


def _system_text(exc: OSError) -> str:
    words = exc.strerror or _text(exc)
    names = [f"'{n}'" for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' → '.join(names)}: {words}" if names else words


def as_libvirt_error(exc: BaseException, api: str) -> libvirtError:
    """The libvirt error a client gets for ``exc`` raised by ``api``."""
    if isinstance(exc, libvirtError):
        return exc
    # TimeoutError is an OSError (and asyncio's is the builtin) since Python 3.11: check it first
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return error(ErrorNumber.OPERATION_TIMEOUT, ErrorDomain.RPC,
                     f"{api}: {str(exc).strip() or 'no answer in time'}")
    if isinstance(exc, OSError):
        return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC, f"{api}: {_system_text(exc)}")
    if isinstance(exc, UnicodeError):
        return error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, f"{api}: text is not valid UTF-8 ({exc.reason})"
                     if isinstance(exc, (UnicodeDecodeError, UnicodeEncodeError)) else f"{api}: {_text(exc)}")
    if isinstance(exc, (ValueError, OverflowError)):
        return error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, f"{api}: {_text(exc)}")
    if isinstance(exc, NotImplementedError):
        return error(ErrorNumber.NO_SUPPORT, ErrorDomain.RPC, api)
    if isinstance(exc, MemoryError):
        return error(ErrorNumber.NO_MEMORY, ErrorDomain.RPC, api)
    return error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC, f"{api}: {_text(exc)}")
