"""Restart recovery of an interrupted job (pyvirt.drivers.qemu.recovery) with a fake
driver and monitor: what a restarted daemon does for every job and phase a status
file can record.  The real-daemon cases are in tests/test_migration_recovery.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from pyvirt.conf.status import AsyncJobType as Job, JobPhase as Phase, JobRecord
from pyvirt.drivers.qemu import recovery
from pyvirt.enums import DomainState, EventStoppedDetail, PausedReason, RunningReason, ShutoffReason


class FakeMonitor:
    def __init__(self, migration: str, running: bool):
        self.migration, self.running = migration, running
        self.calls: list[str] = []

    async def query_migrate(self):
        self.calls.append("query-migrate")
        return {"status": self.migration}

    async def migrate_cancel(self):
        self.calls.append("migrate_cancel")

    async def query_status(self):
        self.calls.append("query-status")
        return {"running": self.running}


class FakeDriver:
    def __init__(self):
        self.actions: list[tuple] = []

    async def kill(self, obj, reason, detail, grace=None, emit=True):
        self.actions.append(("kill", reason, detail, emit))

    async def resume_cpus(self, obj, reason):
        self.actions.append(("resume", reason))


def resolve(record: JobRecord, migration: str = "active", running: bool = False):
    drv = FakeDriver()
    mon = FakeMonitor(migration, running)
    states: list[tuple] = []
    obj = SimpleNamespace(name="g", job_record=record, process=SimpleNamespace(monitor=mon),
                          set_state=lambda state, reason: states.append((state, reason)))
    kept = asyncio.run(recovery.resolve_job(drv, obj, record))
    assert obj.job_record is None           # resolved, whatever the outcome
    return kept, drv.actions, mon.calls, states


KILL_FAILED = ("kill", ShutoffReason.FAILED, EventStoppedDetail.FAILED, True)
LEFT_PAUSED = [(DomainState.PAUSED, PausedReason.MIGRATION)]
RESUMED = [("resume", RunningReason.MIGRATION_CANCELED)]


@pytest.mark.parametrize("phase", [Phase.PREPARE, Phase.FINISH3])
def test_incoming_migration_never_finished_is_killed(phase):
    kept, actions, _calls, _states = resolve(JobRecord(Job.MIGRATION_IN, phase))
    assert (kept, actions) == (False, [KILL_FAILED])


def test_v2_finish2_keeps_the_only_copy():
    kept, actions, calls, _states = resolve(JobRecord(Job.MIGRATION_IN, Phase.FINISH2))
    assert (kept, actions, calls) == (True, [], [])


def test_unfinished_restore_is_killed_quietly():
    kept, actions, _calls, _states = resolve(JobRecord(Job.START))
    assert (kept, actions) == (False, [("kill", ShutoffReason.FAILED, EventStoppedDetail.FAILED, False)])


def test_begin3_touches_nothing():
    kept, actions, calls, states = resolve(JobRecord(Job.MIGRATION_OUT, Phase.BEGIN3, was_running=True))
    assert (kept, actions, calls, states) == (True, [], [], [])


@pytest.mark.parametrize("job, phase", [(Job.MIGRATION_OUT, Phase.PERFORM3), (Job.MIGRATION_OUT, Phase.PERFORM2),
                                        (Job.SAVE, Phase.NONE)])
@pytest.mark.parametrize("was_running", [True, False])
def test_transfer_under_way_is_cancelled_and_the_guest_put_back(job, phase, was_running):
    kept, actions, calls, states = resolve(JobRecord(job, phase, was_running), migration="active", running=False)
    assert kept and "migrate_cancel" in calls and states == []
    resumed = [("resume", RunningReason.SAVE_CANCELED)] if job is Job.SAVE else RESUMED
    assert actions == (resumed if was_running else [])


@pytest.mark.parametrize("migration", ["failed", "active"])
def test_a_guest_qemu_kept_running_is_not_resumed_twice(migration):
    """A live migration interrupted by a restart: QEMU still runs the guest (the
    transfer is cancelled if it goes on); its reason becomes libvirt's
    'migration canceled', never the 'booted' of before."""
    _kept, actions, calls, states = resolve(JobRecord(Job.MIGRATION_OUT, Phase.PERFORM3, True),
                                            migration=migration, running=True)
    assert actions == [] and ("migrate_cancel" in calls) == (migration == "active")
    assert states == [(DomainState.RUNNING, RunningReason.MIGRATION_CANCELED)]


@pytest.mark.parametrize("job", [Job.MIGRATION_OUT, Job.SAVE])
def test_transfer_completed_while_down_stays_paused(job):
    phase = Phase.PERFORM3 if job is Job.MIGRATION_OUT else Phase.NONE
    kept, actions, calls, states = resolve(JobRecord(job, phase, True), migration="completed")
    assert (kept, actions, states) == (True, [], LEFT_PAUSED) and "migrate_cancel" not in calls


def test_perform3_done_stays_paused_without_asking_qemu():
    kept, actions, calls, states = resolve(JobRecord(Job.MIGRATION_OUT, Phase.PERFORM3_DONE, True))
    assert (kept, actions, calls, states) == (True, [], [], LEFT_PAUSED)


def test_confirm3_cancelled_resumes_even_after_a_completed_transfer():
    kept, actions, _calls, states = resolve(JobRecord(Job.MIGRATION_OUT, Phase.CONFIRM3_CANCELLED, True),
                                            migration="completed", running=False)
    assert (kept, actions, states) == (True, RESUMED, [])
