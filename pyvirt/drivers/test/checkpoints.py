"""The test host's domain checkpoints: libvirt's virDomainCheckpoint* calls, in memory.

A checkpoint keeps its definition (name, parent, disks and their bitmaps) and
the domain definition of its moment; the test driver has no bitmaps to make,
so nothing else happens.  The tree is kept as libvirt keeps it
(virdomainmomentobjlist.c): each checkpoint's children in a list, the one
linked last first, so that a listing of children or a topological listing
comes out in libvirt's order; the "current" checkpoint is the parent of the
next one made.  A domain's checkpoints live and go with its object.
"""

from __future__ import annotations

import copy

from ... import conf
from ...conf import checkpoint as chkconf
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import DomainCheckpointRef, DomainRef
from ..domainlist import DomainObj, not_running
from . import moments, tuning
from .snapshots import snapshot_tree

_T = ErrorDomain.TEST
CREATE_REDEFINE, CREATE_QUIESCE = 1, 2
XML_SECURE, XML_NO_DOMAIN, XML_SIZE = 1, 2, 4
# virDomainCheckpointListFlags: ROOTS (of the domain) and DESCENDANTS (of a checkpoint) share a bit
LIST_ROOTS = LIST_DESCENDANTS = 1
LIST_TOPOLOGICAL, LIST_LEAVES, LIST_NO_LEAVES = 2, 4, 8
DELETE_CHILDREN, DELETE_METADATA_ONLY, DELETE_CHILDREN_ONLY = 1, 2, 4


class Checkpoint:
    """One checkpoint: its definition, the domain of its moment, its place in the tree."""

    __slots__ = ("cdef", "domain", "tune", "parent", "children")

    def __init__(self, cdef: chkconf.CheckpointDef, domain: conf.DomainDef | None,
                 tune: tuning.Tune | None) -> None:
        self.cdef = cdef
        self.domain = domain
        self.tune = tune
        self.parent: Checkpoint | None = None        # None: a root
        self.children: list[Checkpoint] = []

    @property
    def name(self) -> str:
        return self.cdef.name or ""


class CheckpointTree:
    """A domain's checkpoints: by name (in the order made), the roots, the current one."""

    def __init__(self) -> None:
        self.by_name: dict[str, Checkpoint] = {}
        self.roots: list[Checkpoint] = []
        self.current: Checkpoint | None = None

    def __len__(self) -> int:
        return len(self.by_name)

    def kids(self, chk: Checkpoint | None) -> list[Checkpoint]:
        return self.roots if chk is None else chk.children

    def link_parent(self, chk: Checkpoint) -> None:
        chk.parent = self.by_name.get(chk.cdef.parent or "")
        self.kids(chk.parent).insert(0, chk)

    def drop_parent(self, chk: Checkpoint) -> None:
        siblings = self.kids(chk.parent)
        if chk in siblings:
            siblings.remove(chk)
        chk.parent = None

    def move_children(self, chk: Checkpoint, to: Checkpoint | None) -> None:
        for kid in chk.children:
            kid.parent = to
        self.kids(to)[:0] = chk.children
        chk.children = []

    def descendants(self, chk: Checkpoint | None) -> list[Checkpoint]:
        """Every descendant, each followed by its own (libvirt's virDomainMomentForEachDescendant)."""
        out: list[Checkpoint] = []
        for kid in self.kids(chk):
            out += [kid, *self.descendants(kid)]
        return out

    def remove(self, chk: Checkpoint) -> bool:
        """Forget ``chk``; True if it was the current one."""
        self.by_name.pop(chk.name, None)
        was = self.current is chk
        if was:
            self.current = None
        return was

    def select(self, start: Checkpoint | None, flags: int) -> list[Checkpoint]:
        """libvirt's virDomainMomentObjListGetNames: the children (with DESCENDANTS, every
        descendant) of ``start``; with no start, the roots (without ROOTS, every checkpoint, in
        the order made, or parents first with TOPOLOGICAL); then the leaf filters, both of
        which apply when both are given."""
        if start is None:
            flags ^= LIST_ROOTS
        if not flags & LIST_DESCENDANTS:
            found = list(self.kids(start))
        elif start is not None or flags & LIST_TOPOLOGICAL:
            found = self.descendants(start)
        else:
            found = list(self.by_name.values())
        return [c for c in found
                if not (flags & LIST_LEAVES and c.children) and not (flags & LIST_NO_LEAVES and not c.children)]


