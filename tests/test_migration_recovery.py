"""A source daemon killed during a migration: the daemon that starts next
resolves the interrupted job from the status file's job record.

Non-live migrations, so the source daemon has paused the guest itself before
it died: only recovery (phase perform3, the guest ran before) can resume it.
The destination drops its half meanwhile (Finish told it was cancelled, or
its autodestroy when the peer-to-peer source's connection went away).
"""

from __future__ import annotations

import signal

import pytest

import pyvirt
from daemons import qemu_pid, running_copies
from guests import wait_for
from test_migration import _migrate_in_thread, _wait_job_active, heartbeat, hosts, start_guest  # noqa: F401
from test_migration_p2p import to_uri_in_thread

pytestmark = pytest.mark.qemu


@pytest.mark.parametrize("flow", ["managed", "p2p"])
def test_source_daemon_killed_during_perform_resumes_the_guest_after_restart(hosts, flow):
    a, b = hosts
    _ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    if flow == "managed":
        thread, result = _migrate_in_thread(dom, pyvirt.open(b.uri), 0, {"bandwidth": 4})
    else:
        thread, result = to_uri_in_thread(dom, b.uri, pyvirt.VIR_MIGRATE_PEER2PEER, {"bandwidth": 4})
    watcher = pyvirt.open(a.uri)
    _wait_job_active(watcher, "mig")
    assert watcher.lookupByName("mig").state()[0] == pyvirt.VIR_DOMAIN_PAUSED     # non-live: paused to send
    status = (a.state_dir / "run" / "qemu" / "mig.xml").read_text()
    assert "<job type='none' async='migration out' phase='perform3' wasRunning='yes'/>" in status
    a.stop(signal.SIGKILL)
    thread.join(30)
    assert not thread.is_alive() and "error" in result, "the migration should have failed"
    wait_for(lambda: qemu_pid(b, "mig") is None, 15, what="the destination to drop its half")
    a.start()
    recovered = pyvirt.open(a.uri).lookupByName("mig")
    assert recovered.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED]
    assert "<job " not in (a.state_dir / "run" / "qemu" / "mig.xml").read_text()   # resolved
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before, 10, what="the recovered guest to run again")
    assert running_copies([a, b], uid) == 1
