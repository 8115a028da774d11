"""The QEMU driver's host state and domain lifecycle.

:class:`QemuDriver` owns one host's domains under one root directory: it
starts guests (in the phases of :mod:`.process`), follows their QMP events,
notices at once when a QEMU exits and cleans up in one place
(:meth:`QemuDriver._process_gone`), and on start-up adopts every QEMU a
previous manager left running.  The per-client API lives in
:mod:`.connection`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any, Mapping

from ... import conf, locking, security
from ...conf.fileutil import write_atomic
from ...driver import QEMU_MONITOR_EVENT, DomainEvent, EventBus
from ...enums import reason_from_name, reason_name
from ...enums import (DomainState, EventID, EventResumedDetail, EventShutdownDetail, EventStartedDetail,
                      EventStoppedDetail, EventSuspendedDetail, EventType, PausedReason,
                      RunningReason, ShutdownReason, ShutoffReason)
from ...errors import ErrorDomain, ErrorNumber, FirstError, error, libvirtError
from ..autodestroy import AutoDestroy
from ..domainlist import DomainList, emit_lifecycle
from . import process as procmod
from . import qemu_events, reboot, recovery
from . import stats
from . import netsource, storage_source
from . import tap as tapmod
from . import hotplug, leases, machines, netlink, postparse
from . import blockjob
from .command import DOMAIN_TYPES, CommandContext, assign_aliases, build_argv
from .config import QemuConfig
from .domainobj import MonitorHandler, QemuDomainObj
from .jobs import JobKind
from .secrets import SecretPlan

log = logging.getLogger(__name__)


# The status XML item holding what the security manager labelled (JSON).
_LABELS = "seclabels"

# Why we stop a QEMU without it being a shutdown anyone should hear of.
# (a snapshot's halt or revert stops QEMU as libvirt does: STOPPED/FROM_SNAPSHOT alone)
_QUIET_SHUTDOWN = frozenset({ShutoffReason.SAVED, ShutoffReason.FROM_SNAPSHOT})
# Why the CPUs stopped -> the SUSPENDED event's detail (libvirt's)
_SUSPENDED_DETAIL = {PausedReason.MIGRATION: EventSuspendedDetail.MIGRATED,
                     PausedReason.POSTCOPY: EventSuspendedDetail.POSTCOPY,
                     PausedReason.POSTCOPY_FAILED: EventSuspendedDetail.POSTCOPY_FAILED}


def kvm_available() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class QemuDriver:
    """One host: its configuration, domains, events and running QEMUs."""

    def __init__(self, cfg: QemuConfig, connector: Any = None, locks: locking.LockPlugin | None = None) -> None:
        self.cfg = cfg
        # Disk leases (pyvirtd.conf's lock_manager): taken before the CPUs run (.leases)
        self.locks = locks if locks is not None else locking.new_manager("nop")
        self.locks.set_lost_handler(self._lease_lost)
        self.locks.set_restart_handler(self._leases_lost_all)
        self.locks.set_unreachable_handler(lambda why: leases.lock_daemon_lost(self, why))
        # Opens a connection to another host (peer-to-peer migration); injected by
        # the daemon or the client library, since drivers do not speak RPC.
        self.connector = connector
        self.events = EventBus()
        self.domains = DomainList(ErrorDomain.QEMU)
        self.domains.has_snapshots = self._has_snapshots
        self.autodestroy = AutoDestroy(self._autodestroy)
        self.next_id = 1
        self.qemu_version = 0
        self.kvm = kvm_available()
        self.vhost_net = tapmod.vhost_net_available()
        # Labels what QEMU is handed and says who QEMU runs as; from qemu.conf's keys.
        self.security = security.new_manager(cfg.security_driver, cfg.user, cfg.group,
                                             dynamic_ownership=cfg.dynamic_ownership,
                                             remember_owner=cfg.remember_owner)
        self._define_lock = asyncio.Lock()
        self._used_ports: set[int] = set()
        self.migration_ports: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Starts between QEMU's spawn and its monitor greeting: close() ends them
        # while the loop still reports QEMU's exit (their clean-up waits for it).
        self._launching: dict[asyncio.Task[Any], bool] = {}   # task: still cancellable
        # Set by close(): the daemon is going away, its guests are not (see close).
        self.closing = False
        # The host's storage and network drivers, set by whoever runs them beside this
        # one (the daemon, an embedded root): (pool, volume) -> (path, format, type) for
        # <disk type='volume'>, and the NetworkDriver <interface type='network'> joins.
        self.storage_resolver: storage_source.Resolver | None = None
        self.networks: Any = None

    # -- start-up and shutdown of the manager -------------------------------
    async def initialize(self) -> None:
        """Load definitions, adopt running guests, learn QEMU's version."""
        self.cfg.make_dirs()
        self.qemu_version = await self._probe_version()
        for path in sorted(self.cfg.config_dir.glob("*.xml")):
            try:
                d = conf.parse(path.read_text(), DOMAIN_TYPES, "qemu", inactive=True)
            except (libvirtError, OSError) as exc:
                log.error("ignoring unreadable definition %s: %s", path, exc)
                continue
            obj = self._new_obj(d, persistent=True)
            obj.autostart = (self.cfg.autostart_dir / path.name).exists()
            obj.has_managed_save = self.cfg.managed_save_path(d.name).exists()
            self._load_shutoff_reason(obj)
            self.domains.add(obj)
        for path in sorted(self.cfg.state_dir.glob("*.xml")):
            await self._recover(path)

    def _load_shutoff_reason(self, obj: QemuDomainObj) -> None:
        try:
            text = self.cfg.shutoff_reason_path(obj.definition.name).read_text().strip()
            obj.state, obj.reason = DomainState.SHUTOFF, reason_from_name(DomainState.SHUTOFF, text)
        except (OSError, ValueError):
            pass

    def _save_shutoff_reason(self, obj: QemuDomainObj) -> None:
        path = self.cfg.shutoff_reason_path(obj.definition.name)
        try:
            if obj.persistent:
                write_atomic(path, reason_name(DomainState.SHUTOFF, obj.reason) + "\n")
            else:
                path.unlink(missing_ok=True)
        except (OSError, libvirtError):   # bookkeeping must never stop the cleanup
            log.exception("cannot record why %s stopped", obj.name)

    async def _probe_version(self) -> int:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.cfg.emulator, "--version", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
            out, _ = await proc.communicate()
        except OSError:
            return 0
        match = re.search(rb"version (\d+)\.(\d+)\.(\d+)", out)
        if not match:
            return 0
        major, minor, micro = (int(x) for x in match.groups())
        return major * 1000000 + minor * 1000 + micro

    async def _recover(self, path: Path) -> None:
        """Adopt the QEMU a status file describes, or record that it died."""
        try:
            status = conf.parse_status(path.read_text())
        except (libvirtError, ValueError, OSError) as exc:
            log.error("ignoring unreadable status file %s: %s", path, exc)
            return
        live = status.domain
        obj = self.domains.find_uuid(live.uuid)
        if obj is None:
            base = live.copy()
            base.clear_live_state()
            obj = self._new_obj(base, persistent=False)
            self.domains.add(obj)
        obj.live, obj.id = live, live.id if live.id is not None else -1
        obj.extra = dict(status.extra)
        storage_source.restore(live, obj.extra)
        obj.job_record = status.job
        obj.lock_state = status.lockstate
        self._reserve_labels(obj, live)
        self.next_id = max(self.next_id, obj.id + 1)
        alive = status.pid > 0 and procmod.pid_is_ours(status.pid, live.name, live.uuid)
        # Known even when QEMU is gone, so its per-domain directory is removed with the status.
        obj.monitor_path = (self.cfg.recorded_monitor(status.monitor_path)
                            or self.cfg.monitor_path(live.name, obj.id))
        if alive:
            try:
                obj.process = await procmod.adopt(status.pid, obj.monitor_path, live.name, self._handler(obj))
            except libvirtError as exc:
                # A QEMU we cannot manage must not run on unseen (a later start
                # would boot a second copy on the same disks): end it, as libvirt does.
                log.error("cannot reconnect to %s (pid %d): %s; killing it", live.name, status.pid, exc)
                procmod.kill_pid(status.pid)
                alive = False
        if not alive:
            # A daemon killed between spawning QEMU and recording its pid leaves a QEMU
            # nobody knows of, still paused before its first instruction but holding the
            # disks: never leave it running unseen (a later start would be a second copy).
            for pid in procmod.orphans_of(live.name, live.uuid, self.cfg.log_path(live.name)):
                log.error("domain %s: killing QEMU pid %d, started by a daemon that died before "
                          "recording it", live.name, pid)
                procmod.kill_pid(pid)
            log.warning("domain %s: its QEMU (pid %d) is gone; marking it crashed", live.name, status.pid)
            obj.state, obj.reason = status.state, status.reason
            self._finish_stop(obj, ShutoffReason.CRASHED, EventStoppedDetail.FAILED)
            return
        obj.state, obj.reason = status.state, status.reason
        self._watch_exit(obj)
        record = obj.job_record
        if record is not None and not await recovery.resolve_job(self, obj, record):
            return
        if obj.state == DomainState.PAUSED and obj.reason == PausedReason.STARTING_UP:
            # Its start never completed (the daemon went mid-start): as libvirt's
            # qemuProcessReconnect, a guest that was not fully started is killed.
            log.warning("domain %s (pid %d) was not fully started; killing it", live.name, status.pid)
            await self.kill(obj, ShutoffReason.FAILED, EventStoppedDetail.FAILED)
            return
        if not await self._sync_run_state(obj, trust_record=record is not None):
            return
        await leases.adopt(self, obj)
        await blockjob.adopt(self, obj)      # block jobs QEMU still runs: followed again
        log.info("reconnected to %s (pid %d), %s", live.name, status.pid, obj.state.name.lower())

    async def _sync_run_state(self, obj: QemuDomainObj, trust_record: bool = False) -> bool:
        """QEMU may have been paused or resumed while nobody was watching.
        False if the guest had to be killed: a QEMU still waiting for an incoming
        stream that no job record accounts for is half a migration nobody will finish."""
        assert obj.process is not None
        try:
            qemu_status = await obj.process.monitor.query_status()
        except libvirtError:
            return True
        running = qemu_status["running"]
        if qemu_status.get("status") == "inmigrate" and not trust_record:
            await recovery.kill_unrecorded_incoming(self, obj)
            return False
        if running and obj.state == DomainState.PAUSED:
            obj.set_state(DomainState.RUNNING, RunningReason.UNPAUSED)
        elif not running and obj.state == DomainState.RUNNING:
            obj.set_state(DomainState.PAUSED, PausedReason.UNKNOWN)
        else:
            obj.save_status()
        return True

    async def close(self) -> None:
        """Stop managing: leave every guest running, its status file as last written.

        Stopping the daemon is not the guests stopping.  Every domain is detached
        first (no status write or removal from here on), then the monitors are
        closed, which QEMU never sees as a reason to stop and the driver never
        takes for QEMU going away.  No stopped handler runs: a migration's job
        record stays on disk, so the next daemon resolves it by job and phase
        (:mod:`.recovery`).  Calls still in flight fail against the closed
        monitors without touching the disk or any QEMU.
        """
        self.closing = True
        qemu_objs = [obj for obj in self.domains if isinstance(obj, QemuDomainObj)]
        for obj in qemu_objs:
            obj.detached = True
        for obj in qemu_objs:
            if obj.process is not None:
                await obj.process.monitor.close()
        await self._end_launches()
        for task in list(self._tasks):
            task.cancel()

    async def _end_launches(self, bound: float = 10.0) -> None:
        """A start still waiting for its QEMU's greeting was never reported started
        and its status file holds no pid yet: no successor could find that QEMU,
        so the start is cancelled here and kills it (libvirt's successor kills a
        guest still 'starting up' too).  Bounded: a stuck clean-up is logged."""
        launching = set(self._launching)
        if not launching:
            return
        for task, cancellable in self._launching.items():
            if cancellable:
                task.cancel()
        _, pending = await asyncio.wait(launching, timeout=bound)
        for task in pending:
            log.error("shutdown: start %s still cleaning up after %.0fs", task.get_name(), bound)

    def _new_obj(self, d: conf.DomainDef, persistent: bool) -> QemuDomainObj:
        obj = QemuDomainObj(d, persistent=persistent, cfg=self.cfg, detached=self.closing)
        obj.jobs.on_async_end = lambda job: self._emit_all(qemu_events.async_job_ended(obj, job))
        return obj

    def _has_snapshots(self, obj: QemuDomainObj) -> bool:
        """The domain-list filter's question (HAS_SNAPSHOT): the domain's snapshot metadata."""
        from .snapshot import tree
        return len(tree(self, obj)) > 0

    def _emit_all(self, events: list[DomainEvent]) -> None:
        for event in events:
            self.events.emit(event)

    def _handler(self, obj: QemuDomainObj) -> MonitorHandler:
        return MonitorHandler(obj, self._on_event, self._on_eof)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- definitions ------------------------------------------------------------
    def save_config(self, obj: QemuDomainObj) -> None:
        write_atomic(self.cfg.config_path(obj.definition.name), obj.definition.format(secure=True, inactive=True))

    def remove_config(self, obj: QemuDomainObj) -> None:
        name = obj.definition.name
        for path in (self.cfg.config_path(name), self.cfg.autostart_path(name),
                     self.cfg.shutoff_reason_path(name)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    # -- start ------------------------------------------------------------------
    def _pick_ports(self, live: conf.DomainDef) -> None:
        for g in live.devices.graphics:
            if g.autoport:
                g.port = self._free_port()
                if g.type == "spice" and self.cfg.spice_tls:
                    g.tls_port = self._free_port()

    def _free_port(self) -> int:
        for port in range(self.cfg.vnc_port_min, self.cfg.vnc_port_max + 1):
            if port not in self._used_ports and port_is_free(port):
                self._used_ports.add(port)
                return port
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                    f"no free graphics port in {self.cfg.vnc_port_min}-{self.cfg.vnc_port_max}")

    def _release_ports(self, live: conf.DomainDef | None) -> None:
        if live is None:
            return
        for g in live.devices.graphics:
            if g.autoport:
                self._used_ports.discard(g.port)
                self._used_ports.discard(g.tls_port)

    def pretend_argv(self, d: conf.DomainDef, incoming: str | None = None) -> list[str]:
        """The command line a start would use, without launching anything."""
        live = d.copy()
        assign_aliases(live)
        for g in live.devices.graphics:
            if g.autoport and g.port <= 0:
                g.port = self.cfg.vnc_port_min
        return build_argv(live, CommandContext(self.cfg.emulator, self.kvm, incoming, self.vhost_net))

    async def start(self, obj: QemuDomainObj, *, paused: bool = False,
                    reason: RunningReason = RunningReason.BOOTED,
                    started_detail: EventStartedDetail = EventStartedDetail.BOOTED,
                    incoming: str | None = None, start_cpus: bool = True,
                    live_def: conf.DomainDef | None = None,
                    suspended_detail: EventSuspendedDetail | None = EventSuspendedDetail.PAUSED) -> None:
        """Launch QEMU for ``obj`` (the caller holds the domain's job).

        A start left paused announces SUSPENDED with ``suspended_detail`` (None: no
        event, for a caller that resumes or announces the state itself: a snapshot revert).

        With ``incoming``, QEMU waits for a migration stream and the CPUs are
        left stopped for the caller.  On failure nothing is left behind: no
        QEMU, no status file, the first error is raised.
        """
        if obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "domain is already running")
        live = (live_def or obj.definition).copy()
        # A fresh boot keeps the stored definition's devices; the XML of an incoming stream or
        # image is parsed as libvirt parses it, defaults added (its sender left them out).
        postparse.complete(live, new_definition=incoming is not None, incoming=incoming is not None,
                           emulator=self.cfg.emulator,
                           machine_aliases=await machines.aliases_async(live.devices.emulator or self.cfg.emulator))
        assign_aliases(live)
        self._pick_ports(live)
        secrets = SecretPlan()      # handed to QEMU as descriptors, never on its argv
        taps: list[tapmod.Tap] = []
        try:
            storage_source.resolve(live, self.storage_resolver)
            netsource.resolve(live, self.networks)
            argv = build_argv(live, CommandContext(self.cfg.emulator, self.kvm, incoming, self.vhost_net),
                              secrets)
            taps = await tapmod.create_for(live, argv)
            for tap in taps:
                for fd in tap.descriptors:
                    self.security.set_tap_fd_label(live, fd)
            argv = tapmod.substitute(argv, taps)
        except BaseException:
            tapmod.close_all(taps)
            self._release_ports(live)
            if not obj.persistent:        # a refused createXML leaves no domain behind
                self.domains.remove(obj)
            raise
        dom_id, self.next_id = self.next_id, self.next_id + 1
        live.id = dom_id
        obj.live, obj.id = live, dom_id
        storage_source.remember(obj)
        obj.stop_reason, obj.got_shutdown = None, False
        obj.lock_state, obj.leases_held = None, False
        obj.stopped = asyncio.Event()
        try:
            self._set_labels(obj, live)   # first: the status written next holds what to give back
            obj.set_state(DomainState.PAUSED, PausedReason.STARTING_UP)
            self.cfg.make_domain_dir(live.name, dom_id)
            obj.monitor_path = self.cfg.monitor_path(live.name, dom_id)
            with secrets.handed() as handed:
                obj.process = await self._launch(
                    handed.substitute(argv), obj.monitor_path, self.cfg.log_path(live.name), live.name,
                    self._handler(obj), ids=self.security.process_ids(),
                    extra_fds=(*(fd for t in taps for fd in t.descriptors), *handed.fds))
        except BaseException:
            self._restore_labels(obj, live)
            self._release_ports(live)
            obj.live, obj.id = None, -1
            obj.remove_status()
            obj.set_state(DomainState.SHUTOFF, ShutoffReason.FAILED)
            if not obj.persistent:
                self.domains.remove(obj)
            raise
        finally:
            tapmod.close_all(taps)   # QEMU holds its own copies: each tap goes away with QEMU
        obj.save_status()          # the pid, at once: a crash now must not orphan this QEMU
        netsource.attached(self.networks, live)
        self._watch_exit(obj)
        try:
            await leases.register(self, obj)      # CPUs paused (-S): nothing written yet
            await self._set_graphics_passwords(obj)
            await netlink.apply_at_start(obj)
            await self._record_pty_paths(obj)
            await stats.apply_balloon_period(obj)
            if incoming is None and start_cpus and not paused:
                await self.resume_cpus(obj, RunningReason(reason), event=False)
            elif incoming is None:
                obj.set_state(DomainState.PAUSED, PausedReason.USER)
            else:
                obj.set_state(DomainState.PAUSED, PausedReason.MIGRATION)
        except BaseException as exc:
            first = FirstError()
            first.record(exc)
            try:
                await self.kill(obj, ShutoffReason.FAILED, EventStoppedDetail.FAILED, emit=False)
            except Exception as cleanup:  # logged, never replaces the first error
                first.record(cleanup)
            first.raise_if_any()
        if incoming is None:
            if obj.state == DomainState.RUNNING:
                emit_lifecycle(self.events, obj, EventType.RESUMED, EventResumedDetail.UNPAUSED)
            emit_lifecycle(self.events, obj, EventType.STARTED, started_detail)
            if obj.state == DomainState.PAUSED and suspended_detail is not None:
                emit_lifecycle(self.events, obj, EventType.SUSPENDED, suspended_detail)

    async def _launch(self, *args: Any, **kwargs: Any) -> procmod.QemuProcess:
        """procmod.launch, which close() may cancel; its cancellation by close()
        ends the start with an error saying why, not as a cancelled call."""
        task = asyncio.current_task()
        assert task is not None
        shutting_down = error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                              f"cannot start domain '{args[3]}': the daemon is shutting down")
        if self.closing:
            raise shutting_down
        self._launching[task] = True           # close() may cancel it
        try:
            try:
                qp = await procmod.launch(*args, **kwargs)
            except asyncio.CancelledError:
                if not self.closing:
                    raise
                task.uncancel()
                raise shutting_down from None
            self._launching[task] = False      # from here close() only waits for it
            if self.closing:    # the daemon stopped meanwhile: nobody will manage this QEMU
                await qp.stop(1.0)
                await qp.monitor.close()
                raise shutting_down
            return qp
        finally:
            self._launching.pop(task, None)

    def _set_labels(self, obj: QemuDomainObj, live: conf.DomainDef) -> None:
        """Give QEMU's user what it opens by path; the record of what was
        changed goes into the status XML, so a restarted daemon gives it back."""
        record = self.security.set_all_label(live)
        if record is not None:
            obj.extra[_LABELS] = json.dumps(record, separators=(",", ":"))

    def _restore_labels(self, obj: QemuDomainObj, live: conf.DomainDef | None) -> None:
        record = obj.extra.pop(_LABELS, None)
        if record is None or live is None:
            return
        try:
            self.security.restore_all_label(live, json.loads(record))
        except ValueError:
            log.error("%s: unreadable label record %r: owners not given back", obj.name, record)

    def _reserve_labels(self, obj: QemuDomainObj, live: conf.DomainDef) -> None:
        try:
            self.security.reserve_all_label(live, json.loads(obj.extra.get(_LABELS, "null")))
        except ValueError:
            log.error("%s: unreadable label record %r", obj.name, obj.extra.get(_LABELS))

    async def _set_graphics_passwords(self, obj: QemuDomainObj) -> None:
        assert obj.process is not None and obj.live is not None
        for g in obj.live.devices.graphics:
            if g.type == "vnc" and g.passwd:
                await obj.process.monitor.execute("set_password", {"protocol": "vnc", "password": g.passwd})

    async def _record_pty_paths(self, obj: QemuDomainObj) -> None:
        """Show the host pty QEMU allocated in the live XML, as libvirt does."""
        assert obj.process is not None and obj.live is not None
        ptys = [dev for dev in (*obj.live.devices.serials, *obj.live.devices.consoles) if dev.type == "pty"]
        if not ptys:
            return
        found = {c["label"]: c["filename"] for c in await obj.process.monitor.execute("query-chardev")}
        for dev in ptys:
            filename = found.get(f"char{dev.alias}", "")
            if filename.startswith("pty:"):
                dev.path = filename[4:]
        for console in obj.live.devices.consoles:   # the console is serial0 shown again
            if console.type == "pty" and console.path is None and obj.live.devices.serials:
                console.path = obj.live.devices.serials[0].path

    async def resume_cpus(self, obj: QemuDomainObj, reason: RunningReason, event: bool = True) -> None:
        if obj.process is None:    # gone while the caller awaited something else
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "domain is no longer running")
        obj.expect_run_change = True
        try:
            await leases.run_cpus(self, obj, obj.process.monitor.cont)
        finally:
            obj.expect_run_change = False
        obj.set_state(DomainState.RUNNING, reason)
        if event:
            detail = {RunningReason.MIGRATED: EventResumedDetail.MIGRATED,
                      RunningReason.MIGRATION_CANCELED: EventResumedDetail.MIGRATED,
                      RunningReason.RESTORED: EventResumedDetail.FROM_SNAPSHOT,
                      RunningReason.POSTCOPY: EventResumedDetail.POSTCOPY}.get(reason, EventResumedDetail.UNPAUSED)
            emit_lifecycle(self.events, obj, EventType.RESUMED, detail)

    async def pause_cpus(self, obj: QemuDomainObj, reason: PausedReason, event: bool = True) -> None:
        if obj.process is None:    # gone while the caller awaited something else
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "domain is no longer running")
        obj.expect_run_change = True
        try:
            await obj.process.monitor.stop()
        finally:
            obj.expect_run_change = False
        obj.set_state(DomainState.PAUSED, reason)
        await leases.cpus_stopped(self, obj)
        if event:
            detail = _SUSPENDED_DETAIL.get(reason, EventSuspendedDetail.PAUSED)
            emit_lifecycle(self.events, obj, EventType.SUSPENDED, detail)

    def mark_paused(self, obj: QemuDomainObj, reason: PausedReason) -> None:
        """Record that QEMU stopped the CPUs itself (end of migration or save)."""
        obj.set_state(DomainState.PAUSED, reason)
        detail = _SUSPENDED_DETAIL.get(reason, EventSuspendedDetail.PAUSED)
        emit_lifecycle(self.events, obj, EventType.SUSPENDED, detail)

    async def release_leases(self, obj: QemuDomainObj) -> None:
        """The guest's CPUs were stopped by QEMU itself (end of a migration or save)."""
        await leases.cpus_stopped(self, obj)

    async def _leases_lost_all(self) -> None:
        """The lock daemon ended and took every lease with it: each guest takes its own
        again (one that cannot is fenced as its <on_lockfailure> says)."""
        for obj in list(self.domains):
            if isinstance(obj, QemuDomainObj) and obj.process is not None and not self.closing:
                await leases.retake(self, obj)

    async def _lease_lost(self, uuid: str, what: str, why: str) -> None:
        """The lock manager can no longer guarantee a running guest's lease: fence it
        as its <on_lockfailure> says (libvirt's default: poweroff)."""
        obj = self.domains.find_uuid(uuid)
        if not isinstance(obj, QemuDomainObj) or obj.process is None:
            return
        await self.fence(obj, why, what)

    async def fence(self, obj: QemuDomainObj, why: str, what: str = "its disks") -> None:
        """Stop a guest whose leases can no longer be held, as its <on_lockfailure> says."""
        if obj.process is None or self.closing:
            return
        action = leases.guest(obj).on_lockfailure
        log.error("%s lost its lease on %s (%s): %s", obj.name, what, why, action)
        self._emit_lease_lost(obj, action)
        if action == "ignore":
            return
        if action == "pause":
            if obj.state == DomainState.RUNNING:
                await self.pause_cpus(obj, PausedReason.UNKNOWN)
            return
        await self.kill(obj, ShutoffReason.FAILED, EventStoppedDetail.FAILED, grace=0)

    def _emit_lease_lost(self, obj: QemuDomainObj, action: str) -> None:
        """Tell clients which disks lost their lease, before the guest is fenced.

        libvirt has no lease event; its IO_ERROR_REASON event is what tools already
        watch for a disk that may no longer be written, so each read/write disk gets
        one with the reason ``lease_lost`` (action PAUSE when the guest is paused,
        NONE otherwise: ignored, or powered off, which the STOPPED event then says)."""
        if obj.live is None:
            return
        code = 1 if action == "pause" else 0       # VIR_DOMAIN_EVENT_IO_ERROR_PAUSE / _NONE
        for disk in obj.live.devices.disks:
            if disk.readonly or not disk.source:
                continue
            self.events.emit(DomainEvent(EventID.IO_ERROR_REASON, obj.ref(),
                                         (disk.source, disk.alias or "", code, "lease_lost")))

    # -- stop -------------------------------------------------------------------
    async def kill(self, obj: QemuDomainObj, reason: ShutoffReason, detail: EventStoppedDetail,
                   grace: float | None = None, emit: bool = True) -> None:
        """Stop ``obj``'s QEMU and wait until it is cleaned up."""
        qp = obj.process
        if qp is None:
            return
        self._refuse_if_closing(obj)
        if obj.stop_reason is None:
            obj.stop_reason = (reason, detail)
        if not emit:
            obj.quiet_stop = True
        stopped = obj.stopped      # this QEMU's clean-up; a start right after it brings a new event
        await qp.stop(self.cfg.stop_timeout if grace is None else grace)
        await stopped.wait()

    async def terminate(self, obj: QemuDomainObj, wait: float) -> bool:
        """SIGTERM only (VIR_DOMAIN_DESTROY_GRACEFUL): True if QEMU went within ``wait``."""
        qp = obj.process
        if qp is None:
            return True
        self._refuse_if_closing(obj)
        if obj.stop_reason is None:
            obj.stop_reason = (ShutoffReason.DESTROYED, EventStoppedDetail.DESTROYED)
        stopped = obj.stopped
        qp.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(stopped.wait()), wait)
        except asyncio.TimeoutError:
            obj.stop_reason = None
            return False
        return True

    def _refuse_if_closing(self, obj: QemuDomainObj) -> None:
        """A stopping daemon stops no guest (a failing call's cleanup included):
        the next daemon decides from the status file what must go."""
        if self.closing:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        f"cannot stop domain '{obj.name}': the daemon is shutting down")

    def _watch_exit(self, obj: QemuDomainObj) -> None:
        qp = obj.process
        assert qp is not None

        async def wait() -> None:
            await asyncio.shield(qp.exited)
            await self._process_gone(obj, qp)
        self._spawn(wait(), f"qemu-exit-{obj.name}")

    async def _process_gone(self, obj: QemuDomainObj, qp: procmod.QemuProcess) -> None:
        """The one place a stopped QEMU is cleaned up, whatever stopped it."""
        if obj.process is not qp or self.closing:
            return      # closing: the next daemon finds it gone and records why
        if obj.stop_reason is not None:
            reason, detail = obj.stop_reason
        elif obj.got_shutdown:
            reason, detail = ShutoffReason.SHUTDOWN, EventStoppedDetail.SHUTDOWN
        else:
            reason, detail = ShutoffReason.CRASHED, EventStoppedDetail.FAILED
            log.warning("QEMU of domain %s exited unexpectedly", obj.name)
        obj.process = None
        await leases.gone(self, obj, qp.pid)
        qp.close_stat()
        if obj.jobs.current_async is not None:      # wake a migration or save waiting on QEMU
            obj.jobs.current_async.signal("qemu-gone")
        await qp.monitor.close()
        self._finish_stop(obj, reason, detail)

    def _finish_stop(self, obj: QemuDomainObj, reason: ShutoffReason, detail: EventStoppedDetail) -> None:
        quiet, obj.quiet_stop = obj.quiet_stop, False
        self._restore_labels(obj, obj.live)
        self._release_ports(obj.live)
        netsource.detached(self.networks, obj.live)
        obj.remove_status()
        obj.live, obj.id = None, -1
        obj.extra.clear()
        obj.job_record = None
        self.autodestroy.unregister(obj.uuid)
        obj.set_state(DomainState.SHUTOFF, reason)
        self._save_shutoff_reason(obj)
        if not quiet:
            emit_lifecycle(self.events, obj, EventType.STOPPED, detail)
        if not obj.persistent:
            self.domains.remove(obj)
        obj.stopped.set()

    async def _autodestroy(self, uuid: str) -> None:
        obj = self.domains.find_uuid(uuid)
        if isinstance(obj, QemuDomainObj) and obj.active:
            await self.kill(obj, ShutoffReason.DESTROYED, EventStoppedDetail.DESTROYED)

    # -- QMP events -------------------------------------------------------------
    def _on_event(self, obj: QemuDomainObj, name: str, data: Mapping[str, Any], timestamp: float) -> None:
        # Raw QMP events, for virsh qemu-monitor-event (libvirt-qemu's API).
        self.events.emit(DomainEvent(QEMU_MONITOR_EVENT, obj.ref(),
                                     (name, timestamp, json.dumps(data) if data else None)))
        if name == "SHUTDOWN" and obj.stop_reason is None and reboot.wants_fake_reboot(obj):
            # virDomainReboot's power button: the power-off is transient (libvirt with
            # QEMU's set-action: no state change, no event); reset and run again
            obj.got_shutdown = True
            self._spawn(reboot.fake_reboot(self, obj), f"qemu-fake-reboot-{obj.name}")
        elif name == "SHUTDOWN":
            obj.got_shutdown = True
            guest = bool(data.get("guest"))
            # A QEMU we stop after saving its state: libvirt closes the monitor
            # first and announces no shutdown, only STOPPED/SAVED.
            if obj.stop_reason is None or obj.stop_reason[0] not in _QUIET_SHUTDOWN:
                emit_lifecycle(self.events, obj, EventType.SHUTDOWN,
                               EventShutdownDetail.GUEST if guest else EventShutdownDetail.HOST)
            if obj.stop_reason is None:
                # -no-shutdown keeps QEMU alive after the guest powers off; on_poweroff
                # 'destroy' (the only action we honour) means we end it now.
                obj.set_state(DomainState.SHUTDOWN, ShutdownReason.USER)
                obj.stop_reason = (ShutoffReason.SHUTDOWN, EventStoppedDetail.SHUTDOWN)
                if obj.process is not None:
                    self._spawn(obj.process.stop(self.cfg.stop_timeout), f"qemu-poweroff-{obj.name}")
        elif name == "STOP":
            if not obj.expect_run_change and not obj.got_shutdown and obj.state == DomainState.RUNNING:
                obj.set_state(DomainState.PAUSED, PausedReason.UNKNOWN)
                emit_lifecycle(self.events, obj, EventType.SUSPENDED, EventSuspendedDetail.PAUSED)
            if not obj.expect_run_change and not obj.got_shutdown and obj.state == DomainState.PAUSED \
                    and obj.leases_held:
                # paused by QEMU itself (I/O error and watchdog pauses were recorded from
                # their own event just before, panic): the leases go too, as libvirt's
                # virDomainLockProcessPause, and their state is kept
                self._spawn(leases.cpus_stopped(self, obj, leases.conts_so_far(obj)),
                            f"qemu-lease-release-{obj.name}")
        elif name == "RESUME":
            if not obj.expect_run_change and obj.state == DomainState.PAUSED:
                obj.set_state(DomainState.RUNNING, RunningReason.UNPAUSED)
                emit_lifecycle(self.events, obj, EventType.RESUMED, EventResumedDetail.UNPAUSED)
                self._spawn(leases.resumed_by_qemu(self, obj), f"qemu-lease-acquire-{obj.name}")
        elif name == "DEVICE_DELETED":
            hotplug.on_device_deleted(self, obj, data)   # wakes a detach, or finishes a late one
        elif name == "DEVICE_TRAY_MOVED":
            hotplug.on_tray_moved(obj, data)             # wakes a media change waiting for the tray
        job = obj.jobs.current_async
        if job is not None and name in ("MIGRATION", "MIGRATION_PASS"):
            job.signal("qmp-event", (name, dict(data)))
        self._emit_all(qemu_events.translate(obj, name, data))   # REBOOT, RTC_CHANGE, IO_ERROR, ...

    def _on_eof(self, obj: QemuDomainObj, reason: str) -> None:
        qp = obj.process
        if qp is not None and qp.alive and not self.closing:
            # QEMU closed its monitor; it exits next.  Make sure it does.
            log.debug("%s: %s; waiting for QEMU to exit", obj.name, reason)
            self._spawn(qp.stop(self.cfg.stop_timeout), f"qemu-eof-{obj.name}")

    # -- queries ------------------------------------------------------------------
    def cpu_time_ns(self, obj: QemuDomainObj) -> int:
        return obj.process.cpu_time_ns() if obj.process is not None else 0

    def job_guard(self, obj: QemuDomainObj, kind: JobKind):
        return obj.jobs.job(kind, self.cfg.monitor_timeout)
