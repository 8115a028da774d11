"""Save, restore and managed save: a guest's state to a file and back.

**Save** runs as a SAVE job: write the image header, marked partial, and
the domain XML, pause the guest (paused/save), then let QEMU migrate into
the file: straight into its descriptor for raw images, or into a pipe read
by the format's compressor, which writes the file.  When QEMU has finished and
the helper has exited cleanly, the header is marked complete and QEMU is
stopped (shutoff/saved).  If anything fails, or the job is aborted, QEMU's
migration is cancelled, the helper stopped, the partial file removed, and a
guest that was running runs again (running/save canceled).

**Restore** runs as a RESTORE job: the header and XML are read and checked
(and an application's XML checked for ABI compatibility) before anything
starts, then QEMU starts with ``-incoming defer`` and is handed the file,
positioned at its migration stream, or a pipe fed by the decompressor.  Once
QEMU has loaded the whole stream the guest is resumed (running/restored) or
left paused.  If anything fails QEMU is killed and the domain left as it was.

QEMU only ever gets descriptors (``getfd`` then ``fd:NAME``), never paths:
each one is labelled by the security manager's image-descriptor step, and a
file's owner is given back once QEMU is done; the steps that label a save
file by path are skipped, since QEMU never opens it.  No speed cap applies
when writing to a file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ... import conf
from ...enums import (DomainState, EventStartedDetail, EventStoppedDetail, EventSuspendedDetail,
                      EventType, PausedReason, RunningReason, SaveFlags, ShutoffReason)
from ...errors import ErrorDomain, ErrorNumber, FirstError, error, libvirtError
from ...security import SavedLabel
from ..domainlist import emit_lifecycle, not_running
from . import process as procmod
from . import saveimage
from .command import DOMAIN_TYPES
from .jobs import AsyncJob, AsyncJobState
from .migration.params import bandwidth_bytes, job_stats
from .migration.tunnel import make_pipe
from .savehelper import Helper, find_program

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)

FD_NAME = "pyvirt-save"
POLL_SECONDS = 1.0          # a safety net only: QEMU's MIGRATION events drive the loop
HELPER_GRACE = 5.0          # after QEMU failed, how long a helper gets to exit by itself
CANCEL_WAIT = 10.0          # how long a cancelled migration gets to stop before resuming
JOB_NAMES = {AsyncJob.SAVE: "domain save job", AsyncJob.RESTORE: "domain restore job"}
SAVE_FLAGS = int(SaveFlags.RUNNING | SaveFlags.PAUSED)
RESTORE_FLAGS = int(SaveFlags.RUNNING | SaveFlags.PAUSED | SaveFlags.RESET_NVRAM)
_ACTIVE = ("setup", "active", "pre-switchover", "device", "cancelling")


def check_flags(flags: int, allowed: int, function: str) -> None:
    """libvirt's flag checks for the save and restore calls."""
    if flags & SaveFlags.BYPASS_CACHE:
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU,
                    f"{function}: bypassing the host page cache (VIR_DOMAIN_SAVE_BYPASS_CACHE) is not supported")
    unknown = flags & ~allowed
    if unknown:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"unsupported flags (0x{unknown:x}) in function {function}")
    if flags & SaveFlags.RUNNING and flags & SaveFlags.PAUSED:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    "flags 'running' and 'paused' are mutually exclusive")


def _absolute(path: str) -> str:
    if not path or not os.path.isabs(path):
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"save image path '{path}' must be absolute (the daemon has no working directory of yours)")
    return path


def _os_error(what: str, path: str, exc: OSError) -> libvirtError:
    err = error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU, f"{what} '{path}': {exc.strerror}")
    err.__cause__ = exc
    return err


# -- reading an image -----------------------------------------------------------------

def open_image(path: str) -> tuple[int, saveimage.SaveImage]:
    """Open a save image and check its header and XML; the descriptor is left
    positioned at QEMU's stream.  The caller closes it."""
    _absolute(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise _os_error("cannot open save image", path, exc) from None
    try:
        os.set_blocking(fd, True)
        image = read_image(fd, path)
        os.lseek(fd, image.header.stream_offset, os.SEEK_SET)
        return fd, image
    except BaseException:
        os.close(fd)
        raise


def read_image(fd: int, path: str) -> saveimage.SaveImage:
    try:
        header = saveimage.parse_header(os.pread(fd, saveimage.HEADER_SIZE, 0), path)
        data = os.pread(fd, header.data_len, saveimage.HEADER_SIZE)
        st = os.fstat(fd)
    except OSError as exc:
        raise _os_error("cannot read save image", path, exc) from None
    image = saveimage.parse_data(header, data, path)
    if stat.S_ISREG(st.st_mode) and st.st_size <= header.stream_offset:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                    f"save image '{path}': the image is truncated: it ends at byte {st.st_size}, "
                    f"before QEMU's migration stream (at byte {header.stream_offset})")
    return image


