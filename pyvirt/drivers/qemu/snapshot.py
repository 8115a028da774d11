"""Snapshots of QEMU domains: create, revert, delete, as libvirt 9.0's QEMU driver does them.

The caller (:mod:`.api_snapshot`) checks flags; these functions take the
domain's job, decide what a snapshot covers (libvirt's disk alignment and
its rules for mixing internal and external), do the work through
:mod:`.snapshot_qemu` (deleting an external snapshot: :mod:`.snapshot_delete`)
and keep the metadata in :mod:`.snapshot_store`.

The CPUs are stopped and started through the driver's own
``pause_cpus``/``resume_cpus`` (where the lock manager's hooks live), so a
running internal snapshot with memory pauses the guest as libvirt does:
SUSPENDED/PAUSED then RESUMED/UNPAUSED around the save, and
SUSPENDED/FROM_SNAPSHOT, RESUMED/FROM_SNAPSHOT around a revert.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from ...conf import snapshot as snapxml
from ...conf.devices import Disk
from ...conf.names import check_caller_path
from ...enums import (DomainState, EventDefinedDetail, EventResumedDetail, EventStartedDetail, EventStoppedDetail,
                      EventSuspendedDetail, EventType, PausedReason, RunningReason, ShutoffReason)
from ...enums_more import (DomainSnapshotCreateFlags as Create, DomainSnapshotDeleteFlags as Delete,
                           DomainSnapshotRevertFlags as Revert)
from ...errors import ErrorDomain, ErrorNumber, error
from ..domainlist import emit_lifecycle
from . import qemu_events
from . import storage_source
from . import snapshot_delete as external_delete
from . import snapshot_qemu as work
from .blockjob import COMPLETED, READY
from .jobs import JobKind
from .snapshot_store import SnapshotDef, SnapshotTree, tree_for

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)
Q = ErrorDomain.QEMU
_STATE_WORDS = {DomainState.RUNNING: "running", DomainState.PAUSED: "paused", DomainState.SHUTOFF: "shutoff",
                DomainState.BLOCKED: "blocked", DomainState.PMSUSPENDED: "pmsuspended"}


def tree(drv: "QemuDriver", obj: "QemuDomainObj") -> SnapshotTree:
    snaps = tree_for(drv.cfg.root, obj.definition.name)
    snaps.drop_foreign(obj.uuid)
    return snaps


def _format_of(disk: Disk) -> str:
    return disk.driver_type or "raw"


def _default_overlay(source: str, name: str) -> str:
    """libvirt's generated name: the image's suffix replaced by the snapshot's name."""
    head, dot, tail = source.rpartition(".")
    base = head if dot and "/" not in tail else source
    return f"{base}.{name}"


def align_disks(snap: SnapshotDef, disks: list[Disk], default: str) -> list[tuple[Disk, snapxml.SnapshotDisk]]:
    """Every domain disk with what the snapshot does to it (libvirt's virDomainSnapshotAlignDisks)."""
    asked: dict[int, snapxml.SnapshotDisk] = {}
    for sd in snap.disks:
        index = next((n for n, d in enumerate(disks) if sd.name in (d.target_dev, d.source)), None)
        if index is None:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q, f"no disk named '{sd.name}'")
        if index in asked:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q, f"disk '{sd.name}' specified twice")
        asked[index] = sd
    out = []
    for n, disk in enumerate(disks):
        sd = asked.get(n) or snapxml.SnapshotDisk(disk.target_dev)
        sd.name = disk.target_dev
        # A volume disk is never empty, but libvirt names overlays from the definition
        # as formatted, which names the pool and volume, not a path: no generated name.
        volume = disk.type == "volume"
        if sd.snapshot is None:
            empty = (disk.source is None and not volume) or disk.device in ("cdrom", "floppy")
            sd.snapshot = "no" if empty or disk.readonly else default
        if sd.snapshot == "external":
            origin = None if volume else disk.source
            if sd.source is None and origin is None:
                raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                            f"cannot generate external snapshot name for disk '{disk.target_dev}' without source")
            sd.source = check_caller_path(sd.source or _default_overlay(origin or "", snap.name or ""),
                                          f"snapshot file of disk '{disk.target_dev}'")
            sd.driver_type = sd.driver_type or "qcow2"
        out.append((disk, sd))
    overlays = [sd.source for _d, sd in out if sd.snapshot == "external"]
    for path in overlays:
        if overlays.count(path) > 1:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                        f"cannot generate external snapshot name for disk '{path}': collision with another disk")
    return out


