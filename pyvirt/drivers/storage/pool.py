"""A storage pool object: its definition(s), state and volumes."""

from __future__ import annotations

from ...conf.storage_pool import PoolDef
from ...refs import StoragePoolRef
from .volume import Volume


class PoolObj:
    def __init__(self, pdef: PoolDef, persistent: bool) -> None:
        self.pdef = pdef
        self.new_def: PoolDef | None = None   # a redefinition waiting for the pool to stop
        self.persistent = persistent
        self.active = False
        self.autostart = False
        self.volumes: dict[str, Volume] = {}
        self.busy = 0                        # calls working inside the pool (builds, uploads)

    @property
    def name(self) -> str:
        return self.pdef.name

    @property
    def ref(self) -> StoragePoolRef:
        return StoragePoolRef(self.pdef.name, self.pdef.uuid)

    def inactive_def(self) -> PoolDef:
        return self.new_def or self.pdef
