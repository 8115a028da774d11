"""``<disk type='volume'>``: a storage pool's volume as a guest's disk.

As libvirt's virDomainDiskTranslateSourcePool, the QEMU driver asks the
storage driver (never the other way round) for the volume's path, format
and kind when the guest starts (also as a migration's destination, whose
start is the same) and uses them as it would a ``type='file'`` or
``type='block'`` disk; the live XML keeps naming the pool and volume.  The
resolution is kept in the status file (``obj.extra``) so a restarted
daemon knows the paths without the storage driver, and so that the
storage driver can ask which running guest uses a path before it deletes
a volume (:func:`user_of`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

from ...conf import DomainDef
from ...errors import ErrorDomain, ErrorNumber, error

# A resolver: (pool, volume) -> (path, format or None, VIR_STORAGE_VOL_* type).
Resolver = Callable[[str, str], tuple[str, "str | None", int]]

EXTRA_KEY = "volume-sources"
"""obj.extra's key: {target: [path, 'file'|'block']} for each resolved volume disk."""

# virStorageVolType -> what QEMU opens (libvirt refuses the others for a disk too)
_VOL_KINDS = {0: "file", 1: "block"}              # VIR_STORAGE_VOL_FILE, _BLOCK
_VOL_TYPE_NAMES = {2: "dir", 3: "network", 4: "netdir", 5: "ploop"}
# The formats a volume may report that QEMU reads as the same driver name.
_FORMATS = {"raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vhdx", "vpc", "cloop", "dmg", "bochs", "parallels"}


def volume_disks(d: DomainDef) -> list[Any]:
    return [disk for disk in d.devices.disks if disk.type == "volume" and disk.source_pool]


def resolve(d: DomainDef, resolver: Resolver | None) -> None:
    """Give every volume disk of ``d`` (a live definition) its path, kind and,
    when the XML names none, the volume's format.  Errors are the storage
    driver's (no such pool or volume, pool not active) or libvirt's refusals."""
    for disk in volume_disks(d):
        resolve_disk(disk, resolver)


def resolve_disk(disk: Any, resolver: Resolver | None) -> None:
    """One volume disk (a hot-plugged one too)."""
    if disk.type == "volume" and disk.source_pool:
        if resolver is None:
            raise error(ErrorNumber.NO_SUPPORT, ErrorDomain.QEMU,
                        f"disk '{disk.target_dev}': a volume disk needs the storage driver, "
                        "which this connection does not have")
        path, fmt, vtype = resolver(disk.source_pool, disk.source_volume)
        kind = _VOL_KINDS.get(vtype)
        if kind is None:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN,
                        f"disk source volume '{disk.source_pool}/{disk.source_volume}' of type "
                        f"'{_VOL_TYPE_NAMES.get(vtype, vtype)}' cannot be used as a disk")
        disk.source, disk.actual_type = path, kind
        if disk.driver_type is None and fmt in _FORMATS:
            disk.driver_type = fmt


def resolved(disk: Any, resolver: Resolver | None) -> Any:
    """``disk`` with its image's path and format known: itself, or for a shut-off
    volume disk a copy resolved through the storage driver."""
    if disk.source is not None or disk.type != "volume" or not disk.source_pool:
        return disk
    probe = dataclasses.replace(disk)
    resolve_disk(probe, resolver)
    return probe


def image_key(disk: Any) -> tuple:
    """What names a disk's image alike in the live and the persistent definition
    (a volume by pool and name: only the live one knows its path)."""
    if disk.type == "volume":
        return ("volume", disk.source_pool, disk.source_volume)
    return ("path", disk.source)


def make_file(disk: Any) -> None:
    """Turn a volume disk into the file disk an external snapshot's overlay makes of it."""
    if disk.type == "volume":
        disk.type = "file"
        disk.source_pool = disk.source_volume = disk.actual_type = None


def remember(obj: Any) -> None:
    """Record the live definition's resolutions in the status (call before saving it)."""
    live = obj.live
    table = {disk.target_dev: [disk.source, disk.actual_type]
             for disk in volume_disks(live) if disk.source} if live is not None else {}
    if table:
        obj.extra[EXTRA_KEY] = json.dumps(table, separators=(",", ":"))
    else:
        obj.extra.pop(EXTRA_KEY, None)


def restore(live: DomainDef, extra: dict[str, str]) -> None:
    """A restarted daemon's view of a running guest: the paths its volumes had."""
    try:
        table = json.loads(extra.get(EXTRA_KEY, "{}"))
    except ValueError:
        return
    for disk in volume_disks(live):
        entry = table.get(disk.target_dev)
        if isinstance(entry, list) and len(entry) == 2:
            disk.source, disk.actual_type = entry


def user_of(domains: Any, path: str) -> str | None:
    """The name of a running guest with a disk on ``path`` (the storage driver's
    ``in_use`` hook: a volume in use is never deleted), or None.  A backing image
    (under an external snapshot's overlay) is in use as much as the disk's top image."""
    wanted = os.path.realpath(path)
    for obj in list(domains):
        live = obj.live if obj.active else None
        if live is None:
            continue
        for disk in live.devices.disks:
            images = [disk.source, *(image for _fmt, image in disk.backing_store)]
            if any(image and (image == path or os.path.realpath(image) == wanted) for image in images):
                return live.name
    return None


def wire(qemu: Any, storage: Any) -> None:
    """Join a QemuDriver and the StorageDriver beside it: volume disks resolve
    through the storage driver, which asks the QEMU driver before deleting a volume."""
    qemu.storage_resolver = storage.resolve_volume
    storage.in_use = lambda path: user_of(qemu.domains, path)
