"""Deleting external snapshots as libvirt 9.0 does: the overlay a snapshot made is
merged into the image under it, and the overlay file goes.

An external snapshot S of disk vda left the disk on a new overlay O over the
image B that S captured.  Deleting S merges O into B (B then holds what the
guest sees now) and removes O:

* running: QEMU's ``block-commit`` — an active commit (then a pivot with
  ``block-job-complete``) when O is the active layer, an intermediate commit
  when a later snapshot's overlay sits on O; all disks' jobs are started
  before any is awaited, as libvirt's qemuSnapshotDiscardExternal does;
* shut off: ``qemu-img commit`` of O into B.  As in libvirt 9.0, only a snapshot
  whose overlay is the active layer can be deleted while the domain is shut off
  (9.0 finds no other image in an inactive disk's chain and says so).

The definitions (live and persistent) drop O from the disk's chain, and the
snapshots below S forget O in the definitions they keep.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import ErrorDomain, ErrorNumber, error
from . import blockjob
from .blockjob_chain import chain_of
from .snapshot_qemu import qemu_img

if TYPE_CHECKING:
    from ...conf.devices import Disk
    from .domainobj import QemuDomainObj
    from .snapshot_store import SnapshotDef, SnapshotTree

log = logging.getLogger(__name__)
Q = ErrorDomain.QEMU
_JOB_EVENTS = ("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED")


@dataclass
class Merge:
    """One disk of the snapshot: its overlay goes into the image under it."""
    target: str
    overlay: str
    overlay_fmt: str
    base: str
    base_fmt: str
    above: tuple[str, str] | None      # (format, path) of the image over the overlay; None: it is active
    job_id: str = ""
    kind: int = blockjob.COMMIT        # the block job type its events carry (ACTIVE_COMMIT when active)
    nodes: tuple[str, ...] = ()        # the overlay's nodes, deleted once QEMU is done with them
    ready: bool = False
    done: bool = False
    failure: str | None = None


def _chain(disk: "Disk") -> list[tuple[str, str]]:
    """(format, path) of the disk's images, active first, as the definition has them."""
    return [(disk.driver_type or "raw", disk.source or ""), *disk.backing_store]


def _disks_of(xml: str | None) -> dict[str, "Disk"]:
    from ... import conf
    try:
        return {d.target_dev: d for d in conf.parse(xml or "").devices.disks}
    except Exception:          # no usable definition: nothing to compare against
        return {}


def _parent_for_disk(snaps: "SnapshotTree", snap: "SnapshotDef", target: str) -> "SnapshotDef | None":
    """libvirt's qemuSnapshotFindParentSnapForDisk: the nearest ancestor that snapshotted the disk."""
    seen: set[str] = set()
    parent = snaps.snaps.get(snap.parent or "")
    while parent is not None and parent.name not in seen:
        seen.add(parent.name or "")
        if any(sd.name == target and sd.snapshot in ("internal", "external") for sd in parent.disks):
            return parent
        parent = snaps.snaps.get(parent.parent or "")
    return None


def validate(obj: "QemuDomainObj", snaps: "SnapshotTree", snap: "SnapshotDef", flags: int) -> None:
    """libvirt 9.0's qemuSnapshotDeleteValidate, past the internal-image check."""
    from ...enums_more import DomainSnapshotDeleteFlags as Delete
    if flags & (Delete.CHILDREN | Delete.CHILDREN_ONLY):
        below = list(snaps.descendants(snap.name))
        external = sum(1 for s in below if s.is_external)
        if external and len(below) > external:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                        "deletion of external and internal children disk snapshots not supported")
        if external:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q, "deletion of external children disk snapshots not supported")
    if snap.is_external:
        live = obj.live.devices.disks if obj.active and obj.live is not None else []
        if blockjob.jobs_of(obj) or any(d.mirror is not None for d in live):
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, Q,
                        "cannot delete external snapshots when there is another active block job")
        if flags & Delete.CHILDREN:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                        "deletion of external disk snapshots with children not supported")


