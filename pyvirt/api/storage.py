"""libvirt-python's storage API: virStoragePool, virStorageVol and virConnect's storage methods.

Delegation only, as :mod:`pyvirt.domain`: a handle is a
:class:`pyvirt.refs.StoragePoolRef` / :class:`pyvirt.refs.StorageVolRef`
plus its connection, every call goes through the connection's ``_call``
under the snake-case name of libvirt's REMOTE procedure with the arguments
in wire order, and returns what libvirt-python returns (0 for the calls that
return nothing, lists for the info calls).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..refs import StoragePoolRef, StorageVolRef, format_uuid

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any
    from ..connection import virConnect
    from .console import virStream


class virStoragePool:  # noqa: N801 - libvirt-python's name
    """A storage pool handle: name and UUID as of the lookup, plus its connection."""

    def __init__(self, conn: "virConnect", ref: StoragePoolRef) -> None:
        self._conn = conn
        self._ref = ref

    def _call(self, method: str, *args: Any) -> Any:
        return self._conn._call(method, self._ref, *args)

    def _vol(self, ref: StorageVolRef) -> "virStorageVol":
        return virStorageVol(self._conn, ref)

    def connect(self) -> "virConnect":
        return self._conn

    # -- identity ----------------------------------------------------------------
    def name(self) -> str:
        return self._ref.name

    def UUID(self) -> bytes:
        return self._ref.uuid

    def UUIDString(self) -> str:
        return format_uuid(self._ref.uuid)

    # -- lifecycle -----------------------------------------------------------------
    def create(self, flags: int = 0) -> int:
        self._call("storage_pool_create", flags)
        return 0

    def build(self, flags: int = 0) -> int:
        self._call("storage_pool_build", flags)
        return 0

    def destroy(self) -> int:
        self._call("storage_pool_destroy")
        return 0

    def delete(self, flags: int = 0) -> int:
        self._call("storage_pool_delete", flags)
        return 0

    def undefine(self) -> int:
        self._call("storage_pool_undefine")
        return 0

    def refresh(self, flags: int = 0) -> int:
        self._call("storage_pool_refresh", flags)
        return 0

    def setAutostart(self, autostart: int) -> int:
        self._call("storage_pool_set_autostart", int(bool(autostart)))
        return 0

    # -- queries -------------------------------------------------------------------------
    def autostart(self) -> int:
        return self._call("storage_pool_get_autostart")

    def info(self) -> list[int]:
        """[state, capacity, allocation, available] (bytes)."""
        return list(self._call("storage_pool_get_info"))

    def XMLDesc(self, flags: int = 0) -> str:
        return self._call("storage_pool_get_xml_desc", flags)

    def isActive(self) -> int:
        return self._call("storage_pool_is_active")

    def isPersistent(self) -> int:
        return self._call("storage_pool_is_persistent")

    # -- volumes ----------------------------------------------------------------------------
    def numOfVolumes(self) -> int:
        return self._call("storage_pool_num_of_volumes")

    def listVolumes(self) -> list[str]:
        return list(self._call("storage_pool_list_volumes", self.numOfVolumes()))

    def listAllVolumes(self, flags: int = 0) -> list["virStorageVol"]:
        refs, _count = self._call("storage_pool_list_all_volumes", 1, flags)
        return [self._vol(ref) for ref in refs]

    def storageVolLookupByName(self, name: str) -> "virStorageVol":
        return self._vol(self._call("storage_vol_lookup_by_name", name))

    def createXML(self, xmlDesc: str, flags: int = 0) -> "virStorageVol":
        return self._vol(self._call("storage_vol_create_xml", xmlDesc, flags))

    def createXMLFrom(self, xmlDesc: str, clonevol: "virStorageVol", flags: int = 0) -> "virStorageVol":
        if not isinstance(clonevol, virStorageVol):
            raise TypeError("clonevol must be a virStorageVol")
        return self._vol(self._call("storage_vol_create_xml_from", xmlDesc, clonevol._ref, flags))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, virStoragePool) and other._ref.uuid == self._ref.uuid

    def __hash__(self) -> int:
        return hash(self._ref.uuid)

    def __repr__(self) -> str:
        return f"<pyvirt.virStoragePool {self._ref.name} {self.UUIDString()}>"


class virStorageVol:  # noqa: N801 - libvirt-python's name
    """A storage volume handle: pool name, volume name and key, plus its connection."""

    def __init__(self, conn: "virConnect", ref: StorageVolRef) -> None:
        self._conn = conn
        self._ref = ref

    def _call(self, method: str, *args: Any) -> Any:
        return self._conn._call(method, self._ref, *args)

    def connect(self) -> "virConnect":
        return self._conn

    # -- identity ------------------------------------------------------------------------
    def name(self) -> str:
        return self._ref.name

    def key(self) -> str:
        return self._ref.key

    def path(self) -> str:
        return self._call("storage_vol_get_path")

    def storagePoolLookupByVolume(self) -> virStoragePool:
        return virStoragePool(self._conn, self._call("storage_pool_lookup_by_volume"))

    # -- queries ----------------------------------------------------------------------------
    def info(self) -> list[int]:
        """[type, capacity, allocation] (bytes)."""
        return list(self._call("storage_vol_get_info"))

    def infoFlags(self, flags: int = 0) -> list[int]:
        return list(self._call("storage_vol_get_info_flags", flags))

    def XMLDesc(self, flags: int = 0) -> str:
        return self._call("storage_vol_get_xml_desc", flags)

    # -- changes -----------------------------------------------------------------------------
    def delete(self, flags: int = 0) -> int:
        self._call("storage_vol_delete", flags)
        return 0

    def wipe(self, flags: int = 0) -> int:
        self._call("storage_vol_wipe", flags)
        return 0

    def wipePattern(self, algorithm: int, flags: int = 0) -> int:
        self._call("storage_vol_wipe_pattern", int(algorithm), flags)
        return 0

    def resize(self, capacity: int, flags: int = 0) -> int:
        self._call("storage_vol_resize", int(capacity), flags)
        return 0

    # -- content over a stream (VIR_STORAGE_VOL_{UP,DOWN}LOAD_SPARSE_STREAM: holes travel) -------
    def upload(self, stream: "virStream", offset: int, length: int, flags: int = 0) -> int:
        _check_stream(stream, "virStorageVolUpload")
        _ret, end = self._call("storage_vol_upload", int(offset), int(length), flags)
        stream._attach(end)
        return 0

    def download(self, stream: "virStream", offset: int, length: int, flags: int = 0) -> int:
        _check_stream(stream, "virStorageVolDownload")
        _ret, end = self._call("storage_vol_download", int(offset), int(length), flags)
        stream._attach(end)
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, virStorageVol) and other._ref == self._ref

    def __hash__(self) -> int:
        return hash(self._ref)

    def __repr__(self) -> str:
        return f"<pyvirt.virStorageVol {self._ref.pool}/{self._ref.name}>"


def _check_stream(stream: Any, api: str) -> None:
    from .console import virStream
    if not isinstance(stream, virStream):
        raise error(ErrorNumber.INVALID_STREAM, ErrorDomain.STREAMS, f"stream in {api} must be a virStream")
    if stream._end is not None:
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.STREAMS, "the stream is already in use")


class ConnectStorageAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: access check, then the driver on the loop

    def _pool(self, ref: StoragePoolRef) -> virStoragePool:
        return virStoragePool(self, ref)      # type: ignore[arg-type]

    def _storage_vol(self, ref: StorageVolRef) -> virStorageVol:
        return virStorageVol(self, ref)       # type: ignore[arg-type]

    # -- pools ---------------------------------------------------------------------------------
    def listAllStoragePools(self, flags: int = 0) -> list[virStoragePool]:
        refs, _count = self._call("connect_list_all_storage_pools", 1, flags)
        return [self._pool(ref) for ref in refs]

    def numOfStoragePools(self) -> int:
        return self._call("connect_num_of_storage_pools")

    def numOfDefinedStoragePools(self) -> int:
        return self._call("connect_num_of_defined_storage_pools")

    def listStoragePools(self) -> list[str]:
        return list(self._call("connect_list_storage_pools", self.numOfStoragePools()))

    def listDefinedStoragePools(self) -> list[str]:
        return list(self._call("connect_list_defined_storage_pools", self.numOfDefinedStoragePools()))

    def storagePoolLookupByName(self, name: str) -> virStoragePool:
        return self._pool(self._call("storage_pool_lookup_by_name", name))

    def storagePoolLookupByUUID(self, uuid: bytes) -> virStoragePool:
        return self._pool(self._call("storage_pool_lookup_by_uuid", bytes(uuid)))

    def storagePoolLookupByUUIDString(self, uuidstr: str) -> virStoragePool:
        import uuid as uuidlib
        try:
            raw = uuidlib.UUID(uuidstr).bytes
        except (ValueError, AttributeError, TypeError):
            # virReportInvalidArg's text carries no "invalid argument: " prefix
            raise libvirtError("uuidstr in virStoragePoolLookupByUUIDString must be a valid UUID",
                               ErrorNumber.INVALID_ARG, ErrorDomain.STORAGE) from None
        return self.storagePoolLookupByUUID(raw)

    def storagePoolLookupByTargetPath(self, path: str) -> virStoragePool:
        return self._pool(self._call("storage_pool_lookup_by_target_path", path))

    def storagePoolDefineXML(self, xml: str, flags: int = 0) -> virStoragePool:
        return self._pool(self._call("storage_pool_define_xml", xml, flags))

    def storagePoolCreateXML(self, xmlDesc: str, flags: int = 0) -> virStoragePool:
        return self._pool(self._call("storage_pool_create_xml", xmlDesc, flags))

    def getStoragePoolCapabilities(self, flags: int = 0) -> str:
        return self._call("connect_get_storage_pool_capabilities", flags)

    def findStoragePoolSources(self, type: str, srcSpec: str | None, flags: int = 0) -> str:  # noqa: A002
        return self._call("connect_find_storage_pool_sources", type, srcSpec, flags)

    # -- volumes ---------------------------------------------------------------------------------
    def storageVolLookupByKey(self, key: str) -> virStorageVol:
        return self._storage_vol(self._call("storage_vol_lookup_by_key", key))

    def storageVolLookupByPath(self, path: str) -> virStorageVol:
        return self._storage_vol(self._call("storage_vol_lookup_by_path", path))


__all__ = ["virStoragePool", "virStorageVol", "ConnectStorageAPI"]