def image_def(image: saveimage.SaveImage, dxml: str | None, path: str) -> conf.DomainDef:
    """The definition to restore with: the image's, or an application's if its ABI matches."""
    try:
        saved = conf.parse(image.xml, DOMAIN_TYPES, "qemu", inactive=True)
    except libvirtError as exc:
        raise error(ErrorNumber(exc.get_error_code()), ErrorDomain(exc.get_error_domain()),
                    f"the domain XML in save image '{path}' is unusable: {exc.get_str2() or exc}") from exc
    if not dxml:
        return saved
    new = conf.parse(dxml, DOMAIN_TYPES, "qemu", inactive=True)
    conf.ensure_abi_stable(saved, new)
    return new


def image_xml(path: str, secure: bool) -> str:
    """virDomainSaveImageGetXMLDesc: the XML stored in an image."""
    fd, image = open_image(path)
    os.close(fd)
    return image_def(image, None, path).format(secure=secure, inactive=True)


def image_is_partial(path: str) -> bool:
    """The image was left by a save that never finished (its magic says so)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(saveimage.MAGIC_PARTIAL)) == saveimage.MAGIC_PARTIAL
    except OSError:
        return False


# -- following QEMU's migration (both directions) ---------------------------------------

async def follow(obj: "QemuDomainObj", job: AsyncJobState, helper: Helper | None = None,
                 log_start: int = 0) -> None:
    """Until QEMU reports the migration completed; act on abort meanwhile.

    QEMU's MIGRATION events arrive on the job's signal queue and each one
    triggers a ``query-migrate`` (which also refreshes the job's figures);
    a poll every POLL_SECONDS is the safety net.  A helper that fails on its
    own ends the job with its error; abort cancels QEMU's migration and stops
    the helper, since QEMU may be blocked writing into its pipe.  ``log_start``
    is where QEMU's log stood when the job began: what QEMU writes after it
    explains a failure.
    """
    name = JOB_NAMES[job.kind]
    if helper is not None:
        helper.on_exit(lambda: job.signal("helper-exited"))
    while True:
        try:
            signal, value = await asyncio.wait_for(job.signals.get(), POLL_SECONDS)
        except asyncio.TimeoutError:
            signal, value = "poll", None
        if signal in ("qmp-event", "poll"):
            if signal == "qmp-event" and value[0] != "MIGRATION":
                continue
            qp = obj.process
            if qp is None:
                raise await _gone(obj, None, name, helper, log_start)
            try:
                info = await _query_migrate(obj, job, helper)
            except libvirtError:
                if qp.alive and qp.monitor.connected:
                    raise
                raise await _gone(obj, qp, name, helper, log_start) from None   # it died under the query
            job.stats.update(job_stats(info))
            status = info.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise await _failed(obj, job, name, info, helper, log_start)
        elif signal == "abort":
            if helper is not None:
                helper.kill()          # first: QEMU may be blocked writing into its pipe
            if obj.process is not None:
                await obj.process.monitor.migrate_cancel()
        elif signal == "helper-exited":
            assert helper is not None
            err = _own_failure(helper)
            if err is not None:
                raise err
            # Exited cleanly, or a decompressor whose reader (QEMU) went first:
            # QEMU's own status says what happened.
            job.signal("poll")
        elif signal == "qemu-gone":
            raise await _gone(obj, None, name, helper, log_start)


async def _query_migrate(obj: "QemuDomainObj", job: AsyncJobState, helper: Helper | None) -> dict[str, Any]:
    """``query-migrate``, still acting on abort while QEMU answers: a QEMU writing
    into the pipe of a helper that stopped reading can hold its main loop until
    the helper is gone, and only stopping the helper frees it.  Other signals
    wait on the queue for the loop."""
    assert obj.process is not None
    query = asyncio.ensure_future(obj.process.monitor.query_migrate())
    held: list[tuple[str, Any]] = []
    try:
        while not query.done():
            getter = asyncio.ensure_future(job.signals.get())
            await asyncio.wait({query, getter}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()        # a woken getter leaves its item in the queue
                continue
            held.append(getter.result())
            if held[-1][0] == "abort" and helper is not None:
                helper.kill()
        return query.result()
    finally:
        if not query.done():
            query.cancel()
        for item in held:
            job.signals.put_nowait(item)


def _own_failure(helper: Helper) -> libvirtError | None:
    """The helper's failure, unless it only lost its reader: a decompressor
    whose QEMU stopped reading first is a symptom, not the cause."""
    err = helper.failure()
    if err is not None and helper.role == "decompressor" and helper.broken_pipe:
        return None
    return err


async def _helper_error(helper: Helper | None) -> libvirtError | None:
    """After QEMU failed: the helper's own failure if it had one (QEMU then only
    saw a broken pipe or a short stream); the helper gets a moment to exit."""
    if helper is None:
        return None
    if await helper.wait(HELPER_GRACE) is None:
        helper.kill()
    return _own_failure(helper)


async def _failed(obj: "QemuDomainObj", job: AsyncJobState, name: str, info: dict[str, Any],
                  helper: Helper | None, log_start: int) -> libvirtError:
    """The error for a failed or cancelled migration: abort, else the helper's own
    failure (QEMU only saw a broken pipe), else QEMU's description."""
    if job.abort_requested:
        return error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.QEMU, f"{name}: canceled by client")
    if job.kind == AsyncJob.RESTORE and "error-desc" not in info:
        # A QEMU that fails to load says why in its log, then exits.
        return await _gone(obj, obj.process, name, helper, log_start)
    err = await _helper_error(helper)
    if err is not None:
        return err
    if info.get("status") == "cancelled":
        return error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.QEMU, f"{name}: canceled")
    return error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                 f"{name}: {info.get('error-desc', 'unexpectedly failed')}")


