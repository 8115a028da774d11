"""The lock manager's two points in a guest's life: before its CPUs run, after they stop.

libvirt acquires a guest's leases right before every ``cont`` (start, resume,
restore, migration Finish, snapshot revert) and releases them if ``cont``
fails; it releases them right after every ``stop`` and on every pause QEMU
reports itself (STOP: I/O error, watchdog, guest panic, end of migration).
Every path of this driver that runs or stops CPUs goes through
:func:`run_cpus` and :func:`cpus_stopped`, so the plugin sees each of them.

The state the last release returned (``QemuDomainObj.lock_state``) is kept
in the status XML as ``<lockstate>``; the next acquire starts from it (a
migration's Prepare puts the source's state there).  Around those two points:
:func:`register` once QEMU runs with its CPUs paused (``-S``), :func:`gone`
when it exited, :func:`adopt` when a restarted daemon finds it running.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ... import locking
from ...enums import DomainState, PausedReason
from ...errors import ErrorDomain, ErrorNumber, error

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)

# libvirt's virDomainLockManagerAddImage: only storage with a local path has a lease
_LOCAL_DISK_TYPES = ("file", "block")


def _lock_disk(disk: Any) -> locking.Disk | None:
    if not disk.source or disk.type not in _LOCAL_DISK_TYPES:
        return None
    return locking.Disk(disk.source, readonly=disk.readonly, shareable=disk.shareable)


def guest(obj: "QemuDomainObj", pid: int | None = None) -> locking.Guest:
    """The guest as the lock plugin sees it: its QEMU process, disks and leases."""
    d = obj.live or obj.definition
    disks = tuple(filter(None, (_lock_disk(disk) for disk in d.devices.disks)))
    leases = tuple(locking.Lease(lockspace=lease.lockspace or "", key=lease.key, path=lease.path,
                                 offset=lease.offset or 0) for lease in d.devices.leases)
    if pid is None:
        pid = obj.process.pid if obj.process is not None else 0
    return locking.Guest(uuid=obj.uuid, name=d.name, pid=pid, disks=disks, leases=leases,
                         on_lockfailure=getattr(d, "on_lockfailure", None) or "poweroff")


@dataclass
class _Sequence:
    """Orders one guest's lease calls: a release for a pause QEMU reported runs after
    the event, and must not undo a resume that came in between."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conts: int = 0          # how many times the CPUs were started


_SEQUENCES: "weakref.WeakKeyDictionary[Any, _Sequence]" = weakref.WeakKeyDictionary()


def _sequence(obj: Any) -> _Sequence:
    seq = _SEQUENCES.get(obj)
    if seq is None:
        seq = _SEQUENCES[obj] = _Sequence()
    return seq


def conts_so_far(obj: "QemuDomainObj") -> int:
    """For a pause QEMU reported: its release is void if the CPUs run again meanwhile."""
    return _sequence(obj).conts


