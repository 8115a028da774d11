"""A storage volume as the driver knows it between refreshes."""

from __future__ import annotations

from typing import Any

from ...refs import Record, StorageVolRef

VOL_FILE, VOL_BLOCK, VOL_DIR = 0, 1, 2     # VIR_STORAGE_VOL_FILE, _BLOCK, _DIR
_TYPE_NAMES = {VOL_FILE: "file", VOL_BLOCK: "block", VOL_DIR: "dir"}


class Volume(Record):
    _fields = __match_args__ = ("name", "key", "path", "type", "format", "capacity", "allocation",
                                "physical", "backing")

    def __init__(self, name: str, key: str, path: str, type: int = VOL_FILE, format: str | None = "raw",
                 capacity: int = 0, allocation: int = 0, physical: int = 0,
                 backing: tuple[str, str | None] | None = None) -> None:
        self.name, self.key, self.path, self.type, self.format = name, key, path, type, format
        self.capacity, self.allocation, self.physical = capacity, allocation, physical
        self.backing = backing
        # A qcow2 version 3 image's (compat, cluster size, lazy refcounts), for its XML.
        self.qcow2_v3: tuple[str, int | None, bool] | None = None
        # The re-read after an upload (format and size may have changed): calls on the
        # volume wait for it, so none sees what the volume was before.
        self.reread: Any = None
        # Set while a call works on the volume (create, clone source, wipe, upload):
        # libvirt's "in_use"/"building" that make a delete wait its turn.
        self.busy = 0
        self.building = False

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, "file")

    def ref(self, pool: str) -> StorageVolRef:
        return StorageVolRef(pool, self.name, self.key)