async def _gone(obj: "QemuDomainObj", qp: procmod.QemuProcess | None, name: str,
                helper: Helper | None, log_start: int) -> libvirtError:
    """QEMU exited (or is exiting) during the job: the helper's own failure if it
    had one, else QEMU's last words from its log."""
    if qp is not None:
        try:
            await asyncio.wait_for(asyncio.shield(qp.exited), HELPER_GRACE)
        except asyncio.TimeoutError:
            pass
    err = await _helper_error(helper)
    if err is not None:
        return err
    tail = procmod.log_tail(obj.cfg.log_path(obj.name), start=log_start) if obj.cfg is not None else ""
    detail = f"{name}: QEMU exited"
    return error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, f"{detail}: {tail}" if tail else detail)


async def _stop_migration(obj: "QemuDomainObj", job: AsyncJobState) -> None:
    """Cancel QEMU's migration if it still runs, and wait until it has stopped."""
    if obj.process is None:
        return
    mon = obj.process.monitor
    deadline = asyncio.get_running_loop().time() + CANCEL_WAIT
    cancelled = False
    while obj.process is not None:
        status = (await mon.query_migrate()).get("status")
        if status not in _ACTIVE:
            return
        if not cancelled:
            await mon.migrate_cancel()
            cancelled = True
        if asyncio.get_running_loop().time() > deadline:
            log.error("%s: QEMU's migration did not stop within %.0fs of migrate_cancel", obj.name, CANCEL_WAIT)
            return
        try:
            await asyncio.wait_for(job.signals.get(), 0.05)
        except asyncio.TimeoutError:
            pass


async def _hand_to_qemu(obj: "QemuDomainObj", fd: int) -> None:
    assert obj.process is not None
    await obj.process.monitor.getfd(fd, FD_NAME)


async def _close_qemu_fd(obj: "QemuDomainObj") -> None:
    """QEMU keeps a descriptor passed with getfd until a migration takes it."""
    if obj.process is not None:
        try:
            await obj.process.monitor.closefd(FD_NAME)
        except libvirtError:
            pass   # already taken by the migration, or QEMU gone


# -- the image file and the descriptor QEMU gets ------------------------------------------

@dataclass
class _ImageEnd:
    """An image file, the descriptor handed to QEMU (the file itself or a pipe to
    or from a compression helper), and the labels set on it."""

    path: str
    fd: int
    helper: Helper | None = None
    qemu_fd: int = -1
    labels: list[tuple[int, SavedLabel | None]] = field(default_factory=list)

    def close_pipe(self) -> None:
        """Drop our copy of QEMU's pipe end, so the helper sees QEMU's EOF (or QEMU the helper's)."""
        if self.helper is not None and self.qemu_fd >= 0:
            os.close(self.qemu_fd)
            self.qemu_fd = -1

    def _restore_labels(self, drv: "QemuDriver", domain: conf.DomainDef) -> None:
        for fd, saved in self.labels:
            if fd >= 0 and saved is not None:
                drv.security.restore_image_fd_label(domain, fd, saved)
        self.labels.clear()

    async def close(self) -> None:
        """Stop the helper, close every descriptor."""
        if self.helper is not None:
            await self.helper.stop()
        self.close_pipe()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# -- save -------------------------------------------------------------------------------

