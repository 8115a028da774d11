"""A QEMU domain: the generic DomainObj plus its process, jobs and status file.

Every state change goes through :meth:`QemuDomainObj.set_state`, which
writes the status XML atomically, so a restarted manager finds each
running guest with the state and reason it had.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ...conf import DomainStatus
from ...conf.status import AsyncJobType, JobPhase, JobRecord
from ...conf.fileutil import write_atomic
from ...errors import ErrorDomain, libvirtError
from ...enums import DomainState, EventStoppedDetail, ShutoffReason
from ..domainlist import DomainObj, removed_domain
from .config import QemuConfig
from .jobs import JobManager
from .process import QemuProcess

log = logging.getLogger(__name__)


@dataclass(eq=False)
class QemuDomainObj(DomainObj):
    process: QemuProcess | None = None
    jobs: JobManager = field(default=None)  # type: ignore[assignment]
    cfg: QemuConfig | None = None
    # Why the process is going away, set by whoever stops it; None = unexpected.
    stop_reason: tuple[ShutoffReason, EventStoppedDetail] | None = None
    got_shutdown: bool = False        # QEMU reported a guest/host shutdown
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    # Set while the driver itself pauses/resumes the CPUs, so the STOP/RESUME
    # events it causes do not override the reason it chose.
    expect_run_change: bool = False
    incoming: Any = None              # migration.destination.Incoming between Prepare and Finish
    outgoing: Any = None              # migration.source.Outgoing between Begin and Confirm
    monitor_path: Path | None = None  # the running QEMU's monitor socket (recorded in the status)
    # The asynchronous job a restarted daemon must resolve (in the status XML): which
    # job, its migration phase, whether the guest ran before it.
    job_record: JobRecord | None = None
    # Stop without announcing it (a QEMU that never became a guest: a failed restore).
    quiet_stop: bool = False
    # Runtime migration tunables (virsh migrate-setspeed / migrate-setmaxdowntime),
    # applied when a migration starts: MiB/s with 0 for unlimited; ms or QEMU's default.
    migrate_speed: int = 0
    migrate_downtime: int | None = None
    # The daemon stopped managing this guest (shutdown): its status file stays as last
    # written, for the next daemon to adopt and resolve; nothing here touches it any more.
    detached: bool = False
    # The lock manager: the state its last release returned (the status XML's <lockstate>),
    # and whether the guest's leases are held now (its CPUs run).
    lock_state: str | None = None
    leases_held: bool = False

    def __post_init__(self) -> None:
        if self.jobs is None:
            self.jobs = JobManager(self.definition.name, self._removed_error)

    def _removed_error(self) -> libvirtError | None:
        return removed_domain(self, ErrorDomain.QEMU) if self.removed else None

    def set_state(self, state: DomainState, reason: int) -> None:
        super().set_state(state, reason)
        if self.active:
            self.save_status()

    def status(self) -> DomainStatus:
        assert self.live is not None and self.cfg is not None
        return DomainStatus(self.state, self.reason, self.process.pid if self.process else 0,
                            str(self.monitor_path) if self.monitor_path else None, self.live,
                            dict(self.extra), self.job_record, self.lock_state)

    def record_job(self, job: AsyncJobType, phase: JobPhase = JobPhase.NONE, *,
                   was_running: bool | None = None, persist: bool = True) -> None:
        """Persist the job (and phase) in progress before acting on it, so a daemon
        that dies meanwhile knows what to undo; ``was_running`` defaults to the
        value already recorded for this job.  With ``persist=False`` the record
        reaches the disk with the next status write: for phases a restarted daemon
        would resolve like the previous one (a status write costs an fsync)."""
        old = self.job_record
        if was_running is None:
            was_running = old.was_running if old is not None and old.job is job else False
        self.job_record = JobRecord(job, phase, was_running)
        if persist:
            self.save_status()

    def clear_job_record(self) -> None:
        """The job is over: nothing left for a restarted daemon to resolve."""
        if self.job_record is None:
            return
        self.job_record = None
        if self.active:
            self.save_status()

    def save_status(self) -> None:
        if self.cfg is None or self.live is None or self.detached:
            return
        try:
            write_atomic(self.cfg.status_path(self.name), self.status().format())
        except (OSError, libvirtError):  # a full disk must not take the guest down with it
            log.exception("cannot write the status of %s", self.name)

    def remove_status(self) -> None:
        if self.cfg is None or (self.detached and self.process is not None):
            return
        try:
            self.cfg.status_path(self.name).unlink()
        except FileNotFoundError:
            pass
        if self.monitor_path is not None:
            self.cfg.remove_monitor(self.monitor_path)
            self.monitor_path = None


class MonitorHandler:
    """Feeds one domain's QMP events and EOF to the driver."""

    def __init__(self, obj: QemuDomainObj,
                 on_event: Callable[[QemuDomainObj, str, Mapping[str, Any], float], None],
                 on_eof: Callable[[QemuDomainObj, str], None]) -> None:
        self.obj = obj
        self._on_event = on_event
        self._on_eof = on_eof

    def on_event(self, name: str, data: Mapping[str, Any], timestamp: float) -> None:
        self._on_event(self.obj, name, data, timestamp)

    def on_eof(self, reason: str) -> None:
        self._on_eof(self.obj, reason)
