"""Save: a running guest's state to a file, the guest stopped (shutoff/saved).

Save runs as a SAVE job: the image file is created first (so a path that
cannot be written never pauses the guest; :mod:`.imagefile` opens it
without following a symbolic link), its header marked partial and the
domain XML written, then the guest is paused (paused/save) and QEMU
migrates into the file: straight into its descriptor for raw images, or
into a pipe read by the format's compressor, which writes the file.  When
QEMU has finished and the helper has exited cleanly, the header is marked
complete and QEMU is stopped.  If anything fails, or the job is aborted,
QEMU's migration is cancelled, the helper stopped, the partial file removed,
and a guest that was running runs again (running/save canceled).

QEMU only ever gets descriptors, each labelled by the security manager's
image-descriptor step; the file's owner is given back once QEMU is done.

The guest can go at any await (destroyed, its QEMU killed): the job is
checked to find it running once granted, and every step after an await
asks for QEMU again (:func:`.savestream.require_qemu`), so a vanished QEMU
fails the save with libvirt's "guest unexpectedly quit", never an assertion.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ... import conf, testhooks
from ...conf.status import AsyncJobType
from ...enums import DomainState, EventStoppedDetail, PausedReason, RunningReason, SaveFlags, ShutoffReason
from ...errors import FirstError
from ..domainlist import not_running
from . import imagefile, machines, postparse, saveimage
from .command import DOMAIN_TYPES
from .jobs import AsyncJob, AsyncJobState
from .migration.params import bandwidth_bytes
from .migration.tunnel import make_pipe
from .savehelper import Helper, find_program
from .savestream import (FD_NAME, ImageEnd, close_qemu_fd, follow, hand_to_qemu, log_size, require_qemu,
                         stop_migration)

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)

SAVE_FLAGS = int(SaveFlags.RUNNING | SaveFlags.PAUSED)


@dataclass
class SaveTarget(ImageEnd):
    """The file being written and, with compression, the helper writing it."""

    file: imagefile.WrittenFile | None = None

    @classmethod
    async def open(cls, drv: "QemuDriver", obj: "QemuDomainObj", path: str, head: bytes,
                   fmt: saveimage.ImageFormat, program: str | None) -> "SaveTarget":
        written = await asyncio.to_thread(imagefile.open_for_writing, path, head)
        target = cls(path, written.fd, file=written)
        try:
            if program is not None:
                r, w = make_pipe()
                try:
                    target.helper = await Helper.start([program, *fmt.compress[1:]], stdin=r, stdout=target.fd,
                                                       role="compressor")
                except BaseException:
                    os.close(w)
                    raise
                finally:
                    os.close(r)
                target.qemu_fd = w
            else:
                target.qemu_fd = target.fd
            require_qemu(obj)     # the file took a thread, the helper a process: QEMU may be gone
            target.labels.append((target.qemu_fd, drv.security.set_image_fd_label(obj.live, target.qemu_fd)))
        except BaseException:
            await target.discard()
            raise
        return target

    async def finish(self, drv: "QemuDriver", obj: "QemuDomainObj", header: saveimage.SaveHeader) -> None:
        """QEMU is done: wait for the compressor, then mark the image complete."""
        self.close_pipe()
        if self.helper is not None:
            await self.helper.wait()
            err = self.helper.failure()
            if err is not None:
                raise err
        await asyncio.to_thread(imagefile.complete_header, self.fd, header, self.path)
        require_qemu(obj)
        self.restore_labels(drv, obj.live)
        os.close(self.fd)
        self.fd = -1

    async def discard(self) -> None:
        """Abandon the image: stop the helper, close, remove the partial file."""
        await self.close()
        if self.file is not None:
            await asyncio.to_thread(self.file.remove)


def image_xml(definition: conf.DomainDef) -> str:
    """The domain XML a save image carries: libvirt's migratable form, the one
    migration's Begin sends (with secrets), since libvirt's restore parses an
    image's XML like a new definition and adds back the default devices that
    form leaves out (and adds none the form says the guest lacks)."""
    return definition.format(secure=True, migratable=True)


def as_received(definition: conf.DomainDef, emulator: str) -> conf.DomainDef:
    """A copy of ``definition`` completed as a receiver of migratable XML completes
    it (libvirt parses an image's or an application's XML like a new definition):
    the form to compare with a running guest's, or with another such XML."""
    completed = definition.copy()
    postparse.complete(completed, new_definition=True, emulator=emulator,
                       machine_aliases=machines.aliases(completed.devices.emulator or emulator))
    return completed


