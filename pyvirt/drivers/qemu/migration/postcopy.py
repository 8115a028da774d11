"""Post-copy migration: the switch, and what each side does after it.

After ``migrate-start-postcopy`` the source's vCPUs stop and the guest runs
on the destination while the pages it misses are pulled from the source.
From then on neither side may resume the source's copy: its memory is
partly gone.  libvirt 9.0's shape is kept:

* the source's Perform returns once QEMU reports ``postcopy-active``; the
  source is paused with reason POSTCOPY (SUSPENDED/POSTCOPY) and its leases
  released (the destination acquires before its CPUs run);
* the destination's Finish resumes the CPUs as soon as its QEMU is in
  post-copy (RUNNING/POSTCOPY, RESUMED/POSTCOPY) and then waits until every
  page has arrived;
* a failure after the switch never resumes the source (paused,
  POSTCOPY_FAILED, whatever Confirm is told) and never kills the
  destination, which has the CPUs but not all the memory.  There the guest
  is paused: PAUSED/POSTCOPY_FAILED with SUSPENDED/POSTCOPY_FAILED, where
  libvirt 9.0 leaves it RUNNING/POSTCOPY_FAILED.  A vCPU that touches a
  page still on the lost source blocks on it for good anyway, so "running"
  would promise tools a guest that makes progress; paused states the truth,
  stops the vCPUs not yet blocked from acting on a half-moved memory
  (timers, I/O), and is the state an administrator recovers from.

  QEMU's ``stop`` kicks every vCPU and waits until each has left the
  guest.  One blocked in a page fault (this host: TCG and KVM alike) only
  leaves when its page arrives, so the command may not return: it is
  awaited for a bounded time, then left pending in QEMU.  The guest is
  reported paused either way, because from the moment ``stop`` is sent no
  vCPU runs guest code: the others have stopped on the kick, the blocked
  ones wait for their page and stop as soon as it comes (a recovered
  post-copy delivers a paused guest, never one that ran on).  Until then
  QEMU's main loop is busy with that ``stop``: ordinary monitor commands
  wait, out-of-band ones (``migrate-recover``, ``migrate-pause``) still
  answer, and destroy works as always.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from typing import TYPE_CHECKING, Any

from ....enums import DomainState, MigrateFlags, PausedReason
from ....errors import ErrorDomain, ErrorNumber, error

if TYPE_CHECKING:
    from ..domainobj import QemuDomainObj
    from ..driver import QemuDriver
    from ..jobs import AsyncJobState

log = logging.getLogger(__name__)

# QEMU's migration states once the switch has happened
POSTCOPY_STATES = ("postcopy-active", "postcopy-paused", "postcopy-recover")
_FAILED_AFTER_SWITCH: "weakref.WeakSet[Any]" = weakref.WeakSet()


async def start(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """virDomainMigrateStartPostCopy, with the caller holding a MIGRATION_OP job."""
    from ..jobs import AsyncJob
    job = obj.jobs.current_async
    out = getattr(obj, "outgoing", None)
    if job is None or job.kind is not AsyncJob.MIGRATION_OUT or out is None:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                    "post-copy can only be started while outgoing migration is in progress")
    if not (out.request.flags | getattr(out, "flags", 0)) & MigrateFlags.POSTCOPY:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                    "switching to post-copy requires migration to be started with VIR_MIGRATE_POSTCOPY flag")
    if obj.process is None:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "domain is not running")
    log.info("%s: starting post-copy", obj.name)
    await obj.process.monitor.execute("migrate-start-postcopy")


def in_postcopy(obj: "QemuDomainObj") -> bool:
    """libvirt's virDomainObjIsPostcopy: a migration job past the switch (told by the state reason)."""
    from ....enums import RunningReason
    if obj.jobs.current_async is None:
        return False
    return (obj.state, obj.reason) in ((DomainState.RUNNING, RunningReason.POSTCOPY),
                                       (DomainState.PAUSED, PausedReason.POSTCOPY))