def prepare(obj: "QemuDomainObj", snaps: "SnapshotTree", snap: "SnapshotDef") -> list[Merge]:
    """What deleting ``snap`` merges, disk by disk, with libvirt's checks
    (qemuSnapshotDeleteExternalPrepareData)."""
    now = {d.target_dev: d for d in obj.current.devices.disks}
    then = _disks_of(snap.domain_xml)
    merges = []
    for sd in snap.disks:
        if sd.snapshot != "external" or sd.source is None:
            continue
        disk = now.get(sd.name)
        if disk is None:
            raise error(ErrorNumber.INVALID_ARG, Q, f"disk '{sd.name}' not found in domain")
        chain = _chain(disk)
        index = next((n for n, (_f, path) in enumerate(chain) if path == sd.source), None)
        # libvirt 9.0 looks the overlay up in the chain it knows: a shut-off domain's is its
        # top image alone, so only the snapshot whose overlay is the active layer can go
        if index is None or (index > 0 and not obj.active):
            raise error(ErrorNumber.INVALID_ARG, Q, "could not find base disk source in disk source chain")
        if index + 1 >= len(chain):
            raise error(ErrorNumber.OPERATION_FAILED, Q, "failed to find parent disk source in backing chain")
        base_fmt, base = chain[index + 1]
        before = then.get(sd.name)
        if before is not None and before.source != base:
            raise error(ErrorNumber.OPERATION_FAILED, Q,
                        "snapshot VM disk source and parent disk source are not the same")
        parent = _parent_for_disk(snaps, snap, sd.name)
        if parent is not None and not parent.is_external:
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, Q,
                        "deleting external snapshot that has internal snapshot as parent not supported")
        merges.append(Merge(sd.name, sd.source, chain[index][0], base, base_fmt,
                            chain[index - 1] if index > 0 else None))
    return merges


# -- the merge --------------------------------------------------------------------------
async def merge_offline(merges: list[Merge]) -> None:
    """qemu-img: the overlay (the active layer, see :func:`prepare`) committed into its
    backing file, then removed."""
    for m in merges:
        await qemu_img("commit", "-q", "-d", "-f", m.overlay_fmt, m.overlay)
        _unlink(m.overlay)


async def merge_live(obj: "QemuDomainObj", merges: list[Merge], on_ready: Callable[[Merge], None]) -> None:
    """block-commit of every overlay into its backing node; the active ones pivoted.

    ``on_ready`` is called when an active commit is READY (libvirt's BLOCK_JOB events
    for it go out then, with the disk still on the overlay)."""
    assert obj.process is not None and obj.live is not None
    monitor = obj.process.monitor
    by_target = {d.target_dev: d for d in obj.live.devices.disks}
    plans: list[tuple[Merge, dict[str, Any]]] = []
    for m in merges:
        chain = await chain_of(obj, by_target[m.target])
        index = next((n for n, img in enumerate(chain) if img.filename == m.overlay), None)
        if index is None or index + 1 >= len(chain):
            raise error(ErrorNumber.OPERATION_FAILED, Q, "failed to find parent disk source in backing chain")
        top, base = chain[index], chain[index + 1]
        m.above = (chain[index - 1].format, chain[index - 1].filename) if index > 0 else None
        m.kind = blockjob.COMMIT if index > 0 else blockjob.ACTIVE_COMMIT
        # not named as the API's block jobs are (KIND-TARGET-NODE): the generic event
        # translation must not report this job too; its events are raised here
        m.job_id = f"snapshot-delete.{m.target}.{top.node}"
        m.nodes = tuple(n for n in (top.node if top.storage else "", top.storage) if n)
        plans.append((m, {"job-id": m.job_id, "device": chain[0].node, "top-node": top.node,
                          "base-node": base.node}))
    with monitor.listener(*_JOB_EVENTS) as listener:
        started: list[Merge] = []
        try:
            for m, args in plans:
                await monitor.execute("block-commit", args)
                started.append(m)
            await _await_jobs(obj, listener, started, lambda m: m.done or (m.above is None and m.ready))
            for m in started:
                if m.ready and not m.failure:
                    on_ready(m)
            _raise_failure(started, "block commit failed")
            for m in started:
                if m.above is None and not m.done:
                    await monitor.execute("block-job-complete", {"device": m.job_id})
            await _await_jobs(obj, listener, started, lambda m: m.done)
            _raise_failure(started, "finishing block job failed")
        except BaseException:
            for m in started:
                if not m.done and obj.process is not None:
                    try:
                        await monitor.execute("block-job-cancel", {"device": m.job_id, "force": True})
                    except Exception:      # the first error is the one reported
                        pass
            raise
    for m in merges:
        for node in m.nodes:             # the overlay's own nodes, now out of the graph
            try:
                await monitor.execute("blockdev-del", {"node-name": node})
            except Exception as exc:
                log.debug("%s: blockdev-del %s: %s", obj.name, node, exc)
        _unlink(m.overlay)


