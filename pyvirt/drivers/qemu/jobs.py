"""Jobs: what may touch a domain at the same time.

Per domain there is at most one synchronous job (a state change or a
monitor call) and at most one asynchronous job (migration out or in, save,
restore).  While an asynchronous job runs, only the synchronous jobs in its
allowed mask may start: queries, abort, migration speed and downtime.
The concepts are libvirt's; the mechanics are ``async with``::

    async with obj.jobs.job(JobKind.MODIFY):
        ...
    async with obj.jobs.async_job(AsyncJob.MIGRATION_OUT) as job:
        ...  # job.signals delivers abort / speed / downtime to this loop

A waiter that cannot get its job within the timeout fails with
VIR_ERR_OPERATION_TIMEOUT naming the job in the way and for how long.  A
job granted on a domain removed from the list while the caller waited
(undefined, or a transient domain that stopped) is refused with libvirt's
"no domain with matching uuid": nothing acts on a domain nobody can see.
A destroy's job (``DESTROY``) is let through whatever asynchronous job runs,
as libvirt's: the destroy has already killed QEMU and only waits for the
synchronous job holder to notice.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, AsyncIterator, Callable

from ...enums import JobOperation
from ...errors import ErrorDomain, ErrorNumber, error

DEFAULT_TIMEOUT = 30.0


class JobKind(Enum):
    QUERY = "query"            # monitor queries (block stats, job stats)
    SUSPEND = "suspend"        # stop/cont
    MODIFY = "modify"          # start, shutdown, define-while-running, ...
    ABORT = "abort"            # abort the async job
    MIGRATION_OP = "migration operation"  # speed, downtime during migration
    DESTROY = "destroy"        # the clean-up after a destroy killed QEMU
    DEFINE = "define"          # define over an existing domain, undefine


class AsyncJob(Enum):
    MIGRATION_OUT = "migration out"
    MIGRATION_IN = "migration in"
    SAVE = "save"
    RESTORE = "restore"


ASYNC_OPERATION = {
    AsyncJob.MIGRATION_OUT: JobOperation.MIGRATION_OUT,
    AsyncJob.MIGRATION_IN: JobOperation.MIGRATION_IN,
    AsyncJob.SAVE: JobOperation.SAVE,
    AsyncJob.RESTORE: JobOperation.RESTORE,
}

# Synchronous jobs each asynchronous job lets through.
ASYNC_ALLOWED: dict[AsyncJob, frozenset[JobKind]] = {
    # (Re)defining a running guest only changes its next boot (an undefine makes it
    # transient), as libvirt allows at any time; an incoming migration or a restore
    # is starting a QEMU for the object, which must not go away under it.
    AsyncJob.MIGRATION_OUT: frozenset({JobKind.QUERY, JobKind.ABORT, JobKind.MIGRATION_OP, JobKind.SUSPEND,
                                       JobKind.DEFINE}),
    AsyncJob.MIGRATION_IN: frozenset({JobKind.QUERY, JobKind.ABORT, JobKind.MIGRATION_OP}),
    AsyncJob.SAVE: frozenset({JobKind.QUERY, JobKind.ABORT, JobKind.SUSPEND, JobKind.DEFINE}),
    AsyncJob.RESTORE: frozenset({JobKind.QUERY}),
}


@dataclass
class AsyncJobState:
    """The running asynchronous job: phase, progress and the signals sent to it."""

    kind: AsyncJob
    started: float = field(default_factory=time.monotonic)
    phase: str = "begin"
    stats: dict[str, Any] = field(default_factory=dict)
    signals: "asyncio.Queue[tuple[str, Any]]" = field(default_factory=asyncio.Queue)
    abort_requested: bool = False

    @property
    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def signal(self, name: str, value: Any = None) -> None:
        if name == "abort":
            self.abort_requested = True
        self.signals.put_nowait((name, value))


class JobManager:
    def __init__(self, domain_name: str, removed: Callable[[], Exception | None] | None = None) -> None:
        self.domain_name = domain_name
        # The error for a job granted on a domain that left its list meanwhile (None: still listed).
        self._removed = removed or (lambda: None)
        self._cond = asyncio.Condition()
        self.active: JobKind | None = None
        self.active_since = 0.0
        self.current_async: AsyncJobState | None = None
        self.last_completed: AsyncJobState | None = None
        # Told of every asynchronous job that ends (the driver raises JOB_COMPLETED from it).
        self.on_async_end: Callable[[AsyncJobState], None] | None = None

    def _busy_error(self, wanted: str) -> Exception:
        held = self.active.value if self.active else None
        if held is None and self.current_async is not None:
            held, since = self.current_async.kind.value, self.current_async.started
        else:
            since = self.active_since
        return error(ErrorNumber.OPERATION_TIMEOUT, ErrorDomain.QEMU,
                     f"cannot start {wanted} job: domain '{self.domain_name}' is busy with "
                     f"{held} job since {time.monotonic() - since:.0f}s")

    def _sync_allowed(self, kind: JobKind) -> bool:
        if self.active is not None:
            return False
        return (self.current_async is None or kind is JobKind.DESTROY
                or kind in ASYNC_ALLOWED[self.current_async.kind])

    def _check_listed(self) -> None:
        gone = self._removed()
        if gone is not None:
            raise gone

    @asynccontextmanager
    async def job(self, kind: JobKind, timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[None]:
        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(lambda: self._sync_allowed(kind)), timeout)
            except asyncio.TimeoutError:
                raise self._busy_error(kind.value) from None
            self._check_listed()
            self.active, self.active_since = kind, time.monotonic()
        try:
            yield
        finally:
            async with self._cond:
                self.active = None
                self._cond.notify_all()

    async def begin_async(self, kind: AsyncJob, timeout: float = DEFAULT_TIMEOUT) -> AsyncJobState:
        """Start an asynchronous job that outlives this call (migration spans
        several RPC calls); :meth:`end_async` ends it."""
        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(
                    lambda: self.active is None and self.current_async is None), timeout)
            except asyncio.TimeoutError:
                raise self._busy_error(kind.value) from None
            self._check_listed()
            state = AsyncJobState(kind)
            self.current_async = state
            return state

    async def end_async(self, state: AsyncJobState) -> None:
        async with self._cond:
            if self.current_async is state:
                self.last_completed = state
                self.current_async = None
                self._cond.notify_all()
            else:
                return
        if self.on_async_end is not None:
            self.on_async_end(state)

    @asynccontextmanager
    async def async_job(self, kind: AsyncJob, timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[AsyncJobState]:
        state = await self.begin_async(kind, timeout)
        try:
            yield state
        finally:
            await self.end_async(state)

    def signal_async(self, name: str, value: Any = None) -> AsyncJobState:
        """Deliver abort/speed/downtime to the running async job, or fail."""
        if self.current_async is None:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "no job is active on the domain")
        if name == "abort" and self.current_async.kind is AsyncJob.MIGRATION_IN:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        "cannot abort incoming migration; abort outgoing migration on the source instead")
        self.current_async.signal(name, value)
        return self.current_async