def _check_plan(snap: SnapshotDef, pairs: list[tuple[Disk, snapxml.SnapshotDisk]], active: bool,
                reuse: bool = False) -> int:
    """libvirt's qemuSnapshotPrepare: the mixes it refuses; the number of external disks."""
    found_internal = forbid_internal = False
    external = 0
    for disk, sd in pairs:
        if sd.snapshot == "internal":
            found_internal = True
            if snap.state == "disk-snapshot" and active:
                raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                            f"active qemu domains require external disk snapshots; disk {sd.name} requested internal")
            if _format_of(disk) != "qcow2":
                raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                            f"internal snapshot for disk {sd.name} unsupported for storage type {_format_of(disk)}")
        elif sd.snapshot == "external":
            if sd.driver_type not in ("qcow2", "qed"):
                raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                            f"external snapshot format for disk {sd.name} is unsupported: {sd.driver_type}")
            if sd.driver_type != "qcow2":
                raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                            f"external snapshot format for disk {sd.name} is unsupported: {sd.driver_type}")
            _check_overlay_target(sd, reuse)
            external += 1
        elif sd.snapshot == "manual":
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q, f"manual snapshot of disk {sd.name} is not supported")
        elif (disk.source is not None or disk.type == "volume") and not disk.readonly:
            forbid_internal = True
    if not found_internal and not external and snap.memory == "no":
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q, "nothing selected for snapshot")
    if (snap.memory == "internal" and not found_internal) or (found_internal and forbid_internal):
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                    "internal and full system snapshots require all disks to be selected for snapshot")
    if snap.state == "disk-snapshot" and not external:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                    "disk-only snapshots require at least one disk to be selected for snapshot")
    if (found_internal and external) or (snap.memory == "internal" and external) \
            or (snap.memory == "external" and found_internal):
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                    "mixing internal and external targets for a snapshot is not yet supported")
    return external


def _check_overlay_target(sd: snapxml.SnapshotDisk, reuse: bool) -> None:
    """libvirt's checks of an overlay file: a new one must not hold data, a reused one
    (VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT) must exist."""
    assert sd.source is not None
    try:
        st = os.stat(sd.source)
    except FileNotFoundError:
        if reuse:
            raise error(ErrorNumber.SYSTEM_ERROR, Q, f"missing existing file for disk {sd.name}: {sd.source}: "
                                                     "No such file or directory") from None
        return
    except OSError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, Q, f"unable to stat for disk {sd.name}: {sd.source}: "
                                                 f"{exc.strerror}") from exc
    if not reuse and st.st_size > 0:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                    f"external snapshot file for disk {sd.name} already exists and is not a block device: "
                    f"{sd.source}")


def _validate_create(obj: "QemuDomainObj", snap: SnapshotDef, flags: int) -> None:
    """libvirt's qemuSnapshotCreateXMLValidateDef."""
    if not flags & Create.NO_METADATA and snap.name is not None:
        if snap.name.startswith("."):
            raise snapxml.xml_detail(Q, f"invalid snapshot name '{snap.name}': name can't start with '.'")
    if obj.state not in (DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTOFF):
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, Q,
                    f"Invalid domain state {_STATE_WORDS.get(obj.state, 'nostate')}")
    if not obj.persistent and not obj.active:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, Q, "cannot create snapshot of inactive transient domain")
    if flags & Create.LIVE and (not obj.active or snap.memory != "external"):
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, Q,
                    "live snapshot creation is supported only during full system snapshots")
    if snap.memory == "external":
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, Q,
                    "external memory snapshots are not supported by this driver")
    if flags & Create.DISK_ONLY and snap.memory not in (None, "no"):
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                    f"disk-only snapshot of domain requires memory snapshot='no', not '{snap.memory}'")
    if snap.memory == "internal" and not obj.active:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q,
                    "memory state cannot be saved with offline or disk-only snapshot")


