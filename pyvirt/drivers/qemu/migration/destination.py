"""The destination side of a migration: Prepare and Finish.

Prepare starts QEMU waiting for the stream (``-incoming defer``, then
``migrate-incoming``) inside an incoming-migration job that lasts until
Finish, and registers the new guest for autodestroy against the connection
that prepared it: if that connection goes away before Finish, the half-born
guest is killed.  Finish waits for QEMU to have the whole stream, persists
the definition if asked, and resumes the CPUs; if any of that fails, the
destination QEMU is killed and the error returned, so the source can be
resumed by Confirm and there is never a second running copy.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lxml import etree

from .... import conf, testhooks
from ....conf.xmlutil import render
from ....conf.names import check_name
from ....conf.status import AsyncJobType, JobPhase
from ....driver import HypervisorConnection
from ....refs import DomainRef
from ....enums import (DomainState, EventDefinedDetail, EventStartedDetail, EventStoppedDetail,
                       EventType, MigrateFlags, PausedReason, RunningReason, ShutoffReason)
from ....errors import ErrorDomain, ErrorNumber, FirstError, error, libvirtError
from ...domainlist import emit_lifecycle
from ..command import DOMAIN_TYPES
from ..jobs import AsyncJob, AsyncJobState
from .. import leases, savestream
from .. import save as savemod
from .. import process as procmod
from .cookie import (STEP_ACCEPTS, CookieCpu, CookieFlags, CookieGraphics, MigrationCookie, cookie_capabilities,
                     parse_cookie)
from . import convergence, nbd, postcopy, tls, tunnel
from .params import MigrationRequest, job_stats, parse_tcp_uri, qemu_tcp_uri

if TYPE_CHECKING:
    from ..domainobj import QemuDomainObj
    from ..driver import QemuDriver

log = logging.getLogger(__name__)

# What a Begin cookie may carry that Prepare understands (mandatory or not): libvirt
# 9.0's list, and allowReboot, which older libvirt sent.
PREPARE_ACCEPTS = STEP_ACCEPTS["prepare"] | CookieFlags.ALLOW_REBOOT
FINISH_ACCEPTS = STEP_ACCEPTS["finish"]

# Why an incoming guest went away before Finish, by driver and name (libvirt's
# qemuMigrationDstErrorSave/Report): a Finish that finds no such guest reports it,
# so the client learns the cause (libvirt's client prefers Finish's error over a
# Perform that failed because the destination died) rather than "no domain".
_INCOMING_ERRORS: "weakref.WeakKeyDictionary[Any, dict[str, libvirtError]]" = weakref.WeakKeyDictionary()


@dataclass
class Incoming:
    """An incoming migration between Prepare and Finish."""

    job: AsyncJobState
    request: MigrationRequest
    port: int | None
    created: bool          # the domain object did not exist before Prepare
    watcher: Any = None    # the task that cleans up if QEMU dies before Finish
    log_start: int = 0     # QEMU's log from here on is this incoming QEMU's own


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(drv: "QemuDriver", host: str) -> int:
    cfg = drv.cfg
    for port in range(cfg.migration_port_min, cfg.migration_port_max + 1):
        if port not in drv.migration_ports and _port_free(host, port):
            drv.migration_ports.add(port)
            return port
    raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                f"no free migration port in {cfg.migration_port_min}-{cfg.migration_port_max}")


def host_cookie(drv: "QemuDriver", d: conf.DomainDef) -> MigrationCookie:
    return MigrationCookie(name=d.name, uuid=d.uuid, hostname=socket.gethostname(),
                           hostuuid=drv.cfg.host_uuid)


# The migration capabilities of each QEMU, by its monitor (they never change while it runs).
_QEMU_CAPS: "weakref.WeakKeyDictionary[Any, tuple[str, ...]]" = weakref.WeakKeyDictionary()


async def migration_capabilities(obj: "QemuDomainObj", party: str) -> list[tuple[str, bool]]:
    """The <capabilities> part of a Begin (source) or Prepare (destination) cookie:
    what this guest's QEMU supports, as libvirt sends it."""
    process = obj.process
    if process is None:
        return []
    names = _QEMU_CAPS.get(process.monitor)
    if names is None:
        reply = await process.monitor.execute("query-migrate-capabilities")
        names = _QEMU_CAPS[process.monitor] = tuple(c["capability"] for c in reply or () if "capability" in c)
    return cookie_capabilities(names, party)