@dataclass
class _SaveTarget(_ImageEnd):
    """The file being written and, with compression, the helper writing it."""

    created: bool = False

    @classmethod
    async def open(cls, drv: "QemuDriver", obj: "QemuDomainObj", path: str, head: bytes,
                   fmt: saveimage.ImageFormat, program: str | None) -> "_SaveTarget":
        existed = os.path.lexists(path)
        try:
            # O_NONBLOCK: never hang the daemon on a FIFO nobody reads
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            raise _os_error("cannot create save image", path, exc) from None
        target = cls(path, fd, created=not existed)
        try:
            os.set_blocking(fd, True)
            mode = os.fstat(fd).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                            f"save image '{path}' must be a regular file or a block device")
            _write_all(fd, head, path)
            if program is not None:
                r, w = make_pipe()
                try:
                    target.helper = await Helper.start([program, *fmt.compress[1:]], stdin=r, stdout=fd,
                                                       role="compressor")
                except BaseException:
                    os.close(w)
                    raise
                finally:
                    os.close(r)
                target.qemu_fd = w
            else:
                target.qemu_fd = fd
            assert obj.live is not None
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
        try:
            os.pwrite(self.fd, saveimage.pack_header(header, complete=True), 0)
        except OSError as exc:
            raise _os_error("cannot complete the header of save image", self.path, exc) from None
        assert obj.live is not None
        self._restore_labels(drv, obj.live)
        os.close(self.fd)
        self.fd = -1

    async def discard(self) -> None:
        """Abandon the image: stop the helper, close, remove the partial file."""
        await self.close()
        try:
            if stat.S_ISREG(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except OSError:
            pass


def _write_all(fd: int, data: bytes, path: str) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise _os_error("cannot write save image", path, exc) from None


async def save(drv: "QemuDriver", obj: "QemuDomainObj", path: str, dxml: str | None, flags: int) -> None:
    """Save a running guest's state to ``path`` and stop it (shutoff/saved)."""
    _absolute(path)
    fmt = saveimage.image_format(drv.cfg.save_image_format)
    program = find_program(fmt, drv.cfg.helper_path) if fmt.compress else None
    if not obj.active:
        raise not_running(obj)
    async with obj.jobs.async_job(AsyncJob.SAVE, drv.cfg.monitor_timeout) as job:
        if not obj.active or obj.process is None or obj.live is None:
            raise not_running(obj)
        xml_def = obj.live
        if dxml:
            xml_def = conf.parse(dxml, DOMAIN_TYPES, "qemu", inactive=True)
            conf.ensure_abi_stable(obj.live, xml_def)
        was_running = obj.state == DomainState.RUNNING
        resume_after = bool(flags & SaveFlags.RUNNING) or (was_running and not flags & SaveFlags.PAUSED)
        header, head = saveimage.build(xml_def.format(secure=True, inactive=True), resume_after, fmt)
        # The file first: a path that cannot be written never pauses the guest.
        target = await _SaveTarget.open(drv, obj, path, head, fmt, program)
        paused = False
        try:
            # A daemon restarted during the save cancels it and resumes the guest.
            obj.extra["migration_out"] = "running" if was_running else "paused"
            obj.save_status()
            if was_running:
                paused = True
                await drv.pause_cpus(obj, PausedReason.SAVE)
            await _migrate_to_file(drv, obj, job, target)
            await target.finish(drv, obj, header)
        except BaseException as exc:
            first = FirstError()
            first.record(exc)
            await _undo_save(drv, obj, job, target, paused, first)
            first.raise_if_any()
        drv.release_leases(obj)
        await drv.kill(obj, ShutoffReason.SAVED, EventStoppedDetail.SAVED)
    log.info("%s saved to %s (%s)", obj.name, path, fmt.name)


async def _migrate_to_file(drv: "QemuDriver", obj: "QemuDomainObj", job: AsyncJobState,
                           target: _SaveTarget) -> None:
    assert obj.process is not None
    mon = obj.process.monitor
    await mon.migrate_set_capabilities({"events": True})
    await mon.migrate_set_parameters(max_bandwidth=bandwidth_bytes(0))    # a file: no speed cap
    await _hand_to_qemu(obj, target.qemu_fd)
    target.close_pipe()
    log_start = _log_size(drv, obj)
    job.phase = "perform"
    try:
        await mon.migrate(f"fd:{FD_NAME}")
    except BaseException:
        await _close_qemu_fd(obj)
        raise
    await follow(obj, job, target.helper, log_start)


async def _undo_save(drv: "QemuDriver", obj: "QemuDomainObj", job: AsyncJobState, target: _SaveTarget,
                     paused: bool, first: FirstError) -> None:
    """Put the guest back as it was (running again if we paused it) and leave no
    partial image behind."""
    obj.extra.pop("migration_out", None)
    try:
        if target.helper is not None:
            target.helper.kill()       # a QEMU blocked on a full pipe gets EPIPE
        await _stop_migration(obj, job)
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


# -- restore ------------------------------------------------------------------------------

@dataclass
class _RestoreSource(_ImageEnd):
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
        self._restore_labels(drv, domain)


async def restore(drv: "QemuDriver", path: str, dxml: str | None, flags: int,
                  managed: "QemuDomainObj | None" = None) -> "QemuDomainObj":
    """Start a guest from a save image; with ``managed``, that domain's managed-save image."""
    fd, image = open_image(path)
    source = _RestoreSource(path, fd)
    try:
        live = image_def(image, dxml, path)
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
        finally:
            await obj.jobs.end_async(job)
    finally:
        await source.close()
    return obj


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
                        source: _RestoreSource, fmt: saveimage.ImageFormat, program: str | None,
                        run: bool, flags: int) -> None:
    if obj.active:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, f"domain '{obj.name}' is already active")
    before = (obj.state, obj.reason)
    try:
        await drv.start(obj, incoming="defer", live_def=live)
        # Until it has loaded, a QEMU that dies is a failed restore, not a crash to
        # announce; and a daemon restarted meanwhile must not keep a half-restored guest.
        obj.stop_reason = (ShutoffReason.FAILED, EventStoppedDetail.FAILED)
        obj.extra.update(quiet_stop="1", migration_in="restore")
        obj.save_status()
        log_start = _log_size(drv, obj)
        assert obj.process is not None and obj.live is not None
        mon = obj.process.monitor
        await mon.migrate_set_capabilities({"events": True, "late-block-activate": True})
        await source.start(drv, obj.live, fmt, program)
        await _hand_to_qemu(obj, source.qemu_fd)
        source.close_pipe()
        job.phase = "perform"
        await mon.migrate_incoming(f"fd:{FD_NAME}")
        await follow(obj, job, source.helper, log_start)
        await source.finish(drv, obj.live)
    except BaseException as exc:
        first = FirstError()
        first.record(exc)
        await _abandon_restore(drv, obj, source, before, first)
        first.raise_if_any()
    obj.stop_reason = None
    for key in ("quiet_stop", "migration_in"):
        obj.extra.pop(key, None)
    emit_lifecycle(drv.events, obj, EventType.STARTED, EventStartedDetail.RESTORED)
    if run:
        await drv.resume_cpus(obj, RunningReason.RESTORED)
    else:
        # libvirt 9.0 leaves a guest restored paused as paused/migration
        obj.set_state(DomainState.PAUSED, PausedReason.MIGRATION)
        emit_lifecycle(drv.events, obj, EventType.SUSPENDED,
                       EventSuspendedDetail.PAUSED if flags & SaveFlags.PAUSED else EventSuspendedDetail.RESTORED)
    log.info("%s restored from %s (%s)", obj.name, source.path, fmt.name)


