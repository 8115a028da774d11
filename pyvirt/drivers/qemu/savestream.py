"""What save and restore share: following QEMU's migration to or from a file.

Both jobs hand QEMU one descriptor (``getfd`` then ``fd:NAME``, never a
path): the image file itself, or a pipe to or from the format's compression
helper (:class:`ImageEnd`).  :func:`follow` then waits for QEMU to finish,
acting on abort and on a helper that fails meanwhile; the errors say who
failed first (abort, the helper, QEMU's own description, QEMU's last log
lines).  No speed cap applies when writing to a file.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ... import conf
from ...enums import SaveFlags
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ...security import SavedLabel
from . import process as procmod
from .jobs import AsyncJob, AsyncJobState
from .migration.params import job_stats
from .savehelper import Helper

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)

FD_NAME = "pyvirt-save"
POLL_SECONDS = 1.0          # a safety net only: QEMU's MIGRATION events drive the loop
HELPER_GRACE = 5.0          # after QEMU failed, how long a helper gets to exit by itself
CANCEL_WAIT = 10.0          # how long a cancelled migration gets to stop before resuming
JOB_NAMES = {AsyncJob.SAVE: "domain save job", AsyncJob.RESTORE: "domain restore job"}
_ACTIVE = ("setup", "active", "pre-switchover", "device", "cancelling")


def check_flags(flags: int, allowed: int, function: str) -> None:
    """libvirt's flag checks for the save and restore calls."""
    if flags & SaveFlags.BYPASS_CACHE:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                    f"{function}: bypassing the host page cache (VIR_DOMAIN_SAVE_BYPASS_CACHE) is not supported")
    unknown = flags & ~allowed
    if unknown:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"unsupported flags (0x{unknown:x}) in function {function}")
    if flags & SaveFlags.RUNNING and flags & SaveFlags.PAUSED:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    "flags 'running' and 'paused' are mutually exclusive")


async def follow(obj: "QemuDomainObj", job: AsyncJobState, helper: Helper | None = None,
                 log_start: int = 0) -> None:
    """Until QEMU reports the migration completed; act on abort meanwhile.

    QEMU's MIGRATION events arrive on the job's signal queue and each one
    triggers a ``query-migrate`` (which also refreshes the job's figures);
    a poll every POLL_SECONDS is the safety net.  A helper that fails on its
    own ends the job with its error; abort cancels QEMU's migration and stops
    the helper, since QEMU may be blocked writing into its pipe.  ``log_start``
    is where QEMU's log stood when the job began: what QEMU writes after it
    explains a failure.
    """
    name = JOB_NAMES[job.kind]
    if helper is not None:
        helper.on_exit(lambda: job.signal("helper-exited"))
    while True:
        try:
            signal, value = await asyncio.wait_for(job.signals.get(), POLL_SECONDS)
        except asyncio.TimeoutError:
            signal, value = "poll", None
        if signal in ("qmp-event", "poll"):
            if signal == "qmp-event" and value[0] != "MIGRATION":
                continue
            qp = obj.process
            if qp is None:
                raise await _gone(obj, None, name, helper, log_start)
            try:
                info = await _query_migrate(obj, job, helper)
            except libvirtError:
                if qp.alive and qp.monitor.connected:
                    raise
                raise await _gone(obj, qp, name, helper, log_start) from None   # it died under the query
            job.stats.update(job_stats(info))
            status = info.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise await _failed(obj, job, name, info, helper, log_start)
        elif signal == "abort":
            if helper is not None:
                helper.kill()          # first: QEMU may be blocked writing into its pipe
            if obj.process is not None:
                await obj.process.monitor.migrate_cancel()
        elif signal == "helper-exited":
            assert helper is not None
            err = own_failure(helper)
            if err is not None:
                raise err
            # Exited cleanly, or a decompressor whose reader (QEMU) went first:
            # QEMU's own status says what happened.
            job.signal("poll")
        elif signal == "qemu-gone":
            raise await _gone(obj, None, name, helper, log_start)