def _take_cookie_cpu(d: conf.DomainDef, cpu: CookieCpu) -> None:
    """Start the incoming QEMU with the CPU the source's QEMU runs, as libvirt's Prepare
    does with the cookie's <cpu> (the definition names the CPU as the user wrote it; the
    cookie has what it expanded to).  A vendor cannot be given to QEMU's -cpu here: then
    the definition's CPU stays."""
    if cpu.vendor is not None or (cpu.mode == "custom" and not cpu.model):
        return
    # through the definition's own reader: its checks of mode, match, check and policies
    d.orig_cpu = d.orig_cpu or d.cpu      # what the migratable XML shows (libvirt's origCPU)
    d.cpu = conf.domain.CPUDef.from_xml(etree.fromstring(render(cpu.to_node())))


def _graphics_for_cookie(d: conf.DomainDef) -> CookieGraphics | None:
    """The first SPICE display listening on an address or a network, so the source can
    tell SPICE clients where to go (libvirt's qemuMigrationCookieAddGraphics: VNC and
    socket listens have no seamless hand-over, so they are never sent)."""
    for g in d.devices.graphics:
        if g.type != "spice":
            continue
        first = g.listens[0] if g.listens else None
        if first is not None and first.type not in ("address", "network"):
            continue
        listen = (first.address if first is not None else None) or "127.0.0.1"   # spice_listen's default
        return CookieGraphics(type="spice", port=g.port, listen=listen,
                              tls_port=g.tls_port if g.tls_port > 0 else -1)
    return None


async def prepare(drv: "QemuDriver", conn: HypervisorConnection, req: MigrationRequest,
                  cookie_in: bytes | None, dom_xml: str, uri_in: str | None,
                  tunnelled: bool = False) -> tuple[bytes, Any]:
    """Start the destination QEMU waiting for the stream.

    Returns (cookie, uri_out), or with ``tunnelled`` (cookie, StreamSink): the
    stream then arrives through the RPC connection into a pipe QEMU reads.
    """
    tls.check_allowed(drv.cfg, req.flags)
    if req.flags & MigrateFlags.TLS:
        tls.required_dir(drv.cfg)       # refused before any QEMU starts
    incoming_def = conf.parse(dom_xml, DOMAIN_TYPES, "qemu", inactive=True)
    received = parse_cookie(cookie_in or b"", local_host_uuid=drv.cfg.host_uuid, expect_name=incoming_def.name,
                            expect_uuid=incoming_def.uuid, accepted=PREPARE_ACCEPTS)
    # the source's lease state, which Finish acquires with before the CPUs run
    lock_state = leases.cookie_state(drv, received.lockstate if received is not None else None)
    if received is not None and received.cpu is not None:
        _take_cookie_cpu(incoming_def, received.cpu)
    if req.dname:
        incoming_def.name = check_name(req.dname)      # it becomes file names here
    _INCOMING_ERRORS.get(drv, {}).pop(incoming_def.name, None)     # an older migration's
    async with drv._define_lock:
        obj = drv.domains.find_uuid(incoming_def.uuid)
        clash = drv.domains.find_name(incoming_def.name)
        if clash is not None and clash is not obj:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"domain '{incoming_def.name}' already exists with uuid {clash.uuid}")
        if obj is not None and obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        f"domain '{obj.name}' is already active on this host")
        created = obj is None
        if created:
            obj = drv._new_obj(incoming_def.copy(), persistent=False)
            drv.domains.add(obj)
    assert obj is not None
    try:
        job = await obj.jobs.begin_async(AsyncJob.MIGRATION_IN)
    except libvirtError:
        if created:
            drv.domains.remove(obj)
        raise
    listen = req.listen_address or drv.cfg.migration_address
    port: int | None = None
    try:
        # Recorded before QEMU exists, so the first status file already has it: a daemon
        # stopped at any point of Prepare leaves a record its successor kills the half by.
        obj.record_job(AsyncJobType.MIGRATION_IN, JobPhase.PREPARE, persist=False)
        nbd.check_flags(req.flags)
        if nbd.copies_storage(req.flags):      # images the source copies, created here if missing
            await nbd.precreate(obj, incoming_def, received.nbd if received is not None else None,
                                getattr(conn, "storage", None),
                                incremental=bool(req.flags & MigrateFlags.NON_SHARED_INC))
        await drv.start(obj, incoming="defer", live_def=incoming_def)
        log_start = savestream.log_size(drv, obj)
        obj.lock_state = lock_state
        mon = _incoming_qemu(obj).monitor      # a destroy may have come while it started
        # late-block-activate: take the disks (and their locks) only when resuming, as
        # libvirt does, so the source keeps them until the migration really finishes.
        # post-copy, multifd, compression: both sides (see convergence.py)
        await convergence.apply(mon, req, source=False, always={"events": True, "late-block-activate": True})
        if req.flags & MigrateFlags.TLS:
            await mon.migrate_set_parameters(**await tls.enable(mon, drv.cfg, listen=True, hostname=None))
        uri_host, uri_port = parse_tcp_uri(uri_in) if uri_in and not tunnelled else (None, None)
        if tunnelled:
            def stream_done(err: BaseException | None) -> None:
                if err is not None:
                    log.warning("%s: migration stream ended with: %s", incoming_def.name, err)
            sink = await tunnel.attach_destination(mon, stream_done)
        else:
            port = uri_port or pick_port(drv, listen)
            await mon.migrate_incoming(qemu_tcp_uri(listen, port))
        nbd_reply = await nbd.start_server(drv, obj, req, listen, pick_port)
        capabilities = await migration_capabilities(obj, "destination")
        _incoming_qemu(obj)
    except BaseException as exc:
        first = FirstError()
        first.record(exc)
        await _abandon(drv, obj, job, port, created, first)
        first.raise_if_any()
    obj.incoming = inc = Incoming(job, req, port, created, log_start=log_start)
    inc.watcher = asyncio.get_running_loop().create_task(_released_on_death(drv, obj, inc))
    drv.autodestroy.register(conn, obj.uuid)
    emit_lifecycle(drv.events, obj, EventType.STARTED, EventStartedDetail.MIGRATED)
    advertised = uri_host or drv.cfg.migration_host or listen
    live = obj.live
    cookie = host_cookie(drv, live)
    cookie.graphics = _graphics_for_cookie(live)
    cookie.nbd = nbd_reply
    cookie.capabilities = capabilities
    await testhooks.reach("prepare", obj.name)
    if tunnelled:
        return cookie.format(), sink
    return cookie.format(), qemu_tcp_uri(advertised, port)