def choose_format(drv: "QemuDriver", image_format: str | None = None,
                  compat: str | None = None) -> saveimage.ImageFormat:
    """The format of one save: the call's ``image_format`` (libvirt 11.2's save
    parameter), else ``save_image_format``; refused if the call's ``compat``
    (``pyvirt.image_compat``) or ``save_image_compat`` names a reader that cannot
    restore it (a call may ask for more than the host's setting, never for less)."""
    fmt = saveimage.image_format(image_format or drv.cfg.save_image_format)
    if compat:
        saveimage.check_compat(fmt, compat, f"the save parameter pyvirt.image_compat = '{compat}'")
    if drv.cfg.save_image_compat:
        saveimage.check_compat(fmt, drv.cfg.save_image_compat,
                               f"save_image_compat = \"{drv.cfg.save_image_compat}\"")
    return fmt


async def save(drv: "QemuDriver", obj: "QemuDomainObj", path: str, dxml: str | None, flags: int,
               image_format: str | None = None, compat: str | None = None) -> None:
    """Save a running guest's state to ``path`` and stop it (shutoff/saved)."""
    imagefile.check_path(path)
    fmt = choose_format(drv, image_format, compat)
    program = find_program(fmt, drv.cfg.helper_path) if fmt.compress else None
    if not obj.active:
        raise not_running(obj)
    async with obj.jobs.async_job(AsyncJob.SAVE, drv.cfg.monitor_timeout) as job:
        if not obj.active or obj.process is None or obj.live is None:
            raise not_running(obj)
        xml_def = obj.live
        if dxml:
            xml_def = as_received(conf.parse(dxml, DOMAIN_TYPES, "qemu", inactive=True), drv.cfg.emulator)
            conf.ensure_abi_stable(obj.live, xml_def)
        was_running = obj.state == DomainState.RUNNING
        resume_after = bool(flags & SaveFlags.RUNNING) or (was_running and not flags & SaveFlags.PAUSED)
        header, head = saveimage.build(image_xml(xml_def), resume_after, fmt)
        await testhooks.reach("save", obj.name)
        # The file first: a path that cannot be written never pauses the guest.
        target = await SaveTarget.open(drv, obj, path, head, fmt, program)
        paused = False
        try:
            # A daemon restarted during the save cancels it and resumes the guest.
            obj.record_job(AsyncJobType.SAVE, was_running=was_running)
            if was_running:
                require_qemu(obj)
                paused = True
                await drv.pause_cpus(obj, PausedReason.SAVE)
            await _migrate_to_file(drv, obj, job, target)
            await target.finish(drv, obj, header)
        except BaseException as exc:
            first = FirstError()
            first.record(exc)
            await _undo_save(drv, obj, job, target, paused, first)
            first.raise_if_any()
        await drv.release_leases(obj)
        await drv.kill(obj, ShutoffReason.SAVED, EventStoppedDetail.SAVED)
    log.info("%s saved to %s (%s)", obj.name, path, fmt.name)
    if not fmt.libvirt_9_reads:
        log.info("%s: libvirt 9.0 cannot restore a %s image (save_image_compat = \"libvirt-9.0\" refuses "
                 "such saves)", path, fmt.name)


async def _migrate_to_file(drv: "QemuDriver", obj: "QemuDomainObj", job: AsyncJobState,
                           target: SaveTarget) -> None:
    mon = require_qemu(obj).monitor
    await mon.migrate_set_capabilities({"events": True})
    await mon.migrate_set_parameters(max_bandwidth=bandwidth_bytes(0))    # a file: no speed cap
    await hand_to_qemu(obj, target.qemu_fd)
    target.close_pipe()
    log_start = log_size(drv, obj)
    job.phase = "perform"
    try:
        await mon.migrate(f"fd:{FD_NAME}")
    except BaseException:
        await close_qemu_fd(obj)
        raise
    await follow(obj, job, target.helper, log_start)


async def _undo_save(drv: "QemuDriver", obj: "QemuDomainObj", job: AsyncJobState, target: SaveTarget,
                     paused: bool, first: FirstError) -> None:
    """Put the guest back as it was (running again if we paused it) and leave no
    partial image behind."""
    obj.job_record = None
    try:
        if target.helper is not None:
            target.helper.kill()       # a QEMU blocked on a full pipe gets EPIPE
        await stop_migration(obj, job)
    except Exception as exc:
        first.record(exc)
    await target.discard()
    try:
        if obj.process is not None and paused:
            if not (await obj.process.monitor.query_status()).get("running"):
                await drv.resume_cpus(obj, RunningReason.SAVE_CANCELED)
            else:
                obj.set_state(DomainState.RUNNING, RunningReason.SAVE_CANCELED)
        elif obj.active:
            obj.save_status()
    except Exception as exc:          # cleanup errors never replace the first one
        first.record(exc)