def source_failed(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """The migration failed after the switch: the source's copy is incomplete, keep it paused."""
    log.error("Migration of domain %s failed during post-copy; leaving the domain paused", obj.name)
    if obj.process is not None and (obj.state, obj.reason) != (DomainState.PAUSED, PausedReason.POSTCOPY_FAILED):
        drv.mark_paused(obj, PausedReason.POSTCOPY_FAILED)


async def source_completed(obj: "QemuDomainObj", job: "AsyncJobState") -> None:
    """Source, in Confirm after a successful Finish: QEMU's final figures (post-copy requests
    included) for the job's statistics, once it has sent its last page."""
    from .params import job_stats
    while obj.process is not None:
        info = await obj.process.monitor.query_migrate()
        job.stats.update(job_stats(info))
        if info.get("status") not in POSTCOPY_STATES:
            return
        await _next_event(job)


async def wait_switch(obj: "QemuDomainObj", job: "AsyncJobState") -> bool:
    """Destination, in Finish: until QEMU has the whole stream (False) or is in post-copy (True)."""
    while True:
        info = await _query(obj)
        status = info.get("status")
        if status == "completed":
            return False
        if status in POSTCOPY_STATES:
            return True
        if status in ("failed", "cancelled"):
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"incoming migration failed: {info.get('error-desc', status)}")
        await _next_event(job)


async def wait_completed(drv: "QemuDriver", obj: "QemuDomainObj", job: "AsyncJobState") -> None:
    """Destination, after resuming in post-copy: until every page has arrived.  On failure the
    guest is paused (POSTCOPY_FAILED) and kept; the error is raised."""
    try:
        while True:
            info = await _query(obj)
            status = info.get("status")
            job.stats.update(_ram_figures(info))
            if status == "completed":
                return
            if status in ("failed", "cancelled", "postcopy-paused"):
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                            f"job 'migration in' failed in post-copy phase: {info.get('error-desc', status)}")
            await _next_event(job)
    except BaseException as exc:
        if not isinstance(exc, asyncio.CancelledError):
            await destination_failed(drv, obj)
        raise


async def destination_failed(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """The destination has the CPUs but not all the memory: keep the guest, never kill it,
    stop its vCPUs and say so (the module's docstring says why paused, and why bounded)."""
    from .. import leases
    log.error("Incoming migration of domain '%s' failed during post-copy; leaving the domain paused", obj.name)
    _FAILED_AFTER_SWITCH.add(obj)
    process = obj.process
    if process is None:
        return
    if obj.state == DomainState.RUNNING:
        stop = asyncio.ensure_future(process.monitor.stop())
        obj.expect_run_change = True         # the STOP event is ours: the reason is POSTCOPY_FAILED
        try:
            done, _ = await asyncio.wait({stop}, timeout=STOP_BOUND)
        finally:
            obj.expect_run_change = False
        if not done:
            log.warning("%s: a vCPU waits for a page that will not come: QEMU stops it when the page "
                        "arrives; no vCPU runs guest code meanwhile", obj.name)
            _PENDING_STOPS.add(stop)
            stop.add_done_callback(functools.partial(_stop_done, obj.name))
        else:
            _stop_done(obj.name, stop)
    if obj.process is not process:
        return
    if (obj.state, obj.reason) != (DomainState.PAUSED, PausedReason.POSTCOPY_FAILED):
        drv.mark_paused(obj, PausedReason.POSTCOPY_FAILED)
    await leases.cpus_stopped(drv, obj)      # as every pause: stopped vCPUs hold no lease


STOP_BOUND = 2.0      # s: QEMU stops vCPUs in milliseconds unless one is blocked on a missing page
_PENDING_STOPS: "set[asyncio.Future[Any]]" = set()


def _stop_done(name: str, stop: "asyncio.Future[Any]") -> None:
    _PENDING_STOPS.discard(stop)
    if not stop.cancelled() and stop.exception() is not None:
        log.warning("%s: the stop after the failed post-copy did not complete: %s", name, stop.exception())


def kept_after_failure(obj: "QemuDomainObj") -> bool:
    """Finish failed after the switch: the guest stays (paused), it is never killed for it."""
    if obj in _FAILED_AFTER_SWITCH:
        _FAILED_AFTER_SWITCH.discard(obj)
        return obj.process is not None
    return False


async def _query(obj: "QemuDomainObj") -> dict[str, Any]:
    if obj.process is None or not obj.process.alive:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "QEMU exited during incoming migration")
    return await obj.process.monitor.query_migrate()


async def _next_event(job: "AsyncJobState") -> None:
    """The next MIGRATION event (or a second: a safety net, events drive this)."""
    try:
        await asyncio.wait_for(job.signals.get(), 1.0)
    except asyncio.TimeoutError:
        pass


def _ram_figures(info: dict[str, Any]) -> dict[str, int]:
    from .params import job_stats
    return job_stats(info)