# -- create -------------------------------------------------------------------------------
async def create(drv: "QemuDriver", obj: "QemuDomainObj", xml: str, flags: int) -> SnapshotDef:
    if flags & Create.REDEFINE:
        return await redefine(drv, obj, xml, flags)
    snap = snapxml.parse(xml, validate=bool(flags & Create.VALIDATE))
    async with drv.job_guard(obj, JobKind.MODIFY):
        snaps = tree(drv, obj)
        if snap.name is None:
            snap.name = str(snap.creation_time)
        _validate_create(obj, snap, flags)
        if snap.name in snaps:
            # the generic moment list's refusal (virDomainMomentAssignDef), from VIR_FROM_DOMAIN
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.DOMAIN, f"domain moment {snap.name} already exists")
        active = obj.active
        disk_only = bool(flags & Create.DISK_ONLY)
        if disk_only or not active:
            snap.memory = snap.memory or "no"
        elif snap.memory is None:
            snap.memory = "internal"
        default = "external" if disk_only or snap.memory == "external" else "internal"
        definition = obj.current
        if disk_only and active:
            snap.state = "disk-snapshot"
        pairs = align_disks(snap, definition.devices.disks, default)
        snap.disks = [sd for _d, sd in pairs]
        reuse = bool(flags & Create.REUSE_EXT)
        external = _check_plan(snap, pairs, active, reuse)
        if external and not active:
            disk_only = True
        # libvirt 9.0: "disk-snapshot" only for a running domain; a shut-off one's is "shutoff"
        snap.state = "disk-snapshot" if disk_only and active else _STATE_WORDS.get(obj.state, "nostate")
        current = snaps.current
        snap.parent = current.name if current is not None else None
        # as libvirt keeps them: the definition of the moment without run-time ids and
        # aliases, and a running domain's persistent one beside it
        snap.domain_xml = definition.format(secure=True, inactive=True)
        if active and obj.persistent:
            snap.inactive_xml = obj.definition.format(secure=True, inactive=True)
        if external:
            await _create_external(drv, obj, pairs, active, reuse)
        elif active:
            await _create_internal_live(drv, obj, snap, flags)
        else:
            await work.offline_internal("-c", snap.name, [d.source for d, sd in pairs if sd.snapshot == "internal"])
        if not flags & Create.NO_METADATA:
            snaps.save(snap)
            snaps.set_current(snap)
        if flags & Create.HALT and obj.active:
            await drv.kill(obj, ShutoffReason.FROM_SNAPSHOT, EventStoppedDetail.FROM_SNAPSHOT)
    return snap


async def _internal_nodes(obj: "QemuDomainObj", snap: SnapshotDef) -> tuple[str, list[str]]:
    """(vmstate node, every node holding the snapshot): libvirt puts the memory on the
    first writable qcow2 disk."""
    assert obj.live is not None
    nodes = await work.block_nodes(obj)
    by_target = {d.target_dev: d for d in obj.live.devices.disks}
    chosen = []
    for sd in snap.disks:
        disk = by_target.get(sd.name)
        if sd.snapshot != "internal" or disk is None or disk.alias not in nodes:
            continue
        chosen.append(nodes[disk.alias].node)
    if not chosen:
        raise error(ErrorNumber.OPERATION_INVALID, Q, "no writable qcow2 disk of the domain holds the snapshot")
    return chosen[0], chosen


