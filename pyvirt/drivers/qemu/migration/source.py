"""The source side of a migration: Begin, Perform, Confirm.

Begin opens an outgoing-migration job that lasts until Confirm (v3) and
records whether the guest was running.  Perform streams the guest to the
destination QEMU and, when QEMU reports completion, marks the source paused
for migration itself (never by waiting for QEMU's STOP event) and releases
its disk leases.  If Perform fails, the source is put back as it was and the
job ends there (the client skips Confirm).  Confirm either stops the source
(migrated) or resumes it (cancelled): exactly one copy keeps running.

The guest can stop at any await (destroyed, its QEMU killed, saved by a call
that had the job first): every step re-checks it is still running once it
holds the job and after each await that can let QEMU go, and answers as
libvirt does ("domain is not running").  A guest that stops between the
calls of a migration ends its job there and then (libvirt's
qemuProcessCleanupMigrationJob): the client's next call, or a start, never
finds the domain busy with a migration of a QEMU that is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .... import conf, testhooks
from ....conf.status import AsyncJobType, JobPhase
from ....driver import HypervisorConnection
from ....refs import DomainRef
from ....enums import (DomainState, EventStoppedDetail, EventType, EventUndefinedDetail, MigrateFlags,
                       PausedReason, RunningReason, ShutoffReason)
from ....errors import ErrorDomain, ErrorNumber, FirstError, error
from ...domainlist import emit_lifecycle, not_running
from ..command import DOMAIN_TYPES
from ..jobs import AsyncJob, AsyncJobState
from .. import leases, save
from .cookie import STEP_ACCEPTS, CookieCpu, CookieFlags, CookieLockState, MigrationCookie, parse_cookie
from . import converge, convergence, nbd, postcopy, tls, zerocopy
from .. import blockjob
from .destination import host_cookie, migration_capabilities
from .params import MigrationRequest, bandwidth_bytes, job_stats, parse_tcp_uri, qemu_tcp_uri

if TYPE_CHECKING:
    from ..domainobj import QemuDomainObj
    from ..driver import QemuDriver

log = logging.getLogger(__name__)

PERFORM_ACCEPTS = STEP_ACCEPTS["perform"]
CONFIRM_ACCEPTS = STEP_ACCEPTS["confirm"]
POLL_SECONDS = 1.0    # a safety net only: QEMU's MIGRATION events drive the loop


@dataclass
class Outgoing:
    """An outgoing migration between Begin and Confirm."""

    job: AsyncJobState
    request: MigrationRequest
    was_running: bool
    owner: HypervisorConnection | None = None
    close_hook: Callable[[], Any] | None = None
    # libvirt's phases: begin3 -> perform3 (perform2 without Begin) -> perform3_done -> confirm3[_cancelled]
    phase: JobPhase = JobPhase.BEGIN3
    dest_hostname: str | None = None
    # A call (Begin, Perform, Confirm) is working on it: that call, not the
    # guest-stopped watcher, ends the job if the guest stops meanwhile.
    in_call: bool = False
    watcher: "asyncio.Task[None] | None" = None
    storage: "nbd.OutgoingStorage | None" = None    # the disk mirrors of a non-shared-storage migration
    flags: int = 0                  # Begin's and Perform's together
    postcopy: bool = False          # QEMU switched to post-copy: the source is never resumed
    policy: "converge.Policy | None" = None     # pyvirt's convergence policy, when it watches


def _enter(obj: "QemuDomainObj", out: Outgoing, phase: JobPhase, persist: bool = True) -> None:
    """Move to ``phase``, persisted first: a restarted daemon resolves the migration by it.
    (``persist=False``: the next status write carries it, see QemuDomainObj.record_job.)"""
    out.phase = phase
    obj.record_job(AsyncJobType.MIGRATION_OUT, phase, was_running=out.was_running, persist=persist)


def _active(drv: "QemuDriver", dom: DomainRef) -> "QemuDomainObj":
    obj = drv.domains.by_ref(dom)
    _check_running(obj)  # type: ignore[arg-type]
    return obj  # type: ignore[return-value]


def _check_running(obj: "QemuDomainObj") -> None:
    """libvirt's virDomainObjCheckActive, also once the job is held: the guest may
    have stopped while the call waited for it."""
    if not obj.active or obj.process is None or obj.live is None:
        raise not_running(obj)


def _checked_xml(drv: "QemuDriver", obj: "QemuDomainObj", xmlin: str | None) -> conf.DomainDef:
    """The definition to send: the running one, or an application's, if its ABI matches.
    An application's XML is usually migratable XML (``dumpxml --migratable``, libvirtd's
    own), which leaves out the default devices: it is compared as the destination will
    complete it, as libvirt parses it before its check."""
    live = obj.live
    if live is None:
        raise not_running(obj)
    if not xmlin:
        return live
    new = conf.parse(xmlin, DOMAIN_TYPES, "qemu", inactive=True)
    # as libvirt's Begin: the completed definition is checked and sent (as migratable XML,
    # which leaves the defaults out again); the bare one would say 'no USB controller'
    new = save.as_received(new, drv.cfg.emulator)
    conf.ensure_abi_stable(live, new)
    return new


async def begin(drv: "QemuDriver", conn: HypervisorConnection, dom: DomainRef, req: MigrationRequest,
                xmlin: str | None) -> tuple[bytes, str]:
    obj = _active(drv, dom)
    tls.check_allowed(drv.cfg, req.flags)
    await testhooks.reach("begin-job", obj.name)
    job = await obj.jobs.begin_async(AsyncJob.MIGRATION_OUT)
    try:
        _check_running(obj)      # it may have stopped while we waited for the job
        xml_def = _checked_xml(drv, obj, xmlin or req.dest_xml)
        nbd.check_flags(req.flags)
        blockjob.refuse_if_any(obj)
        copied = nbd.disks_to_copy(obj.live, req.flags, req.migrate_disks)
        nbd.check_safe(obj.live, req.flags, req.migrate_disks)
        out = Outgoing(job, req, was_running=obj.state == DomainState.RUNNING, in_call=True)
        _own(obj, out, conn, drv)
        obj.outgoing = out
        _watch_stop(drv, obj, out)
        _enter(obj, out, JobPhase.BEGIN3, persist=False)    # nothing to undo yet
    except BaseException:
        await obj.jobs.end_async(job)
        raise
    try:
        await testhooks.reach("begin", obj.name)
        _check_running(obj)
        cookie = host_cookie(drv, obj.live)
        cookie.nbd = await nbd.begin_cookie(obj, copied)     # the disks to copy, and their sizes
        cookie.capabilities = await migration_capabilities(obj, "source")
        cookie.cpu = _expanded_cpu(obj.live)
        # the lease state the destination takes over (the saved one if paused), if any
        state = await leases.inquire(drv, obj)
        if state:
            cookie.lockstate = CookieLockState(drv.locks.name, state)
    except BaseException:
        await _end(obj, out)
        raise
    out.in_call = False
    cookie.mandatory = CookieFlags.LOCKSTATE   # as libvirt: the lock manager's state is mandatory
    return cookie.format(), xml_def.format(secure=True, migratable=True)


def _expanded_cpu(live: conf.DomainDef) -> CookieCpu | None:
    """The guest CPU for the Begin cookie, when the running one is not the defined one
    (it came expanded in an incoming cookie): libvirt sends it whenever it has an
    origCPU, and its Prepare starts QEMU with it."""
    cpu = live.cpu
    if live.orig_cpu is None or cpu is None:
        return None
    return CookieCpu(mode=cpu.mode, match=cpu.match, check=cpu.check, migratable=cpu.migratable,
                     model=cpu.model, fallback=cpu.fallback, features=tuple(cpu.features))


def _watch_stop(drv: "QemuDriver", obj: "QemuDomainObj", out: Outgoing) -> None:
    """End the job if the guest stops while no call of its migration runs."""
    stopped = obj.stopped         # this QEMU's: a later start makes a new one

    async def watch() -> None:
        await stopped.wait()
        if obj.outgoing is out and not out.in_call and not drv.closing:
            log.info("%s: outgoing migration ended by the guest stopping (phase %s)", obj.name, out.phase.value)
            await _end(obj, out)
    out.watcher = asyncio.get_running_loop().create_task(watch(), name=f"migration-out-stop-{obj.name}")


def _own(obj: "QemuDomainObj", out: Outgoing, conn: HypervisorConnection, drv: "QemuDriver") -> None:
    """If the client that began the migration goes away before Confirm, clean up."""
    async def on_close() -> None:
        if obj.outgoing is out:
            log.warning("%s: the client of its migration disconnected in phase %s", obj.name, out.phase.value)
            await _cleanup_abandoned(drv, obj, out)
    out.owner, out.close_hook = conn, on_close
    conn.add_close_hook(on_close)


async def _cleanup_abandoned(drv: "QemuDriver", obj: "QemuDomainObj", out: Outgoing) -> None:
    if out.phase is JobPhase.PERFORM3_DONE:
        # The destination may already run the guest: resuming here could make two.
        # Leave the source paused for the administrator, as libvirt does.
        log.error("%s: migration abandoned after the data was sent; leaving the source paused", obj.name)
    elif out.was_running and obj.state == DomainState.PAUSED and obj.process is not None:
        await drv.resume_cpus(obj, RunningReason.MIGRATION_CANCELED)
    await _end(obj, out)


async def _end(obj: "QemuDomainObj", out: Outgoing) -> None:
    out.in_call = False
    if out.watcher is not None and out.watcher is not asyncio.current_task():
        out.watcher.cancel()
    obj.clear_job_record()
    if out.owner is not None and out.close_hook is not None:
        out.owner.remove_close_hook(out.close_hook)
    if obj.outgoing is out:
        obj.outgoing = None
    await obj.jobs.end_async(out.job)


async def perform(drv: "QemuDriver", conn: HypervisorConnection, dom: DomainRef, req: MigrationRequest,
                  cookie_in: bytes | None, uri: str | None, v3: bool = True,
                  peer: HypervisorConnection | None = None, tunnel: Any = None) -> bytes:
    """Send the guest to the destination's QEMU; return the cookie for Finish.

    ``peer`` is the destination connection of a peer-to-peer migration: if it
    breaks, the migration is cancelled.  ``tunnel`` carries the stream through
    that connection instead of a QEMU-to-QEMU socket.
    """
    obj = drv.domains.by_ref(dom)
    out: Outgoing | None = obj.outgoing  # type: ignore[attr-defined]
    if out is not None and out.phase is not JobPhase.BEGIN3:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                    f"domain '{obj.name}' is already migrating (phase {out.phase.value})")
    if not obj.active or obj.process is None:  # type: ignore[attr-defined]
        if out is not None:     # Begin's job, of a guest gone since: it ends here, as libvirt's
            await _end(obj, out)  # type: ignore[arg-type]
        raise not_running(obj)
    if out is None:   # v2, or v3 without Begin's job: the job starts here
        if v3 and req.flags & MigrateFlags.CHANGE_PROTECTION:
            # Begin's job is gone (the guest stopped, perhaps started again since):
            # this Perform belongs to a migration that is over.
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, f"domain '{obj.name}' is not being migrated")
        tls.check_allowed(drv.cfg, req.flags)       # v2 has no Begin to refuse it
        job = await obj.jobs.begin_async(AsyncJob.MIGRATION_OUT)
        out = Outgoing(job, req, was_running=obj.state == DomainState.RUNNING, in_call=True)
        try:
            _check_running(obj)  # type: ignore[arg-type]
        except BaseException:
            await obj.jobs.end_async(job)
            raise
        _own(obj, out, conn, drv)  # type: ignore[arg-type]
        obj.outgoing = out
        _watch_stop(drv, obj, out)  # type: ignore[arg-type]
    out.in_call = True
    out.was_running = obj.state == DomainState.RUNNING
    _enter(obj, out, JobPhase.PERFORM3 if v3 else JobPhase.PERFORM2)
    await testhooks.reach("perform-early", obj.name)
    flags = out.flags = req.flags | out.request.flags
    convergence.merge(out.request, req)
    out.request.tls_destination = req.tls_destination or out.request.tls_destination
    out.request.migrate_disks = req.migrate_disks or out.request.migrate_disks
    out.request.disks_uri = req.disks_uri or out.request.disks_uri
    try:
        cookie = parse_cookie(cookie_in or b"", local_host_uuid=drv.cfg.host_uuid, expect_name=None,
                              expect_uuid=obj.uuid, accepted=PERFORM_ACCEPTS)
        if tunnel is not None:
            qemu_uri = None
        else:
            target = uri or req.uri
            if not target:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                            "migration URI is missing: the destination did not set one")
            host, port = parse_tcp_uri(target)
            if not host or not port:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                            f"migration URI '{target}' needs a host and a port")
            qemu_uri = qemu_tcp_uri(host, port)
        hook = None
        if peer is not None:
            def hook() -> None:
                out.job.signal("peer-gone")
            peer.add_close_hook(hook)
        try:
            await _run(drv, obj, out, cookie, qemu_uri, flags, req.bandwidth, tunnel)
        finally:
            if peer is not None:
                peer.remove_close_hook(hook)
    except BaseException as exc:
        first = FirstError()
        first.record(exc)
        await _restore_after_failure(drv, obj, out, first)
        await _end(obj, out)
        first.raise_if_any()
    out.in_call = False
    stats = dict(out.job.stats)
    # The data is all sent: a source QEMU gone just now changes nothing for the destination.
    result = host_cookie(drv, obj.live or obj.definition)
    result.statistics = _cookie_stats(out.job, stats)
    if flags & MigrateFlags.PERSIST_DEST:
        result.mandatory = CookieFlags.PERSISTENT
        result.persistent_xml = (req.persistent_xml or
                                 (obj.definition if obj.persistent else obj.live).format(secure=True, migratable=True))
    if not v3:   # v2 has no Confirm: the source goes away now
        await confirm(drv, dom, req, None, cancelled=False)
    return result.format()


async def _run(drv: "QemuDriver", obj: "QemuDomainObj", out: Outgoing, cookie: MigrationCookie | None,
               uri: str | None, flags: int, bandwidth: int, tunnel: Any = None) -> None:
    if obj.process is None:     # gone while Perform began (a hook, the cookie): nothing was sent
        raise _gone()
    mon = obj.process.monitor
    if cookie is not None and cookie.graphics is not None and cookie.graphics.type == "spice":
        g = cookie.graphics
        hostname = g.listen if g.listen not in ("0.0.0.0", "::", "") else cookie.hostname
        out.dest_hostname = hostname
        await mon.client_migrate_info("spice", hostname, port=g.port if g.port > 0 else None,
                                      tls_port=g.tls_port if g.tls_port > 0 else None,
                                      cert_subject=g.tls_subject)
    speed = bandwidth or obj.migrate_speed
    storage = None
    if nbd.copies_storage(flags):
        nbd.check_flags(flags)
        nbd_server = nbd.nbd_target(uri, cookie.nbd if cookie is not None else None,
                                    out.request.disks_uri, flags)
        storage = out.storage = nbd.OutgoingStorage(
            obj, nbd.disks_to_copy(obj.live, flags, out.request.migrate_disks), flags, speed)
    out.request.flags = flags
    policy_caps, policy_params = await _policy_for(drv, obj, out, mon, flags)
    await convergence.apply(mon, out.request, source=True,
                            always={"events": True,
                                    # the mirrors are cancelled at this pause (see nbd.py)
                                    "pause-before-switchover": storage is not None, **policy_caps},
                            extra=policy_params)
    params: dict[str, Any] = {"max_bandwidth": bandwidth_bytes(speed)}
    if obj.migrate_downtime is not None:
        params["downtime_limit"] = obj.migrate_downtime
    encrypted = bool(flags & MigrateFlags.TLS)
    if encrypted:
        params.update(await tls.enable(mon, drv.cfg, listen=False,
                                       hostname=out.request.tls_destination or _tls_hostname(uri)))
    else:
        params.update(tls.DISABLED)
    try:
        await mon.migrate_set_parameters(**params)
        if zerocopy.wanted(flags):
            zerocopy.raise_memlock(obj)     # pages in flight stay pinned: QEMU may lock the whole guest
        if storage is not None:
            await storage.start(nbd_server, drv.security)
            await storage.wait_ready(out.job)
        await _transfer(drv, obj, out, mon, uri, flags, tunnel)
    except BaseException:
        if storage is not None:
            await storage.abort()       # the source goes on with its own images
        # The source goes on: no credentials left in it.  (After a success its QEMU
        # is stopped at Confirm; a Confirm that cancels resets them there.)
        if encrypted and obj.process is not None and obj.process.monitor is mon:
            await tls.reset(mon)
        if obj.process is not None and obj.process.monitor is mon and not out.postcopy:
            await convergence.reset_quietly(mon)
            zerocopy.restore_memlock(obj)
        raise


async def _policy_for(drv: "QemuDriver", obj: "QemuDomainObj", out: Outgoing, mon: Any,
                      flags: int) -> tuple[dict[str, bool], dict[str, Any]]:
    """pyvirt's convergence policy for this migration, if it is on (its parameter, else the daemon's default)."""
    settings = drv.cfg.converge
    if not converge.wanted(settings, out.request.converge) or not flags & MigrateFlags.LIVE:
        return {}, {}
    out.policy = converge.Policy(settings, obj.name, mon, out.job.stats, obj.live.memory_kib * 1024, flags)
    return converge.start_capabilities(settings, flags)


def _tls_hostname(uri: str | None) -> str | None:
    """The name the destination's certificate must carry: the host QEMU connects to
    (libvirt sets it so)."""
    return parse_tcp_uri(uri)[0] if uri else None


async def _transfer(drv: "QemuDriver", obj: "QemuDomainObj", out: Outgoing, mon: Any, uri: str | None,
                    flags: int, tunnel: Any) -> None:
    if not flags & MigrateFlags.LIVE and obj.state == DomainState.RUNNING:
        await drv.pause_cpus(obj, PausedReason.MIGRATION)
    obj.expect_run_change = True     # QEMU stops the CPUs itself at the end: we set the state
    try:
        if tunnel is not None:
            await tunnel.start_source(mon)          # QEMU writes into a pipe; a pump feeds the stream
            await mon.migrate(tunnel.qemu_uri)
        else:
            await mon.migrate(uri)
        await _wait(obj, out, tunnel)
    except BaseException:
        if tunnel is not None:
            await tunnel.abort()                    # close pipe and stream first: QEMU must not block
        raise
    finally:
        obj.expect_run_change = False
    # Completed: QEMU has stopped the CPUs.  Say so explicitly (one status write with
    # the phase: the guest's downtime runs now), release leases.
    _enter(obj, out, JobPhase.PERFORM3_DONE, persist=False)
    reason = PausedReason.POSTCOPY if out.postcopy else PausedReason.MIGRATION
    if obj.state != DomainState.PAUSED:
        drv.mark_paused(obj, reason)
    else:
        obj.set_state(DomainState.PAUSED, reason)
    await drv.release_leases(obj)


def _cookie_stats(job: AsyncJobState, stats: dict[str, Any]) -> dict[str, int]:
    """The job's figures for the Perform cookie, with the wall-clock times libvirt writes
    (ms since the epoch): when the job started, when the guest stopped (now, as QEMU has
    just completed) and when the cookie is sent, from which a libvirt destination
    reckons the time the job took and the clock difference between the hosts."""
    now = int(time.time() * 1000)
    figures = {k: int(v) for k, v in stats.items() if isinstance(v, int)}
    return {"started": now - job.elapsed_ms, "stopped": now, "sent": now, **figures}


def _gone() -> Exception:
    """libvirt's answer when QEMU went away while a step was using it."""
    return error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "domain is no longer running")


