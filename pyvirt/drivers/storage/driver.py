"""The host-wide storage driver: pools, their persistence and lifecycle.

Files under the driver's root, as libvirt keeps them under /etc and /run:

* ``etc/storage/NAME.xml`` — a persistent pool's definition;
* ``etc/storage/autostart/NAME.xml`` — a symlink to it when the pool autostarts;
* ``run/storage/NAME.xml`` — an active pool's definition (transient pools too),
  so a restarted daemon brings the pools that were running back up.

Every pool change emits a :class:`pyvirt.driver_storage.PoolEvent`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...conf import storage_pool as poolxml
from ...conf.fileutil import write_atomic
from ...conf.names import contained
from ...driver import EventBus
from ...driver_storage import PoolEvent
from ...enums_more import StoragePoolEventID, StoragePoolEventLifecycle
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ...refs import StoragePoolRef, StorageVolRef
from .backend_dir import DirBackend
from .backend_logical import LogicalBackend
from .pool import PoolObj
from .volume import Volume

log = logging.getLogger(__name__)

BACKENDS: dict[str, Any] = {"dir": DirBackend(), "logical": LogicalBackend()}


def _invalid(detail: str) -> libvirtError:
    return error(ErrorNumber.OPERATION_INVALID, ErrorDomain.STORAGE, detail)


class StorageDriver:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.config_dir = self.root / "etc" / "storage"
        self.autostart_dir = self.config_dir / "autostart"
        self.state_dir = self.root / "run" / "storage"
        self.pools: dict[str, PoolObj] = {}
        self.events = EventBus()
        # Set by whoever wires the QEMU driver in: the name of a running guest that
        # uses ``path``, or None.  A volume in use is never deleted.
        self.in_use: Callable[[str], str | None] = lambda path: None
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()   # re-reads after uploads

    # -- set-up ------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Load persistent definitions, bring back the pools that were active, start autostart ones."""
        for d in (self.config_dir, self.autostart_dir, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.config_dir.glob("*.xml")):
            pdef = self._load(path)
            if pdef is not None and pdef.name not in self.pools:
                obj = PoolObj(pdef, persistent=True)
                obj.autostart = (self.autostart_dir / path.name).is_symlink()
                self.pools[pdef.name] = obj
        for path in sorted(self.state_dir.glob("*.xml")):
            pdef = self._load(path)
            if pdef is None:
                continue
            obj = self.pools.get(pdef.name)
            if obj is None:
                obj = self.pools[pdef.name] = PoolObj(pdef, persistent=False)
            elif obj.pdef.uuid == pdef.uuid:
                if poolxml.format_config(obj.pdef) != poolxml.format_config(pdef):
                    obj.new_def, obj.pdef = obj.pdef, pdef   # it runs with the old definition
            await self._bring_up(obj, "restore")
        for obj in list(self.pools.values()):
            if obj.autostart and not obj.active:
                await self._bring_up(obj, "autostart")

    def _load(self, path: Path) -> poolxml.PoolDef | None:
        try:
            pdef = poolxml.parse(path.read_text())
        except Exception as exc:
            log.error("ignoring storage pool file %s: %s", path, exc)
            return None
        if pdef.name != path.stem:
            log.error("ignoring storage pool file %s: it defines pool '%s'", path, pdef.name)
            return None
        return pdef

    async def _bring_up(self, obj: PoolObj, why: str) -> None:
        try:
            await self.backend(obj).start(obj.pdef)
            obj.active = True
            await self.refresh_pool(obj)
            self._write_state(obj)
            if why == "autostart":
                self.emit(obj, StoragePoolEventLifecycle.STARTED)
        except Exception as exc:
            log.error("storage pool '%s' could not be started (%s): %s", obj.name, why, exc)
            obj.active = False
            obj.volumes.clear()
            self._remove_state(obj)

    async def close(self) -> None:
        """Stop serving; pools stay as they are (their state files stay for the next daemon)."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)

    def connect(self, info: Any) -> Any:
        from .connection import StorageConnection
        return StorageConnection(info, self)

    # -- helpers -----------------------------------------------------------------------
    def backend(self, obj: PoolObj) -> Any:
        return BACKENDS[obj.pdef.type]

    def emit(self, obj: PoolObj, event: int, detail: int = 0) -> None:
        self.events.emit(PoolEvent(StoragePoolEventID.LIFECYCLE, obj.ref, (int(event), detail)))

    def emit_refresh(self, obj: PoolObj) -> None:
        self.events.emit(PoolEvent(StoragePoolEventID.REFRESH, obj.ref, ()))

    def config_path(self, name: str) -> Path:
        return contained(self.config_dir, f"{name}.xml")

    def _write_config(self, pdef: poolxml.PoolDef) -> None:
        write_atomic(self.config_path(pdef.name), poolxml.format_config(pdef))

    def _write_state(self, obj: PoolObj) -> None:
        write_atomic(contained(self.state_dir, f"{obj.name}.xml"), poolxml.format_config(obj.pdef))

    def _remove_state(self, obj: PoolObj) -> None:
        try:
            os.unlink(contained(self.state_dir, f"{obj.name}.xml"))
        except FileNotFoundError:
            pass

    def _set_autostart_link(self, name: str, on: bool) -> None:
        link = contained(self.autostart_dir, f"{name}.xml")
        if on:
            if not link.is_symlink():
                os.symlink(self.config_path(name), link)
        else:
            try:
                os.unlink(link)
            except FileNotFoundError:
                pass

    # -- lookups -----------------------------------------------------------------------
    def by_name(self, name: str) -> PoolObj:
        obj = self.pools.get(name)
        if obj is None:
            raise error(ErrorNumber.NO_STORAGE_POOL, ErrorDomain.STORAGE,
                        f"no storage pool with matching name '{name}'")
        return obj

    def by_uuid(self, uuid: bytes) -> PoolObj:
        for obj in self.pools.values():
            if obj.pdef.uuid == uuid:
                return obj
        import uuid as uuidmod
        raise error(ErrorNumber.NO_STORAGE_POOL, ErrorDomain.STORAGE,
                    f"no storage pool with matching uuid '{uuidmod.UUID(bytes=bytes(uuid))}'")

    def by_ref(self, ref: StoragePoolRef) -> PoolObj:
        obj = self.pools.get(ref.name)
        if obj is None or obj.pdef.uuid != bytes(ref.uuid):
            try:
                return self.by_uuid(bytes(ref.uuid))
            except libvirtError:
                pass
            raise error(ErrorNumber.NO_STORAGE_POOL, ErrorDomain.STORAGE,
                        f"no storage pool with matching uuid '{ref.uuid_string}' ({ref.name})")
        return obj

    def active(self, ref: StoragePoolRef) -> PoolObj:
        obj = self.by_ref(ref)
        if not obj.active:
            raise _invalid(f"storage pool '{obj.name}' is not active")
        return obj

    def volume(self, ref: StorageVolRef) -> tuple[PoolObj, Volume]:
        obj = self.pools.get(ref.pool)
        if obj is None:
            raise error(ErrorNumber.NO_STORAGE_POOL, ErrorDomain.STORAGE,
                        f"no storage pool with matching name '{ref.pool}'")
        if not obj.active:
            raise _invalid(f"storage pool '{obj.name}' is not active")
        vol = obj.volumes.get(ref.name)
        if vol is None or vol.building:
            raise error(ErrorNumber.NO_STORAGE_VOL, ErrorDomain.STORAGE,
                        f"no storage vol with matching name '{ref.name}'")
        return obj, vol

    def find_volume(self, match: Callable[[Volume], bool]) -> tuple[PoolObj, Volume] | None:
        for obj in self.pools.values():
            if not obj.active:
                continue
            for vol in obj.volumes.values():
                if not vol.building and match(vol):
                    return obj, vol
        return None

    def resolve_volume(self, pool: str, volume: str) -> tuple[str, str | None, int]:
        """``(path, format, type)`` of a volume, for ``<disk type='volume'>`` (the QEMU driver's hook)."""
        obj, vol = self.volume(StorageVolRef(pool, volume, ""))
        return vol.path, vol.format, vol.type

    # -- pool definitions ----------------------------------------------------------------
    def _check_duplicate(self, pdef: poolxml.PoolDef, check_active: bool) -> PoolObj | None:
        """libvirt's virStoragePoolObjIsDuplicate and source-conflict checks."""
        existing = self.pools.get(pdef.name)
        if existing is not None:
            if existing.pdef.uuid != pdef.uuid:
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.STORAGE,
                            f"pool '{pdef.name}' already exists with uuid {existing.pdef.uuid_string}")
            if check_active and existing.active:
                raise _invalid(f"storage pool '{pdef.name}' is already active")
        for obj in self.pools.values():
            if obj is existing:
                continue
            if obj.pdef.uuid == pdef.uuid:
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.STORAGE,
                            f"pool '{obj.name}' is already defined with uuid {pdef.uuid_string}")
            if obj.pdef.type == pdef.type and self._same_source(obj.pdef, pdef):
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.STORAGE,
                            f"Storage source conflict with pool: '{obj.name}'")
        return existing

    @staticmethod
    def _same_source(a: poolxml.PoolDef, b: poolxml.PoolDef) -> bool:
        if a.type == "dir":
            return os.path.normpath(a.target_path) == os.path.normpath(b.target_path)
        return a.source_name == b.source_name

    async def define(self, xml: str) -> PoolObj:
        pdef = poolxml.parse(xml)
        async with self.lock:
            existing = self._check_duplicate(pdef, check_active=False)
            self._write_config(pdef)
            if existing is None:
                obj = self.pools[pdef.name] = PoolObj(pdef, persistent=True)
            else:
                obj = existing
                obj.persistent = True
                if obj.active:
                    obj.new_def = pdef
                else:
                    obj.pdef = pdef
        self.emit(obj, StoragePoolEventLifecycle.DEFINED)
        return obj

    async def undefine(self, obj: PoolObj) -> None:
        if obj.active:
            raise _invalid(f"storage pool '{obj.name}' is still active")
        if not obj.persistent:
            raise _invalid(f"cannot undefine transient storage pool '{obj.name}'")
        if obj.busy:
            raise _invalid(f"pool '{obj.name}' has asynchronous jobs running.")
        try:
            os.unlink(self.config_path(obj.name))
        except FileNotFoundError:
            pass
        self._set_autostart_link(obj.name, False)
        obj.autostart = False
        obj.persistent = False
        self.pools.pop(obj.name, None)
        self.emit(obj, StoragePoolEventLifecycle.UNDEFINED)

    async def create_transient(self, xml: str, build: bool, overwrite: bool, no_overwrite: bool) -> PoolObj:
        pdef = poolxml.parse(xml)
        async with self.lock:
            existing = self._check_duplicate(pdef, check_active=True)
            if existing is not None:
                raise _invalid(f"storage pool '{pdef.name}' is already active")
            obj = PoolObj(pdef, persistent=False)
            self.pools[pdef.name] = obj
        try:
            if build:
                await self.build(obj, overwrite, no_overwrite, emit=False)
            await self.start(obj, emit=False)
        except BaseException:
            if not obj.active:
                self.pools.pop(pdef.name, None)
            raise
        self.emit(obj, StoragePoolEventLifecycle.STARTED)
        return obj

    # -- lifecycle -------------------------------------------------------------------------
    async def build(self, obj: PoolObj, overwrite: bool, no_overwrite: bool, emit: bool = True) -> None:
        if obj.active:
            raise _invalid(f"storage pool '{obj.name}' is already active")
        if overwrite and no_overwrite:
            raise _invalid("Overwrite and no overwrite flags are mutually exclusive")
        backend = self.backend(obj)
        if no_overwrite and backend.check_built(obj.pdef) and obj.pdef.type != "dir":
            raise error(ErrorNumber.STORAGE_POOL_BUILT, ErrorDomain.STORAGE,
                        f"Storage pool already built: Format of device '{obj.pdef.source_devices[0]}' does "
                        f"not match the expected format 'lvm2', forced overwrite is necessary"
                        if obj.pdef.source_devices else obj.name)
        obj.busy += 1
        try:
            await backend.build(obj.pdef, overwrite, no_overwrite)
        finally:
            obj.busy -= 1
        if emit:
            self.emit(obj, StoragePoolEventLifecycle.CREATED)

    async def start(self, obj: PoolObj, build: bool = False, overwrite: bool = False,
                    no_overwrite: bool = False, emit: bool = True) -> None:
        if obj.active:
            raise _invalid(f"storage pool '{obj.name}' is already active")
        if build:
            await self.build(obj, overwrite, no_overwrite, emit=False)
        await self.backend(obj).start(obj.pdef)
        obj.active = True
        try:
            await self.refresh_pool(obj)
        except BaseException:
            obj.active = False
            obj.volumes.clear()
            await self.backend(obj).stop(obj.pdef)
            raise
        self._write_state(obj)
        if emit:
            self.emit(obj, StoragePoolEventLifecycle.STARTED)

    async def destroy(self, obj: PoolObj) -> None:
        if not obj.active:
            raise _invalid(f"storage pool '{obj.name}' is not active")
        if obj.busy or any(v.busy or v.building for v in obj.volumes.values()):
            raise _invalid(f"pool '{obj.name}' has asynchronous jobs running.")
        await self.backend(obj).stop(obj.pdef)
        obj.active = False
        obj.volumes.clear()
        obj.pdef.capacity = obj.pdef.allocation = obj.pdef.available = 0
        self._remove_state(obj)
        self.emit(obj, StoragePoolEventLifecycle.STOPPED)
        if not obj.persistent:
            self.pools.pop(obj.name, None)
        elif obj.new_def is not None:
            obj.pdef, obj.new_def = obj.new_def, None

    async def delete(self, obj: PoolObj) -> None:
        if obj.active:
            raise _invalid(f"storage pool '{obj.name}' is still active")
        if obj.busy:
            raise _invalid(f"pool '{obj.name}' has asynchronous jobs running.")
        await self.backend(obj).delete(obj.pdef)
        self.emit(obj, StoragePoolEventLifecycle.DELETED)

    async def refresh_pool(self, obj: PoolObj) -> None:
        backend = self.backend(obj)
        vols = await backend.refresh(obj.pdef)
        # Volumes being built keep their place; the rest is what the backend sees now.
        building = {n: v for n, v in obj.volumes.items() if v.building or v.busy}
        obj.volumes = {v.name: v for v in vols}
        obj.volumes.update(building)
        self.update_sizes(obj)

    def update_sizes(self, obj: PoolObj) -> None:
        obj.pdef.capacity, obj.pdef.allocation, obj.pdef.available = self.backend(obj).sizes(obj.pdef)

    async def set_autostart(self, obj: PoolObj, on: bool) -> None:
        if not obj.persistent:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.STORAGE, "pool has no config file")
        self._set_autostart_link(obj.name, on)
        obj.autostart = on

    def pool_xml(self, obj: PoolObj, inactive: bool) -> str:
        pdef = obj.inactive_def() if inactive else obj.pdef
        # The running definition shows its target as it is; a pending one, as written.
        perms = None if pdef is obj.new_def else self.backend(obj).target_permissions(pdef)
        return poolxml.format_pool(pdef, perms)