async def _abandon(drv: "QemuDriver", obj: "QemuDomainObj", job: AsyncJobState, port: int | None,
                   created: bool, first: FirstError) -> None:
    """Undo a Prepare: kill the QEMU, end the job, forget a domain Prepare created."""
    try:
        if obj.process is not None:
            await drv.kill(obj, ShutoffReason.FAILED, EventStoppedDetail.FAILED, grace=1.0)
    except Exception as exc:
        first.record(exc)
    await nbd.discard_incoming(drv, obj)     # the images this migration created go with it
    if port is not None:
        drv.migration_ports.discard(port)
    obj.incoming = None
    obj.job_record = None        # never carried into a later start of this domain
    drv.autodestroy.unregister(obj.uuid)
    await obj.jobs.end_async(job)
    if created and not obj.active and not obj.persistent:
        drv.domains.remove(obj)


def _incoming_qemu(obj: "QemuDomainObj") -> Any:
    """The incoming QEMU, or libvirt's error when it went away (destroyed, killed)
    while a step awaited something else."""
    if obj.process is None or obj.live is None:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "domain is no longer running")
    return obj.process


async def _wait_incoming_done(obj: "QemuDomainObj", job: AsyncJobState) -> None:
    """Until QEMU has the whole stream: the source said Perform succeeded, so
    this is short; a failed or vanished stream is an error."""
    mon = _incoming_qemu(obj).monitor
    while True:
        status = (await mon.query_migrate()).get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            info = await mon.query_migrate()
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"incoming migration failed: {info.get('error-desc', status)}")
        if obj.process is None or not obj.process.alive:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "QEMU exited during incoming migration")
        try:
            await asyncio.wait_for(job.signals.get(), 1.0)
        except asyncio.TimeoutError:
            pass


