"""One client's storage connection: libvirt's storage procedures, by name.

Methods check flags and find the pool or volume; pools' lifecycle lives in
:mod:`.driver`, volume work in :mod:`.volumes`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ...conf import storage_pool as poolxml
from ...driver_storage import StorageConnection as BaseStorageConnection
from ...enums_more import (ConnectListStoragePoolsFlags as LF, StoragePoolBuildFlags, StoragePoolCreateFlags,
                           StoragePoolState, StorageVolCreateFlags, StorageXMLFlags)
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import StoragePoolRef, StorageVolRef
from . import capabilities, volumes
from .driver import StorageDriver
from .pool import PoolObj

_S = ErrorDomain.STORAGE
_TYPE_FLAGS = {"dir": LF.DIR, "logical": LF.LOGICAL}
_ALL_LIST_FLAGS = int(sum(LF))


def _matches(obj: PoolObj, flags: int) -> bool:
    if flags & (LF.ACTIVE | LF.INACTIVE) and not (
            (flags & LF.ACTIVE and obj.active) or (flags & LF.INACTIVE and not obj.active)):
        return False
    if flags & (LF.PERSISTENT | LF.TRANSIENT) and not (
            (flags & LF.PERSISTENT and obj.persistent) or (flags & LF.TRANSIENT and not obj.persistent)):
        return False
    if flags & (LF.AUTOSTART | LF.NO_AUTOSTART) and not (
            (flags & LF.AUTOSTART and obj.autostart) or (flags & LF.NO_AUTOSTART and not obj.autostart)):
        return False
    type_flags = flags & ~0x3F
    if type_flags and not type_flags & _TYPE_FLAGS.get(obj.pdef.type, 0):
        return False
    return True


def _exclusive(a: str, b: str) -> Exception:
    """libvirt's VIR_EXCLUSIVE_FLAGS_RET: INVALID_ARG, the message bare."""
    from ...errors import ErrorLevel, libvirtError
    text = f"Flags '{a}' and '{b}' are mutually exclusive"
    return libvirtError(text, ErrorNumber.INVALID_ARG, _S, ErrorLevel.ERROR, "%s", text)


