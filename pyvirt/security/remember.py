"""Remembering a file's original owner, in libvirt's extended attributes.

The first guest that relabels a file records the owner it found, every
further one only counts itself in; the last one to stop gives the file back.
The records are libvirt's own (``src/security/security_util.c``), so pyvirtd
and a libvirtd on the same host see each other's guests:

* ``trusted.libvirt.security.MODEL`` — the remembered label (``+UID:+GID``
  for the ``dac`` model);
* ``trusted.libvirt.security.ref_MODEL`` — how many users the file has, in
  decimal;
* ``trusted.libvirt.security.timestamp_MODEL`` — the host's boot time when
  the label was remembered.  Records from an earlier boot are stale (nobody
  is left to give the file back after a power loss) and are dropped.

Changes are made under libvirt's metadata lock, a write lock on byte 1 of
the file, so two daemons never lose a count between them.  The lock is an
open-file-description lock: it excludes other processes' POSIX locks (as
libvirt takes) and other threads of this process alike.

A file system without extended attributes (``ENOTSUP``) cannot remember;
:func:`remember` and :func:`recall` then return :data:`UNSUPPORTED` and the
caller keeps the owner itself (see :class:`Fallback`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError

NAMESPACE = "trusted"
PREFIX = f"{NAMESPACE}.libvirt.security."
# No file system support for attributes in this namespace.
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)
UNSUPPORTED = -2

# libvirt's metadata lock: byte 1 of the file, taken for writing.
LOCK_OFFSET, LOCK_LENGTH = 1, 1
LOCK_TIMEOUT = 2.0            # s; holders keep it for a few system calls
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_FLOCK = "hh4xqqi4x"          # struct flock on 64-bit Linux: type, whence, start, len, pid


def attr_name(model: str) -> str:
    return PREFIX + model


def ref_name(model: str) -> str:
    return f"{PREFIX}ref_{model}"


def timestamp_name(model: str) -> str:
    return f"{PREFIX}timestamp_{model}"


_boot_time: str | None = None


def boot_time() -> str:
    """The host's boot time in whole seconds, as libvirt writes it.  Taken
    from the clocks rather than /proc/uptime's rounded figure, so every
    process on the host computes the same value."""
    global _boot_time
    if _boot_time is None:
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        _boot_time = str(int(time.clock_gettime(time.CLOCK_REALTIME) - since_boot + 0.5))
    return _boot_time


class _NoXattrs(Exception):
    """The file system keeps no attributes in this namespace."""


def _failed(what: str, name: str, path: str, exc: OSError) -> Exception:
    if exc.errno in _NO_XATTRS:
        return _NoXattrs()
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.SECURITY,
                 f"Unable to {what} XATTR {name} on {path}: {exc.strerror}")


def _get(path: str, name: str) -> str | None:
    """The attribute's value, None when absent."""
    try:
        return os.getxattr(path, name).decode()
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise _failed("get", name, path, exc) from exc


def _remove(path: str, name: str) -> None:
    try:
        os.removexattr(path, name)
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            raise _failed("remove", name, path, exc) from exc


def _set(path: str, name: str, value: str) -> None:
    try:
        os.setxattr(path, name, value.encode())
    except OSError as exc:
        raise _failed("set", name, path, exc) from exc


def _system_error(what: str, path: str, exc: OSError) -> libvirtError:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.SECURITY, f"{what} {path}: {exc.strerror}")


def _refcount(path: str, value: str) -> int:
    if not value.isdigit():
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.SECURITY, f"malformed refcount {value} on {path}")
    return int(value)


def _drop_stale(path: str, model: str) -> bool:
    """Remove records left from an earlier boot; True if there were any."""
    stamp = _get(path, timestamp_name(model))
    if stamp == boot_time():
        return False
    for name in (ref_name(model), attr_name(model), timestamp_name(model)):
        _remove(path, name)
    return True


def remember(path: str, label: str, model: str = "dac") -> int:
    """Count one more user of ``path``; the first one records ``label``.
    Returns the new count, or :data:`UNSUPPORTED`."""
    try:
        value = _get(path, ref_name(model))
        if value is not None and _drop_stale(path, model):
            value = None
        count = (_refcount(path, value) if value is not None else 0) + 1
        if count == 1:
            _set(path, attr_name(model), label)
            _set(path, timestamp_name(model), boot_time())
        _set(path, ref_name(model), str(count))
        return count
    except _NoXattrs:
        return UNSUPPORTED


def recall(path: str, model: str = "dac") -> str | None | int:
    """Count one user of ``path`` less.  Returns the remembered label when
    that was the last user, None while others remain, :data:`UNSUPPORTED`
    when nothing is remembered (no attributes, or stale ones)."""
    try:
        value = _get(path, ref_name(model))
        if value is None or _drop_stale(path, model):
            return UNSUPPORTED
        count = _refcount(path, value) - 1
        if count > 0:
            _set(path, ref_name(model), str(count))
            return None
        label = _get(path, attr_name(model))
        for name in (ref_name(model), attr_name(model), timestamp_name(model)):
            _remove(path, name)
        return label if label is not None else UNSUPPORTED
    except _NoXattrs:
        return UNSUPPORTED


@contextmanager
def metadata_lock(path: str) -> Iterator[None]:
    """libvirt's metadata lock on ``path`` (nothing for what cannot be
    opened for writing: directories, sockets, read-only file systems)."""
    try:
        st = os.stat(path)
    except OSError:
        yield
        return
    if stat.S_ISDIR(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENXIO):
            yield                  # read-only, root-squashed or a device without a reader
            return
        raise _system_error("unable to open", path, exc) from exc
    try:
        _lock(fd, path)
        yield
    finally:
        os.close(fd)               # drops the lock


def _lock(fd: int, path: str) -> None:
    request = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, LOCK_OFFSET, LOCK_LENGTH, 0)
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            fcntl.fcntl(fd, _F_OFD_SETLK, request)
            return
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN) or time.monotonic() > deadline:
                raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.SECURITY,
                            f"unable to lock {path} for metadata change: {exc.strerror}") from exc
        time.sleep(0.001)


class Fallback:
    """Owners remembered in memory (and, through the caller, in the status
    XML) for files whose file system keeps no attributes: per path, the
    original owner and the guests of this process using it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: dict[str, tuple[str, set[str]]] = {}

    def acquire(self, path: str, user: str, found: str) -> str:
        """``user`` starts using ``path``, now labelled ``found``; returns the
        owner to give back (the one the first user found)."""
        with self._lock:
            owner, users = self._paths.setdefault(path, (found, set()))
            users.add(user)
            return owner

    def release(self, path: str, user: str) -> bool:
        """``user`` is done with ``path``; True if it was the last one."""
        with self._lock:
            entry = self._paths.get(path)
            if entry is None:
                return True
            entry[1].discard(user)
            if entry[1]:
                return False
            del self._paths[path]
            return True


FALLBACK = Fallback()