def find_incoming(drv: "QemuDriver", dname: str) -> "QemuDomainObj":
    obj = drv.domains.find_name(dname)
    if obj is None or getattr(obj, "incoming", None) is None:
        saved = _INCOMING_ERRORS.get(drv, {}).pop(dname, None)
        if saved is not None:
            raise saved
        raise error(ErrorNumber.NO_DOMAIN, ErrorDomain.QEMU,
                    f"no domain with matching name '{dname}' is being migrated in")
    return obj  # type: ignore[return-value]


async def finish(drv: "QemuDriver", req: MigrationRequest, cookie_in: bytes | None, dname: str,
                 cancelled: bool, v3: bool = True) -> tuple[DomainRef, bytes]:
    """Complete the incoming side; return (domain, cookie) or raise with the guest killed."""
    received_ms = int(time.time() * 1000)      # the source's Perform cookie arrived now
    obj = find_incoming(drv, dname)
    await testhooks.reach("finish", obj.name)
    inc: Incoming = obj.incoming
    if inc is None:     # the guest stopped meanwhile, and its migration ended with it: say why
        find_incoming(drv, dname)
        raise error(ErrorNumber.NO_DOMAIN, ErrorDomain.QEMU,
                    f"no domain with matching name '{dname}' is being migrated in")
    flags = req.flags or inc.request.flags
    first = FirstError()
    if cancelled:
        await _abandon(drv, obj, inc.job, inc.port, inc.created, first)
        first.raise_if_any()
        raise error(ErrorNumber.MIGRATE_FINISH_OK, ErrorDomain.QEMU, "incoming migration cancelled")
    # Client-driven v2 stopped the source at the end of Perform: this is then the only
    # copy, kept whatever happens.  Peer-to-peer v2 (PEER2PEER reaches the destination's
    # flags, as in libvirt) keeps its paused source until Finish2 answers and resumes it
    # when Finish2 fails, so this half must go like v3's, or two copies would be left.
    only_copy = not v3 and not flags & MigrateFlags.PEER2PEER
    try:
        # Finish3 (and p2p Finish2) is recovered like Prepare (killed: the source resumes),
        # so only the Finish2 that keeps the only copy costs a status write before resuming.
        obj.record_job(AsyncJobType.MIGRATION_IN, JobPhase.FINISH3 if v3 else JobPhase.FINISH2, persist=only_copy)
        cookie = parse_cookie(cookie_in or b"", local_host_uuid=drv.cfg.host_uuid, expect_name=None,
                              expect_uuid=obj.uuid, accepted=FINISH_ACCEPTS, check_same_host=False)
        # post-copy: the guest runs here as soon as QEMU has switched, pages still arriving
        in_postcopy = bool(flags & MigrateFlags.POSTCOPY) and await postcopy.wait_switch(obj, inc.job)
        if not in_postcopy:
            await _wait_incoming_done(obj, inc.job)
        await nbd.stop_server(drv, obj)
        inc.job.stats.update(job_stats(await _incoming_qemu(obj).monitor.query_migrate()))
        if flags & MigrateFlags.PERSIST_DEST:
            _persist(drv, obj, cookie.persistent_xml if cookie else None)
        owner = drv.autodestroy.owner(obj.uuid)
        if owner is None or owner.client_gone:
            # The connection that prepared (and now finishes) the migration is gone: this
            # answer cannot reach the source, which then resumes its copy, so this one
            # must not run.  Checked last, right before resuming, to keep the window in
            # which a lost reply leaves two copies as small as it can be.
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        "migration in job: the connection that prepared it closed before Finish")
        if flags & MigrateFlags.PAUSED:
            obj.set_state(DomainState.PAUSED, PausedReason.USER)
        else:
            await drv.resume_cpus(obj, RunningReason.POSTCOPY if in_postcopy else RunningReason.MIGRATED)
        if in_postcopy:      # until the last page: a failure now keeps the guest here, paused
            await postcopy.wait_completed(drv, obj, inc.job)
            obj.set_state(DomainState.RUNNING, RunningReason.MIGRATED)     # every page is here now
        if flags & MigrateFlags.TLS and obj.process is not None:
            await tls.reset(obj.process.monitor)     # the stream is over: nothing keeps them
    except BaseException as exc:
        first.record(exc)
        if postcopy.kept_after_failure(obj):
            await _release(drv, obj, inc)      # paused POSTCOPY_FAILED, never killed: it has the CPUs' state
        elif not only_copy or not obj.active:
            await _abandon(drv, obj, inc.job, inc.port, inc.created, first)
        else:
            # client-driven v2: the source is already gone, this is the only copy.  Keep it
            # (paused) and hand it to the administrator instead of killing it.
            log.error("%s: v2 Finish failed; keeping the only copy paused: %s", obj.name, exc)
            await _release(drv, obj, inc)
        first.raise_if_any()
    await _release(drv, obj, inc)
    out = host_cookie(drv, obj.live or obj.definition)   # resumed: a QEMU gone since changes no answer
    out.statistics = _cookie_stats(inc.job.stats, cookie.statistics if cookie is not None else None, received_ms)
    return obj.ref(), out.format()


