"""The image and QMP work behind snapshots: qemu-img on shut-off disks, QEMU's
snapshot jobs and overlays on running ones.

* internal, shut off: ``qemu-img snapshot -c|-a|-d NAME IMAGE`` on each disk;
* internal, running: QMP ``snapshot-save``/``snapshot-load``/``snapshot-delete``
  jobs (QEMU 7.2), awaited through their JOB_STATUS_CHANGE events;
* external, shut off: ``qemu-img create -f qcow2 -o backing_fmt=,backing_file=``;
* external, running: the overlay file made with qemu-img, then ``blockdev-add``
  of its nodes and one ``transaction`` of ``blockdev-snapshot`` for every disk,
  so either all disks move to their overlay or none does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import ErrorDomain, ErrorNumber, error

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj

_NODE_RE = re.compile(r"libvirt-(\d+)-(?:storage|format)")
_job_ids = itertools.count(1)


def qemu_img_binary() -> str:
    return shutil.which("qemu-img") or "/usr/bin/qemu-img"


async def qemu_img(*args: str) -> str:
    """Run qemu-img; its stdout, or libvirt's virCommandRun error quoting its stderr."""
    binary = qemu_img_binary()
    try:
        proc = await asyncio.create_subprocess_exec(binary, *args, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU,
                    f"Cannot run {binary}: {exc.strerror}") from exc
    out, err = await proc.communicate()
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip()
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                    f"Child process ({binary} {' '.join(args)}) unexpected exit status "
                    f"{proc.returncode}: {text}")
    return out.decode(errors="replace")


async def image_info(path: str, *, force_share: bool = False) -> dict[str, Any]:
    args = ["info", "--output=json"] + (["-U"] if force_share else []) + [path]
    return json.loads(await qemu_img(*args))


# -- shut off -------------------------------------------------------------------------
async def offline_internal(op: str, name: str, images: list[str]) -> None:
    """``qemu-img snapshot -c`` (create), ``-a`` (apply) or ``-d`` (delete) on every image.

    A create that fails half-way deletes what it made, as libvirt's
    qemuDomainSnapshotForEachQcow2 does."""
    done: list[str] = []
    for image in images:
        try:
            await qemu_img("snapshot", op, name, image)
        except Exception:
            if op == "-c":
                for made in done:
                    try:
                        await qemu_img("snapshot", "-d", name, made)
                    except Exception:   # the first error is the one reported
                        pass
            raise
        done.append(image)


async def create_overlay(overlay: str, backing: str, backing_fmt: str, size: int | None = None) -> None:
    """A new qcow2 ``overlay`` over ``backing`` (with ``size``: without opening the backing
    file, which a running QEMU holds locked)."""
    opts = "backing_fmt=" + backing_fmt + ",backing_file=" + backing.replace(",", ",,")
    args = ["create", "-f", "qcow2", "-o", opts]
    if size is not None:
        args += ["-u", overlay, str(size)]
    else:
        args.append(overlay)
    await qemu_img(*args)


# -- running ----------------------------------------------------------------------------
async def run_job(obj: "QemuDomainObj", command: str, arguments: dict[str, Any]) -> None:
    """Run QMP job ``command`` and wait until it concludes; its error, if any, raised."""
    qp = obj.process
    if qp is None:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "guest unexpectedly quit")
    monitor = qp.monitor
    job_id = f"{command}-{next(_job_ids)}"
    stopped = obj.stopped
    with monitor.listener("JOB_STATUS_CHANGE") as listener:
        await monitor.execute(command, {"job-id": job_id, **arguments})
        while True:
            getter = asyncio.ensure_future(listener.get())
            gone = asyncio.ensure_future(stopped.wait())
            try:
                done, _ = await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (getter, gone):
                    if not task.done():
                        task.cancel()
            if getter not in done:
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "guest unexpectedly quit")
            data = getter.result().get("data", {})
            if data.get("id") == job_id and data.get("status") == "concluded":
                break
    failure = None
    for job in await monitor.execute("query-jobs"):
        if job.get("id") == job_id:
            failure = job.get("error")
    await monitor.execute("job-dismiss", {"id": job_id})
    if failure:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, f"{command} job failed: {failure}")


