"""Zero-copy migration (``virsh migrate --parallel --zerocopy``) between two real pyvirtd.

While the source daemon is held at its ``perform-late`` hook point (data
already flowing), the test reads the source QEMU's capabilities over
``qemu-monitor-command`` and its locked-memory limit from the kernel.

The kernel charges pages pinned by MSG_ZEROCOPY to the sender's
locked-memory limit unless it holds CAP_IPC_LOCK.  An unprivileged QEMU
(the default ``libvirt-qemu``) therefore gets its limit raised to the
guest's memory for the migration and put back afterwards, as libvirt 9.0
does; where the daemon itself lacks CAP_SYS_RESOURCE (a container) that
cannot be done and the migration is refused with libvirt's error, the
source left running.  A QEMU running as root holds CAP_IPC_LOCK: its limit
is left alone and the migration completes, the guest beating on the
destination.
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import subprocess

import pytest

import pyvirt
from pyvirt.drivers.qemu.migration.zerocopy import read_memlock
from daemons import monitor_command, qemu_pid, running_copies
from faults.fault_hooks import HookServer
from guests import wait_for
from test_migration import heartbeat, make_hosts, start_guest
from test_migration_tls import Virsh

pytestmark = [pytest.mark.qemu, pytest.mark.virsh,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]

HOLD = 60                 # a bound for reaching a hook point, not a timing
SMALL = 8 << 20           # an unprivileged process's usual RLIMIT_MEMLOCK
MEMORY_MIB = 192


ROOT_QEMU = 'user = "root"\ngroup = "root"\n'
CAP_SYS_RESOURCE = 24


def have_cap(bit: int) -> bool:
    with open("/proc/self/status") as f:
        caps = next(line for line in f if line.startswith("CapEff:"))
    return bool(int(caps.split()[1], 16) >> bit & 1)


@pytest.fixture
def hooked_pair(request, tmp_path, guests_built):
    """Two hosts (QEMU as ``request.param``'s user); the source reports its hook points."""
    extra = ROOT_QEMU if getattr(request, "param", "") == "root" else ""
    a, b = make_hosts(tmp_path, extra=extra)
    hooks = HookServer(tmp_path / "a-hooks.sock")
    a.extra_env["PYVIRT_TEST_HOOKS"] = str(hooks.path)
    try:
        a.start()
        b.start()
        yield a, b, hooks
    finally:
        hooks.close()
        for host in (a, b):
            host.destroy_all()
        leaked = a.cleanup() + b.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def capabilities(daemon, uid: str) -> dict[str, bool]:
    reply = monitor_command(daemon, uid, '{"execute":"query-migrate-capabilities"}')
    assert reply is not None
    return {c["capability"]: c["state"] for c in json.loads(reply)["return"]}


def held_at_perform_late(a, hooks, uid: str, *options: str, dest_uri: str) -> tuple[Virsh, dict, tuple]:
    """Start ``virsh migrate`` and read the source QEMU's capabilities and limit while it sends."""
    pid = qemu_pid(a, "mig")
    hooks.arm("perform-late")
    virsh = Virsh("-c", a.uri, "migrate", "--live", *options, "mig", dest_uri)
    try:
        assert hooks.wait_reached(HOLD), f"the source never reached perform-late: {hooks.seen}"
        caps, limit = capabilities(a, uid), read_memlock(pid)
    finally:
        hooks.disarm()
    return virsh, caps, limit


@pytest.mark.parametrize("hooked_pair", ["root"], indirect=True)
def test_parallel_zerocopy_migration_completes(hooked_pair):
    a, b, hooks = hooked_pair
    _, dom, uid = start_guest(a, cmdline="dirty=16:2", memory_mib=MEMORY_MIB)
    pid = qemu_pid(a, "mig")
    resource.prlimit(pid, resource.RLIMIT_MEMLOCK, (SMALL, SMALL))     # the usual default
    virsh, caps, limit = held_at_perform_late(a, hooks, uid, "--parallel", "--parallel-connections", "2",
                                              "--zerocopy", "--bandwidth", "8", dest_uri=b.uri)
    out = virsh.wait()
    assert out.returncode == 0, out.stderr
    assert caps["zero-copy-send"] is True and caps["multifd"] is True
    assert limit == (SMALL, SMALL)        # CAP_IPC_LOCK: nothing is charged, nothing to raise
    moved = pyvirt.open(b.uri).lookupByUUIDString(uid)
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert running_copies([a, b], uid) == 1
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before + 1, 20, what="the guest's heartbeats to go on on B")