async def _released_on_death(drv: "QemuDriver", obj: "QemuDomainObj", inc: Incoming) -> None:
    """An incoming guest killed before Finish (autodestroy, a crash) must not keep
    its job and port: the domain would stay busy and the port range would drain."""
    await obj.stopped.wait()
    if obj.incoming is inc and not drv.closing:    # a stopping daemon keeps the job record
        log.info("%s: incoming migration ended by the guest stopping", obj.name)
        # QEMU's own last words say why (a stream that does not load names the device):
        # the source's user sees them, as libvirt's report of the destination's log.
        tail = procmod.log_tail(drv.cfg.log_path(obj.name), start=inc.log_start)
        detail = "migration in job: QEMU exited before Finish"
        _INCOMING_ERRORS.setdefault(drv, {})[obj.name] = error(
            ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, f"{detail}: {tail}" if tail else detail)
        await nbd.discard_incoming(drv, obj)
        await _release(drv, obj, inc)


async def _release(drv: "QemuDriver", obj: "QemuDomainObj", inc: Incoming) -> None:
    """The incoming migration is over (the guest stays): drop its port, job and autodestroy tie."""
    drv.autodestroy.unregister(obj.uuid)
    if inc.port is not None:
        drv.migration_ports.discard(inc.port)
    nbd.forget_incoming(drv, obj)
    obj.incoming = None
    obj.job_record = None
    obj.save_status()
    await obj.jobs.end_async(inc.job)


def _persist(drv: "QemuDriver", obj: "QemuDomainObj", persistent_xml: str | None) -> None:
    """VIR_MIGRATE_PERSIST_DEST: keep the definition (the source's, from the cookie)."""
    was_persistent, old_def = obj.persistent, obj.definition
    try:
        # The cookie's definition is migratable XML (the default devices left out): it is
        # completed as a new definition, as libvirt parses it, so a later boot here builds
        # the same machine.
        new = (savemod.as_received(conf.parse(persistent_xml, DOMAIN_TYPES, "qemu", inactive=True),
                                   drv.cfg.emulator) if persistent_xml else obj.live.copy())
        new.clear_live_state()
        new.name = obj.live.name
        obj.definition, obj.persistent = new, True
        drv.save_config(obj)
    except (libvirtError, OSError) as exc:
        obj.definition, obj.persistent = old_def, was_persistent
        raise error(ErrorNumber.MIGRATE_PERSIST_FAILED, ErrorDomain.QEMU,
                    f"cannot make '{obj.name}' persistent: {exc}") from exc
    emit_lifecycle(drv.events, obj, EventType.DEFINED,
                   EventDefinedDetail.UPDATED if was_persistent else EventDefinedDetail.ADDED)


def _cookie_stats(stats: dict[str, Any], source: dict[str, int] | None, received_ms: int) -> dict[str, int]:
    """The Finish cookie's figures.  As libvirt's destination, the job is the source's
    (its Perform cookie's figures, when it sent some), timed here: the delta between
    the hosts' clocks from when the cookie was sent, the time elapsed since the job
    started and the downtime since the guest stopped (libvirt's Confirm takes the
    delta and the downtime)."""
    figures = {k: int(v) for k, v in stats.items() if isinstance(v, int)}
    if not source:
        return figures
    figures.update(source)
    now = int(time.time() * 1000)
    if source.get("sent"):
        figures["delta"] = received_ms - source["sent"]
    if 0 < source.get("started", 0) <= now:
        figures["time_elapsed"] = now - source["started"]
    if 0 < source.get("stopped", 0) <= now:
        figures["downtime"] = now - source["stopped"]
    return figures