async def _create_internal_live(drv: "QemuDriver", obj: "QemuDomainObj", snap: SnapshotDef, flags: int) -> None:
    vmstate, devices = await _internal_nodes(obj, snap)
    resume = obj.state == DomainState.RUNNING
    if resume:
        # QEMU stops the CPUs itself while saving; libvirt stops them first so the
        # domain's state says so (paused, reason "saving") and restarts them after.
        await drv.pause_cpus(obj, PausedReason.SAVE)
    try:
        await work.run_job(obj, "snapshot-save", {"tag": snap.name, "vmstate": vmstate, "devices": devices})
    finally:
        if resume and obj.active and not flags & Create.HALT:
            await drv.resume_cpus(obj, RunningReason.UNPAUSED)


async def _create_external(drv: "QemuDriver", obj: "QemuDomainObj", pairs: list, active: bool,
                           reuse: bool = False) -> None:
    chosen = [(d, sd) for d, sd in pairs if sd.snapshot == "external"]
    # what each overlay sits on: the image's path and format (a shut-off volume
    # disk's asked of the storage driver)
    under = {d.target_dev: storage_source.resolved(d, drv.storage_resolver) for d, _sd in chosen}
    if active:
        ids = drv.security.process_ids()
        owner = (ids.uid, ids.gid) if ids is not None and os.geteuid() == 0 else None
        await work.live_external(obj, [work.Overlay(d.alias or d.target_dev, sd.source, d.source, _format_of(d))
                                       for d, sd in chosen], owner, reuse=reuse)
    elif not reuse:
        made: list[str] = []
        try:
            for disk, sd in chosen:
                image = under[disk.target_dev]
                await work.create_overlay(sd.source, image.source, _format_of(image))
                made.append(sd.source)
        except BaseException:
            for path in made:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise
    # The disks now point at their overlays, in the live and the persistent definition.
    # A volume disk becomes a file disk on its overlay (as libvirt's): the volume's
    # image is then the first backing image, in both definitions.
    moved = {d.target_dev: (storage_source.image_key(d), sd.source,
                            (_format_of(under[d.target_dev]), under[d.target_dev].source)) for d, sd in chosen}
    defs = [obj.live] if active and obj.live is not None else []
    if obj.persistent:
        defs.append(obj.definition)
    for definition in defs:
        for disk in definition.devices.disks:
            entry = moved.get(disk.target_dev)
            if entry is None or storage_source.image_key(disk) != entry[0]:
                continue
            disk.backing_store = [entry[2], *disk.backing_store]
            storage_source.make_file(disk)
            disk.source, disk.driver_type = entry[1], "qcow2"
            disk.driver_name = disk.driver_name or "qemu"
    if active:
        obj.save_status()
    if obj.persistent:
        drv.save_config(obj)


async def redefine(drv: "QemuDriver", obj: "QemuDomainObj", xml: str, flags: int) -> SnapshotDef:
    """VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE: metadata only (snapshot-edit, snapshot-current NAME)."""
    snap = snapxml.parse(xml, redefine=True, validate=bool(flags & Create.VALIDATE))
    async with drv.job_guard(obj, JobKind.MODIFY):
        snaps = tree(drv, obj)
        old = snaps.snaps.get(snap.name or "")
        if snap.parent is not None and snap.parent not in snaps:
            raise error(ErrorNumber.INVALID_ARG, Q, f"parent {snap.parent} for snapshot {snap.name} not found")
        if snap.domain_xml is None and old is not None:
            snap.domain_xml = old.domain_xml
        snap.current = old.current if old is not None else False
        snaps.save(snap)
        if flags & Create.CURRENT:
            snaps.set_current(snap)
    return snap


