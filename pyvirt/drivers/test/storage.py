"""The test host's storage pools and volumes: libvirt's virStorage* calls, in memory.

libvirt's test driver gives every pool 100 GiB; a volume takes its
allocation from the pool's free space, lives at ``TARGET/NAME`` (its key
and path) and is raw.  Nothing touches the disk.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from ...conf import storage_pool as poolxml, storage_vol as volxml
from ...conf.xmlutil import el, render
from ...driver import EventBus
from ...driver_storage import PoolEvent, StorageConnection as StorageConnectionBase
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import StoragePoolRef, StorageVolRef
from . import content
from .content import POOL_CAPACITY
from .objects import matches_list_flags

_T = ErrorDomain.TEST
# virStoragePoolEventLifecycleType
DEFINED, UNDEFINED, STARTED, STOPPED, CREATED, DELETED = 0, 1, 2, 3, 4, 5
RUNNING, INACTIVE = 2, 0     # virStoragePoolState
# virStoragePoolType's names, in its order
POOL_TYPES = ("dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "rbd",
              "sheepdog", "gluster", "zfs", "vstorage")


class TestVolume:
    def __init__(self, name: str, path: str, capacity: int, allocation: int, fmt: str = "raw") -> None:
        self.name, self.path = name, path
        self.capacity, self.allocation = capacity, allocation
        self.format = fmt           # as the definition said (raw when it said nothing), as libvirt keeps it

    @property
    def key(self) -> str:
        return self.path

    def ref(self, pool: str) -> StorageVolRef:
        return StorageVolRef(pool, self.name, self.key)

    def xml(self) -> str:
        return render(el("volume", [("type", "file")], [
            el("name", text=self.name),
            el("key", text=self.key),
            el("capacity", [("unit", "bytes")], text=str(self.capacity)),
            el("allocation", [("unit", "bytes")], text=str(self.allocation)),
            el("target", children=[el("path", text=self.path), el("format", [("type", self.format)])]),
        ]))


class TestPool:
    def __init__(self, pdef: poolxml.PoolDef, persistent: bool) -> None:
        self.pdef = pdef
        self.persistent = persistent
        self.active = False
        self.autostart = False
        self.volumes: dict[str, TestVolume] = {}

    @property
    def name(self) -> str:
        return self.pdef.name

    @property
    def ref(self) -> StoragePoolRef:
        return StoragePoolRef(self.pdef.name, self.pdef.uuid)

    @property
    def allocation(self) -> int:
        return sum(v.allocation for v in self.volumes.values())

    def info(self) -> tuple[int, int, int, int]:
        return (RUNNING if self.active else INACTIVE, POOL_CAPACITY, self.allocation,
                POOL_CAPACITY - self.allocation)

    def xml(self) -> str:
        _, capacity, allocation, available = self.info()
        return render(el("pool", [("type", self.pdef.type)], [
            el("name", text=self.pdef.name),
            el("uuid", text=self.pdef.uuid_string),
            el("capacity", [("unit", "bytes")], text=str(capacity)),
            el("allocation", [("unit", "bytes")], text=str(allocation)),
            el("available", [("unit", "bytes")], text=str(available)),
            el("source", children=[el("device", [("path", d)]) for d in self.pdef.source_devices]
               + [el("name", text=self.pdef.source_name) if self.pdef.type == "logical" else None],
               keep_open=True),
            el("target", children=[el("path", text=self.pdef.target_path), self.pdef.permissions.node()]),
        ]))

    def add_volume(self, vdef: volxml.VolDef) -> TestVolume:
        if vdef.name in self.volumes:
            raise error(ErrorNumber.OPERATION_FAILED, _T, "storage vol already exists")
        capacity = vdef.capacity or 0
        allocation = capacity if vdef.allocation is None else vdef.allocation
        if allocation > POOL_CAPACITY - self.allocation:
            raise error(ErrorNumber.INTERNAL_ERROR, _T,
                        f"Not enough free space in pool for volume '{vdef.name}'")
        vol = TestVolume(vdef.name, f"{self.pdef.target_path}/{vdef.name}", capacity, allocation,
                         vdef.format or "raw")
        self.volumes[vol.name] = vol
        return vol


class TestPools:
    """The host's pools and their event bus."""

    def __init__(self) -> None:
        self.events = EventBus()
        self.by_name: dict[str, TestPool] = {}

    def emit(self, obj: TestPool, event: int) -> None:
        self.events.emit(PoolEvent(0, obj.ref, (event, 0)))

    def add(self, xml: str, active: bool = True) -> TestPool:
        obj = TestPool(poolxml.parse(xml), persistent=True)
        obj.active = active
        self.by_name[obj.name] = obj
        return obj

    def find(self, ref: StoragePoolRef) -> TestPool:
        for obj in self.by_name.values():
            if obj.pdef.uuid == ref.uuid:
                return obj
        raise error(ErrorNumber.NO_STORAGE_POOL, _T,
                    f"no storage pool with matching uuid '{uuidlib.UUID(bytes=ref.uuid)}' ({ref.name})")

    def active(self, ref: StoragePoolRef) -> TestPool:
        obj = self.find(ref)
        if not obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, _T, f"storage pool '{obj.name}' is not active")
        return obj

    def define(self, xml: str, persistent: bool) -> TestPool:
        new = poolxml.parse(xml)
        for obj in self.by_name.values():
            if obj.pdef.uuid == new.uuid and obj.name != new.name:
                raise error(ErrorNumber.OPERATION_FAILED, _T,
                            f"pool '{obj.name}' is already defined with uuid {obj.pdef.uuid_string}")
            if obj.name == new.name and obj.pdef.uuid != new.uuid:
                raise error(ErrorNumber.OPERATION_FAILED, _T,
                            f"pool '{obj.name}' is already defined with uuid {obj.pdef.uuid_string}")
        old = self.by_name.get(new.name)
        if old is not None:
            if not persistent:
                raise error(ErrorNumber.OPERATION_INVALID, _T, f"storage pool '{old.name}' is already active")
            old.pdef = new
            old.persistent = True
            return old
        obj = TestPool(new, persistent)
        self.by_name[obj.name] = obj
        return obj

    def volume(self, ref: StorageVolRef) -> tuple[TestPool, TestVolume]:
        obj = self.by_name.get(ref.pool)
        vol = obj.volumes.get(ref.name) if obj is not None and obj.active else None
        if obj is None or vol is None:
            raise error(ErrorNumber.NO_STORAGE_VOL, _T, f"no storage vol with matching name '{ref.name}'")
        return obj, vol