def checkpoint_tree(obj: DomainObj) -> CheckpointTree:
    tree = obj.extra.get("checkpoints")
    if not isinstance(tree, CheckpointTree):
        tree = obj.extra["checkpoints"] = CheckpointTree()      # type: ignore[assignment]
    return tree


def _check_cycles(tree: CheckpointTree, cdef: chkconf.CheckpointDef) -> None:
    moments.check_cycles(cdef.name or "", cdef.parent, {n: c.cdef.parent for n, c in tree.by_name.items()})


class CheckpointAPI:
    """Mixed into TestConnection (which supplies _obj, _parse_domain, host)."""

    def _checkpoint(self, ref: DomainCheckpointRef) -> tuple[DomainObj, CheckpointTree, Checkpoint]:
        obj = self._obj(ref.dom)
        tree = checkpoint_tree(obj)
        return obj, tree, self._named(tree, ref.name)

    @staticmethod
    def _named(tree: CheckpointTree, name: str) -> Checkpoint:
        chk = tree.by_name.get(name)
        if chk is None:
            raise error(ErrorNumber.NO_DOMAIN_CHECKPOINT, _T, f"no domain checkpoint with matching name '{name}'")
        return chk

    async def domain_checkpoint_create_xml(self, dom: DomainRef, xml_desc: str, flags: int) -> DomainCheckpointRef:
        # QUIESCE is accepted and has nothing to do (the test host has no guest agent to freeze)
        check_flags(flags, CREATE_REDEFINE | CREATE_QUIESCE, "testDomainCheckpointCreateXML", _T)
        redefine = bool(flags & CREATE_REDEFINE)
        obj = self._obj(dom)
        if snapshot_tree(self.host, obj)["snaps"]:
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, _T, "cannot create checkpoint while snapshot exists")
        if not obj.active:
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, _T, "cannot create checkpoint for inactive domain")
        cdef = chkconf.parse(xml_desc, redefine=redefine)
        tree = checkpoint_tree(obj)
        chk, update_current = self._redefine(obj, tree, cdef) if redefine else (self._new(obj, tree, cdef), True)
        if tree.current is not None:
            if not redefine:
                cdef.parent = tree.current.name
            if update_current:
                tree.current = None
        if update_current:
            tree.current = chk
        tree.link_parent(chk)
        return DomainCheckpointRef(chk.name, obj.ref())

    def _new(self, obj: DomainObj, tree: CheckpointTree, cdef: chkconf.CheckpointDef) -> Checkpoint:
        domain = obj.current.copy()
        chkconf.align_disks(cdef, domain.devices.disks)
        if cdef.name in tree.by_name:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.DOMAIN, f"domain moment {cdef.name} already exists")
        chk = Checkpoint(cdef, domain, copy.deepcopy(tuning.current_tune(obj)))
        tree.by_name[chk.name] = chk
        return chk

    def _redefine(self, obj: DomainObj, tree: CheckpointTree,
                  cdef: chkconf.CheckpointDef) -> tuple[Checkpoint, bool]:
        """libvirt's virDomainCheckpointRedefinePrep and ...Commit: the metadata as given (a
        checkpoint of that name takes it, keeping its children); and whether it becomes the
        current one (when it continues the current line, or nothing is current)."""
        domain = tune = None
        if cdef.domain_xml is not None:
            domain = self._parse_domain(cdef.domain_xml)
            tune = tuning.parse_tune(cdef.domain_xml, domain)
        _check_cycles(tree, cdef)
        if domain is not None:
            if domain.uuid != obj.uuid:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN_CHECKPOINT,
                            f"definition for checkpoint {cdef.name} must use uuid {obj.uuid}")
            chkconf.align_disks(cdef, domain.devices.disks)
        else:
            chkconf.assign_bitmap_names(cdef)
        parent = tree.by_name.get(cdef.parent or "")
        becomes_current = (parent is not None and parent is tree.current) or tree.current is None
        chk = tree.by_name.get(cdef.name or "")
        if chk is not None:
            tree.drop_parent(chk)
            chk.cdef, chk.domain, chk.tune = cdef, domain, tune
        else:
            chk = Checkpoint(cdef, domain, tune)
            tree.by_name[chk.name] = chk
        return chk, becomes_current

    async def domain_checkpoint_get_xml_desc(self, checkpoint: DomainCheckpointRef, flags: int) -> str:
        check_flags(flags, XML_SECURE | XML_NO_DOMAIN | XML_SIZE, "testDomainCheckpointGetXMLDesc", _T)
        obj, _, chk = self._checkpoint(checkpoint)
        if flags & XML_SIZE and not obj.active:
            raise not_running(obj)
        # libvirt's test driver gives each bitmap a size of 1024 here but never marks it valid,
        # so no size is written: neither is one here
        domain_xml = None
        if chk.domain is not None and not flags & XML_NO_DOMAIN:
            text = chk.domain.format(secure=bool(flags & XML_SECURE), inactive=True)
            domain_xml = tuning.decorate_xml(text, chk.tune, chk.domain.vcpus) if chk.tune is not None else text
        return chk.cdef.format(size=bool(flags & XML_SIZE), domain_xml=domain_xml)

    async def domain_list_all_checkpoints(self, dom: DomainRef, need_results: int,
                                          flags: int) -> tuple[list[DomainCheckpointRef], int]:
        check_flags(flags, LIST_ROOTS | LIST_TOPOLOGICAL | LIST_LEAVES | LIST_NO_LEAVES,
                    "testDomainListAllCheckpoints", _T)
        obj = self._obj(dom)
        found = checkpoint_tree(obj).select(None, flags)
        ref = obj.ref()
        return ([DomainCheckpointRef(c.name, ref) for c in found] if need_results else []), len(found)

    async def domain_checkpoint_list_all_children(self, checkpoint: DomainCheckpointRef, need_results: int,
                                                  flags: int) -> tuple[list[DomainCheckpointRef], int]:
        check_flags(flags, LIST_DESCENDANTS | LIST_TOPOLOGICAL | LIST_LEAVES | LIST_NO_LEAVES,
                    "testDomainCheckpointListAllChildren", _T)
        obj, tree, chk = self._checkpoint(checkpoint)
        found = tree.select(chk, flags)
        ref = obj.ref()
        return ([DomainCheckpointRef(c.name, ref) for c in found] if need_results else []), len(found)

    async def domain_checkpoint_lookup_by_name(self, dom: DomainRef, name: str, flags: int) -> DomainCheckpointRef:
        check_flags(flags, 0, "testDomainCheckpointLookupByName", _T)
        obj = self._obj(dom)
        return DomainCheckpointRef(self._named(checkpoint_tree(obj), name).name, obj.ref())

    async def domain_checkpoint_get_parent(self, checkpoint: DomainCheckpointRef, flags: int) -> DomainCheckpointRef:
        check_flags(flags, 0, "testDomainCheckpointGetParent", _T)
        obj, _, chk = self._checkpoint(checkpoint)
        if chk.cdef.parent is None:
            raise error(ErrorNumber.NO_DOMAIN_CHECKPOINT, _T, f"checkpoint '{chk.name}' does not have a parent")
        return DomainCheckpointRef(chk.cdef.parent, obj.ref())

    async def domain_checkpoint_delete(self, checkpoint: DomainCheckpointRef, flags: int) -> None:
        # METADATA_ONLY changes nothing here: the test host has only the metadata
        check_flags(flags, DELETE_CHILDREN | DELETE_METADATA_ONLY | DELETE_CHILDREN_ONLY,
                    "testDomainCheckpointDelete", _T)
        _, tree, chk = self._checkpoint(checkpoint)
        if flags & (DELETE_CHILDREN | DELETE_CHILDREN_ONLY):
            was_current = False
            for gone in tree.descendants(chk):
                was_current |= tree.remove(gone)
            if was_current:
                tree.current = chk
        elif chk.children:          # the children move up to the parent
            for kid in chk.children:
                kid.cdef.parent = chk.parent.name if chk.parent is not None else None
            tree.move_children(chk, chk.parent)
        if flags & DELETE_CHILDREN_ONLY:
            chk.children = []
            return
        tree.drop_parent(chk)
        if tree.current is chk:
            tree.current = tree.by_name.get(chk.cdef.parent or "")
        tree.remove(chk)