async def _wait(obj: "QemuDomainObj", out: Outgoing, tunnel: Any = None) -> None:
    """Follow QEMU until the migration completes, acting on job signals meanwhile."""
    if obj.process is None:
        raise _gone()
    mon = obj.process.monitor
    job = out.job
    if tunnel is not None:
        tunnel.on_failure(lambda exc: job.signal("tunnel-failed", exc))
    while True:
        try:
            name, value = await asyncio.wait_for(job.signals.get(), POLL_SECONDS)
        except asyncio.TimeoutError:
            name, value = "poll", None
        if name in ("qmp-event", "poll"):
            if name == "qmp-event" and value[0] != "MIGRATION":
                continue
            info = await mon.query_migrate()
            job.stats.update(job_stats(info))
            status = info.get("status")
            if status == "active" and info.get("ram", {}).get("transferred"): await testhooks.reach("perform-late", obj.name)  # noqa: E701
            if out.storage is not None and status in ("active", "pre-switchover"):
                await out.storage.refresh_stats(job.stats)
            if status == "pre-switchover" and out.storage is not None:
                await out.storage.switchover(job)     # every copy complete, the source's images kept
                await mon.execute("migrate-continue", {"state": "pre-switchover"})
                continue
            if out.policy is not None:
                await out.policy.observe(info)      # may step downtime, throttle, post-copy; or cancel
            if status in postcopy.POSTCOPY_STATES:
                out.postcopy = True     # the guest runs on the destination now; Finish resumes it there
                return
            if status == "completed":
                if tunnel is not None:
                    await tunnel.finish()           # every byte delivered and acknowledged
                return
            if status == "failed":
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                            f"migration out job: {info.get('error-desc', 'unexpectedly failed')}")
            if status == "cancelled":
                raise error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.QEMU, "migration out job: canceled by client")
        elif name == "abort":
            await mon.migrate_cancel()
        elif name == "speed":
            await mon.migrate_set_parameters(max_bandwidth=bandwidth_bytes(int(value)))
        elif name == "downtime":
            await mon.migrate_set_parameters(downtime_limit=int(value))
        elif name == "peer-gone":
            await _cancel_quietly(mon, tunnel)
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "Lost connection to destination host")
        elif name == "tunnel-failed":
            await _cancel_quietly(mon, tunnel)
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, f"migration tunnel failed: {value}")
        elif name == "qemu-gone":
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        "migration out job: QEMU exited during the migration")


