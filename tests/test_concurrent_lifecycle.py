"""Concurrent lifecycle calls never leave a QEMU behind a "shut off".

Every mutating call takes the domain's job, and a job granted on a domain
removed from the list while the call waited is refused ("no domain with
matching uuid"), so a start queued behind an undefine never boots a QEMU for
an object nobody can see; the list removes objects by identity, so a stale
object never takes its replacement with it.  The storm test drives a real
pyvirtd with stock python3-libvirt threads, a bounded number of random
start/destroy/undefine/define/createXML calls each, then checks the host
invariants (tests/invariants.py).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid as uuidlib

import pytest

from guests import qemu_pids_under, tiny_xml
from invariants import assert_host, qemu_processes

SYSTEM_PYTHON = "/usr/bin/python3"

# Run under the system python3 with python3-libvirt: argv = URI, JSON job.  Each thread
# has its own connection and a seeded random sequence of calls on its domains; every
# outcome is printed as one JSON line (the error code and message, or 0).
_STORM = r'''
import json, random, sys, threading
import libvirt

libvirt.registerErrorHandler(lambda *_: None, None)
uri, job = sys.argv[1], json.loads(sys.argv[2])
OPS = ("start", "destroy", "undefine", "define", "createXML")
out_lock = threading.Lock()

def worker(index, domains):
    rng = random.Random(job["seed"] * 1000 + index)
    conn = libvirt.open(uri)
    try:
        for _ in range(job["ops"]):
            dom_spec = rng.choice(domains)
            op = rng.choice(OPS)
            code, message = 0, ""
            try:
                if op == "define":
                    conn.defineXML(dom_spec["persistent"])
                elif op == "createXML":
                    conn.createXML(dom_spec["live"], 0)
                else:
                    dom = conn.lookupByUUIDString(dom_spec["uuid"])
                    {"start": dom.create, "destroy": dom.destroy, "undefine": dom.undefine}[op]()
            except libvirt.libvirtError as exc:
                code, message = exc.get_error_code(), exc.get_error_message()
            with out_lock:
                print(json.dumps({"thread": index, "op": op, "uuid": dom_spec["uuid"],
                                  "code": code, "message": message}), flush=True)
    finally:
        conn.close()

threads = [threading.Thread(target=worker, args=(i, [job["domains"][i % len(job["domains"])]]))
           for i in range(job["threads"])]
for t in threads:
    t.start()
for t in threads:
    t.join()
'''

# What a losing racer may be told; anything else (INTERNAL_ERROR above all) is a defect.
_EXPECTED_CODES = {
    0,
    42,   # VIR_ERR_NO_DOMAIN: undefined meanwhile
    55,   # VIR_ERR_OPERATION_INVALID: already running / not running / already active / transient
}


_ROUNDS, _OPS = 3, 150        # calls per thread per round: bounded by count, not time


def _python3_libvirt() -> None:
    if subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")


def _domains(daemon, count: int) -> list[dict]:
    """Each domain: a persistent definition and a different live one for createXML
    (another memory size, so the test can see which one QEMU was given)."""
    specs = []
    for i in range(count):
        name, uuid = f"storm{i}", str(uuidlib.uuid4())
        serial = daemon.workdir / f"{name}.log"
        specs.append({"uuid": uuid, "name": name,
                      "persistent": tiny_xml(name, serial, uuid=uuid, memory_mib=64),
                      "live": tiny_xml(name, serial, uuid=uuid, memory_mib=80)})
    return specs


def _storm(daemon, specs: list[dict], threads: int, ops: int, seed: int) -> list[dict]:
    job = {"domains": specs, "threads": threads, "ops": ops, "seed": seed}
    proc = subprocess.run([SYSTEM_PYTHON, "-c", _STORM, daemon.uri, json.dumps(job)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"storm client failed:\n{proc.stderr[-3000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _final_cleanup(daemon, specs: list[dict]) -> None:
    import pyvirt
    conn = pyvirt.open(daemon.uri)
    try:
        for spec in specs:
            try:
                dom = conn.lookupByUUIDString(spec["uuid"])
                if dom.isActive():
                    dom.destroy()
                dom = conn.lookupByUUIDString(spec["uuid"])   # a transient one is gone now
            except pyvirt.libvirtError as exc:
                assert exc.get_error_code() == pyvirt.VIR_ERR_NO_DOMAIN, exc
                continue
            dom.undefine()
        assert conn.listAllDomains(0) == [], "domains left after the final destroy/undefine"
    finally:
        conn.close()


@pytest.mark.parametrize("threads,domains", [(2, 1), (4, 2)], ids=["2x1", "4x2"])
def test_lifecycle_storm_leaves_one_qemu_per_guest_and_none_after_destroy(pyvirtd, guests_built,
                                                                         threads, domains):
    _python3_libvirt()
    specs = _domains(pyvirtd, domains)
    # A few rounds with their own seeds: which interleavings a round hits depends on
    # timing, and before the fix most rounds (not all) left QEMUs behind.
    for seed in range(_ROUNDS):
        results = _storm(pyvirtd, specs, threads, ops=_OPS, seed=seed)
        assert len(results) == threads * _OPS
        unexpected = [r for r in results if r["code"] not in _EXPECTED_CODES]
        assert not unexpected, (f"round {seed}: calls failed with unexpected errors:\n"
                                + "\n".join(map(json.dumps, unexpected[:20])))
        booted = [r for r in results if r["op"] in ("start", "createXML") and r["code"] == 0]
        refused = [r for r in results if r["code"] != 0]
        assert booted and refused, "the storm should both boot guests and lose races"
        # Quiet now: at most one QEMU per guest, the daemon's view is /proc's.
        assert_host([pyvirtd])

    _final_cleanup(pyvirtd, specs)
    assert_host([pyvirtd])
    left = {u: pids for u, pids in qemu_processes().items() if u in {s["uuid"] for s in specs}}
    assert not left, f"QEMUs still running after the final destroy/undefine: {left}"
    assert not qemu_pids_under(pyvirtd.workdir)


def test_create_xml_over_a_persistent_domain_boots_the_given_xml(pyvirtd, guests_built):
    """libvirt: the XML given becomes the live definition; the persistent one is kept."""
    _python3_libvirt()
    spec = _domains(pyvirtd, 1)[0]
    script = r'''
import json, sys, libvirt
spec = json.loads(sys.argv[2])
conn = libvirt.open(sys.argv[1])
conn.defineXML(spec["persistent"])
dom = conn.createXML(spec["live"], 0)
live, inactive = dom.info()[1], conn.lookupByName(spec["name"]).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
report = {"live_kib": live, "persistent": dom.isPersistent(), "inactive_has_64": "65536" in inactive}
dom.destroy()
report["after_kib"] = dom.info()[1]
dom.undefine()
print(json.dumps(report))
'''
    from daemons import qemu_pid
    proc = subprocess.run([SYSTEM_PYTHON, "-c", script, pyvirtd.uri, json.dumps(spec)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report == {"live_kib": 80 * 1024, "persistent": 1, "inactive_has_64": True,
                      "after_kib": 64 * 1024}
    assert qemu_pid(pyvirtd, spec["name"]) is None
    assert_host([pyvirtd])


def test_create_xml_boots_the_given_xml_on_the_qemu_command_line(embed_uri, embed_root, tmp_path):
    """What QEMU is given is the createXML's XML (-m), not the persistent definition's."""
    import pyvirt
    conn = pyvirt.open(embed_uri)
    uuid = str(uuidlib.uuid4())
    serial = tmp_path / "s.log"
    conn.defineXML(tiny_xml("given", serial, uuid=uuid, memory_mib=64))
    dom = conn.createXML(tiny_xml("given", serial, uuid=uuid, memory_mib=80), 0)
    try:
        [pid] = qemu_processes()[uuid]
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        assert argv[argv.index(b"-m") + 1] == b"size=81920k"
        assert dom.isPersistent()
        assert "<memory unit='KiB'>65536</memory>" in dom.XMLDesc(pyvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        dom.destroy()
    dom.undefine()


# -- the list and the jobs, one layer at a time ------------------------------------------

def _def(name: str, uuid: str):
    from pyvirt import conf
    return conf.parse(f"<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid>"
                      f"<memory>65536</memory><os><type>hvm</type></os></domain>")


def test_domainlist_removes_by_identity_never_the_replacement():
    from pyvirt.drivers.domainlist import DomainList, DomainObj
    from pyvirt.errors import ErrorDomain
    uuid = str(uuidlib.uuid4())
    domains = DomainList(ErrorDomain.QEMU)
    stale = DomainObj(_def("d", uuid))
    domains.add(stale)
    domains.remove(stale)
    replacement = DomainObj(_def("d", uuid))
    domains.add(replacement)
    domains.remove(stale)                 # e.g. the stale object's QEMU exiting late
    assert domains.find_uuid(uuid) is replacement
    assert domains.by_uuid(uuidlib.UUID(uuid).bytes) is replacement
    assert replacement in domains and stale not in domains
    assert stale.removed and not replacement.removed
    domains.remove(replacement)
    assert domains.find_uuid(uuid) is None and len(domains) == 0


async def _queued(jobs, count: int, *tasks: asyncio.Task) -> None:
    """Until ``count`` calls wait for the job; fails if one of ``tasks`` finished instead
    (it did not wait for the job at all)."""
    while len(jobs._cond._waiters) < count:
        done = [t for t in tasks if t.done()]
        assert not done, f"{done[0].get_coro().__qualname__} finished without waiting for the job"
        await asyncio.sleep(0)


def test_job_granted_on_a_removed_domain_is_refused():
    """A start queued behind another call is refused once the domain was removed meanwhile."""
    from pyvirt.drivers.domainlist import DomainList
    from pyvirt.drivers.qemu.domainobj import QemuDomainObj
    from pyvirt.drivers.qemu.jobs import AsyncJob, JobKind
    from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError
    uuid = str(uuidlib.uuid4())

    async def main():
        domains = DomainList(ErrorDomain.QEMU)
        obj = QemuDomainObj(_def("gone", uuid), persistent=True)
        domains.add(obj)
        outcome = []

        async def start():
            try:
                async with obj.jobs.job(JobKind.MODIFY):
                    outcome.append("started")
            except libvirtError as exc:
                outcome.append((exc.get_error_code(), exc.get_error_message()))

        async with obj.jobs.job(JobKind.MODIFY):
            waiter = asyncio.create_task(start())
            await _queued(obj.jobs, 1, waiter)      # queued behind us
            domains.remove(obj)                     # undefined while the start waits
        await waiter
        [(code, message)] = outcome
        assert code == ErrorNumber.NO_DOMAIN
        assert f"no domain with matching uuid '{uuid}' (gone)" in message
        with pytest.raises(libvirtError) as info:
            await obj.jobs.begin_async(AsyncJob.RESTORE, timeout=1)
        assert info.value.get_error_code() == ErrorNumber.NO_DOMAIN
        domains.add(obj)                            # listed again: jobs are granted again
        async with obj.jobs.job(JobKind.MODIFY, timeout=1):
            pass
    asyncio.run(main())


def test_start_queued_behind_undefine_boots_nothing(embed_uri, embed_root, tmp_path):
    """The finding itself at the driver: undefine and start queued on one domain's job;
    the undefine wins, the start is refused and no QEMU is launched."""
    import pyvirt
    from pyvirt import aio
    from pyvirt.driver import ConnectionInfo
    from pyvirt.drivers.qemu import embed
    from pyvirt.drivers.qemu.connection import QemuConnection
    from pyvirt.drivers.qemu.jobs import JobKind
    from pyvirt.errors import ErrorNumber, libvirtError

    conn = pyvirt.open(embed_uri)
    uuid = str(uuidlib.uuid4())
    conn.defineXML(tiny_xml("raced", tmp_path / "s.log", uuid=uuid))
    drv = embed._DRIVERS[str(embed_root)]
    api = QemuConnection(ConnectionInfo(embed_uri), drv, uri=embed_uri)

    async def main():
        obj = drv.domains.find_uuid(uuid)
        ref = obj.ref()
        async with obj.jobs.job(JobKind.MODIFY):
            undefine = asyncio.create_task(api.domain_undefine_flags(ref, 0))
            await _queued(obj.jobs, 1, undefine)
            start = asyncio.create_task(api.domain_create_with_flags(ref, 0))
            await _queued(obj.jobs, 2, undefine, start)
        await undefine
        with pytest.raises(libvirtError) as info:
            await start
        assert info.value.get_error_code() == ErrorNumber.NO_DOMAIN
        assert obj.process is None and not obj.active
        assert drv.domains.find_uuid(uuid) is None
        # A new definition with the same UUID is a new object, untouched by the old one.
        again = await api.domain_define_xml_flags(tiny_xml("raced", tmp_path / "s.log", uuid=uuid), 0)
        fresh = drv.domains.find_uuid(uuid)
        assert fresh is not obj and not fresh.removed and again.uuid == obj.uuid_bytes
        drv.domains.remove(obj)
        assert drv.domains.find_uuid(uuid) is fresh
    aio.run(main())
    assert not qemu_pids_under(tmp_path)
    assert uuid not in qemu_processes()
    conn.lookupByUUIDString(uuid).undefine()


def test_destroy_waits_out_a_start_in_progress(embed_uri, embed_root, tmp_path):
    """libvirt's order: a destroy that comes while a start holds the job (QEMU not
    launched yet, nothing to kill) waits for it, then stops what it started."""
    import pyvirt
    from pyvirt import aio
    from pyvirt.driver import ConnectionInfo
    from pyvirt.drivers.qemu import embed
    from pyvirt.drivers.qemu.connection import QemuConnection
    from pyvirt.drivers.qemu.jobs import JobKind
    from pyvirt.enums import DomainState, ShutoffReason

    conn = pyvirt.open(embed_uri)
    uuid = str(uuidlib.uuid4())
    conn.defineXML(tiny_xml("slowstart", tmp_path / "s.log", uuid=uuid))
    drv = embed._DRIVERS[str(embed_root)]
    api = QemuConnection(ConnectionInfo(embed_uri), drv, uri=embed_uri)

    async def main():
        obj = drv.domains.find_uuid(uuid)
        ref = obj.ref()
        # Stand in for a start between taking the job and launching QEMU: the domain
        # has its id (active, as libvirt counts it) but no process yet.
        async with obj.jobs.job(JobKind.MODIFY):
            obj.id = 999
            destroy = asyncio.create_task(api.domain_destroy_flags(ref, 0))
            await _queued(obj.jobs, 1, destroy)
            obj.id = -1
            await drv.start(obj)
            assert obj.process is not None
        await destroy
        assert obj.process is None and (obj.state, obj.reason) == (DomainState.SHUTOFF, ShutoffReason.DESTROYED)
    aio.run(main())
    assert uuid not in qemu_processes()
    conn.lookupByUUIDString(uuid).undefine()


def test_destroy_and_define_jobs_during_asynchronous_jobs():
    """A destroy's job gets through any asynchronous job (it has already killed QEMU);
    a (re)definition through those of a running guest (migration out, save: it only
    changes the next boot), never through a restore or an incoming migration, which
    are starting a QEMU for the object."""
    from pyvirt.drivers.qemu.jobs import AsyncJob, JobKind, JobManager
    from pyvirt.errors import ErrorNumber, libvirtError

    async def main():
        for kind in AsyncJob:
            jobs = JobManager("dom")
            async with jobs.async_job(kind):
                async with jobs.job(JobKind.DESTROY, timeout=0.05):
                    pass
                if kind in (AsyncJob.MIGRATION_OUT, AsyncJob.SAVE):
                    async with jobs.job(JobKind.DEFINE, timeout=0.05):
                        pass
                else:
                    with pytest.raises(libvirtError) as info:
                        async with jobs.job(JobKind.DEFINE, timeout=0.05):
                            pass
                    assert info.value.get_error_code() == ErrorNumber.OPERATION_TIMEOUT
    asyncio.run(main())