def test_unprivileged_qemu_may_lock_the_whole_guest_for_zerocopy(hooked_pair):
    a, b, hooks = hooked_pair
    _, dom, uid = start_guest(a, cmdline="dirty=96:80", memory_mib=MEMORY_MIB)   # never converges at 8 MiB/s
    pid = qemu_pid(a, "mig")
    guest = MEMORY_MIB << 20
    if have_cap(CAP_SYS_RESOURCE):
        resource.prlimit(pid, resource.RLIMIT_MEMLOCK, (SMALL, SMALL))   # the usual default
    before = read_memlock(pid)
    if before[1] == resource.RLIM_INFINITY or before[1] >= guest:
        pytest.skip("this machine's locked-memory limit already covers the guest")
    if not have_cap(CAP_SYS_RESOURCE):
        # no daemon here can raise another user's limit: libvirt's refusal, the source runs on
        r = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--parallel", "--zerocopy", "mig", b.uri],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines()[0] == (f"error: cannot limit locked memory of process {pid} to "
                                                    f"{guest}: Operation not permitted")
    else:
        virsh, caps, limit = held_at_perform_late(a, hooks, uid, "--parallel", "--zerocopy", "--bandwidth", "8",
                                                  dest_uri=b.uri)
        assert caps["zero-copy-send"] is True and limit == (guest, guest)
        dom.abortJob()
        out = virsh.wait()
        assert out.returncode == 1 and "canceled by client" in out.stderr
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and qemu_pid(a, "mig") == pid
    assert running_copies([a, b], uid) == 1 and qemu_pid(b, "mig") is None
    assert read_memlock(pid) == before
    assert capabilities(a, uid)["zero-copy-send"] is False


def test_zerocopy_refused_by_a_qemu_without_the_capability():
    """A QEMU that does not list zero-copy-send (a non-Linux build) is refused by name, as
    libvirt's qemuMigrationParamsCheck, before any capability is set (unit test of one layer)."""
    from pyvirt.drivers.qemu.migration import convergence
    from pyvirt.drivers.qemu.migration.params import MigrationRequest

    class Monitor:
        def __init__(self) -> None:
            self.calls: list[str] = []

        async def execute(self, name, args=None):
            self.calls.append(name)
            assert name == "query-migrate-capabilities"
            return [{"capability": c, "state": False} for c in ("multifd", "events", "xbzrle")]

        async def migrate_set_capabilities(self, caps):
            self.calls.append("migrate-set-capabilities")

    mon = Monitor()
    req = MigrationRequest(flags=pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_PARALLEL | pyvirt.VIR_MIGRATE_ZEROCOPY)
    with pytest.raises(pyvirt.libvirtError) as exc:
        asyncio.run(convergence.apply(mon, req, source=True, always={"events": True}))
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_ARGUMENT_UNSUPPORTED
    assert str(exc.value).endswith("Migration option 'zero-copy-send' is not supported by QEMU binary")
    assert mon.calls == ["query-migrate-capabilities"]


def test_memlock_raised_and_given_back_on_a_real_process(tmp_path):
    """raise_memlock / restore_memlock on a real process of our own user whose soft limit is
    below the guest's memory (its hard limit above: raising needs no privilege then), as the
    source daemon does to QEMU: raised to the guest's memory, remembered in the status, put
    back exactly (unit test of one layer: the domain object is a stand-in)."""
    from types import SimpleNamespace
    from pyvirt.drivers.qemu.migration import zerocopy

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    # like QEMU: no CAP_IPC_LOCK, so the kernel would charge its pinned pages to the limit
    child = subprocess.Popen(["setpriv", "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock", "sleep", "60"])
    try:
        wait_for(lambda: open(f"/proc/{child.pid}/comm").read().strip() == "sleep", 10,
                 what="setpriv to exec sleep")
        assert not zerocopy._can_lock_freely(child.pid)
        hard = read_memlock(child.pid)[1]
        if hard != resource.RLIM_INFINITY and hard < (4 << 20):
            pytest.skip("the hard locked-memory limit here is below 4 MiB")
        resource.prlimit(child.pid, resource.RLIMIT_MEMLOCK, (1 << 20, hard))
        saves = []
        obj = SimpleNamespace(name="zc", process=SimpleNamespace(pid=child.pid), live=SimpleNamespace(memory_kib=4096),
                              definition=None, extra={}, save_status=lambda: saves.append(dict(obj.extra)))
        zerocopy.raise_memlock(obj)
        assert read_memlock(child.pid) == (4 << 20, hard)
        assert saves and "pre_migration_memlock" in saves[0]
        zerocopy.raise_memlock(obj)                 # already enough: nothing changes, nothing saved
        assert read_memlock(child.pid) == (4 << 20, hard) and len(saves) == 1
        zerocopy.restore_memlock(obj)
        assert read_memlock(child.pid) == (1 << 20, hard)
        assert obj.extra == {}
    finally:
        child.kill()
        child.wait()
