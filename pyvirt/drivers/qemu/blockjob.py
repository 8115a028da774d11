"""Block jobs (copy, commit, pull) as libvirt runs them with blockdev-era QEMU.

One job per disk.  Each job is a QEMU job named as libvirt names them
(``copy-vda-libvirt-1-format``), followed by a watcher that listens to its
QMP events: READY marks the live XML's ``<mirror ready='yes'>``; the end of
the job (QEMU's COMPLETED or CANCELLED) is reported as libvirt does from
what *we* asked for, not from QEMU's event name (a READY mirror that is
cancelled ends with QEMU's COMPLETED, which libvirt reports as CANCELED).
Only these jobs' events come from here; :mod:`.qemu_events` leaves them
alone (:func:`owns`).

The disk's definition changes only when QEMU says the job finished: after
a pivot the disk names the copy (or the commit's base), after a commit or a
pull its backing chain is read back from QEMU.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...conf.devices import DiskMirror
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from . import qemu_events
from .blockjob_chain import BlockImage, chain_of, create_image, free_node_index

if TYPE_CHECKING:
    from ...conf.devices import Disk
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)

PULL, COPY, COMMIT, ACTIVE_COMMIT = 1, 2, 3, 4          # virDomainBlockJobType
COMPLETED, FAILED, CANCELED, READY = 0, 1, 2, 3          # virConnectDomainEventBlockJobStatus
_PREFIX = {PULL: "pull", COPY: "copy", COMMIT: "commit", ACTIVE_COMMIT: "active-commit"}
_EVENTS = ("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED")
MIB = 1 << 20


@dataclass
class BlockJob:
    disk: "Disk"
    type: int
    qemu_id: str
    top: BlockImage                 # the disk's image when the job began
    state: str = "running"          # running | ready | pivoting | aborting
    added: list[str] = field(default_factory=list)   # nodes this job added (the copy's)
    target: BlockImage | None = None   # the copy, or the commit's base
    done: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: "asyncio.Task[None] | None" = None


_JOBS: "weakref.WeakKeyDictionary[Any, dict[str, BlockJob]]" = weakref.WeakKeyDictionary()


def jobs_of(obj: "QemuDomainObj") -> dict[str, BlockJob]:
    return _JOBS.setdefault(obj, {})


def owns(obj: "QemuDomainObj", qemu_id: Any) -> bool:
    """Is this QEMU job one of ours (whose events this module raises)?"""
    return any(job.qemu_id == qemu_id for job in _JOBS.get(obj, {}).values())


def refuse_if_any(obj: "QemuDomainObj") -> None:
    """libvirt's qemuMigrationSrcIsAllowed: no migration while a block job runs."""
    live = obj.live
    if _JOBS.get(obj) or (live is not None and any(d.mirror is not None for d in live.devices.disks)):
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "domain has active block job")


def find_disk(obj: "QemuDomainObj", name: str) -> "Disk":
    """libvirt's qemuDomainDiskByName: a target or a source path."""
    live = obj.live
    for disk in live.devices.disks if live is not None else []:
        if name in (disk.target_dev, disk.source):
            return disk
    raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"disk '{name}' not found in domain")


def job_for(obj: "QemuDomainObj", disk: "Disk") -> BlockJob | None:
    return jobs_of(obj).get(disk.target_dev)


def _no_job(disk: "Disk") -> Exception:
    return error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, f"No active block job '{disk.target_dev}'")


def _check_free(obj: "QemuDomainObj", disk: "Disk") -> None:
    if job_for(obj, disk) is not None or disk.mirror is not None:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                    f"disk '{disk.target_dev}' already in active block job")
    if obj.jobs.current_async is not None:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                    f"domain '{obj.name}' has an asynchronous job running ({obj.jobs.current_async.kind.value})")


def _monitor(obj: "QemuDomainObj") -> Any:
    if obj.process is None or obj.live is None:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "domain is not running")
    return obj.process.monitor


async def _top(obj: "QemuDomainObj", disk: "Disk") -> tuple[BlockImage, list[BlockImage]]:
    chain = await chain_of(obj, disk)
    if not chain:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                    f"disk '{disk.target_dev}' has no medium in the running domain")
    return chain[0], chain


def _job_id(job_type: int, disk: "Disk", top: BlockImage) -> str:
    return f"{_PREFIX[job_type]}-{disk.target_dev}-{top.node}"


async def _launch(drv: "QemuDriver", obj: "QemuDomainObj", job: BlockJob, command: str,
                  args: dict[str, Any]) -> None:
    """Start the QEMU job with its listener already open (no event can be missed)."""
    mon = _monitor(obj)
    scope = mon.listener(*_EVENTS)
    listener = scope.__enter__()        # left by the watcher when the job ends
    try:
        await mon.execute(command, {"job-id": job.qemu_id, **args})
    except BaseException:
        scope.__exit__(None, None, None)
        raise
    _follow(drv, obj, job, scope, listener)