# -- revert -------------------------------------------------------------------------------
async def revert(drv: "QemuDriver", obj: "QemuDomainObj", name: str, flags: int) -> None:
    async with drv.job_guard(obj, JobKind.MODIFY):
        snaps = tree(drv, obj)
        snap = snaps.get(name)
        has_memory = snap.state in snapxml.ACTIVE_STATES
        if not obj.persistent and not has_memory and not flags & (Revert.RUNNING | Revert.PAUSED):
            raise error(ErrorNumber.OPERATION_INVALID, Q,
                        "transient domain needs to request run or pause to revert to inactive snapshot")
        if snap.is_external:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, Q, "revert to external snapshot not supported yet")
        if snap.domain_xml is None:
            raise error(ErrorNumber.SNAPSHOT_REVERT_RISKY, Q,
                        f"snapshot '{snap.name}' lacks domain '{obj.name}' rollback info")
        if not flags & Revert.FORCE and obj.has_managed_save and not has_memory:
            raise error(ErrorNumber.SNAPSHOT_REVERT_RISKY, Q,
                        "snapshot without memory state, removal of existing managed saved state "
                        "strongly recommended to avoid corruption")
        if has_memory:
            await _revert_with_memory(drv, obj, snap, flags)
        else:
            await _revert_disks(drv, obj, snap, flags)
        snaps.set_current(snap)


async def _revert_with_memory(drv: "QemuDriver", obj: "QemuDomainObj", snap: SnapshotDef, flags: int) -> None:
    """A snapshot with memory.  libvirt 9.0 stops a running QEMU (STOPPED/FROM_SNAPSHOT) and
    starts a fresh one from the snapshot's definition, paused, loads the state into it,
    then runs it (RESUMED/FROM_SNAPSHOT) or leaves it paused (SUSPENDED/FROM_SNAPSHOT).
    A transient domain would go with its QEMU: its state is loaded in place."""
    run = bool(flags & Revert.RUNNING) or (snap.state != "paused" and not flags & Revert.PAUSED)
    in_place = obj.active and not obj.persistent
    if in_place:
        if obj.state == DomainState.RUNNING:
            await drv.pause_cpus(obj, PausedReason.FROM_SNAPSHOT, event=False)
            emit_lifecycle(drv.events, obj, EventType.SUSPENDED, EventSuspendedDetail.FROM_SNAPSHOT)
    else:
        if obj.active:
            await drv.kill(obj, ShutoffReason.FROM_SNAPSHOT, EventStoppedDetail.FROM_SNAPSHOT)
        _restore_definition(drv, obj, snap)
        await drv.start(obj, paused=True, started_detail=EventStartedDetail.FROM_SNAPSHOT, suspended_detail=None)
    vmstate, devices = await _internal_nodes(obj, snap)
    await work.run_job(obj, "snapshot-load", {"tag": snap.name, "vmstate": vmstate, "devices": devices})
    if run:
        await drv.resume_cpus(obj, RunningReason.FROM_SNAPSHOT, event=False)
        emit_lifecycle(drv.events, obj, EventType.RESUMED, EventResumedDetail.FROM_SNAPSHOT)
    else:
        obj.set_state(DomainState.PAUSED, PausedReason.FROM_SNAPSHOT)
        if not in_place:
            emit_lifecycle(drv.events, obj, EventType.SUSPENDED, EventSuspendedDetail.FROM_SNAPSHOT)
    _announce_definition(drv, obj)


async def _revert_disks(drv: "QemuDriver", obj: "QemuDomainObj", snap: SnapshotDef, flags: int) -> None:
    """A snapshot of a shut-off domain: stop it if running, put the disks back, then
    start it if asked (RUNNING or PAUSED)."""
    if obj.active:
        await drv.kill(obj, ShutoffReason.FROM_SNAPSHOT, EventStoppedDetail.FROM_SNAPSHOT)
    _restore_definition(drv, obj, snap)
    by_target = {d.target_dev: d for d in obj.definition.devices.disks}
    images = [by_target[sd.name].source for sd in snap.disks
              if sd.snapshot == "internal" and sd.name in by_target and by_target[sd.name].source]
    await work.offline_internal("-a", snap.name or "", images)   # type: ignore[arg-type]
    if flags & (Revert.RUNNING | Revert.PAUSED):
        await drv.start(obj, paused=bool(flags & Revert.PAUSED), reason=RunningReason.FROM_SNAPSHOT,
                        started_detail=EventStartedDetail.FROM_SNAPSHOT,
                        suspended_detail=EventSuspendedDetail.FROM_SNAPSHOT)
    _announce_definition(drv, obj)


