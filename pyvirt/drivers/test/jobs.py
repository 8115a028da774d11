"""The test host's jobs: job info, statistics and abort, in memory.

Nothing on the test host takes time (a save, a snapshot, a start are done
the moment they are asked for), so no job is ever running or left completed:
these answer as libvirt's QEMU driver answers for a domain with no job —
type NONE, "no job is active on the domain" — with its checks for a domain
that is not running.  libvirt 9.0's own test driver has no job calls at all
("not supported").

Migration and block jobs are left out on purpose: libvirt's test driver
implements no migrate* entry point and no block job (its feature answers
say no migration protocol), so they keep the contract's "not supported",
exactly as libvirt answers them.
"""

from __future__ import annotations

from typing import Any

from ...enums_more import AbortJobFlags, JobStatsFlags, JobType
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import DomainRef

_T = ErrorDomain.TEST
JOB_INFO_FIELDS = 12        # virDomainJobInfo: its type and eleven figures


class JobsAPI:
    """Mixed into TestConnection (which supplies _obj, _active, host)."""

    _obj: Any
    _active: Any

    async def domain_get_job_info(self, dom: DomainRef) -> tuple[int, ...]:
        self._active(dom)
        return (int(JobType.NONE),) + (0,) * (JOB_INFO_FIELDS - 1)

    async def domain_get_job_stats(self, dom: DomainRef, flags: int) -> tuple[int, list[tuple[str, int, Any]]]:
        check_flags(flags, int(JobStatsFlags.COMPLETED | JobStatsFlags.KEEP_COMPLETED), "testDomainGetJobStats", _T)
        if flags & JobStatsFlags.COMPLETED:
            self._obj(dom)          # a completed job's figures need no running domain (there are none)
        else:
            self._active(dom)
        return int(JobType.NONE), []

    async def domain_abort_job(self, dom: DomainRef) -> None:
        await self.domain_abort_job_flags(dom, 0)

    async def domain_abort_job_flags(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, int(AbortJobFlags.POSTCOPY), "testDomainAbortJobFlags", _T)
        self._active(dom)
        if flags & AbortJobFlags.POSTCOPY:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "current job is not outgoing migration in post-copy mode")
        raise error(ErrorNumber.OPERATION_INVALID, _T, "no job is active on the domain")