async def _cancel_quietly(mon: Any, tunnel: Any) -> None:
    """Stop the transfer (the tunnel first, so QEMU never blocks on it); the
    reason we are stopping stays the error reported."""
    try:
        if tunnel is not None:
            await tunnel.abort()
        await mon.migrate_cancel()
    except Exception as exc:
        log.warning("cancelling the migration failed too: %s", exc)


async def _restore_after_failure(drv: "QemuDriver", obj: "QemuDomainObj", out: Outgoing,
                                 first: FirstError) -> None:
    """Put the source back as it was before Perform (running if it ran)."""
    if obj.process is None:
        return
    try:
        status = (await obj.process.monitor.query_migrate()).get("status")
        if out.postcopy or status in postcopy.POSTCOPY_STATES:
            out.postcopy = True
            postcopy.source_failed(drv, obj)      # never resumed: part of its memory is gone
            return
        if status in ("active", "setup", "pre-switchover", "device"):
            await obj.process.monitor.migrate_cancel()
        running = (await obj.process.monitor.query_status()).get("running")
        if out.was_running and not running:
            await drv.resume_cpus(obj, RunningReason.MIGRATION_CANCELED)
        elif out.was_running:
            obj.set_state(DomainState.RUNNING, RunningReason.MIGRATION_CANCELED)
    except Exception as exc:   # cleanup errors never replace the first one
        first.record(exc)