def _restore_definition(drv: "QemuDriver", obj: "QemuDomainObj", snap: SnapshotDef) -> None:
    """The persistent definition goes back to the snapshot's (libvirt's revert rewrites it)."""
    if not obj.persistent:
        return
    from ... import conf
    from .command import DOMAIN_TYPES
    text = snap.inactive_xml or snap.domain_xml
    try:
        then = conf.parse(text or "", DOMAIN_TYPES, "qemu", inactive=True)
    except Exception as exc:      # a definition this version cannot read: keep the current one
        log.warning("%s: reverting to snapshot '%s' keeps the current definition: %s", obj.name, snap.name, exc)
        return
    if then.name != obj.definition.name or then.uuid != obj.definition.uuid:
        return
    previous = obj.definition
    obj.definition = then
    try:
        drv.save_config(obj)
    except OSError:
        obj.definition = previous
        raise


def _announce_definition(drv: "QemuDriver", obj: "QemuDomainObj") -> None:
    if obj.persistent:
        emit_lifecycle(drv.events, obj, EventType.DEFINED, EventDefinedDetail.FROM_SNAPSHOT)


# -- delete ---------------------------------------------------------------------------------
async def delete(drv: "QemuDriver", obj: "QemuDomainObj", name: str, flags: int) -> None:
    async with drv.job_guard(obj, JobKind.MODIFY):
        snaps = tree(drv, obj)
        snap = snaps.get(name)
        below = list(snaps.descendants(snap.name))
        if flags & Delete.CHILDREN_ONLY:
            targets = below
        elif flags & Delete.CHILDREN:
            targets = [snap] + below
        else:
            targets = [snap]
        merges: list[external_delete.Merge] = []
        if not flags & Delete.METADATA_ONLY:
            if not snap.is_external:
                _check_same_images(obj, snap)
            external_delete.validate(obj, snaps, snap, flags)
            if snap.is_external and not flags & (Delete.CHILDREN | Delete.CHILDREN_ONLY):
                merges = external_delete.prepare(obj, snaps, snap)
            for target in targets:
                if not target.is_external:
                    _check_same_images(obj, target)
        current = snaps.current
        current_goes = current is not None and any(t.name == current.name for t in targets)
        if merges:
            # libvirt 9.0 merges the snapshot's overlays into the images under them
            if obj.active:
                await external_delete.merge_live(obj, merges, lambda m: _block_job_event(drv, obj, m, READY))
            else:
                await external_delete.merge_offline(merges)
            external_delete.update_definitions(obj, merges)
            if obj.active:
                obj.save_status()
                for m in merges:       # as libvirt: the disk's new image in an active commit's event
                    _block_job_event(drv, obj, m, COMPLETED)
            if obj.persistent:
                drv.save_config(obj)
            external_delete.update_descendants(snaps, snap, merges)
        for target in reversed(targets):       # children before their parents
            if not flags & Delete.METADATA_ONLY and not target.is_external:
                await _discard(drv, obj, target)
            snaps.remove(target.name)          # type: ignore[arg-type]
        if current_goes:
            # libvirt: the current snapshot's place goes to what is left above it
            heir = snap if flags & Delete.CHILDREN_ONLY else snaps.snaps.get(snap.parent or "")
            snaps.set_current(heir)


def _block_job_event(drv: "QemuDriver", obj: "QemuDomainObj", merge: external_delete.Merge, status: int) -> None:
    """BLOCK_JOB and BLOCK_JOB_2 for the commit of a deleted snapshot, as libvirt 9.0 raises them."""
    disk = next((d for d in obj.live.devices.disks if d.target_dev == merge.target), None) \
        if obj.live is not None else None
    if disk is not None:
        drv._emit_all(qemu_events.block_job(obj, disk, merge.kind, status))


