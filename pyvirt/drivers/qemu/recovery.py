"""Restart recovery of asynchronous jobs.

A daemon that adopts a running QEMU may find in its status file that a job
was in progress when the previous daemon went away (a :class:`JobRecord`:
which job, which migration phase, whether the guest ran before it).  Nobody
will finish that job, so it is resolved here, switching on the job and phase
as libvirt does (``qemuProcessRecoverJob``, ``qemuProcessRecoverMigrationIn``
and ``...Out``).  The rule behind every branch: never two running copies of
a guest, and never none when one can safely run.  This works because a
daemon that stops leaves the record as it was (QemuDriver.close).

Incoming side — the client (or the source daemon) saw Prepare or Finish fail
with this daemon and Confirm resumes the source, so the half-migrated guest
here is killed; a v2 Finish2 is the exception, since the v2 source stopped
its copy before Finish2 and this one is the only one left.

Outgoing side — before Perform nothing was sent; during Perform (or a save,
which is a migration to a file) QEMU is asked: a transfer still going is
cancelled and the guest resumed if it ran ("running (migration canceled)"),
a completed one left paused (the destination may run it); after Perform completed the source stays paused
(also when Confirm was stopping it: that phase is not persisted, see
:func:`pyvirt.drivers.qemu.migration.source.confirm`); a Confirm that was
resuming the source is finished.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...conf.status import AsyncJobType, JobPhase, JobRecord
from ...enums import DomainState, EventStoppedDetail, PausedReason, RunningReason, ShutoffReason
from ...errors import libvirtError

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)

# QEMU's migration states in which data is still being sent.
_SENDING = ("active", "setup", "pre-switchover", "device")


async def resolve_job(drv: "QemuDriver", obj: "QemuDomainObj", record: JobRecord) -> bool:
    """Resolve the job ``record`` describes on the adopted ``obj``; False if the guest was stopped."""
    obj.job_record = None           # resolved now, whatever happens next
    if record.job is AsyncJobType.MIGRATION_IN:
        if record.phase is JobPhase.FINISH2:
            log.warning("domain %s: keeping the only copy of a v2 incoming migration whose Finish2 "
                        "was interrupted", obj.name)
            return True
        log.warning("domain %s: killing an incoming migration that never finished (phase %s)",
                    obj.name, record.phase.value)
        await drv.kill(obj, ShutoffReason.FAILED, EventStoppedDetail.FAILED, grace=1.0)
        return False
    if record.job is AsyncJobType.START:
        # A restore that never finished loading: the guest was never announced, so it goes quietly.
        log.warning("domain %s: killing a restore that never finished", obj.name)
        await drv.kill(obj, ShutoffReason.FAILED, EventStoppedDetail.FAILED, grace=1.0, emit=False)
        return False
    if record.job is AsyncJobType.MIGRATION_OUT:
        if record.phase is JobPhase.BEGIN3:
            return True             # nothing was sent, the guest was not touched
        if record.phase is JobPhase.PERFORM3_DONE:
            log.error("domain %s: outgoing migration completed (phase %s) but was never confirmed; "
                      "the destination may run it, so it is left paused", obj.name, record.phase.value)
            obj.set_state(DomainState.PAUSED, PausedReason.MIGRATION)
            return True
    # PERFORM2/PERFORM3, CONFIRM3_CANCELLED (CONFIRM3 never reaches the disk), or a save
    await _cancel_outgoing(drv, obj, record, confirmed_cancelled=record.phase is JobPhase.CONFIRM3_CANCELLED)
    return True


async def _cancel_outgoing(drv: "QemuDriver", obj: "QemuDomainObj", record: JobRecord,
                           confirmed_cancelled: bool) -> None:
    """Stop an outgoing transfer and put the guest back as it was.  A transfer
    that completed is left paused — unless Confirm had already been told the
    destination failed (``confirmed_cancelled``): then this is the only copy.

    A guest that ran before a migration reads "running (migration canceled)"
    afterwards, whether recovery had to resume its CPUs or QEMU kept them
    running (a live migration, or one QEMU itself gave up on); one resumed
    after an interrupted save reads "running (save canceled)", as in libvirt.
    """
    assert obj.process is not None
    mon = obj.process.monitor
    what = f"{record.job.value} (phase {record.phase.value})"
    try:
        status = (await mon.query_migrate()).get("status")
        if status == "completed" and not confirmed_cancelled:
            log.error("domain %s: %s completed while the daemon was down: all data was sent and "
                      "the destination may run it, so it is left paused", obj.name, what)
            obj.set_state(DomainState.PAUSED, PausedReason.MIGRATION)
            return
        if status in _SENDING:
            await mon.migrate_cancel()
        if not record.was_running:
            log.warning("domain %s: cancelled the interrupted %s; it stays paused as it was",
                        obj.name, what)
            return
        saving = record.job is AsyncJobType.SAVE
        if not (await mon.query_status())["running"]:
            await drv.resume_cpus(obj, RunningReason.SAVE_CANCELED if saving else RunningReason.MIGRATION_CANCELED)
        elif not saving:       # libvirt leaves a running guest's reason alone after a save only
            obj.set_state(DomainState.RUNNING, RunningReason.MIGRATION_CANCELED)
        log.warning("domain %s: cancelled the interrupted %s; running again", obj.name, what)
    except libvirtError as exc:
        log.error("domain %s: cannot recover its %s: %s", obj.name, what, exc)


async def kill_unrecorded_incoming(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """A QEMU still in ``inmigrate`` with no job record (a status file written
    before the record existed): nobody will finish that migration and its
    source may run, so resuming it could make a second running copy."""
    log.warning("domain %s: its QEMU still waits for an incoming migration (phase unknown: no job "
                "record) that nobody will finish; killing it", obj.name)
    await drv.kill(obj, ShutoffReason.FAILED, EventStoppedDetail.FAILED, grace=1.0)
