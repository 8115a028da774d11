"""Restore: start a guest from a save image.

Restore runs as a RESTORE job: the header and XML are read and checked (an
application's XML checked for ABI compatibility) before anything starts,
off the event loop (:mod:`.imagefile`), then QEMU starts with ``-incoming
defer`` and is handed the file, positioned at its migration stream, or a
pipe fed by the decompressor.  Once QEMU has loaded the whole stream the
guest is resumed (running/restored) or left paused.  If anything fails QEMU
is killed and the domain left as it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ... import conf
from ...conf.status import AsyncJobType
from ...enums import (DomainState, EventStartedDetail, EventStoppedDetail, EventSuspendedDetail,
                      EventType, PausedReason, RunningReason, SaveFlags, ShutoffReason)
from ...errors import ErrorDomain, ErrorNumber, FirstError, error
from ..domainlist import emit_lifecycle
from . import imagefile, saveimage
from .command import DOMAIN_TYPES
from .jobs import AsyncJob, AsyncJobState
from .migration.tunnel import make_pipe
from .save import as_received
from .savehelper import Helper, find_program
from .savestream import FD_NAME, HELPER_GRACE, ImageEnd, follow, hand_to_qemu, log_size, require_qemu

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)

RESTORE_FLAGS = int(SaveFlags.RUNNING | SaveFlags.PAUSED | SaveFlags.RESET_NVRAM)


@dataclass
class RestoreSource(ImageEnd):
    """The image QEMU reads: the file itself, or a pipe from the decompressor."""

    async def start(self, drv: "QemuDriver", domain: conf.DomainDef, fmt: saveimage.ImageFormat,
                    program: str | None) -> None:
        if program is not None:
            r, w = make_pipe()
            try:
                self.helper = await Helper.start([program, *fmt.decompress[1:]], stdin=self.fd, stdout=w,
                                                 role="decompressor")
            except BaseException:
                os.close(r)
                raise
            finally:
                os.close(w)
            self.qemu_fd = r
        else:
            self.qemu_fd = self.fd
        self.labels.append((self.qemu_fd, drv.security.set_image_fd_label(domain, self.qemu_fd)))

    async def finish(self, drv: "QemuDriver", domain: conf.DomainDef) -> None:
        """QEMU has the whole stream: the decompressor must end cleanly too."""
        self.close_pipe()
        if self.helper is not None:
            if await self.helper.wait(HELPER_GRACE) is None:
                log.warning("%s: the decompressor is still running after QEMU loaded the image; stopping it",
                            self.path)
                self.helper.kill()
            err = self.helper.failure()
            if err is not None and not self.helper.broken_pipe:
                raise err
        self.restore_labels(drv, domain)


async def restore(drv: "QemuDriver", path: str, dxml: str | None, flags: int,
                  managed: "QemuDomainObj | None" = None) -> "QemuDomainObj":
    """Start a guest from a save image; with ``managed``, that domain's managed-save image."""
    fd, image = await asyncio.to_thread(imagefile.open_image, path)
    source = RestoreSource(path, fd)
    try:
        live = _restore_def(image, dxml, path, drv.cfg.emulator)
        fmt = image.header.format
        program = find_program(fmt, drv.cfg.helper_path) if fmt.decompress else None
        run = image.header.was_running
        if flags & SaveFlags.RUNNING:
            run = True
        elif flags & SaveFlags.PAUSED:
            run = False
        if managed is not None:
            obj, created = managed, False
            if live.uuid != obj.uuid or live.name != obj.definition.name:
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                            f"cannot restore domain '{obj.definition.name}' uuid {obj.uuid} from a file "
                            f"which belongs to domain '{live.name}' uuid {live.uuid}")
        else:
            obj, created = await _domain_for(drv, live)
        try:
            job = await obj.jobs.begin_async(AsyncJob.RESTORE, drv.cfg.monitor_timeout)
        except BaseException:
            if created:
                drv.domains.remove(obj)
            raise
        try:
            await _restore_into(drv, obj, job, live, source, fmt, program, run, flags)
        except BaseException:
            await obj.jobs.end_async(job)
            # the transient domain made for this restore goes with it (libvirt's
            # qemuDomainRemoveInactive): a failed restore leaves nothing defined
            if created and not obj.active and drv.domains.find_uuid(obj.uuid) is obj:
                drv.domains.remove(obj)
            raise
        await obj.jobs.end_async(job)
    finally:
        await source.close()
    return obj