def _follow(drv: "QemuDriver", obj: "QemuDomainObj", job: BlockJob, scope: Any, listener: Any) -> None:
    jobs_of(obj)[job.disk.target_dev] = job
    job.watcher = asyncio.get_running_loop().create_task(_watch(drv, obj, job, scope, listener),
                                                         name=f"blockjob-{obj.name}-{job.qemu_id}")


def _kind_of(qemu_id: str, disk: "Disk") -> int | None:
    """The job type of a QEMU job named as ours for ``disk`` (``copy-vda-libvirt-1-format``)."""
    for kind, prefix in _PREFIX.items():
        if qemu_id.startswith(f"{prefix}-{disk.target_dev}-"):
            return kind
    return None


async def adopt(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    """A restarted daemon: follow again the block jobs QEMU still runs for us (their
    events from now on), and drop the <mirror> of a job that ended meanwhile."""
    live = obj.live
    if live is None or obj.process is None:
        return
    mon = obj.process.monitor
    try:
        running = await mon.execute("query-block-jobs")
        nodes = await mon.execute("query-named-block-nodes", {"flat": True})
    except libvirtError as exc:
        log.warning("%s: cannot list block jobs: %s", obj.name, exc)
        return
    changed = False
    for disk in live.devices.disks:
        raw = next((j for j in running if _kind_of(str(j.get("device", "")), disk) is not None), None)
        if raw is None:
            if disk.mirror is not None:
                disk.mirror, changed = None, True
            continue
        kind = _kind_of(str(raw["device"]), disk)
        assert kind is not None
        chain = await chain_of(obj, disk)
        if not chain:
            continue
        target = None
        if disk.mirror is not None:
            node = next((str(n["node-name"]) for n in nodes if n.get("file") == disk.mirror.path
                         and n.get("drv") == disk.mirror.format), "")
            m = re.fullmatch(r"libvirt-(\d+)-format", node)
            target = BlockImage(node, f"libvirt-{m.group(1)}-storage" if m else "", disk.mirror.path,
                                disk.mirror.format, chain[0].virtual_size)
        job = BlockJob(disk, kind, str(raw["device"]), chain[0], target=target,
                       state="ready" if raw.get("ready") else "running")
        if kind == COPY and target is not None:
            job.added = [n for n in (target.node, target.storage) if n]
        if job.state == "ready" and disk.mirror is not None and disk.mirror.ready != "yes":
            disk.mirror.ready, changed = "yes", True
        scope = mon.listener(*_EVENTS)
        _follow(drv, obj, job, scope, scope.__enter__())
        log.info("%s: following block job %s again", obj.name, job.qemu_id)
    if changed:
        obj.save_status()


async def _watch(drv: "QemuDriver", obj: "QemuDomainObj", job: BlockJob, scope: Any, listener: Any) -> None:
    stopped = obj.stopped
    try:
        while True:
            getter = asyncio.ensure_future(listener.get())
            gone = asyncio.ensure_future(stopped.wait())
            try:
                done, _ = await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (getter, gone):
                    if not task.done():
                        task.cancel()
            if getter not in done:     # QEMU went: the job goes with it, no event (as libvirt)
                jobs_of(obj).pop(job.disk.target_dev, None)
                job.done.set()
                return
            msg = getter.result()
            data = msg.get("data", {}) or {}
            if data.get("device") != job.qemu_id:
                continue
            name = msg.get("event")
            if name == "BLOCK_JOB_READY":
                _ready(drv, obj, job)
                continue
            await _concluded(drv, obj, job, name, data)
            return
    except Exception:
        log.exception("%s: block job %s watcher failed", obj.name, job.qemu_id)
        jobs_of(obj).pop(job.disk.target_dev, None)
        job.done.set()
    finally:
        scope.__exit__(None, None, None)


def _ready(drv: "QemuDriver", obj: "QemuDomainObj", job: BlockJob) -> None:
    if job.state == "running":
        job.state = "ready"
    if job.disk.mirror is not None:
        job.disk.mirror.ready = "yes"
        obj.save_status()
    drv._emit_all(qemu_events.block_job(obj, job.disk, job.type, READY))


async def _concluded(drv: "QemuDriver", obj: "QemuDomainObj", job: BlockJob, name: str,
                     data: dict[str, Any]) -> None:
    disk = job.disk
    failed = data.get("error")
    if job.state == "aborting":
        status = CANCELED
    elif failed or name == "BLOCK_JOB_CANCELLED":
        status = FAILED if failed else CANCELED
    else:
        status = COMPLETED
    pivoted = status == COMPLETED and job.type in (COPY, ACTIVE_COMMIT)
    try:
        if pivoted and job.target is not None:
            # QEMU now writes to the copy (or the base): the definition follows
            disk.source = job.target.filename
            disk.driver_type = job.target.format
            await _drop(obj, [job.top.node, job.top.storage] if job.type == COPY else [])
        elif job.type == COPY:
            await _drop(obj, job.added)       # the copy stays on disk, unused
        if status == COMPLETED:
            disk.backing_store = [(img.format, img.filename) for img in (await chain_of(obj, disk))[1:]]
    except libvirtError as exc:
        log.warning("%s: after block job %s: %s", obj.name, job.qemu_id, exc)
    if failed:
        log.warning("%s: block job %s failed: %s", obj.name, job.qemu_id, failed)
    disk.mirror = None
    jobs_of(obj).pop(disk.target_dev, None)
    obj.save_status()
    drv._emit_all(qemu_events.block_job(obj, disk, job.type, status))
    job.done.set()


async def _drop(obj: "QemuDomainObj", nodes: list[str]) -> None:
    if obj.process is None:
        return
    for node in nodes:
        if not node:
            continue
        try:
            await obj.process.monitor.execute("blockdev-del", {"node-name": node})
        except libvirtError as exc:
            log.debug("%s: blockdev-del %s: %s", obj.name, node, exc)


# -- the calls -------------------------------------------------------------------------

@dataclass
class CopyTarget:
    path: str
    format: str | None
    kind: str = "file"       # file | block


async def copy(drv: "QemuDriver", obj: "QemuDomainObj", disk: "Disk", dest: CopyTarget, *, shallow: bool,
               reuse: bool, sync_writes: bool, bandwidth: int, granularity: int, buf_size: int,
               owner: tuple[int, int] | None) -> None:
    """virDomainBlockCopy: mirror the disk into ``dest`` until a pivot or an abort."""
    _check_free(obj, disk)
    top, chain = await _top(obj, disk)
    fmt = dest.format or (top.format if not reuse else "raw")
    if dest.format is None and reuse:
        fmt = await _probe_format(dest.path) or "raw"
    backing = chain[1] if shallow and len(chain) > 1 else None
    created = False
    if not reuse:
        await create_image(dest.path, fmt, top.virtual_size, backing)
        created = True
        if owner is not None:
            os.chown(dest.path, *owner)
    elif not os.path.exists(dest.path):
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"missing destination file for disk {disk.target_dev}: {dest.path}")
    mon = _monitor(obj)
    index = await free_node_index(obj)
    storage, node = f"libvirt-{index}-storage", f"libvirt-{index}-format"
    job = BlockJob(disk, COPY, _job_id(COPY, disk, top), top,
                   target=BlockImage(node, storage, dest.path, fmt, top.virtual_size))
    try:
        await mon.execute("blockdev-add", {"driver": "host_device" if dest.kind == "block" else "file",
                                           "filename": dest.path, "node-name": storage,
                                           "auto-read-only": True, "discard": "unmap"})
        job.added.append(storage)
        fmt_node: dict[str, Any] = {"driver": fmt, "file": storage, "node-name": node, "read-only": False}
        if fmt == "qcow2" and backing is None:
            fmt_node["backing"] = None      # a full copy stands alone
        await mon.execute("blockdev-add", fmt_node)
        job.added.insert(0, node)
        args: dict[str, Any] = {"device": top.node, "target": node, "sync": "top" if shallow else "full",
                                "copy-mode": "write-blocking" if sync_writes else "background"}
        if bandwidth:
            args["speed"] = bandwidth
        if granularity:
            args["granularity"] = granularity
        if buf_size:
            args["buf-size"] = buf_size
        disk.mirror = DiskMirror("copy", dest.path, fmt)
        await _launch(drv, obj, job, "blockdev-mirror", args)
    except BaseException:
        disk.mirror = None
        await _drop(obj, job.added)
        if created:
            try:
                os.unlink(dest.path)
            except OSError:
                pass
        raise
    obj.save_status()


