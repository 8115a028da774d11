"""The QEMU driver's per-client API: one method per remote procedure.

Methods check flags, find the domain, take the right job and call into
:class:`.driver.QemuDriver`; they never touch QEMU or files themselves.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from ... import conf
from ...conf.status import JobPhase
from ...driver import ConnectionInfo, HypervisorConnection
from ...refs import DomainRef
from ...enums import (DestroyFlags, DomainState, DriverFeature, EventDefinedDetail, EventStoppedDetail,
                      EventType, EventUndefinedDetail, JobType, MigrateFlags, PausedReason, RunningReason,
                      SaveFlags, ShutoffReason, StartFlags, TypedParamType, UndefineFlags,
                      XMLFlags)
from ...errors import ErrorDomain, ErrorNumber, check_flags, error, libvirtError
from ..domainlist import DomainList, DomainQueries, emit_lifecycle, not_running
from .api_blockjob import BlockJobAPI
from .api_console import ConsoleAPI
from .api_devices import DevicesAPI
from .api_host import HostAPI
from .api_lifecycle import LifecycleAPI
from .api_postcopy import PostcopyAPI
from .api_snapshot import SnapshotAPI
from .api_stats import StatsAPI
from .command import DOMAIN_TYPES
from .domainobj import QemuDomainObj
from .driver import QemuDriver
from .jobs import ASYNC_OPERATION, AsyncJob, JobKind
from .migration import destination, p2p, source
from .migration import params as mparams
from .migration.convergence import stat_type
from .migration.destination import migration_capabilities
from .migration import postcopy
from . import imagedefine, imagefile, managedsave, restore as restoremod, save as savemod
from . import machines, postparse, snapshot
from .savestream import check_flags as check_save_flags
from . import leases

LIB_VERSION = 9000000
_FEATURES = {DriverFeature.TYPED_PARAM_STRING, DriverFeature.XML_MIGRATABLE, DriverFeature.FD_PASSING,
             DriverFeature.MIGRATION_V2, DriverFeature.MIGRATION_V3, DriverFeature.MIGRATION_PARAMS,
             DriverFeature.MIGRATE_CHANGE_PROTECTION, DriverFeature.MIGRATION_P2P,
             # every libvirt driver reports it (virDriverFeatureIsGlobal): clients then send
             # virNetworkUpdate's command and section in the wire's own order
             DriverFeature.NETWORK_UPDATE_HAS_CORRECT_ORDER}
_XML_FLAGS = int(XMLFlags.SECURE | XMLFlags.INACTIVE | XMLFlags.UPDATE_CPU | XMLFlags.MIGRATABLE)
# Jobs whose progress is QEMU's migration figures (query-migrate).
_MIGRATION_LIKE = (AsyncJob.MIGRATION_OUT, AsyncJob.MIGRATION_IN, AsyncJob.SAVE, AsyncJob.RESTORE)
# Outgoing-migration phases in which QEMU is sending: tunables go to the running job.
_SENDING = (JobPhase.PERFORM2, JobPhase.PERFORM3)
# VIR_DOMAIN_SAVE_PARAM_*: name -> attribute (all strings)
# (image_format is libvirt 11.2's; pyvirt.image_compat pyvirt's own, see saveimage.check_compat)
_SAVE_PARAMS = {"file": "path", "dxml": "dxml", "image_format": "image_format",
                "pyvirt.image_compat": "compat"}
# How often a define or start goes round again when the domain changed under it while
# it waited for the job (removed and redefined, saved); each round means another call
# finished, so only a client racing itself on purpose gets the error.
_DEFINE_ATTEMPTS = 20


class QemuConnection(StatsAPI, HostAPI, ConsoleAPI, DevicesAPI, LifecycleAPI, SnapshotAPI, BlockJobAPI,
                     PostcopyAPI, DomainQueries, HypervisorConnection):
    driver_prefix = "qemu"
    error_domain = ErrorDomain.QEMU

    def __init__(self, info: ConnectionInfo, driver: QemuDriver, uri: str = "qemu:///system") -> None:
        super().__init__(info, driver.events)
        self.driver = driver
        self.uri = uri

    @property
    def domains(self) -> DomainList:
        return self.driver.domains

    def _obj(self, dom: DomainRef) -> QemuDomainObj:
        return self.driver.domains.by_ref(dom)  # type: ignore[return-value]

    def _active(self, dom: DomainRef) -> QemuDomainObj:
        return _running(self._obj(dom))

    # -- connection ------------------------------------------------------------
    async def connect_get_type(self) -> str:
        return "QEMU"

    async def connect_get_version(self) -> int:
        return self.driver.qemu_version

    async def connect_get_lib_version(self) -> int:
        return LIB_VERSION

    async def connect_get_hostname(self) -> str:
        return socket.gethostname()

    async def connect_get_uri(self) -> str:
        return self.uri

    async def connect_supports_feature(self, feature: int) -> int:
        return int(feature in _FEATURES)

    async def connect_is_secure(self) -> int:
        return 1

    # -- lookup and definition ---------------------------------------------------
    async def domain_define_xml(self, xml: str) -> DomainRef:
        return await self.domain_define_xml_flags(xml, 0)

    async def domain_define_xml_flags(self, xml: str, flags: int) -> DomainRef:
        check_flags(flags, 1, "qemuDomainDefineXMLFlags")
        new = conf.parse(xml, DOMAIN_TYPES, "qemu", inactive=True)
        emulator = new.devices.emulator or self.driver.cfg.emulator
        postparse.complete(new, new_definition=True, emulator=emulator,
                           machine_aliases=await machines.aliases_async(emulator))
        drv = self.driver
        # A new domain is added at once; an existing one is redefined under its job
        # (so no start, undefine or restore is half-way through it).  If it was
        # removed while we waited, go round again: the name is free now.
        for _attempt in range(_DEFINE_ATTEMPTS):
            async with drv._define_lock:
                old = drv.domains.check_new(new)
                if old is None:
                    obj = drv._new_obj(new, persistent=True)
                    drv.domains.add(obj)
                    self._save_definition(obj, new, None)
                    emit_lifecycle(drv.events, obj, EventType.DEFINED, EventDefinedDetail.ADDED)
                    return obj.ref()
            try:
                async with drv.job_guard(old, JobKind.DEFINE):  # type: ignore[arg-type]
                    async with drv._define_lock:
                        if drv.domains.check_new(new) is not old:
                            continue
                        detail = EventDefinedDetail.UPDATED if old.persistent else EventDefinedDetail.ADDED
                        self._save_definition(old, new, (old.definition, old.persistent))  # type: ignore[arg-type]
                    emit_lifecycle(drv.events, old, EventType.DEFINED, detail)
                    return old.ref()
            except libvirtError as exc:
                if not (old.removed and exc.get_error_code() == ErrorNumber.NO_DOMAIN):
                    raise
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                    f"domain '{new.name}' kept being redefined or removed while this definition waited")

    def _save_definition(self, obj: QemuDomainObj, new: conf.DomainDef,
                         previous: tuple[conf.DomainDef, bool] | None) -> None:
        """Make ``new`` the persistent definition on disk; a failed write undoes it
        (``previous``: the definition and persistence to go back to, None: a new domain)."""
        obj.definition, obj.persistent = new, True
        try:
            self.driver.save_config(obj)
        except OSError as exc:
            if previous is None:
                self.driver.domains.remove(obj)
            else:
                obj.definition, obj.persistent = previous
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                        f"cannot save the definition of '{new.name}': {exc.strerror}") from exc

    async def domain_undefine(self, dom: DomainRef) -> None:
        await self.domain_undefine_flags(dom, 0)

    async def domain_undefine_flags(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, int(UndefineFlags.MANAGED_SAVE | UndefineFlags.SNAPSHOTS_METADATA
                               | UndefineFlags.NVRAM | UndefineFlags.KEEP_NVRAM
                               | UndefineFlags.CHECKPOINTS_METADATA), "qemuDomainUndefineFlags")
        obj = self._obj(dom)
        # Under the job: a start waiting for it then finds the domain gone instead
        # of booting a QEMU for an object nobody can see any more.
        async with self.driver.job_guard(obj, JobKind.DEFINE):
            if not obj.persistent:
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "cannot undefine transient domain")
            if self.driver.cfg.managed_save_path(obj.definition.name).exists():
                if not flags & UndefineFlags.MANAGED_SAVE:
                    raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                                "Refusing to undefine while domain managed save image exists")
                managedsave.remove_managed(self.driver, obj)
            snapshot.check_undefine(self.driver, obj, flags)
            self.driver.remove_config(obj)
            obj.persistent, obj.autostart = False, False
            emit_lifecycle(self.driver.events, obj, EventType.UNDEFINED, EventUndefinedDetail.REMOVED)
            if not obj.active:
                self.driver.domains.remove(obj)

    # -- lifecycle -----------------------------------------------------------------
    async def domain_create_xml(self, xml_desc: str, flags: int) -> DomainRef:
        check_flags(flags, int(StartFlags.PAUSED | StartFlags.AUTODESTROY | StartFlags.VALIDATE),
                    "qemuDomainCreateXML")
        new = conf.parse(xml_desc, DOMAIN_TYPES, "qemu", inactive=True)
        emulator = new.devices.emulator or self.driver.cfg.emulator
        postparse.complete(new, new_definition=True, emulator=emulator,
                           machine_aliases=await machines.aliases_async(emulator))
        drv = self.driver
        async with drv._define_lock:
            old = drv.domains.check_new(new, allow_active_same=False)
            if old is None:
                obj = drv._new_obj(new, persistent=False)
                drv.domains.add(obj)
            else:
                obj = old  # type: ignore[assignment]
        async with drv.job_guard(obj, JobKind.MODIFY):
            if obj.active:      # started by another call while this one waited
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                            f"domain '{obj.name}' is already active")
            # Over an existing domain, libvirt boots the XML it was given and keeps
            # the persistent definition for the next start.
            await self._start(obj, flags, live_def=new if old is not None else None)
        return obj.ref()

    async def domain_create(self, dom: DomainRef) -> None:
        await self.domain_create_with_flags(dom, 0)

    async def domain_create_with_flags(self, dom: DomainRef, flags: int) -> DomainRef:
        check_flags(flags, int(StartFlags.PAUSED | StartFlags.AUTODESTROY | StartFlags.BYPASS_CACHE
                               | StartFlags.FORCE_BOOT), "qemuDomainCreateWithFlags")
        obj = self._obj(dom)
        for _attempt in range(_DEFINE_ATTEMPTS):
            if self._has_managed_save(obj):
                # Resume where a managed save left off (a RESTORE job), unless told to boot afresh.
                restore_flags = int(SaveFlags.PAUSED) if flags & StartFlags.PAUSED else 0
                if await managedsave.start_managed(self.driver, obj, restore_flags,
                                                   force_boot=bool(flags & StartFlags.FORCE_BOOT)):
                    if flags & StartFlags.AUTODESTROY:
                        self.driver.autodestroy.register(self, obj.uuid)
                    return obj.ref()
            async with self.driver.job_guard(obj, JobKind.MODIFY):
                if obj.active:
                    raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "domain is already running")
                if self._has_managed_save(obj):
                    continue     # a managed save finished while we waited: restore it instead
                await self._start(obj, flags)
                return obj.ref()
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                    f"domain '{obj.name}' kept being saved while this start waited")

    def _has_managed_save(self, obj: QemuDomainObj) -> bool:
        return (obj.persistent and not obj.active
                and self.driver.cfg.managed_save_path(obj.definition.name).exists())

    async def _start(self, obj: QemuDomainObj, flags: int, live_def: conf.DomainDef | None = None) -> None:
        await self.driver.start(obj, paused=bool(flags & StartFlags.PAUSED), live_def=live_def)
        if flags & StartFlags.AUTODESTROY:
            self.driver.autodestroy.register(self, obj.uuid)

    async def domain_destroy(self, dom: DomainRef) -> None:
        await self.domain_destroy_flags(dom, 0)

    async def domain_destroy_flags(self, dom: DomainRef, flags: int) -> None:
        """Kill first, then take the job, as libvirt does.

        The kill makes whatever call holds the job (a monitor command on a hung
        QEMU, say) fail at once; the destroy's own job, let through any
        asynchronous job, then waits it out.  A start that was still launching
        QEMU when the destroy came (nothing to kill yet) has finished by then,
        and what it started is stopped too.
        """
        check_flags(flags, int(DestroyFlags.GRACEFUL), "qemuDomainDestroyFlags")
        obj = self._obj(dom)
        if not obj.active:
            raise not_running(obj)
        graceful = bool(flags & DestroyFlags.GRACEFUL)
        await self._stop_for_destroy(obj, graceful)
        try:
            async with self.driver.job_guard(obj, JobKind.DESTROY):
                if obj.active:
                    await self._stop_for_destroy(obj, graceful)
        except libvirtError as exc:
            if obj.removed and exc.get_error_code() == ErrorNumber.NO_DOMAIN:
                return        # a transient domain went with its QEMU: destroyed indeed
            raise

    async def _stop_for_destroy(self, obj: QemuDomainObj, graceful: bool) -> None:
        if obj.process is None:
            return
        if graceful:
            # SIGTERM only; if QEMU does not go, say so instead of killing it (libvirt's rule).
            pid = obj.process.pid
            if not await self.driver.terminate(obj, self.driver.cfg.stop_timeout):
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                            f"failed to terminate process {pid} with SIGTERM")
            return
        await self.driver.kill(obj, ShutoffReason.DESTROYED, EventStoppedDetail.DESTROYED)

    async def domain_suspend(self, dom: DomainRef) -> None:
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.SUSPEND):
            _running(obj)
            if obj.state == DomainState.PAUSED:
                return   # libvirt: suspending a paused domain succeeds
            await self.driver.pause_cpus(obj, PausedReason.USER)

    async def domain_resume(self, dom: DomainRef) -> None:
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.SUSPEND):
            _running(obj)
            if obj.state != DomainState.PAUSED:
                return
            if obj.jobs.current_async is not None:
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                            f"cannot resume the domain during a {obj.jobs.current_async.kind.value} job")
            await self.driver.resume_cpus(obj, RunningReason.UNPAUSED)

    async def domain_shutdown(self, dom: DomainRef) -> None:
        await self.domain_shutdown_flags(dom, 0)

    # domain_shutdown_flags, domain_reboot, domain_reset: api_lifecycle.LifecycleAPI

    # -- queries -----------------------------------------------------------------------
    async def domain_get_info(self, dom: DomainRef) -> tuple[int, int, int, int, int]:
        obj = self._obj(dom)
        d = obj.current
        # nrVirtCpu is the vCPUs online (libvirt's virDomainDefGetVcpus), not the maximum
        return int(obj.state), d.memory_kib, d.current_memory_kib, d.current_vcpus, self.driver.cpu_time_ns(obj)

    async def domain_get_xml_desc(self, dom: DomainRef, flags: int) -> str:
        check_flags(flags, _XML_FLAGS, "qemuDomainGetXMLDesc")
        obj = self._obj(dom)
        inactive = bool(flags & XMLFlags.INACTIVE) or not obj.active
        d = obj.definition if inactive else obj.current
        if flags & XMLFlags.MIGRATABLE:     # the XML another host gets (conf.migratable)
            return d.format(secure=bool(flags & XMLFlags.SECURE), migratable=True)
        return d.format(secure=bool(flags & XMLFlags.SECURE), inactive=inactive)

    async def domain_set_autostart(self, dom: DomainRef, autostart: int) -> None:
        obj = self._obj(dom)
        if not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "cannot set autostart for transient domain")
        link = self.driver.cfg.autostart_path(obj.definition.name)
        if autostart:
            link.write_text(obj.definition.name + "\n")
        else:
            link.unlink(missing_ok=True)
        obj.autostart = bool(autostart)

    async def domain_has_managed_save_image(self, dom: DomainRef, flags: int) -> int:
        check_flags(flags, 0, "qemuDomainHasManagedSaveImage")
        obj = self._obj(dom)
        obj.has_managed_save = self.driver.cfg.managed_save_path(obj.definition.name).exists()
        return int(obj.has_managed_save)

    async def domain_get_security_label(self, dom: DomainRef) -> tuple[str, int]:
        self._obj(dom)
        return "", 0

    async def node_get_security_model(self) -> tuple[str, str]:
        return "none", "0"

    # -- jobs -------------------------------------------------------------------------
    async def _refresh_job_stats(self, obj: QemuDomainObj) -> None:
        """During a migration, save or restore, ask QEMU for fresh figures (never waits behind the job)."""
        job = obj.jobs.current_async
        if job is None or job.kind not in _MIGRATION_LIKE or obj.process is None:
            return
        if job.kind in (AsyncJob.SAVE, AsyncJob.RESTORE) and job.phase != "perform":
            return                  # QEMU has no figures for this job yet (or any more)
        try:
            job.stats.update(mparams.job_stats(await obj.process.monitor.query_migrate()))
            storage = getattr(getattr(obj, "outgoing", None), "storage", None)
            if storage is not None:     # a non-shared-storage migration: its disk figures too
                await storage.refresh_stats(job.stats)
        except libvirtError:
            pass

    async def domain_get_job_info(self, dom: DomainRef) -> tuple[int, ...]:
        obj = self._obj(dom)
        await self._refresh_job_stats(obj)
        job = obj.jobs.current_async
        if job is None:
            return (int(JobType.NONE),) + (0,) * 11
        s = job.stats
        return (int(JobType.UNBOUNDED), job.elapsed_ms, s.get("time_remaining", 0),
                s.get("data_total", 0), s.get("data_processed", 0), s.get("data_remaining", 0),
                s.get("memory_total", 0), s.get("memory_processed", 0), s.get("memory_remaining", 0),
                s.get("disk_total", 0), s.get("disk_processed", 0), s.get("disk_remaining", 0))

    async def domain_get_job_stats(self, dom: DomainRef, flags: int) -> tuple[int, list[tuple[str, int, Any]]]:
        from ...enums import TypedParamType as T
        check_flags(flags, 3, "qemuDomainGetJobStats")
        obj = self._obj(dom)
        await self._refresh_job_stats(obj)
        job = obj.jobs.current_async
        if flags & 1:  # VIR_DOMAIN_JOB_STATS_COMPLETED
            job = obj.jobs.last_completed
        if job is None:
            return int(JobType.NONE), []
        params: list[tuple[str, int, Any]] = [("operation", int(T.INT), int(ASYNC_OPERATION[job.kind])),
                                              ("time_elapsed", int(T.ULLONG), job.elapsed_ms)]
        params += [(k, stat_type(k), int(v)) for k, v in job.stats.items() if isinstance(v, int)]
        params += [(k, int(T.STRING), v) for k, v in job.stats.items() if isinstance(v, str)]   # pyvirt.converge.last
        job_type = JobType.UNBOUNDED if obj.jobs.current_async is job else JobType.COMPLETED
        return int(job_type), params

    async def domain_abort_job(self, dom: DomainRef) -> None:
        obj = self._active(dom)
        job = obj.jobs.current_async
        if job is not None and job.kind is AsyncJob.RESTORE:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        "cannot abort a restore; destroy the domain instead")
        if postcopy.in_postcopy(obj):       # the guest's memory is split between the hosts now
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "cannot abort migration in post-copy mode")
        async with self.driver.job_guard(obj, JobKind.ABORT):
            obj.jobs.signal_async("abort")

    # -- save and restore ----------------------------------------------------------------
    async def domain_save(self, dom: DomainRef, to: str) -> None:
        await self.domain_save_flags(dom, to, None, 0)

    async def domain_save_flags(self, dom: DomainRef, to: str, dxml: str | None, flags: int) -> None:
        check_save_flags(flags, savemod.SAVE_FLAGS, "qemuDomainSaveFlags")
        await savemod.save(self.driver, self._active(dom), to, dxml, flags)

    async def domain_save_params(self, dom: DomainRef, params: list, flags: int) -> None:
        check_save_flags(flags, savemod.SAVE_FLAGS, "qemuDomainSaveParams")
        args = _save_params(params)
        if not args.get("path"):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        "saving to a managed-save location is done with virDomainManagedSave; "
                        "give the 'file' parameter")
        await savemod.save(self.driver, self._active(dom), args["path"], args.get("dxml"), flags,
                           image_format=args.get("image_format"), compat=args.get("compat"))

    async def domain_restore(self, from_: str) -> None:
        await self.domain_restore_flags(from_, None, 0)

    async def domain_restore_flags(self, from_: str, dxml: str | None, flags: int) -> None:
        check_save_flags(flags, restoremod.RESTORE_FLAGS, "qemuDomainRestoreFlags")
        await restoremod.restore(self.driver, from_, dxml, flags)

    async def domain_restore_params(self, params: list, flags: int) -> None:
        check_save_flags(flags, restoremod.RESTORE_FLAGS, "qemuDomainRestoreParams")
        args = _save_params(params)
        for name in ("image_format", "compat"):     # what a save chooses; an image says its own
            if name in args:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                            f"parameter '{_PARAM_NAMES[name]}' not supported when restoring")
        if not args.get("path"):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, "missing restore parameter 'file'")
        await restoremod.restore(self.driver, args["path"], args.get("dxml"), flags)

    async def domain_managed_save(self, dom: DomainRef, flags: int) -> None:
        check_save_flags(flags, savemod.SAVE_FLAGS, "qemuDomainManagedSave")
        obj = self._active(dom)
        if not obj.persistent:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        "cannot do managed save for transient domain")
        await savemod.save(self.driver, obj, str(self.driver.cfg.managed_save_path(obj.definition.name)),
                           None, flags)
        obj.has_managed_save = True

    async def domain_managed_save_remove(self, dom: DomainRef, flags: int) -> None:
        check_flags(flags, 0, "qemuDomainManagedSaveRemove")
        obj = self._obj(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            managedsave.remove_managed(self.driver, obj)

    async def domain_save_image_get_xml_desc(self, file: str, flags: int) -> str:
        check_flags(flags, int(XMLFlags.SECURE), "qemuDomainSaveImageGetXMLDesc")
        return await imagefile.image_xml(file, secure=bool(flags & XMLFlags.SECURE))

    async def domain_managed_save_get_xml_desc(self, dom: DomainRef, flags: int) -> str:
        check_flags(flags, int(XMLFlags.SECURE), "qemuDomainManagedSaveGetXMLDesc")
        return await managedsave.managed_xml(self.driver, self._obj(dom), secure=bool(flags & XMLFlags.SECURE))

    async def domain_managed_save_define_xml(self, dom: DomainRef, dxml: str | None, flags: int) -> None:
        check_flags(flags, imagedefine.DEFINE_FLAGS, "qemuDomainManagedSaveDefineXML")
        await managedsave.define_managed_xml(self.driver, self._obj(dom), dxml, flags)

    async def domain_save_image_define_xml(self, file: str, dxml: str, flags: int) -> None:
        check_flags(flags, imagedefine.DEFINE_FLAGS, "qemuDomainSaveImageDefineXML")
        await imagedefine.define(file, dxml, flags, self.driver.cfg.emulator)

    # -- libvirt-qemu ----------------------------------------------------------------
    async def domain_qemu_monitor_command(self, dom: DomainRef, cmd: str, flags: int) -> str:
        """Pass a QMP command (or, with flag 1, an HMP one) through to QEMU.

        Like libvirt, a QMP error is returned as the reply text, not raised:
        the caller asked for QEMU's raw answer.
        """
        check_flags(flags, 1, "qemuDomainQemuMonitorCommand")
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.QUERY):
            monitor = _running(obj).process.monitor
            if flags & 1:
                return await monitor.human_monitor_command(cmd)
            try:
                request = json.loads(cmd)
                if not isinstance(request, dict) or "execute" not in request:
                    raise ValueError("expected an object with 'execute'")
            except ValueError as exc:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                            f"cannot parse QMP command '{cmd}': {exc}") from None
            return await monitor.execute_passthrough(request["execute"], request.get("arguments"))

    # -- migration: every protocol generation maps onto one request --------------------
    async def domain_migrate_begin3(self, dom: DomainRef, xmlin: str | None, flags: int, dname: str | None,
                                    resource: int) -> tuple[bytes, str]:
        mparams.check_flags(flags, "qemuDomainMigrateBegin3")
        req = mparams.MigrationRequest(flags=flags, dname=dname, bandwidth=resource)
        return await source.begin(self.driver, self, dom, req, xmlin)

    async def domain_migrate_begin3_params(self, dom: DomainRef, params: list, flags: int) -> tuple[bytes, str]:
        mparams.check_flags(flags, "qemuDomainMigrateBegin3Params")
        req = mparams.from_params(params, flags)
        return await source.begin(self.driver, self, dom, req, req.dest_xml)

    async def domain_migrate_prepare3(self, cookie_in: bytes, uri_in: str | None, flags: int, dname: str | None,
                                      resource: int, dom_xml: str) -> tuple[bytes, str | None]:
        mparams.check_flags(flags, "qemuDomainMigratePrepare3")
        req = mparams.MigrationRequest(flags=flags, dname=dname, bandwidth=resource)
        return await destination.prepare(self.driver, self, req, cookie_in, dom_xml, uri_in)

    async def domain_migrate_prepare3_params(self, params: list, cookie_in: bytes,
                                             flags: int) -> tuple[bytes, str | None]:
        mparams.check_flags(flags, "qemuDomainMigratePrepare3Params")
        req = mparams.from_params(params, flags)
        if not req.dest_xml:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, "missing migration parameter 'destination_xml'")
        return await destination.prepare(self.driver, self, req, cookie_in, req.dest_xml, req.uri)

    async def domain_migrate_prepare_tunnel3(self, cookie_in: bytes, flags: int, dname: str | None,
                                             resource: int, dom_xml: str) -> tuple[bytes, Any]:
        mparams.check_flags(flags, "qemuDomainMigratePrepareTunnel3")
        req = mparams.MigrationRequest(flags=flags, dname=dname, bandwidth=resource)
        return await destination.prepare(self.driver, self, req, cookie_in, dom_xml, None, tunnelled=True)

    async def domain_migrate_prepare_tunnel3_params(self, params: list, cookie_in: bytes,
                                                    flags: int) -> tuple[bytes, Any]:
        mparams.check_flags(flags, "qemuDomainMigratePrepareTunnel3Params")
        req = mparams.from_params(params, flags)
        if not req.dest_xml:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, "missing migration parameter 'destination_xml'")
        return await destination.prepare(self.driver, self, req, cookie_in, req.dest_xml, None, tunnelled=True)

    async def domain_migrate_perform3(self, dom: DomainRef, xmlin: str | None, cookie_in: bytes,
                                      dconnuri: str | None, uri: str | None, flags: int, dname: str | None,
                                      resource: int) -> bytes:
        mparams.check_flags(flags, "qemuDomainMigratePerform3")
        req = mparams.MigrationRequest(flags=flags, dname=dname, bandwidth=resource, dest_xml=xmlin)
        return await self._perform(dom, req, cookie_in, dconnuri, uri)

    async def domain_migrate_perform3_params(self, dom: DomainRef, dconnuri: str | None, params: list,
                                             cookie_in: bytes, flags: int) -> bytes:
        mparams.check_flags(flags, "qemuDomainMigratePerform3Params")
        req = mparams.from_params(params, flags)
        return await self._perform(dom, req, cookie_in, dconnuri, req.uri)

    async def _perform(self, dom: DomainRef, req: mparams.MigrationRequest, cookie_in: bytes,
                       dconnuri: str | None, uri: str | None) -> bytes:
        if req.flags & MigrateFlags.PEER2PEER:
            if not dconnuri:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                            "peer-to-peer migration needs the destination's connection URI")
            req.uri = req.uri or uri
            await p2p.perform(self.driver, self, dom, req, dconnuri)
            return b""
        return await source.perform(self.driver, self, dom, req, cookie_in, uri, v3=True)

    async def domain_migrate_finish3(self, dname: str, cookie_in: bytes, dconnuri: str | None, uri: str | None,
                                     flags: int, cancelled: int) -> tuple[DomainRef, bytes]:
        mparams.check_flags(flags, "qemuDomainMigrateFinish3")
        req = mparams.MigrationRequest(flags=flags, dname=dname)
        return await destination.finish(self.driver, req, cookie_in, dname, bool(cancelled))

    async def domain_migrate_finish3_params(self, params: list, cookie_in: bytes, flags: int,
                                            cancelled: int) -> tuple[DomainRef, bytes]:
        mparams.check_flags(flags, "qemuDomainMigrateFinish3Params")
        req = mparams.from_params(params, flags)
        dname = req.dname or (conf.parse(req.dest_xml).name if req.dest_xml else None)
        if not dname:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, "missing migration parameter 'destination_name'")
        return await destination.finish(self.driver, req, cookie_in, dname, bool(cancelled))

    async def domain_migrate_confirm3(self, dom: DomainRef, cookie_in: bytes, flags: int, cancelled: int) -> None:
        mparams.check_flags(flags, "qemuDomainMigrateConfirm3")
        await source.confirm(self.driver, dom, mparams.MigrationRequest(flags=flags), cookie_in, bool(cancelled))

    async def domain_migrate_confirm3_params(self, dom: DomainRef, params: list, cookie_in: bytes, flags: int,
                                             cancelled: int) -> None:
        mparams.check_flags(flags, "qemuDomainMigrateConfirm3Params")
        await source.confirm(self.driver, dom, mparams.from_params(params, flags), cookie_in, bool(cancelled))

    # v2: no Begin, no Confirm, no cookies
    async def domain_migrate_prepare2(self, uri_in: str | None, flags: int, dname: str | None, resource: int,
                                      dom_xml: str) -> tuple[bytes, str | None]:
        mparams.check_flags(flags, "qemuDomainMigratePrepare2")
        leases.refuse_v2(self.driver)
        req = mparams.MigrationRequest(flags=flags, dname=dname, bandwidth=resource)
        _cookie, uri_out = await destination.prepare(self.driver, self, req, None, dom_xml, uri_in)
        return b"", uri_out

    async def domain_migrate_perform(self, dom: DomainRef, cookie: bytes, uri: str, flags: int,
                                     dname: str | None, resource: int) -> None:
        mparams.check_flags(flags, "qemuDomainMigratePerform")
        leases.refuse_v2(self.driver)
        req = mparams.MigrationRequest(flags=flags, dname=dname, bandwidth=resource)
        if flags & MigrateFlags.PEER2PEER:   # v1/v2 peer-to-peer: uri is the destination host
            await self._perform(dom, req, cookie, uri, None)
            return
        await source.perform(self.driver, self, dom, req, None, uri, v3=False)

    async def domain_migrate_finish2(self, dname: str, cookie: bytes, uri: str, flags: int,
                                     retcode: int) -> DomainRef:
        mparams.check_flags(flags, "qemuDomainMigrateFinish2")
        req = mparams.MigrationRequest(flags=flags, dname=dname)
        ref, _cookie = await destination.finish(self.driver, req, None, dname, bool(retcode), v3=False)
        return ref

    # -- migration tuning ---------------------------------------------------------------
    async def domain_migrate_set_max_speed(self, dom: DomainRef, bandwidth: int, flags: int) -> None:
        check_flags(flags, 0, "qemuDomainMigrateSetMaxSpeed")
        obj = self._obj(dom)
        async with self.driver.job_guard(obj, JobKind.MIGRATION_OP):
            obj.migrate_speed = bandwidth
            if obj.outgoing is not None and obj.outgoing.phase in _SENDING:
                obj.jobs.signal_async("speed", bandwidth)
            elif obj.process is not None:
                await obj.process.monitor.migrate_set_parameters(max_bandwidth=mparams.bandwidth_bytes(bandwidth))

    async def domain_migrate_get_max_speed(self, dom: DomainRef, flags: int) -> int:
        check_flags(flags, 0, "qemuDomainMigrateGetMaxSpeed")
        speed = self._obj(dom).migrate_speed
        return speed or mparams.BANDWIDTH_UNLIMITED_MIB

    async def domain_migrate_set_max_downtime(self, dom: DomainRef, downtime: int, flags: int) -> None:
        check_flags(flags, 0, "qemuDomainMigrateSetMaxDowntime")
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.MIGRATION_OP):
            obj.migrate_downtime = downtime
            if obj.outgoing is not None and obj.outgoing.phase in _SENDING:
                obj.jobs.signal_async("downtime", downtime)
            else:
                await _running(obj).process.monitor.migrate_set_parameters(downtime_limit=downtime)

    async def domain_migrate_get_max_downtime(self, dom: DomainRef, flags: int) -> int:
        check_flags(flags, 0, "qemuDomainMigrateGetMaxDowntime")
        obj = self._active(dom)
        async with self.driver.job_guard(obj, JobKind.QUERY):
            return int((await _running(obj).process.monitor.query_migrate_parameters()).get("downtime-limit", 300))

    async def domain_migrate_get_compression_cache(self, dom: DomainRef, flags: int) -> int:
        check_flags(flags, 0, "qemuDomainMigrateGetCompressionCache")
        obj = self._obj(dom)
        async with self.driver.job_guard(obj, JobKind.QUERY):
            monitor = (await _xbzrle_capable(_running(obj))).process.monitor
            return int((await monitor.query_migrate_parameters()).get("xbzrle-cache-size", 0))

    async def domain_migrate_set_compression_cache(self, dom: DomainRef, cache_size: int, flags: int) -> None:
        check_flags(flags, 0, "qemuDomainMigrateSetCompressionCache")
        obj = self._obj(dom)
        async with self.driver.job_guard(obj, JobKind.MIGRATION_OP):
            monitor = (await _xbzrle_capable(_running(obj))).process.monitor
            await monitor.migrate_set_parameters(xbzrle_cache_size=cache_size)


async def _xbzrle_capable(obj: QemuDomainObj) -> QemuDomainObj:
    """``obj`` if its QEMU can compress a migration with XBZRLE (libvirt's check, word for word)."""
    if not any(name == "xbzrle" for name, _on in await migration_capabilities(obj, "source")):
        raise error(ErrorDomain.QEMU, ErrorNumber.OPERATION_UNSUPPORTED,
                    "Compressed migration is not supported by QEMU binary")
    return obj


def _running(obj: QemuDomainObj) -> QemuDomainObj:
    """``obj`` itself if its QEMU runs (checked again once a job is held: it may have stopped)."""
    if not obj.active or obj.process is None:
        raise not_running(obj)
    return obj


_PARAM_NAMES = {attr: name for name, attr in _SAVE_PARAMS.items()}


def _save_params(params: list) -> dict[str, str]:
    """VIR_DOMAIN_SAVE_PARAM_* typed parameters → {'path', 'dxml'}; unknown names are refused."""
    out: dict[str, str] = {}
    for name, ptype, value in params:
        attr = _SAVE_PARAMS.get(name)
        if attr is None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"parameter '{name}' not supported")
        if int(ptype) != TypedParamType.STRING:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                        f"invalid type for parameter '{name}': expected string")
        out[attr] = value
    return out