async def _query_migrate(obj: "QemuDomainObj", job: AsyncJobState, helper: Helper | None) -> dict[str, Any]:
    """``query-migrate``, still acting on abort while QEMU answers: a QEMU writing
    into the pipe of a helper that stopped reading can hold its main loop until
    the helper is gone, and only stopping the helper frees it.  Other signals
    wait on the queue for the loop."""
    assert obj.process is not None
    query = asyncio.ensure_future(obj.process.monitor.query_migrate())
    held: list[tuple[str, Any]] = []
    try:
        while not query.done():
            getter = asyncio.ensure_future(job.signals.get())
            await asyncio.wait({query, getter}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()        # a woken getter leaves its item in the queue
                continue
            held.append(getter.result())
            if held[-1][0] == "abort" and helper is not None:
                helper.kill()
        return query.result()
    finally:
        if not query.done():
            query.cancel()
        for item in held:
            job.signals.put_nowait(item)


def own_failure(helper: Helper) -> libvirtError | None:
    """The helper's failure, unless it only lost its reader: a decompressor
    whose QEMU stopped reading first is a symptom, not the cause."""
    err = helper.failure()
    if err is not None and helper.role == "decompressor" and helper.broken_pipe:
        return None
    return err


async def _helper_error(helper: Helper | None) -> libvirtError | None:
    """After QEMU failed: the helper's own failure if it had one (QEMU then only
    saw a broken pipe or a short stream); the helper gets a moment to exit."""
    if helper is None:
        return None
    if await helper.wait(HELPER_GRACE) is None:
        helper.kill()
    return own_failure(helper)


async def _failed(obj: "QemuDomainObj", job: AsyncJobState, name: str, info: dict[str, Any],
                  helper: Helper | None, log_start: int) -> libvirtError:
    """The error for a failed or cancelled migration: abort, else the helper's own
    failure (QEMU only saw a broken pipe), else QEMU's description."""
    if job.abort_requested:
        return error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.QEMU, f"{name}: canceled by client")
    if job.kind == AsyncJob.RESTORE and "error-desc" not in info:
        # A QEMU that fails to load says why in its log, then exits.
        return await _gone(obj, obj.process, name, helper, log_start)
    err = await _helper_error(helper)
    if err is not None:
        return err
    if info.get("status") == "cancelled":
        return error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.QEMU, f"{name}: canceled")
    return error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                 f"{name}: {info.get('error-desc', 'unexpectedly failed')}")


async def _gone(obj: "QemuDomainObj", qp: procmod.QemuProcess | None, name: str,
                helper: Helper | None, log_start: int) -> libvirtError:
    """QEMU exited (or is exiting) during the job: the helper's own failure if it
    had one, else QEMU's last words from its log."""
    if qp is not None:
        try:
            await asyncio.wait_for(asyncio.shield(qp.exited), HELPER_GRACE)
        except asyncio.TimeoutError:
            pass
    err = await _helper_error(helper)
    if err is not None:
        return err
    tail = procmod.log_tail(obj.cfg.log_path(obj.name), start=log_start) if obj.cfg is not None else ""
    detail = f"{name}: QEMU exited"
    return error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, f"{detail}: {tail}" if tail else detail)


async def stop_migration(obj: "QemuDomainObj", job: AsyncJobState) -> None:
    """Cancel QEMU's migration if it still runs, and wait until it has stopped."""
    if obj.process is None:
        return
    mon = obj.process.monitor
    deadline = asyncio.get_running_loop().time() + CANCEL_WAIT
    cancelled = False
    while obj.process is not None:
        status = (await mon.query_migrate()).get("status")
        if status not in _ACTIVE:
            return
        if not cancelled:
            await mon.migrate_cancel()
            cancelled = True
        if asyncio.get_running_loop().time() > deadline:
            log.error("%s: QEMU's migration did not stop within %.0fs of migrate_cancel", obj.name, CANCEL_WAIT)
            return
        try:
            await asyncio.wait_for(job.signals.get(), 0.05)
        except asyncio.TimeoutError:
            pass


def require_qemu(obj: "QemuDomainObj") -> procmod.QemuProcess:
    """The guest's QEMU, or libvirt's error when it went away during the job
    (destroyed, killed, crashed) while the job was awaiting something else."""
    if obj.process is None or obj.live is None:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "guest unexpectedly quit")
    return obj.process


async def hand_to_qemu(obj: "QemuDomainObj", fd: int) -> None:
    await require_qemu(obj).monitor.getfd(fd, FD_NAME)


async def close_qemu_fd(obj: "QemuDomainObj") -> None:
    """QEMU keeps a descriptor passed with getfd until a migration takes it."""
    if obj.process is not None:
        try:
            await obj.process.monitor.closefd(FD_NAME)
        except libvirtError:
            pass   # already taken by the migration, or QEMU gone


def log_size(drv: "QemuDriver", obj: "QemuDomainObj") -> int:
    """Where QEMU's log is now: what it writes after this explains a failure."""
    try:
        return drv.cfg.log_path(obj.name).stat().st_size
    except OSError:
        return 0


@dataclass
class ImageEnd:
    """An image file, the descriptor handed to QEMU (the file itself or a pipe to
    or from a compression helper), and the labels set on it."""

    path: str
    fd: int
    helper: Helper | None = None
    qemu_fd: int = -1
    labels: list[tuple[int, SavedLabel | None]] = field(default_factory=list)

    def close_pipe(self) -> None:
        """Drop our copy of QEMU's pipe end, so the helper sees QEMU's EOF (or QEMU the helper's)."""
        if self.helper is not None and self.qemu_fd >= 0:
            os.close(self.qemu_fd)
            self.qemu_fd = -1

    def restore_labels(self, drv: "QemuDriver", domain: conf.DomainDef) -> None:
        for fd, saved in self.labels:
            if fd >= 0 and saved is not None:
                drv.security.restore_image_fd_label(domain, fd, saved)
        self.labels.clear()

    async def close(self) -> None:
        """Stop the helper, close every descriptor."""
        if self.helper is not None:
            await self.helper.stop()
        self.close_pipe()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