async def _probe_format(path: str) -> str | None:
    proc = await asyncio.create_subprocess_exec("qemu-img", "info", "--output=json", "-U", path,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        return None
    import json
    return json.loads(out).get("format")


def _pick(chain: list[BlockImage], name: str | None, what: str, disk: "Disk") -> int:
    """The index in the chain of the image ``name`` (a path, or ``vda[N]``)."""
    if name is None:
        return -1
    if name.startswith(f"{disk.target_dev}[") and name.endswith("]") and name[len(disk.target_dev) + 1:-1].isdigit():
        n = int(name[len(disk.target_dev) + 1:-1])
        if n < len(chain):
            return n
    for n, img in enumerate(chain):
        if name in (img.filename, os.path.basename(img.filename)):
            return n
    raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                f"could not find image '{name}' beneath '{disk.source}' in chain for '{disk.target_dev}'")


async def commit(drv: "QemuDriver", obj: "QemuDomainObj", disk: "Disk", base: str | None, top_name: str | None,
                 *, shallow: bool, active: bool, bandwidth: int) -> None:
    """virDomainBlockCommit: merge ``top`` (default: the active image) down into ``base``."""
    _check_free(obj, disk)
    top, chain = await _top(obj, disk)
    t = max(_pick(chain, top_name, "top", disk), 0)
    if len(chain) <= t + 1:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"top '{chain[t].filename}' in chain for '{disk.target_dev}' has no backing file")
    if t == 0 and not active:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"commit of '{disk.target_dev}' active layer requires active flag")
    if t > 0 and active:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"active commit requested but '{chain[t].filename}' is not active")
    b = t + 1 if shallow else _pick(chain, base, "base", disk)
    if b == -1:
        b = len(chain) - 1
    if b <= t:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"could not find base image in chain for '{disk.target_dev}'")
    kind = ACTIVE_COMMIT if t == 0 else COMMIT
    job = BlockJob(disk, kind, _job_id(kind, disk, top), top, target=chain[b])
    args: dict[str, Any] = {"device": top.node, "top-node": chain[t].node, "base-node": chain[b].node}
    if bandwidth:
        args["speed"] = bandwidth
    if kind == ACTIVE_COMMIT:
        disk.mirror = DiskMirror("active-commit", chain[b].filename, chain[b].format)
    try:
        await _launch(drv, obj, job, "block-commit", args)
    except BaseException:
        disk.mirror = None
        raise
    obj.save_status()


