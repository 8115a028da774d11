"""Zero-copy migration (``VIR_MIGRATE_ZEROCOPY``): QEMU's ``zero-copy-send``.

With zero-copy the source's multifd channels hand guest pages to the kernel
with ``MSG_ZEROCOPY`` instead of copying them into socket buffers.  The
kernel pins each page until the peer has acknowledged it and charges the
pinned pages to the locked-memory limit of QEMU's user: QEMU runs without
``CAP_IPC_LOCK``, so under the usual few-MiB ``RLIMIT_MEMLOCK`` the first
large send fails with ``ENOBUFS`` and the migration with it.  How many pages
are in flight at once cannot be known beforehand, so, as libvirt 9.0 does
(qemuMigrationSrcRun), the limit is raised to the guest's whole memory for
the migration and put back once it is over (failed or cancelled; a
migrated source QEMU simply goes away).  The previous limit is kept in the
status so a daemon restart in between still knows it.  A QEMU that holds
``CAP_IPC_LOCK`` itself (``user = "root"``) is never charged by the kernel
for pinned pages, so its limit is left alone: raising it would only fail
where the daemon lacks ``CAP_SYS_RESOURCE`` (containers), for nothing.

libvirt's rules: zero-copy needs ``VIR_MIGRATE_PARALLEL`` (multifd); a QEMU
without the capability is refused with its "not supported by QEMU binary".
"""

from __future__ import annotations

import logging
import resource
from typing import TYPE_CHECKING

from ....enums import MigrateFlags
from ....errors import ErrorDomain, ErrorNumber, error

if TYPE_CHECKING:
    from ..domainobj import QemuDomainObj

log = logging.getLogger(__name__)

# status item holding the limit to put back: "PID:SOFT:HARD", bytes (-1: unlimited); the pid
# ties it to one QEMU, so a record left by a migrated-away process never touches the next one
_SAVED = "pre_migration_memlock"


def check_flags(flags: int) -> None:
    """libvirt's Begin (qemuMigrationSrcBeginPhase), word for word."""
    if flags & MigrateFlags.ZEROCOPY and not flags & MigrateFlags.PARALLEL:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                    "zero-copy is only available for parallel migration")


def wanted(flags: int) -> bool:
    return bool(flags & MigrateFlags.ZEROCOPY)


def limit_bytes(obj: "QemuDomainObj") -> int:
    """The guest's whole memory (libvirt: the hard limit when one is set, else the total)."""
    d = obj.live or obj.definition
    return d.memory_kib * 1024


def _fmt(value: int) -> str:
    return "-1" if value == resource.RLIM_INFINITY else str(value)


def _parse(value: int) -> int:
    return resource.RLIM_INFINITY if value < 0 else value


_CAP_IPC_LOCK = 14


def _can_lock_freely(pid: int) -> bool:
    """Whether the process's effective capabilities include CAP_IPC_LOCK (the kernel then
    charges no pinned page to its limit: mm_account_pinned_pages)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_IPC_LOCK & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def read_memlock(pid: int) -> tuple[int, int]:
    """Another process's RLIMIT_MEMLOCK (soft, hard).  prlimit(2) wants CAP_SYS_RESOURCE even
    to read one, which a daemon in a container may lack: /proc/PID/limits then, as libvirt's
    virProcessGetLimit falls back to."""
    try:
        return resource.prlimit(pid, resource.RLIMIT_MEMLOCK)
    except OSError as first:
        try:
            with open(f"/proc/{pid}/limits", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("Max locked memory"):
                        soft, hard = line[len("Max locked memory"):].split()[:2]
                        return (_parse(-1 if soft == "unlimited" else int(soft)),
                                _parse(-1 if hard == "unlimited" else int(hard)))
        except (OSError, ValueError):
            pass
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU,
                    f"cannot get locked memory limit of process {pid}: {first.strerror}") from first


def raise_memlock(obj: "QemuDomainObj") -> None:
    """Before the RAM moves: QEMU may lock the guest's whole memory.  A limit already
    high enough is left alone (someone else manages it), as libvirt's qemuDomainSetMaxMemLock."""
    if obj.process is None:
        return
    pid, want = obj.process.pid, limit_bytes(obj)
    if _can_lock_freely(pid):
        log.debug("%s: QEMU %d has CAP_IPC_LOCK: no locked-memory limit applies to zero-copy", obj.name, pid)
        return
    soft, hard = read_memlock(pid)
    if soft == resource.RLIM_INFINITY or soft >= want:      # the kernel checks the soft limit
        log.debug("%s: locked-memory limit %s is enough for zero-copy", obj.name, _fmt(soft))
        return
    # a hard limit already high enough stays (raising the soft one needs no privilege)
    new = (want, hard if hard == resource.RLIM_INFINITY or hard >= want else want)
    try:
        resource.prlimit(pid, resource.RLIMIT_MEMLOCK, new)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU,
                    f"cannot limit locked memory of process {pid} to {want}: {exc.strerror}") from exc
    obj.extra[_SAVED] = f"{pid}:{_fmt(soft)}:{_fmt(hard)}"
    obj.save_status()
    log.info("%s: locked-memory limit of QEMU %d raised from %s to %d bytes for zero-copy migration",
             obj.name, pid, _fmt(soft), want)


def restore_memlock(obj: "QemuDomainObj") -> None:
    """The migration is over and the source goes on: its QEMU gets its old limit back.
    Never raises (a cleanup step): a failure is logged."""
    saved = obj.extra.pop(_SAVED, None)
    if saved is None or obj.process is None:
        return
    try:
        pid, soft, hard = (int(v) for v in saved.split(":"))
        if pid != obj.process.pid:
            return
        resource.prlimit(pid, resource.RLIMIT_MEMLOCK, (_parse(soft), _parse(hard)))
        obj.save_status()
        log.info("%s: locked-memory limit of QEMU %d back to %s:%s", obj.name, pid, _fmt(soft), _fmt(hard))
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot put back the locked-memory limit %s: %s", obj.name, saved, exc)