@dataclass
class BlockNode:
    alias: str
    node: str              # the format node the device uses
    virtual_size: int
    read_only: bool


async def block_nodes(obj: "QemuDomainObj") -> dict[str, BlockNode]:
    """Device alias → the node its medium is now (query-block)."""
    assert obj.process is not None
    out: dict[str, BlockNode] = {}
    for blk in await obj.process.monitor.execute("query-block"):
        inserted = blk.get("inserted")
        qdev = str(blk.get("qdev", ""))
        if not inserted or not qdev:
            continue
        alias = qdev.split("/")[3] if qdev.startswith("/machine/peripheral/") else qdev
        out[alias] = BlockNode(alias, inserted["node-name"], int(inserted.get("image", {}).get("virtual-size", 0)),
                               bool(inserted.get("ro")))
    return out


async def next_node_index(obj: "QemuDomainObj") -> int:
    assert obj.process is not None
    nodes = await obj.process.monitor.execute("query-named-block-nodes", {"flat": True})
    found = [int(m.group(1)) for n in nodes if (m := _NODE_RE.fullmatch(str(n.get("node-name", ""))))]
    return max(found, default=0) + 1


@dataclass
class Overlay:
    alias: str
    path: str              # the new overlay
    backing: str           # the image it goes over
    backing_fmt: str
    storage: str = ""
    fmt: str = ""
    added: bool = False
    created: bool = False


def _create_empty(path: str) -> None:
    """The overlay's file, made first as libvirt's virStorageSourceCreate does, so a
    path that cannot be created fails with its wording rather than qemu-img's."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.QEMU,
                    f"failed to create image file '{path}': {exc.strerror}") from exc


async def live_external(obj: "QemuDomainObj", overlays: list[Overlay], owner: tuple[int, int] | None,
                        *, reuse: bool = False) -> None:
    """Move every disk in ``overlays`` onto its new qcow2 overlay, all at once.

    On failure nothing stays: added nodes are deleted, created files removed."""
    assert obj.process is not None
    monitor = obj.process.monitor
    nodes = await block_nodes(obj)
    index = await next_node_index(obj)
    try:
        for ov in overlays:
            if ov.alias not in nodes:
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                            f"disk '{ov.alias}' has no medium in the running domain")
            if not reuse:      # REUSE_EXT: the caller made the file (over the right backing)
                _create_empty(ov.path)
                ov.created = True
                await create_overlay(ov.path, ov.backing, ov.backing_fmt, nodes[ov.alias].virtual_size)
            if owner is not None:
                os.chown(ov.path, *owner)
            ov.storage, ov.fmt = f"libvirt-{index}-storage", f"libvirt-{index}-format"
            index += 1
            await monitor.execute("blockdev-add", {"driver": "file", "filename": ov.path, "node-name": ov.storage,
                                                   "auto-read-only": True, "discard": "unmap"})
            await monitor.execute("blockdev-add", {"driver": "qcow2", "file": ov.storage, "node-name": ov.fmt,
                                                   "read-only": False, "backing": None})
            ov.added = True
        await monitor.execute("transaction", {"actions": [
            {"type": "blockdev-snapshot", "data": {"node": nodes[ov.alias].node, "overlay": ov.fmt}}
            for ov in overlays]})
    except BaseException:
        for ov in overlays:
            if ov.added:
                for name in (ov.fmt, ov.storage):
                    try:
                        await monitor.execute("blockdev-del", {"node-name": name})
                    except Exception:
                        pass
            if ov.created:
                try:
                    os.unlink(ov.path)
                except OSError:
                    pass
        raise