async def pull(drv: "QemuDriver", obj: "QemuDomainObj", disk: "Disk", base: str | None, *, bandwidth: int) -> None:
    """virDomainBlockPull / virDomainBlockRebase without COPY: fill the active image from
    its backing chain (down to ``base``, which stays its backing)."""
    _check_free(obj, disk)
    top, chain = await _top(obj, disk)
    b = _pick(chain, base, "base", disk)
    if b == 0:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU,
                    f"base '{base}' is the active image of '{disk.target_dev}'")
    job = BlockJob(disk, PULL, _job_id(PULL, disk, top), top)
    args: dict[str, Any] = {"device": top.node}
    if b > 0:
        args["base-node"] = chain[b].node
    if bandwidth:
        args["speed"] = bandwidth
    await _launch(drv, obj, job, "block-stream", args)


async def info(obj: "QemuDomainObj", disk: "Disk") -> tuple[int, int, int, int, int] | None:
    """(type, bandwidth bytes/s, cur, end, ready) of the disk's job, or None."""
    job = job_for(obj, disk)
    if job is None:
        return None
    for raw in await _monitor(obj).execute("query-block-jobs"):
        if raw.get("device") == job.qemu_id:
            cur, end = int(raw.get("offset", 0)), int(raw.get("len", 0))
            ready = bool(raw.get("ready")) or job.state == "ready"
            if cur == end and not ready and job.type in (COPY, ACTIVE_COMMIT):
                end += 1            # libvirt: a mirror is not complete before it is ready
            return job.type, int(raw.get("speed", 0)), cur, end, int(ready)
    return job.type, 0, 0, 1, 0     # QEMU finished it; the watcher is about to tell


async def set_speed(obj: "QemuDomainObj", disk: "Disk", speed: int) -> None:
    job = job_for(obj, disk)
    if job is None:
        raise _no_job(disk)
    await _monitor(obj).execute("block-job-set-speed", {"device": job.qemu_id, "speed": speed})


async def abort(obj: "QemuDomainObj", disk: "Disk", *, pivot: bool, wait: bool) -> None:
    """virDomainBlockJobAbort: cancel, or (PIVOT) switch to the copy / the commit's base."""
    job = job_for(obj, disk)
    if job is None:
        raise _no_job(disk)
    if job.state in ("pivoting", "aborting"):
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                    f"block job on disk '{disk.target_dev}' is still being ended")
    mon = _monitor(obj)
    if pivot:
        if job.type not in (COPY, ACTIVE_COMMIT):
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        f"job type '{_PREFIX[job.type]}' does not support pivot")
        if job.state != "ready":
            raise error(ErrorNumber.BLOCK_COPY_ACTIVE, ErrorDomain.QEMU,
                        f"block job '{disk.target_dev}' not ready for pivot yet")
        job.state = "pivoting"
        if disk.mirror is not None:
            disk.mirror.ready = "pivot"
        await mon.execute("block-job-complete", {"device": job.qemu_id})
    else:
        job.state = "aborting"
        if disk.mirror is not None:
            disk.mirror.ready = "abort"
        # not forced: a READY copy ends consistent (virsh blockcopy --finish), as libvirt's
        await mon.execute("block-job-cancel", {"device": job.qemu_id, "force": False})
    if wait:
        await job.done.wait()