async def confirm(drv: "QemuDriver", dom: DomainRef, req: MigrationRequest, cookie_in: bytes | None,
                  cancelled: bool) -> None:
    """Finish the source side: stop it (migrated) or resume it (cancelled)."""
    obj = drv.domains.by_ref(dom)
    out: Outgoing | None = getattr(obj, "outgoing", None)
    if out is None:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                    f"domain '{obj.name}' is not being migrated out")
    out.in_call = True
    await testhooks.reach("confirm", obj.name)
    flags = req.flags | out.request.flags
    first = FirstError()
    try:
        # Stopping a migrated source is not persisted: a daemon dying meanwhile finds
        # perform3_done and leaves the guest paused, which is safe, and every
        # migration is spared a status write.
        _enter(obj, out, JobPhase.CONFIRM3_CANCELLED if cancelled else JobPhase.CONFIRM3, persist=cancelled)
        parse_cookie(cookie_in or b"", local_host_uuid=drv.cfg.host_uuid, expect_name=None,
                     expect_uuid=obj.uuid, accepted=CONFIRM_ACCEPTS, check_same_host=False)
        if not cancelled:
            if out.postcopy:
                await postcopy.source_completed(obj, out.job)
            await drv.kill(obj, ShutoffReason.MIGRATED, EventStoppedDetail.MIGRATED, grace=1.0)
            if flags & MigrateFlags.UNDEFINE_SOURCE and obj.persistent:
                drv.remove_config(obj)
                obj.persistent = False
                emit_lifecycle(drv.events, obj, EventType.UNDEFINED, EventUndefinedDetail.REMOVED)
                drv.domains.remove(obj)
        elif obj.process is not None:
            if flags & MigrateFlags.TLS:
                await tls.reset(obj.process.monitor)
            zerocopy.restore_memlock(obj)
            if out.postcopy:
                postcopy.source_failed(drv, obj)
            elif out.was_running and obj.state == DomainState.PAUSED:
                await drv.resume_cpus(obj, RunningReason.MIGRATION_CANCELED)
    except BaseException as exc:
        first.record(exc)
    await _end(obj, out)
    first.raise_if_any()
