"""Names that become file names, and the paths built from them.

One rule for every name a client chooses and the daemon turns into a file
name (a domain's ``<name>``, a migration's ``dname``, later pool, volume,
network and snapshot names), with libvirt's messages: no ``/``
("name NAME cannot contain '/'"), no control character ("invalid char in
name: C"; libvirt refuses the newline, we refuse every C0 control and DEL,
since none belongs in a file name or a log line), never empty.

Whatever the checks upstream, every path the daemon composes from a name
goes through :func:`contained`, which refuses one that would leave its
directory (defence in depth).  :func:`check_caller_path` is the matching
rule for paths a client names itself (save images, core dumps): absolute,
no NUL byte.

UNIX socket paths are limited to ``sun_path`` (108 bytes with its NUL);
:func:`short_name` is libvirt's ``virDomainDefGetShortName`` (``ID-NAME``,
the name cut to 20 characters) for per-domain directories, and
:func:`socket_address` reaches a socket whose full path is still too long
(a long state directory) through ``/proc/self/fd`` of its directory.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ..errors import ErrorDomain, ErrorLevel, ErrorNumber, error, libvirtError, no_name

__all__ = ["check_name", "contained", "check_caller_path", "short_name", "socket_address",
           "SHORT_NAME_MAX", "UNIX_PATH_MAX"]

SHORT_NAME_MAX = 20        # libvirt's VIR_DOMAIN_SHORT_NAME_MAX
UNIX_PATH_MAX = 107        # sizeof(sun_path) less its terminating NUL


def _control(ch: str) -> bool:
    return ord(ch) < 0x20 or ord(ch) == 0x7F


def check_name(name: str | None, what: str = "name") -> str:
    """``name`` if it may name an object (and so a file); libvirt's error otherwise."""
    if not name:
        raise no_name()
    if "/" in name:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN, f"{what} {name} cannot contain '/'")
    bad = next((ch for ch in name if _control(ch)), None)
    if bad is not None:
        # libvirt's virXMLCheckIllegalChars: XML_DETAIL from the XML domain, no prefix.
        message = f"invalid char in {what}: {bad}"
        raise libvirtError(message, ErrorNumber.XML_DETAIL, ErrorDomain.XML, ErrorLevel.ERROR, "%s", message)
    return name


def contained(directory: str | os.PathLike[str], filename: str) -> Path:
    """``directory/filename``, refused if ``filename`` could lead anywhere else."""
    base = os.path.normpath(os.fspath(directory))
    if (not filename or filename in (".", "..") or "/" in filename or "\0" in filename
            or os.path.dirname(os.path.normpath(os.path.join(base, filename))) != base):
        shown = filename.replace("\0", "\\0")
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                    f"refusing file name '{shown}': it would not stay inside '{base}'")
    return Path(base, filename)


def check_caller_path(path: str | None, what: str = "path") -> str:
    """A path a client names for the daemon to open: absolute (the daemon has no
    working directory of the client's) and without a NUL byte (which C clients
    cannot even send, and the kernel would refuse)."""
    if path and "\0" in path:
        shown = path.replace("\0", "\\0")
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"{what} '{shown}' contains a NUL byte")
    if not path or not os.path.isabs(path):
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"{what} '{path or ''}' must be absolute (the daemon has no working directory of yours)")
    return path


def short_name(dom_id: int, name: str) -> str:
    """libvirt's virDomainDefGetShortName: ``ID-NAME`` with NAME cut to 20 characters."""
    return f"{dom_id}-{name[:SHORT_NAME_MAX]}"


@contextlib.contextmanager
def socket_address(path: str | os.PathLike[str]) -> Iterator[str]:
    """An address ``bind``/``connect`` accept for the socket at ``path``.

    ``path`` itself when it fits in ``sun_path``; otherwise the same file
    reached through ``/proc/self/fd/N`` of its directory, held open (as an
    O_PATH descriptor) until the block ends.
    """
    text = os.fspath(path)
    if len(os.fsencode(text)) <= UNIX_PATH_MAX:
        yield text
        return
    directory, leaf = os.path.split(text)
    fd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        alias = f"/proc/self/fd/{fd}/{leaf}"
        if len(os.fsencode(alias)) > UNIX_PATH_MAX:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        f"the socket name '{leaf}' is too long for a UNIX socket")
        yield alias
    finally:
        os.close(fd)