class TestStorageConnection(StorageConnectionBase):
    def __init__(self, info: Any, pools: TestPools) -> None:
        super().__init__(info, pools.events)
        self.pools = pools

    def _sorted(self) -> list[TestPool]:
        return sorted(self.pools.by_name.values(), key=lambda o: o.name)

    async def connect_find_storage_pool_sources(self, type: str, srcSpec: str | None,  # noqa: A002, N803
                                                flags: int) -> str:
        check_flags(flags, 0, "testConnectFindStoragePoolSources", _T)
        # libvirt reads the type's index and takes 0 (dir) for "unknown"; a name it lacks goes on
        if type not in POOL_TYPES or type == "dir":
            if type in POOL_TYPES:
                raise error(ErrorNumber.INTERNAL_ERROR, _T, f"unknown storage pool type {type}")
            raise error(ErrorNumber.NO_SUPPORT, _T, f"pool type '{type}' does not support source discovery")
        host = None
        if srcSpec:
            from ...conf.xmlutil import parse_document
            root = parse_document(srcSpec, None, "(storage_source_specification)", ErrorDomain.STORAGE)
            source = root if root.tag == "source" else root.find("source")
            node = source.find("host") if source is not None else None
            host = node.get("name") if node is not None else None
        if type == "logical":
            return content.POOL_SOURCES_LOGICAL
        if type == "netfs":
            if not host:
                raise error(ErrorNumber.INVALID_ARG, _T, "hostname must be specified for netfs sources")
            return content.POOL_SOURCES_NETFS % host
        raise error(ErrorNumber.NO_SUPPORT, _T, f"pool type '{type}' does not support source discovery")

    # -- lists and lookups -------------------------------------------------------------------
    async def connect_num_of_storage_pools(self) -> int:
        return sum(1 for o in self.pools.by_name.values() if o.active)

    async def connect_list_storage_pools(self, maxnames: int) -> list[str]:
        return [o.name for o in self._sorted() if o.active][:max(maxnames, 0)]

    async def connect_num_of_defined_storage_pools(self) -> int:
        return sum(1 for o in self.pools.by_name.values() if not o.active)

    async def connect_list_defined_storage_pools(self, maxnames: int) -> list[str]:
        return [o.name for o in self._sorted() if not o.active][:max(maxnames, 0)]

    async def connect_list_all_storage_pools(self, need_results: int, flags: int) -> tuple[list[StoragePoolRef], int]:
        check_flags(flags, 0x7FFFF, "testConnectListAllStoragePools", _T)
        objs = [o.ref for o in self._sorted() if matches_list_flags(o, flags)
                and (not flags & ~0x3F or flags & (64 << poolxml.ALL_POOL_TYPES.index(o.pdef.type)))]
        return (objs if need_results else []), len(objs)

    async def storage_pool_lookup_by_name(self, name: str) -> StoragePoolRef:
        obj = self.pools.by_name.get(name)
        if obj is None:
            raise error(ErrorNumber.NO_STORAGE_POOL, _T, f"no storage pool with matching name '{name}'")
        return obj.ref

    async def storage_pool_lookup_by_uuid(self, uuid: bytes) -> StoragePoolRef:
        for obj in self.pools.by_name.values():
            if obj.pdef.uuid == uuid:
                return obj.ref
        raise error(ErrorNumber.NO_STORAGE_POOL, _T,
                    f"no storage pool with matching uuid '{uuidlib.UUID(bytes=uuid)}'")

    async def storage_pool_lookup_by_volume(self, vol: StorageVolRef) -> StoragePoolRef:
        obj = self.pools.by_name.get(vol.pool)
        if obj is None:
            raise error(ErrorNumber.NO_STORAGE_POOL, _T, f"no storage pool with matching name '{vol.pool}'")
        return obj.ref

    async def storage_pool_lookup_by_target_path(self, path: str) -> StoragePoolRef:
        for obj in self.pools.by_name.values():
            if obj.pdef.target_path == path.rstrip("/"):
                return obj.ref
        raise error(ErrorNumber.NO_STORAGE_POOL, _T, f"no storage pool with matching target path '{path}'")

    # -- pools' lifecycle -----------------------------------------------------------------
    async def storage_pool_define_xml(self, xml: str, flags: int) -> StoragePoolRef:
        check_flags(flags, 1, "testStoragePoolDefineXML", _T)
        obj = self.pools.define(xml, persistent=True)
        self.pools.emit(obj, DEFINED)
        return obj.ref

    async def storage_pool_create_xml(self, xml: str, flags: int) -> StoragePoolRef:
        check_flags(flags, 7, "testStoragePoolCreateXML", _T)
        obj = self.pools.define(xml, persistent=False)
        obj.active = True
        self.pools.emit(obj, STARTED)
        return obj.ref

    async def storage_pool_create(self, pool: StoragePoolRef, flags: int) -> None:
        check_flags(flags, 0, "testStoragePoolCreate", _T)
        obj = self.pools.find(pool)
        if obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, _T, f"storage pool '{obj.name}' is already active")
        obj.active = True
        self.pools.emit(obj, STARTED)

    async def storage_pool_build(self, pool: StoragePoolRef, flags: int) -> None:
        check_flags(flags, 0, "testStoragePoolBuild", _T)
        obj = self.pools.find(pool)
        if obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, _T, f"storage pool '{obj.name}' is already active")
        self.pools.emit(obj, CREATED)

    async def storage_pool_destroy(self, pool: StoragePoolRef) -> None:
        obj = self.pools.active(pool)
        obj.active = False
        self.pools.emit(obj, STOPPED)
        if not obj.persistent:
            del self.pools.by_name[obj.name]

    async def storage_pool_delete(self, pool: StoragePoolRef, flags: int) -> None:
        check_flags(flags, 0, "testStoragePoolDelete", _T)
        obj = self.pools.find(pool)
        if obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, _T, f"storage pool '{obj.name}' is already active")
        self.pools.emit(obj, DELETED)

    async def storage_pool_undefine(self, pool: StoragePoolRef) -> None:
        obj = self.pools.find(pool)
        if obj.active:
            raise error(ErrorNumber.OPERATION_INVALID, _T, f"storage pool '{obj.name}' is already active")
        self.pools.emit(obj, UNDEFINED)
        del self.pools.by_name[obj.name]

    async def storage_pool_refresh(self, pool: StoragePoolRef, flags: int) -> None:
        check_flags(flags, 0, "testStoragePoolRefresh", _T)
        obj = self.pools.active(pool)
        self.pools.events.emit(PoolEvent(1, obj.ref, ()))

    # -- pools' queries ---------------------------------------------------------------------
    async def storage_pool_get_info(self, pool: StoragePoolRef) -> tuple[int, int, int, int]:
        return self.pools.find(pool).info()

    async def storage_pool_get_xml_desc(self, pool: StoragePoolRef, flags: int) -> str:
        check_flags(flags, 1, "testStoragePoolGetXMLDesc", _T)
        return self.pools.find(pool).xml()

    async def storage_pool_get_autostart(self, pool: StoragePoolRef) -> int:
        return int(self.pools.find(pool).autostart)

    async def storage_pool_set_autostart(self, pool: StoragePoolRef, autostart: int) -> None:
        obj = self.pools.find(pool)
        if not obj.persistent:
            raise error(ErrorNumber.INVALID_ARG, _T, "pool has no config file")
        obj.autostart = bool(autostart)

    async def storage_pool_is_active(self, pool: StoragePoolRef) -> int:
        return int(self.pools.find(pool).active)

    async def storage_pool_is_persistent(self, pool: StoragePoolRef) -> int:
        return int(self.pools.find(pool).persistent)

    async def storage_pool_num_of_volumes(self, pool: StoragePoolRef) -> int:
        return len(self.pools.active(pool).volumes)

    async def storage_pool_list_volumes(self, pool: StoragePoolRef, maxnames: int) -> list[str]:
        return sorted(self.pools.active(pool).volumes)[:max(maxnames, 0)]

    async def storage_pool_list_all_volumes(self, pool: StoragePoolRef, need_results: int,
                                            flags: int) -> tuple[list[StorageVolRef], int]:
        check_flags(flags, 0, "testStoragePoolListAllVolumes", _T)
        obj = self.pools.active(pool)
        refs = [obj.volumes[n].ref(obj.name) for n in sorted(obj.volumes)]
        return (refs if need_results else []), len(refs)

    # -- volumes ------------------------------------------------------------------------------
    async def storage_vol_lookup_by_name(self, pool: StoragePoolRef, name: str) -> StorageVolRef:
        obj = self.pools.active(pool)
        vol = obj.volumes.get(name)
        if vol is None:
            raise error(ErrorNumber.NO_STORAGE_VOL, _T, f"no storage vol with matching name '{name}'")
        return vol.ref(obj.name)

    def _find_vol(self, match: Any, what: str) -> StorageVolRef:
        for obj in self._sorted():
            if obj.active:
                for vol in obj.volumes.values():
                    if match(vol):
                        return vol.ref(obj.name)
        raise error(ErrorNumber.NO_STORAGE_VOL, _T, what)

    async def storage_vol_lookup_by_key(self, key: str) -> StorageVolRef:
        return self._find_vol(lambda v: v.key == key, f"no storage vol with matching key '{key}'")

    async def storage_vol_lookup_by_path(self, path: str) -> StorageVolRef:
        return self._find_vol(lambda v: v.path == path, f"no storage vol with matching path '{path}'")

    async def storage_vol_create_xml(self, pool: StoragePoolRef, xml: str, flags: int) -> StorageVolRef:
        check_flags(flags, 0, "testStorageVolCreateXML", _T)
        obj = self.pools.active(pool)
        return obj.add_volume(volxml.parse(xml)).ref(obj.name)

    async def storage_vol_create_xml_from(self, pool: StoragePoolRef, xml: str, clonevol: StorageVolRef,
                                          flags: int) -> StorageVolRef:
        check_flags(flags, 0, "testStorageVolCreateXMLFrom", _T)
        obj = self.pools.active(pool)
        self.pools.volume(clonevol)
        return obj.add_volume(volxml.parse(xml)).ref(obj.name)

    async def storage_vol_delete(self, vol: StorageVolRef, flags: int) -> None:
        check_flags(flags, 0, "testStorageVolDelete", _T)
        obj, v = self.pools.volume(vol)
        del obj.volumes[v.name]

    async def storage_vol_get_info(self, vol: StorageVolRef) -> tuple[int, int, int]:
        _, v = self.pools.volume(vol)
        return 0, v.capacity, v.allocation

    async def storage_vol_get_xml_desc(self, vol: StorageVolRef, flags: int) -> str:
        check_flags(flags, 0, "testStorageVolGetXMLDesc", _T)
        return self.pools.volume(vol)[1].xml()

    async def storage_vol_get_path(self, vol: StorageVolRef) -> str:
        return self.pools.volume(vol)[1].path