def _restore_def(image: saveimage.SaveImage, dxml: str | None, path: str, emulator: str) -> conf.DomainDef:
    """The definition to restore with: the image's, or an application's whose guest
    ABI is the image's once both are completed as a new definition is (an image
    holds migratable XML, without the default devices; the application's may list
    them), as libvirt's qemuSaveImageUpdateDef compares them."""
    saved = imagefile.image_def(image, None, path)
    if not dxml:
        return saved
    new = conf.parse(dxml, DOMAIN_TYPES, "qemu", inactive=True)
    conf.ensure_abi_stable(as_received(saved, emulator), as_received(new, emulator))
    return new


async def _domain_for(drv: "QemuDriver", live: conf.DomainDef) -> tuple["QemuDomainObj", bool]:
    """The domain a restore starts: an inactive one with this UUID and name, or a new transient one."""
    async with drv._define_lock:
        obj = drv.domains.check_new(live, allow_active_same=False)
        if obj is not None:
            return obj, False   # type: ignore[return-value]
        obj = drv._new_obj(live.copy(), persistent=False)
        drv.domains.add(obj)
        return obj, True


async def _restore_into(drv: "QemuDriver", obj: "QemuDomainObj", job: AsyncJobState, live: conf.DomainDef,
                        source: RestoreSource, fmt: saveimage.ImageFormat, program: str | None,
                        run: bool, flags: int) -> None:
    if obj.active:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, f"domain '{obj.name}' is already active")
    before = (obj.state, obj.reason)
    try:
        await drv.start(obj, incoming="defer", live_def=live)
        # Until it has loaded, a QEMU that dies is a failed restore, not a crash to
        # announce; and a daemon restarted meanwhile must not keep a half-restored guest.
        obj.stop_reason = (ShutoffReason.FAILED, EventStoppedDetail.FAILED)
        obj.quiet_stop = True
        obj.record_job(AsyncJobType.START)
        log_start = log_size(drv, obj)
        mon = require_qemu(obj).monitor     # a destroy may have come while it started
        started = obj.live
        await mon.migrate_set_capabilities({"events": True, "late-block-activate": True})
        await source.start(drv, started, fmt, program)
        await hand_to_qemu(obj, source.qemu_fd)
        source.close_pipe()
        job.phase = "perform"
        await mon.migrate_incoming(f"fd:{FD_NAME}")
        await follow(obj, job, source.helper, log_start)
        await source.finish(drv, started)
    except BaseException as exc:
        first = FirstError()
        first.record(exc)
        await _abandon_restore(drv, obj, source, before, first)
        first.raise_if_any()
    obj.stop_reason = None
    obj.quiet_stop, obj.job_record = False, None
    emit_lifecycle(drv.events, obj, EventType.STARTED, EventStartedDetail.RESTORED)
    if run:
        try:
            await drv.resume_cpus(obj, RunningReason.RESTORED)
        except BaseException:
            # as libvirt's qemuSaveImageStartVM: a restored guest whose CPUs cannot run
            # (its disk leases are held elsewhere, say) is stopped, shut off (failed)
            if obj.process is not None:
                try:
                    await drv.kill(obj, ShutoffReason.FAILED, EventStoppedDetail.FAILED, grace=1.0)
                except Exception:       # the first error is the resume's
                    log.exception("%s: cannot stop the restored QEMU after resuming failed", obj.name)
            raise
    else:
        # libvirt 9.0 leaves a guest restored paused as paused/migration
        obj.set_state(DomainState.PAUSED, PausedReason.MIGRATION)
        emit_lifecycle(drv.events, obj, EventType.SUSPENDED,
                       EventSuspendedDetail.PAUSED if flags & SaveFlags.PAUSED else EventSuspendedDetail.RESTORED)
    log.info("%s restored from %s (%s)", obj.name, source.path, fmt.name)


async def _abandon_restore(drv: "QemuDriver", obj: "QemuDomainObj", source: RestoreSource,
                           before: tuple[DomainState, int], first: FirstError) -> None:
    """Kill the half-restored QEMU; the domain is left as it was before."""
    await source.close()
    try:
        if obj.process is not None:
            await drv.kill(obj, ShutoffReason.FAILED, EventStoppedDetail.FAILED, grace=1.0, emit=False)
        elif obj.live is not None:
            await obj.stopped.wait()    # QEMU exited by itself: let its cleanup finish
    except Exception as exc:
        first.record(exc)
    if drv.domains.find_uuid(obj.uuid) is obj and not obj.active:
        obj.set_state(*before)
        drv._save_shutoff_reason(obj)
