"""The QEMU driver's snapshot procedures (virDomainSnapshot*).

A mixin of :class:`.connection.QemuConnection`: methods check flags as
libvirt's public API and QEMU driver do, find the domain and its snapshot,
and call into :mod:`.snapshot` (create, revert, delete: under the domain's
job) or read the metadata (:mod:`.snapshot_store`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...enums_more import (DomainSnapshotCreateFlags as Create, DomainSnapshotDeleteFlags as Delete,
                           DomainSnapshotListFlags as L, DomainSnapshotRevertFlags as Revert,
                           DomainSnapshotXMLFlags)
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import DomainRef, DomainSnapshotRef
from . import snapshot as snapmod

if TYPE_CHECKING:
    from .driver import QemuDriver
    from .snapshot_store import SnapshotDef, SnapshotTree

_CREATE_FLAGS = int(Create.REDEFINE | Create.CURRENT | Create.NO_METADATA | Create.HALT | Create.DISK_ONLY
                    | Create.REUSE_EXT | Create.QUIESCE | Create.ATOMIC | Create.LIVE | Create.VALIDATE)
_LIST_FILTERS = int(L.METADATA | L.NO_METADATA | L.LEAVES | L.NO_LEAVES | L.INACTIVE | L.ACTIVE
                    | L.DISK_ONLY | L.INTERNAL | L.EXTERNAL)
_LIST_FLAGS = int(L.ROOTS | L.TOPOLOGICAL) | _LIST_FILTERS
_REVERT_FLAGS = int(Revert.RUNNING | Revert.PAUSED | Revert.FORCE | Revert.RESET_NVRAM)
_DELETE_FLAGS = int(Delete.CHILDREN | Delete.METADATA_ONLY | Delete.CHILDREN_ONLY)


def _invalid_arg(text: str) -> Exception:
    return error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, text)


def _exclusive(flags: int, a: int, b: int, text: str) -> None:
    if flags & a and flags & b:
        raise _invalid_arg(text)


class SnapshotAPI:
    driver: "QemuDriver"
    _obj: Any

    def _tree(self, dom: DomainRef) -> tuple[Any, "SnapshotTree"]:
        obj = self._obj(dom)
        return obj, snapmod.tree(self.driver, obj)

    def _snap(self, snap: DomainSnapshotRef) -> tuple[Any, "SnapshotTree", "SnapshotDef"]:
        obj, snaps = self._tree(snap.dom)
        return obj, snaps, snaps.get(snap.name)

    @staticmethod
    def _ref(obj: Any, snap: "SnapshotDef") -> DomainSnapshotRef:
        return DomainSnapshotRef(snap.name, obj.ref())

    def _listed(self, snaps: "SnapshotTree", of: str | None, flags: int, *, all_below: bool) -> list["SnapshotDef"]:
        """The snapshots a list call names: under ``of`` (None: the domain's), filtered."""
        if of is None:
            found = (snaps.children(None) if flags & L.ROOTS
                     else list(snaps.descendants(None)))
        else:
            found = list(snaps.descendants(of)) if all_below else snaps.children(of)
        found = [s for s in found if snapmod.matches(snaps, s, flags)]
        if not flags & L.TOPOLOGICAL:
            found.sort(key=lambda s: s.name)
        return found

    # -- create, revert, delete -------------------------------------------------------
    async def domain_snapshot_create_xml(self, dom: DomainRef, xml_desc: str, flags: int) -> DomainSnapshotRef:
        check_flags(flags, _CREATE_FLAGS, "qemuDomainSnapshotCreateXML")
        api = "virDomainSnapshotCreateXML"
        if flags & Create.CURRENT and not flags & Create.REDEFINE:
            raise _invalid_arg(f"use of 'current' flag in {api} requires 'redefine' flag")
        _exclusive(flags, Create.REDEFINE, Create.NO_METADATA,
                   f"'redefine' and 'no metadata' flags in {api} are mutually exclusive")
        _exclusive(flags, Create.REDEFINE, Create.HALT, f"'redefine' and 'halt' flags in {api} are mutually exclusive")
        if flags & Create.QUIESCE and not flags & Create.DISK_ONLY:
            raise _invalid_arg("Flag 'VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY' is required by flag "
                               "'VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE'")
        _exclusive(flags, Create.LIVE, Create.REDEFINE, "Flags 'VIR_DOMAIN_SNAPSHOT_CREATE_LIVE' and "
                   "'VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE' are mutually exclusive")
        obj = self._obj(dom)
        if not obj.persistent and flags & Create.HALT:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "cannot halt after transient domain snapshot")
        if flags & Create.QUIESCE:
            # quiescing freezes the guest's file systems through its agent; pyvirt has none
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU, "QEMU guest agent is not configured")
        snap = await snapmod.create(self.driver, obj, xml_desc, flags)
        return self._ref(obj, snap)

    async def domain_revert_to_snapshot(self, snap: DomainSnapshotRef, flags: int) -> None:
        check_flags(flags, _REVERT_FLAGS, "qemuDomainRevertToSnapshot")
        _exclusive(flags, Revert.RUNNING, Revert.PAUSED,
                   "running and paused flags in virDomainRevertToSnapshot are mutually exclusive")
        await snapmod.revert(self.driver, self._obj(snap.dom), snap.name, flags)

    async def domain_snapshot_delete(self, snap: DomainSnapshotRef, flags: int) -> None:
        check_flags(flags, _DELETE_FLAGS, "qemuDomainSnapshotDelete")
        _exclusive(flags, Delete.CHILDREN, Delete.CHILDREN_ONLY,
                   "children and children_only flags in virDomainSnapshotDelete are mutually exclusive")
        await snapmod.delete(self.driver, self._obj(snap.dom), snap.name, flags)

    # -- queries ------------------------------------------------------------------------
    async def domain_snapshot_get_xml_desc(self, snap: DomainSnapshotRef, flags: int) -> str:
        check_flags(flags, int(DomainSnapshotXMLFlags.SECURE), "qemuDomainSnapshotGetXMLDesc")
        _obj, _snaps, found = self._snap(snap)
        secure = bool(flags & DomainSnapshotXMLFlags.SECURE)
        return found.format(domain_xml=snapmod.domain_xml_for(found, secure) or "")

    async def domain_snapshot_num(self, dom: DomainRef, flags: int) -> int:
        check_flags(flags, _LIST_FLAGS, "qemuDomainSnapshotNum")
        _obj, snaps = self._tree(dom)
        return len(self._listed(snaps, None, flags, all_below=True))

    async def domain_snapshot_list_names(self, dom: DomainRef, maxnames: int, flags: int) -> list[str]:
        check_flags(flags, _LIST_FLAGS, "qemuDomainSnapshotListNames")
        _obj, snaps = self._tree(dom)
        return [s.name for s in self._listed(snaps, None, flags, all_below=True)][:max(maxnames, 0)]

    async def domain_list_all_snapshots(self, dom: DomainRef, need_results: int,
                                        flags: int) -> tuple[list[DomainSnapshotRef], int]:
        check_flags(flags, _LIST_FLAGS, "qemuDomainListAllSnapshots")
        obj, snaps = self._tree(dom)
        found = self._listed(snaps, None, flags, all_below=True)
        return ([self._ref(obj, s) for s in found] if need_results else []), len(found)

    async def domain_snapshot_lookup_by_name(self, dom: DomainRef, name: str, flags: int) -> DomainSnapshotRef:
        check_flags(flags, 0, "qemuDomainSnapshotLookupByName")
        obj, snaps = self._tree(dom)
        return self._ref(obj, snaps.get(name))

    async def domain_has_current_snapshot(self, dom: DomainRef, flags: int) -> int:
        check_flags(flags, 0, "qemuDomainHasCurrentSnapshot")
        _obj, snaps = self._tree(dom)
        return int(snaps.current is not None)

    async def domain_snapshot_current(self, dom: DomainRef, flags: int) -> DomainSnapshotRef:
        check_flags(flags, 0, "qemuDomainSnapshotCurrent")
        obj, snaps = self._tree(dom)
        current = snaps.current
        if current is None:
            raise error(ErrorNumber.NO_DOMAIN_SNAPSHOT, ErrorDomain.QEMU, "the domain does not have a current snapshot")
        return self._ref(obj, current)

    async def domain_snapshot_get_parent(self, snap: DomainSnapshotRef, flags: int) -> DomainSnapshotRef:
        check_flags(flags, 0, "qemuDomainSnapshotGetParent")
        obj, snaps, found = self._snap(snap)
        if found.parent is None or found.parent not in snaps:
            raise error(ErrorNumber.NO_DOMAIN_SNAPSHOT, ErrorDomain.QEMU,
                        f"snapshot '{found.name}' does not have a parent")
        return self._ref(obj, snaps.get(found.parent))

    async def domain_snapshot_num_children(self, snap: DomainSnapshotRef, flags: int) -> int:
        check_flags(flags, _LIST_FLAGS, "qemuDomainSnapshotNumChildren")
        _obj, snaps, found = self._snap(snap)
        return len(self._listed(snaps, found.name, flags, all_below=bool(flags & L.ROOTS)))

    async def domain_snapshot_list_children_names(self, snap: DomainSnapshotRef, maxnames: int,
                                                  flags: int) -> list[str]:
        check_flags(flags, _LIST_FLAGS, "qemuDomainSnapshotListChildrenNames")
        _obj, snaps, found = self._snap(snap)
        names = [s.name for s in self._listed(snaps, found.name, flags, all_below=bool(flags & L.ROOTS))]
        return names[:max(maxnames, 0)]

    async def domain_snapshot_list_all_children(self, snapshot: DomainSnapshotRef, need_results: int,
                                                flags: int) -> tuple[list[DomainSnapshotRef], int]:
        check_flags(flags, _LIST_FLAGS, "qemuDomainSnapshotListAllChildren")
        obj, snaps, found = self._snap(snapshot)
        below = self._listed(snaps, found.name, flags, all_below=bool(flags & L.ROOTS))
        return ([self._ref(obj, s) for s in below] if need_results else []), len(below)

    async def domain_snapshot_is_current(self, snap: DomainSnapshotRef, flags: int) -> int:
        check_flags(flags, 0, "qemuDomainSnapshotIsCurrent")
        _obj, _snaps, found = self._snap(snap)
        return int(found.current)

    async def domain_snapshot_has_metadata(self, snap: DomainSnapshotRef, flags: int) -> int:
        check_flags(flags, 0, "qemuDomainSnapshotHasMetadata")
        self._snap(snap)
        return 1