async def _await_jobs(obj: "QemuDomainObj", listener: Any, merges: list[Merge], finished: Any) -> None:
    by_id = {m.job_id: m for m in merges}
    stopped = obj.stopped
    while not all(finished(m) for m in merges):
        getter = asyncio.ensure_future(listener.get())
        gone = asyncio.ensure_future(stopped.wait())
        try:
            done, _ = await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (getter, gone):
                if not task.done():
                    task.cancel()
        if getter not in done:
            raise error(ErrorNumber.OPERATION_FAILED, Q, "guest unexpectedly quit")
        msg = getter.result()
        data = msg.get("data", {}) or {}
        m = by_id.get(data.get("device"))
        if m is None:
            continue
        name = msg.get("event")
        if name == "BLOCK_JOB_READY":
            m.ready = True
        elif name == "BLOCK_JOB_COMPLETED":
            m.done = True
            m.failure = data.get("error")
        else:
            m.done, m.failure = True, "job was cancelled"


def _raise_failure(merges: list[Merge], what: str) -> None:
    for m in merges:
        if m.failure:
            raise error(ErrorNumber.INTERNAL_ERROR, Q,
                        f"{what} while deleting disk '{m.target}' snapshot: '{m.failure}'")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        log.warning("Failed to remove snapshot image '%s': %s", path, exc.strerror)


# -- the definitions afterwards -------------------------------------------------------------
def drop_from_disk(disk: "Disk", overlay: str) -> bool:
    """The disk's chain without ``overlay``; False if it was not in it."""
    chain = _chain(disk)
    kept = [link for link in chain if link[1] != overlay]
    if len(kept) == len(chain) or not kept:
        return False
    (disk.driver_type, disk.source), disk.backing_store = kept[0], kept[1:]
    return True


def update_definitions(obj: "QemuDomainObj", merges: list[Merge]) -> None:
    defs = [obj.live] if obj.active and obj.live is not None else []
    if obj.persistent:
        defs.append(obj.definition)
    for definition in defs:
        by_target = {d.target_dev: d for d in definition.devices.disks}
        for m in merges:
            if m.target in by_target:
                drop_from_disk(by_target[m.target], m.overlay)


def update_descendants(snaps: "SnapshotTree", snap: "SnapshotDef", merges: list[Merge]) -> None:
    """libvirt's qemuSnapshotDeleteUpdateDisks: the snapshots under ``snap`` keep definitions
    whose disks may name the merged overlay (as their image or in their chain)."""
    from ... import conf
    for kid in list(snaps.descendants(snap.name)):
        changed = False
        for attr in ("domain_xml", "inactive_xml"):
            text = getattr(kid, attr)
            if not text:
                continue
            try:
                definition = conf.parse(text)
            except Exception:      # a definition this version cannot read stays as it is
                continue
            by_target = {d.target_dev: d for d in definition.devices.disks}
            touched = False
            for m in merges:
                disk = by_target.get(m.target)
                if disk is not None and drop_from_disk(disk, m.overlay):
                    touched = True
            if touched:
                setattr(kid, attr, definition.format(secure=True, inactive=True))
                changed = True
        if changed:
            snaps.save(kid)