def _check_same_images(obj: "QemuDomainObj", snap: SnapshotDef) -> None:
    """libvirt 9.0 deletes an internal snapshot only from the images that hold it: a disk
    moved onto an external overlay since is refused."""
    from ... import conf
    try:
        then = {d.target_dev: d.source for d in conf.parse(snap.domain_xml or "").devices.disks}
    except Exception:           # no usable definition: QEMU or qemu-img will say
        return
    now = {d.target_dev: d.source for d in obj.current.devices.disks}
    for sd in snap.disks:
        if sd.snapshot == "internal" and sd.name in then and now.get(sd.name) != then[sd.name]:
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, Q,
                        f"disk image '{sd.name}' for internal snapshot '{snap.name}' is not the same "
                        "as disk image currently used by VM")


async def _discard(drv: "QemuDriver", obj: "QemuDomainObj", snap: SnapshotDef) -> None:
    if not any(sd.snapshot == "internal" for sd in snap.disks):
        return
    if obj.active:
        _vmstate, devices = await _internal_nodes(obj, snap)
        await work.run_job(obj, "snapshot-delete", {"tag": snap.name, "devices": devices})
        return
    by_target = {d.target_dev: d for d in obj.definition.devices.disks}
    images = [by_target[sd.name].source for sd in snap.disks
              if sd.snapshot == "internal" and sd.name in by_target and by_target[sd.name].source]
    await work.offline_internal("-d", snap.name or "", images)   # type: ignore[arg-type]


# -- queries -----------------------------------------------------------------------------------
def domain_xml_for(snap: SnapshotDef, secure: bool) -> str | None:
    """The snapshot's <domain>, formatted for a caller (secrets only with ``secure``)."""
    if snap.domain_xml is None:
        return None
    from ... import conf
    try:
        return conf.parse(snap.domain_xml).format(secure=secure, inactive=False)
    except Exception:          # an old or foreign definition: shown as stored
        return snap.domain_xml


def matches(snaps: SnapshotTree, snap: SnapshotDef, flags: int) -> bool:
    """libvirt's virDomainMomentObjListFilter for the LIST_* filter groups."""
    from ...enums_more import DomainSnapshotListFlags as L
    leaf = snaps.is_leaf(snap.name or "")
    if flags & (L.LEAVES | L.NO_LEAVES) and (flags & (L.LEAVES | L.NO_LEAVES)) != (L.LEAVES | L.NO_LEAVES):
        if bool(flags & L.LEAVES) != leaf:
            return False
    if flags & (L.METADATA | L.NO_METADATA) and not flags & L.METADATA:
        return False          # every snapshot this driver lists has metadata
    states = flags & (L.INACTIVE | L.ACTIVE | L.DISK_ONLY)
    if states:
        kind = (L.DISK_ONLY if snap.state == "disk-snapshot"
                else L.INACTIVE if snap.state == "shutoff" else L.ACTIVE)
        if not states & kind:
            return False
    where = flags & (L.INTERNAL | L.EXTERNAL)
    if where:
        if not where & (L.EXTERNAL if snap.is_external else L.INTERNAL):
            return False
    return True


def check_undefine(drv: "QemuDriver", obj: "QemuDomainObj", flags: int) -> None:
    """libvirt's rule for undefining a shut-off domain that has snapshot metadata:
    refused unless VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA, which discards it."""
    from ...enums import UndefineFlags
    if obj.active:
        return
    snaps = tree(drv, obj)
    if not len(snaps):
        return
    if not flags & UndefineFlags.SNAPSHOTS_METADATA:
        raise error(ErrorNumber.OPERATION_INVALID, Q, f"cannot delete inactive domain with {len(snaps)} snapshots")
    snaps.remove_all()