async def register(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """QEMU runs with its CPUs paused: tie the guest's leases to this process."""
    await drv.locks.register(guest(obj))


async def run_cpus(drv: "QemuDriver", obj: "QemuDomainObj", cont: Callable[[], Awaitable[None]]) -> None:
    """Acquire the leases (from the saved state), run ``cont``; release again if it fails."""
    seq = _sequence(obj)
    async with seq.lock:
        await drv.locks.acquire(guest(obj), obj.lock_state)
        obj.leases_held = True
        try:
            await cont()
        except BaseException:
            try:
                await release(drv, obj)
            except Exception:        # the first error is cont's
                log.exception("%s: cannot release its leases after cont failed", obj.name)
            raise
        seq.conts += 1
        obj.lock_state = None          # as libvirt: the state is spent once the CPUs run


async def cpus_stopped(drv: "QemuDriver", obj: "QemuDomainObj", conts: int | None = None) -> None:
    """The CPUs stopped (we stopped them, or QEMU did): the leases go, their state is
    kept.  A failure is logged, as libvirt warns: the CPUs are stopped either way.
    ``conts``: :func:`conts_so_far` when QEMU reported the pause (nothing is released
    if the CPUs were started again since)."""
    seq = _sequence(obj)
    async with seq.lock:
        if conts is not None and conts != seq.conts:
            return
        try:
            await release(drv, obj)
        except Exception:
            log.warning("%s: unable to release its leases", obj.name, exc_info=True)


async def disk_attached(drv: "QemuDriver", obj: "QemuDomainObj", disk: Any) -> None:
    """Before QEMU opens a hot-plugged disk of a guest whose CPUs run: its lease
    (a paused guest takes it with the others at the next cont)."""
    lock_disk = _lock_disk(disk)
    if lock_disk is None or not obj.leases_held:
        return
    async with _sequence(obj).lock:
        await drv.locks.acquire_disk(guest(obj), lock_disk)


async def disk_detached(drv: "QemuDriver", obj: "QemuDomainObj", disk: Any) -> None:
    """QEMU let go of an unplugged disk (or never got it): its lease goes."""
    lock_disk = _lock_disk(disk)
    if lock_disk is None or not obj.leases_held:
        return
    try:
        async with _sequence(obj).lock:
            await drv.locks.release_disk(guest(obj), lock_disk)
    except Exception:
        log.warning("%s: cannot release the lease of %s", obj.name, lock_disk.path, exc_info=True)


async def resumed_by_qemu(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """QEMU ran the CPUs without us (a ``cont`` sent straight to its monitor): take the
    leases after the fact; a guest that cannot have them is paused again at once."""
    seq = _sequence(obj)
    async with seq.lock:
        if obj.state != DomainState.RUNNING or obj.process is None:
            return
        try:
            await drv.locks.acquire(guest(obj), obj.lock_state)
        except Exception as exc:
            refused: Exception | None = exc
        else:
            refused = None
            obj.leases_held = True
            seq.conts += 1
            obj.lock_state = None
    if refused is not None and obj.state == DomainState.RUNNING and obj.process is not None:
        log.error("%s was resumed outside pyvirt without its leases (%s); pausing it", obj.name, refused)
        await drv.pause_cpus(obj, PausedReason.UNKNOWN)


async def release(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    if not obj.leases_held or obj.process is None:
        return
    obj.leases_held = False
    obj.lock_state = await drv.locks.release(guest(obj))
    obj.save_status()


async def inquire(drv: "QemuDriver", obj: "QemuDomainObj") -> str | None:
    """What a migration hands over: the saved state when paused, else what is held now."""
    if obj.state != DomainState.RUNNING:
        return obj.lock_state
    return await drv.locks.inquire(guest(obj))


async def gone(drv: "QemuDriver", obj: "QemuDomainObj", pid: int) -> None:
    """QEMU exited: nothing of it is held any more (at once, before a new start races it)."""
    obj.leases_held = False
    try:
        await drv.locks.forget(guest(obj, pid))
    except Exception:      # the lock daemon notices through its pidfd anyway
        log.warning("%s: cannot tell the lock manager its QEMU ended", obj.name, exc_info=True)


async def adopt(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """A restarted daemon found the guest: register it again, and if its CPUs run,
    make sure its leases are held (the lock daemon still holds them; if it was
    restarted too, they are taken again).  A guest whose leases cannot be had is
    paused: it must not write without them."""
    running = obj.state == DomainState.RUNNING
    try:
        await drv.locks.adopt(guest(obj), running)
        obj.leases_held = running
    except Exception as exc:
        if not running:
            log.warning("%s: cannot register with the lock manager: %s", obj.name, exc)
            return
        log.error("%s: its leases cannot be held (%s); pausing it", obj.name, exc)
        await drv.pause_cpus(obj, PausedReason.UNKNOWN)


async def retake(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """The lock daemon was replaced (its leases died with it): the guest takes its own
    again; one whose CPUs run and cannot is fenced as its <on_lockfailure> says."""
    running = obj.state == DomainState.RUNNING
    try:
        await drv.locks.adopt(guest(obj), running)
        obj.leases_held = running
    except Exception as exc:
        if not running:
            log.warning("%s: cannot register with the lock manager: %s", obj.name, exc)
            return
        await drv.fence(obj, f"its leases cannot be taken again: {exc}")


async def lock_daemon_lost(drv: "QemuDriver", why: str) -> None:
    """No lock daemon holds the running guests' leases any more, and none could be had
    again in time: each guest that needs leases is fenced as <on_lockfailure> says
    (a paused guest holds none: nothing to do for it)."""
    async def one(obj: Any) -> None:
        try:
            await drv.fence(obj, why)
        except Exception:
            log.exception("%s: fencing failed", obj.name)

    # all at once: a guest's clean-up may wait on the lock daemon, the next guest must not
    await asyncio.gather(*(one(obj) for obj in list(drv.domains)
                           if getattr(obj, "process", None) is not None and obj.state == DomainState.RUNNING
                           and drv.locks.holds_leases(guest(obj))))


# -- migration -------------------------------------------------------------------------
def cookie_state(drv: "QemuDriver", lockstate: Any) -> str | None:
    """The state a Prepare received in the cookie's ``<lockstate>`` (None: no element),
    checked as libvirt checks it."""
    name = drv.locks.name
    if lockstate is None:
        if drv.locks.uses_state:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                        f"Missing {name} lock state for migration cookie")
        return None
    if lockstate.driver != name:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                    f"Source host lock driver {lockstate.driver} different from target {name}")
    return lockstate.leases or None


def refuse_v2(drv: "QemuDriver") -> None:
    """Protocol v2 has no cookie to carry a lock state in."""
    if drv.locks.uses_state:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                    f"Cannot use migrate v2 protocol with lock manager {drv.locks.name}")