def _log_size(drv: "QemuDriver", obj: "QemuDomainObj") -> int:
    """Where QEMU's log is now: what it writes after this explains a failure."""
    try:
        return drv.cfg.log_path(obj.name).stat().st_size
    except OSError:
        return 0


async def _abandon_restore(drv: "QemuDriver", obj: "QemuDomainObj", source: _RestoreSource,
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


async def start_managed(drv: "QemuDriver", obj: "QemuDomainObj", flags: int, force_boot: bool) -> bool:
    """Start a persistent domain from its managed-save image, if it has one.

    Returns False when the domain should boot normally instead: it has no
    image, ``force_boot`` discarded it, or the image was left incomplete by
    a save that never finished (removed, as libvirt does).  A restore that
    fails for any other reason is an error, and the image is kept.
    """
    path = drv.cfg.managed_save_path(obj.definition.name)
    if not path.exists():
        obj.has_managed_save = False
        return False
    if force_boot or image_is_partial(str(path)):
        if not force_boot:
            log.warning("%s: ignoring the incomplete managed-save image %s", obj.name, path)
        remove_managed(drv, obj)
        return False
    await restore(drv, str(path), None, flags, managed=obj)
    remove_managed(drv, obj)
    return True


def remove_managed(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    path = drv.cfg.managed_save_path(obj.definition.name)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _os_error("cannot remove managed-save image", str(path), exc) from None
    obj.has_managed_save = False
