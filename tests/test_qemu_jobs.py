"""Job rules: one sync job, one async job with an allowed mask, clear timeouts."""

from __future__ import annotations

import asyncio

import pytest

from pyvirt.drivers.qemu.jobs import AsyncJob, JobKind, JobManager
from pyvirt.errors import ErrorNumber, libvirtError


def run(coro):
    return asyncio.run(coro)


def test_sync_jobs_serialise_and_time_out_with_a_clear_error():
    async def main():
        jobs = JobManager("dom")
        async with jobs.job(JobKind.MODIFY):
            with pytest.raises(libvirtError) as info:
                async with jobs.job(JobKind.SUSPEND, timeout=0.05):
                    pass
        err = info.value
        assert err.get_error_code() == ErrorNumber.OPERATION_TIMEOUT
        assert "busy with modify job since" in err.get_error_message()
        async with jobs.job(JobKind.SUSPEND, timeout=0.05):   # free again
            pass
    run(main())


def test_async_job_lets_only_allowed_sync_jobs_through():
    async def main():
        jobs = JobManager("dom")
        async with jobs.async_job(AsyncJob.MIGRATION_OUT) as job:
            async with jobs.job(JobKind.QUERY, timeout=0.05):
                pass
            async with jobs.job(JobKind.MIGRATION_OP, timeout=0.05):
                pass
            with pytest.raises(libvirtError, match="busy with migration out job"):
                async with jobs.job(JobKind.MODIFY, timeout=0.05):
                    pass
            with pytest.raises(libvirtError, match="busy with migration out job"):
                async with jobs.async_job(AsyncJob.SAVE, timeout=0.05):
                    pass
            jobs.signal_async("abort")
            assert job.abort_requested
            assert await job.signals.get() == ("abort", None)
        assert jobs.last_completed is job and jobs.current_async is None
    run(main())


def test_waiting_job_starts_when_the_holder_finishes():
    async def main():
        jobs = JobManager("dom")
        order = []
        held, release = asyncio.Event(), asyncio.Event()

        async def holder():
            async with jobs.job(JobKind.MODIFY):
                order.append("hold")
                held.set()
                await release.wait()
                order.append("release")

        async def waiter():
            await held.wait()
            async with jobs.job(JobKind.MODIFY, timeout=5):
                order.append("got")
        tasks = [asyncio.create_task(holder()), asyncio.create_task(waiter())]
        await held.wait()
        # Step the loop until the waiter is queued on the job manager (no timer involved).
        for _ in range(1000):
            if jobs._cond._waiters:
                break
            await asyncio.sleep(0)
        assert jobs._cond._waiters and order == ["hold"], "the waiter should be waiting for the job"
        release.set()
        await asyncio.gather(*tasks)
        assert order == ["hold", "release", "got"]
    run(main())


def test_signal_without_async_job_is_refused():
    with pytest.raises(libvirtError) as info:
        JobManager("dom").signal_async("abort")
    assert info.value.get_error_code() == ErrorNumber.OPERATION_INVALID
    assert "no job is active" in info.value.get_error_message()