class StorageConnection(BaseStorageConnection):
    def __init__(self, info: Any, driver: StorageDriver) -> None:
        super().__init__(info, driver.events)
        self.driver = driver

    def _sorted(self) -> list[PoolObj]:
        return sorted(self.driver.pools.values(), key=lambda o: o.name)

    # -- lists -----------------------------------------------------------------------------
    async def connect_num_of_storage_pools(self) -> int:
        return sum(1 for o in self.driver.pools.values() if o.active)

    async def connect_list_storage_pools(self, maxnames: int) -> list[str]:
        return [o.name for o in self._sorted() if o.active][:max(maxnames, 0)]

    async def connect_num_of_defined_storage_pools(self) -> int:
        return sum(1 for o in self.driver.pools.values() if not o.active)

    async def connect_list_defined_storage_pools(self, maxnames: int) -> list[str]:
        return [o.name for o in self._sorted() if not o.active][:max(maxnames, 0)]

    async def connect_list_all_storage_pools(self, need_results: int, flags: int) -> tuple[list[StoragePoolRef], int]:
        check_flags(flags, _ALL_LIST_FLAGS, "storageConnectListAllStoragePools", _S)
        pools = [o.ref for o in self._sorted() if _matches(o, flags)]
        return (pools if need_results else []), len(pools)

    async def connect_find_storage_pool_sources(self, type: str, srcSpec: str | None, flags: int) -> str:
        check_flags(flags, 0, "storageConnectFindStoragePoolSources", _S)
        if type not in poolxml.ALL_POOL_TYPES:
            raise error(ErrorNumber.INTERNAL_ERROR, _S, f"unknown storage pool type {type}")
        if type == "logical":
            from .backend_logical import find_sources
            return await find_sources()
        raise error(ErrorNumber.NO_SUPPORT, _S, f"pool type '{type}' does not support source discovery")

    async def connect_get_storage_pool_capabilities(self, flags: int) -> str:
        check_flags(flags, 0, "storageConnectGetStoragePoolCapabilities", _S)
        return capabilities.xml()

    # -- pool lookups ------------------------------------------------------------------------
    async def storage_pool_lookup_by_name(self, name: str) -> StoragePoolRef:
        return self.driver.by_name(name).ref

    async def storage_pool_lookup_by_uuid(self, uuid: bytes) -> StoragePoolRef:
        return self.driver.by_uuid(bytes(uuid)).ref

    async def storage_pool_lookup_by_volume(self, vol: StorageVolRef) -> StoragePoolRef:
        obj = self.driver.pools.get(vol.pool)
        if obj is None:
            raise error(ErrorNumber.NO_STORAGE_POOL, _S, f"no storage pool with matching name '{vol.pool}'")
        return obj.ref

    async def storage_pool_lookup_by_target_path(self, path: str) -> StoragePoolRef:
        want = os.path.normpath(path) if path.startswith("/") else path
        for obj in self._sorted():
            if obj.active and os.path.normpath(obj.pdef.target_path) == want:
                return obj.ref
        raise error(ErrorNumber.NO_STORAGE_POOL, _S, f"no storage pool with matching target path '{path}'")

    # -- pool lifecycle --------------------------------------------------------------------------
    async def storage_pool_define_xml(self, xml: str, flags: int) -> StoragePoolRef:
        check_flags(flags, 1, "storagePoolDefineXML", _S)   # VALIDATE: our parser is strict already
        return (await self.driver.define(xml)).ref

    async def storage_pool_create_xml(self, xml: str, flags: int) -> StoragePoolRef:
        check_flags(flags, int(StoragePoolCreateFlags.WITH_BUILD | StoragePoolCreateFlags.WITH_BUILD_OVERWRITE
                               | StoragePoolCreateFlags.WITH_BUILD_NO_OVERWRITE), "storagePoolCreateXML", _S)
        build, overwrite, no_overwrite = self._build_flags(flags)
        return (await self.driver.create_transient(xml, build, overwrite, no_overwrite)).ref

    @staticmethod
    def _build_flags(flags: int) -> tuple[bool, bool, bool]:
        overwrite = bool(flags & StoragePoolCreateFlags.WITH_BUILD_OVERWRITE)
        no_overwrite = bool(flags & StoragePoolCreateFlags.WITH_BUILD_NO_OVERWRITE)
        if overwrite and no_overwrite:
            raise _exclusive("VIR_STORAGE_POOL_CREATE_WITH_BUILD_OVERWRITE",
                             "VIR_STORAGE_POOL_CREATE_WITH_BUILD_NO_OVERWRITE")
        return bool(flags & StoragePoolCreateFlags.WITH_BUILD) or overwrite or no_overwrite, overwrite, no_overwrite

    async def storage_pool_create(self, pool: StoragePoolRef, flags: int) -> None:
        check_flags(flags, int(StoragePoolCreateFlags.WITH_BUILD | StoragePoolCreateFlags.WITH_BUILD_OVERWRITE
                               | StoragePoolCreateFlags.WITH_BUILD_NO_OVERWRITE), "storagePoolCreate", _S)
        build, overwrite, no_overwrite = self._build_flags(flags)
        await self.driver.start(self.driver.by_ref(pool), build, overwrite, no_overwrite)

    async def storage_pool_build(self, pool: StoragePoolRef, flags: int) -> None:
        check_flags(flags, int(StoragePoolBuildFlags.OVERWRITE | StoragePoolBuildFlags.NO_OVERWRITE),
                    "storagePoolBuild", _S)
        if flags & StoragePoolBuildFlags.OVERWRITE and flags & StoragePoolBuildFlags.NO_OVERWRITE:
            raise _exclusive("VIR_STORAGE_POOL_BUILD_OVERWRITE", "VIR_STORAGE_POOL_BUILD_NO_OVERWRITE")
        await self.driver.build(self.driver.by_ref(pool), bool(flags & StoragePoolBuildFlags.OVERWRITE),
                                bool(flags & StoragePoolBuildFlags.NO_OVERWRITE))

    async def storage_pool_destroy(self, pool: StoragePoolRef) -> None:
        await self.driver.destroy(self.driver.by_ref(pool))

    async def storage_pool_delete(self, pool: StoragePoolRef, flags: int) -> None:
        check_flags(flags, 1, "storagePoolDelete", _S)
        await self.driver.delete(self.driver.by_ref(pool))

    async def storage_pool_undefine(self, pool: StoragePoolRef) -> None:
        await self.driver.undefine(self.driver.by_ref(pool))

    async def storage_pool_refresh(self, pool: StoragePoolRef, flags: int) -> None:
        check_flags(flags, 0, "storagePoolRefresh", _S)
        obj = self.driver.active(pool)
        if obj.busy or any(v.busy or v.building for v in obj.volumes.values()):
            raise error(ErrorNumber.OPERATION_INVALID, _S, f"pool '{obj.name}' has asynchronous jobs running.")
        await self.driver.refresh_pool(obj)
        self.driver.emit_refresh(obj)

    # -- pool queries ---------------------------------------------------------------------------
    async def storage_pool_get_info(self, pool: StoragePoolRef) -> tuple[int, int, int, int]:
        obj = self.driver.by_ref(pool)
        if not obj.active:
            return int(StoragePoolState.INACTIVE), 0, 0, 0
        self.driver.update_sizes(obj)
        p = obj.pdef
        return int(StoragePoolState.RUNNING), p.capacity, p.allocation, p.available

    async def storage_pool_get_xml_desc(self, pool: StoragePoolRef, flags: int) -> str:
        check_flags(flags, int(StorageXMLFlags.INACTIVE), "storagePoolGetXMLDesc", _S)
        obj = self.driver.by_ref(pool)
        if obj.active:
            self.driver.update_sizes(obj)
        return self.driver.pool_xml(obj, bool(flags & StorageXMLFlags.INACTIVE))

    async def storage_pool_get_autostart(self, pool: StoragePoolRef) -> int:
        return int(self.driver.by_ref(pool).autostart)

    async def storage_pool_set_autostart(self, pool: StoragePoolRef, autostart: int) -> None:
        await self.driver.set_autostart(self.driver.by_ref(pool), bool(autostart))

    async def storage_pool_is_active(self, pool: StoragePoolRef) -> int:
        return int(self.driver.by_ref(pool).active)

    async def storage_pool_is_persistent(self, pool: StoragePoolRef) -> int:
        return int(self.driver.by_ref(pool).persistent)

    async def storage_pool_num_of_volumes(self, pool: StoragePoolRef) -> int:
        return len(self._vols(self.driver.active(pool)))

    async def storage_pool_list_volumes(self, pool: StoragePoolRef, maxnames: int) -> list[str]:
        return [v.name for v in self._vols(self.driver.active(pool))][:max(maxnames, 0)]

    async def storage_pool_list_all_volumes(self, pool: StoragePoolRef, need_results: int,
                                            flags: int) -> tuple[list[StorageVolRef], int]:
        check_flags(flags, 0, "storagePoolListAllVolumes", _S)
        obj = self.driver.active(pool)
        refs = [v.ref(obj.name) for v in self._vols(obj)]
        return (refs if need_results else []), len(refs)

    async def _vol(self, ref: StorageVolRef) -> tuple[PoolObj, Any]:
        """The volume, once any re-read of it (after an upload) has finished."""
        obj, vol = self.driver.volume(ref)
        if vol.reread is not None and not vol.reread.done():
            await asyncio.shield(vol.reread)
            obj, vol = self.driver.volume(ref)
        return obj, vol

    @staticmethod
    def _vols(obj: PoolObj) -> list[Any]:
        return [v for _, v in sorted(obj.volumes.items()) if not v.building]

    # -- volumes ----------------------------------------------------------------------------------
    async def storage_vol_lookup_by_name(self, pool: StoragePoolRef, name: str) -> StorageVolRef:
        obj = self.driver.active(pool)
        vol = obj.volumes.get(name)
        if vol is None or vol.building:
            raise error(ErrorNumber.NO_STORAGE_VOL, _S, f"no storage vol with matching name '{name}'")
        return vol.ref(obj.name)

    async def storage_vol_lookup_by_key(self, key: str) -> StorageVolRef:
        found = self.driver.find_volume(lambda v: v.key == key)
        if found is None:
            raise error(ErrorNumber.NO_STORAGE_VOL, _S, f"no storage vol with matching key {key}")
        return found[1].ref(found[0].name)

    async def storage_vol_lookup_by_path(self, path: str) -> StorageVolRef:
        want = {os.path.normpath(path), os.path.realpath(path)} if path.startswith("/") else {path}
        found = self.driver.find_volume(lambda v: v.path in want or os.path.realpath(v.path) in want)
        if found is None:
            raise error(ErrorNumber.NO_STORAGE_VOL, _S, f"no storage vol with matching path '{path}'")
        return found[1].ref(found[0].name)

    async def storage_vol_create_xml(self, pool: StoragePoolRef, xml: str, flags: int) -> StorageVolRef:
        check_flags(flags, int(StorageVolCreateFlags.PREALLOC_METADATA | StorageVolCreateFlags.VALIDATE),
                    "storageVolCreateXML", _S)
        obj = self.driver.active(pool)
        vol = await volumes.create(self.driver, obj, xml, flags)
        return vol.ref(obj.name)

    async def storage_vol_create_xml_from(self, pool: StoragePoolRef, xml: str, clonevol: StorageVolRef,
                                          flags: int) -> StorageVolRef:
        check_flags(flags, int(StorageVolCreateFlags.PREALLOC_METADATA | StorageVolCreateFlags.REFLINK
                               | StorageVolCreateFlags.VALIDATE), "storageVolCreateXMLFrom", _S)
        obj = self.driver.active(pool)
        src_pool, src = await self._vol(clonevol)
        vol = await volumes.create_from(self.driver, obj, xml, src_pool, src, flags)
        return vol.ref(obj.name)

    async def storage_vol_delete(self, vol: StorageVolRef, flags: int) -> None:
        check_flags(flags, 1, "storageVolDelete", _S)
        obj, v = await self._vol(vol)
        await volumes.delete(self.driver, obj, v, zeroed=bool(flags & 1))

    async def storage_vol_wipe(self, vol: StorageVolRef, flags: int) -> None:
        check_flags(flags, 0, "storageVolWipe", _S)
        obj, v = await self._vol(vol)
        await volumes.wipe(self.driver, obj, v, 0)

    async def storage_vol_wipe_pattern(self, vol: StorageVolRef, algorithm: int, flags: int) -> None:
        check_flags(flags, 0, "storageVolWipePattern", _S)
        obj, v = await self._vol(vol)
        await volumes.wipe(self.driver, obj, v, algorithm)

    async def storage_vol_get_xml_desc(self, vol: StorageVolRef, flags: int) -> str:
        check_flags(flags, 0, "storageVolGetXMLDesc", _S)
        obj, v = await self._vol(vol)
        return volumes.xml(self.driver, obj, v)

    async def storage_vol_get_info(self, vol: StorageVolRef) -> tuple[int, int, int]:
        return await self.storage_vol_get_info_flags(vol, 0)

    async def storage_vol_get_info_flags(self, vol: StorageVolRef, flags: int) -> tuple[int, int, int]:
        check_flags(flags, 1, "storageVolGetInfoFlags", _S)
        obj, v = await self._vol(vol)
        volumes.update_sizes(self.driver, obj, v)
        return v.type, v.capacity, (v.physical if flags & 1 else v.allocation)

    async def storage_vol_get_path(self, vol: StorageVolRef) -> str:
        return (await self._vol(vol))[1].path

    async def storage_vol_resize(self, vol: StorageVolRef, capacity: int, flags: int) -> None:
        check_flags(flags, 7, "storageVolResize", _S)
        obj, v = await self._vol(vol)
        await volumes.resize(self.driver, obj, v, capacity, flags)

    async def storage_vol_upload(self, vol: StorageVolRef, offset: int, length: int, flags: int) -> Any:
        check_flags(flags, 1, "storageVolUpload", _S)
        obj, v = await self._vol(vol)
        return volumes.open_stream(self.driver, obj, v, offset, length, bool(flags & 1), upload=True)

    async def storage_vol_download(self, vol: StorageVolRef, offset: int, length: int, flags: int) -> Any:
        check_flags(flags, 1, "storageVolDownload", _S)
        obj, v = await self._vol(vol)
        return volumes.open_stream(self.driver, obj, v, offset, length, bool(flags & 1), upload=False)
