"""The ``files`` backend: leases as fcntl locks on files (libvirt's lockd).

A lease is a lock on byte 0 (length 1) of its file: a write lock when
exclusive, a read lock when shared, taken without waiting.  The files live in
a directory every host sharing the storage sees (``lock_file_lockspace_dir``,
one file per disk named by the SHA-256 of its path, created on demand), or
the disk image itself is locked (a *direct* lease).  Several hosts' lock
daemons on one directory exclude each other through the kernel's (or the
shared filesystem's) locks; QEMU's own image locks use other bytes.

Open-file-description locks (``F_OFD_SETLK``) rather than classic POSIX
locks: they belong to the descriptor, so two guests of this host conflict
exactly as two hosts do, and closing one descriptor never drops another's
lock.  They conflict with classic POSIX locks, so a libvirt virtlockd on the
same files excludes us too.  Nothing here has state worth carrying.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import ErrorDomain, ErrorNumber, error
from .backend import Backend, Hooks, Owner, Resource, register, resource_busy

log = logging.getLogger(__name__)

# struct flock on Linux x86-64/aarch64: short type, short whence, off_t start, off_t len, pid_t pid
_FLOCK = "hhqqi4x"


def _flock(kind: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 1, 0)


def try_lock(fd: int, shared: bool) -> bool:
    """Lock byte 0 of ``fd`` without waiting; False when someone else holds it."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_RDLCK if shared else fcntl.F_WRLCK))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def lock_holder(path: str, shared: bool = False) -> int | None:
    """Who would stop us locking ``path`` (F_OFD_GETLK): the kind of the
    conflicting lock (F_RDLCK/F_WRLCK), None when it is free.  For tests and
    diagnostics; opens the file read-only, never creates it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        kind = fcntl.F_RDLCK if shared else fcntl.F_WRLCK
        out = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(kind))
    finally:
        os.close(fd)
    found = struct.unpack(_FLOCK, out)[0]
    return None if found == fcntl.F_UNLCK else found


@dataclass
class _Held:
    fd: int
    shared: bool
    resource: Resource
    owners: set[str] = field(default_factory=set)    # uuids


@register
class FileBackend(Backend):
    name = "files"
    uses_state = False

    def __init__(self, options: Mapping[str, Any], hooks: Hooks) -> None:
        super().__init__(options, hooks)
        self._held: dict[str, _Held] = {}       # path of the lock file → its lock

    def _open(self, res: Resource) -> int:
        if res.lockspace and ("/" in res.name or res.name in (".", "..")):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.LOCKSPACE,
                        f"Lockspace resource name '{res.name}' is not a file name in {res.lockspace}")
        if not res.lockspace and not res.name.startswith("/"):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.LOCKSPACE,
                        f"a direct lease needs an absolute path, not '{res.name}'")
        path = res.path
        if res.autocreate:
            if res.lockspace:
                os.makedirs(res.lockspace, mode=0o700, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT
        else:
            flags = os.O_RDONLY if res.shared else os.O_RDWR
        if res.autocreate:       # a file we create is never reached through a symlink
            flags |= os.O_NOFOLLOW
        try:
            return os.open(path, flags | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.LOCKSPACE,
                        f"Unable to open/create resource {path}: {exc.strerror}") from exc

    def _take(self, owner: Owner, res: Resource) -> bool:
        """Lock one resource for ``owner``; True if it newly holds it."""
        held = self._held.get(res.path)
        if held is not None:
            if owner.uuid in held.owners:
                return False
            if held.shared and res.shared:
                held.owners.add(owner.uuid)
                return True
            raise resource_busy(res)
        fd = self._open(res)
        try:
            locked = try_lock(fd, res.shared)
        except OSError as exc:
            os.close(fd)
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.LOCKSPACE,
                        f"Failed to acquire lock on {res.path}: {exc.strerror}") from exc
        if not locked:
            os.close(fd)
            raise resource_busy(res)
        self._held[res.path] = _Held(fd, res.shared, res, {owner.uuid})
        return True

    def _drop(self, owner: Owner, path: str) -> None:
        held = self._held.get(path)
        if held is None or owner.uuid not in held.owners:
            return
        held.owners.discard(owner.uuid)
        if not held.owners:
            del self._held[path]
            os.close(held.fd)       # the lock goes with the descriptor

    async def acquire(self, owner: Owner, resources: Sequence[Resource], state: str | None) -> str | None:
        taken: list[str] = []
        try:
            for res in resources:
                if self._take(owner, res):
                    taken.append(res.path)
        except BaseException:
            for path in taken:          # all or nothing
                self._drop(owner, path)
            raise
        if taken:
            log.info("%s (pid %d): acquired %s", owner.name, owner.pid, ", ".join(taken))
        return None

    async def release(self, owner: Owner, resources: Sequence[Resource] | None) -> str | None:
        paths = ([r.path for r in resources] if resources is not None
                 else [p for p, h in self._held.items() if owner.uuid in h.owners])
        for path in paths:
            self._drop(owner, path)
        if paths:
            log.info("%s (pid %d): released %s", owner.name, owner.pid, ", ".join(paths))
        return None

    async def inquire(self, owner: Owner) -> str | None:
        return None

    def held(self, owner: Owner) -> list[Resource]:
        return [h.resource for h in self._held.values() if owner.uuid in h.owners]

    async def close(self) -> None:
        for held in self._held.values():
            os.close(held.fd)
        self._held.clear()
