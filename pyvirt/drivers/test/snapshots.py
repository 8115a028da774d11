"""The test host's domain snapshots: libvirt's virDomainSnapshot* calls, in memory.

A snapshot keeps the domain's definition and state of its moment; reverting
brings both back (stopping and starting the domain with the FROM_SNAPSHOT
events libvirt's test driver sends).  The tree (parent, current) is the
host's, per domain.
"""

from __future__ import annotations

import copy
import re
import time

from ... import conf
from ...conf import snapshot as snapconf
from ...enums import DomainState, RunningReason, ShutoffReason
from ...errors import ErrorDomain, ErrorNumber, check_flags, error
from ...refs import DomainRef, DomainSnapshotRef
from ..domainlist import DomainObj
from . import moments, tuning

_T = ErrorDomain.TEST
STARTED_FROM_SNAPSHOT, STOPPED_FROM_SNAPSHOT = 3, 6      # virDomainEvent{Started,Stopped}DetailType
DELETE_CHILDREN, DELETE_METADATA_ONLY, DELETE_CHILDREN_ONLY = 1, 2, 4
# virDomainSnapshotCreateFlags
CREATE_REDEFINE, CREATE_CURRENT, CREATE_HALT, CREATE_QUIESCE = 1, 2, 8, 64
CREATE_ATOMIC, CREATE_LIVE, CREATE_VALIDATE = 128, 256, 512
# virDomainSnapshotListFlags (ROOTS and DESCENDANTS share their bit: roots of the domain, all
# descendants of a snapshot)
LIST_ROOTS = LIST_DESCENDANTS = 1
LIST_METADATA, LIST_LEAVES, LIST_NO_LEAVES, LIST_NO_METADATA = 2, 4, 8, 16
LIST_INACTIVE, LIST_ACTIVE, LIST_DISK_ONLY, LIST_INTERNAL, LIST_EXTERNAL = 32, 64, 128, 256, 512
LIST_TOPOLOGICAL = 1024
FILTERS_LEAVES = LIST_LEAVES | LIST_NO_LEAVES
FILTERS_STATUS = LIST_INACTIVE | LIST_ACTIVE | LIST_DISK_ONLY
FILTERS_LOCATION = LIST_INTERNAL | LIST_EXTERNAL
FILTERS_ALL = LIST_METADATA | LIST_NO_METADATA | FILTERS_LEAVES | FILTERS_STATUS | FILTERS_LOCATION
_STATE_NAMES = {DomainState.RUNNING: "running", DomainState.PAUSED: "paused", DomainState.SHUTOFF: "shutoff"}


class TestSnapshot:
    def __init__(self, sdef: snapconf.SnapshotDef, definition: conf.DomainDef, state: DomainState,
                 tune: tuning.Tune) -> None:
        self.sdef = sdef
        self.definition = definition
        self.state = state
        self.tune = tune


def snapshot_tree(host: object, obj: DomainObj) -> dict:
    """The domain's snapshots: {"snaps": name -> TestSnapshot, "current": name or None}.
    Kept with the domain object, as libvirt's are: they go when the domain goes (a later
    domain with the same UUID starts with none)."""
    return obj.extra.setdefault("snapshots", {"snaps": {}, "current": None})   # type: ignore[return-value]


_tree = snapshot_tree


def _kids(tree: dict, name: str | None) -> list[str]:
    return sorted(n for n, s in tree["snaps"].items() if s.sdef.parent == name)


def _descendants(tree: dict, name: str | None) -> list[str]:
    """Every descendant of ``name`` (None: of the domain), parents before their children."""
    out = []
    for kid in _kids(tree, name):
        out += [kid, *_descendants(tree, kid)]
    return out


def _is_external(snap: TestSnapshot) -> bool:
    return snap.sdef.memory == "external" or any(d.snapshot == "external" for d in snap.sdef.disks)


def _select(tree: dict, start: str | None, flags: int) -> list[str]:
    """virDomainSnapshotObjListGetNames: the children (or, with DESCENDANTS, every
    descendant) of ``start``, or with no start the roots (or, without ROOTS, every
    snapshot), filtered as libvirt filters them.  A status or location group whose every bit
    is set filters nothing; LEAVES with NO_LEAVES leaves nothing (libvirt applies both)."""
    for group in (FILTERS_STATUS, FILTERS_LOCATION):
        if flags & group == group:
            flags &= ~group
    if flags & (LIST_METADATA | LIST_NO_METADATA) == LIST_NO_METADATA:
        return []            # every snapshot here has metadata
    every = bool(flags & LIST_DESCENDANTS) != (start is None)
    names = _descendants(tree, start) if every else _kids(tree, start)
    if not flags & LIST_TOPOLOGICAL:
        names.sort()
    out = []
    for name in names:
        snap = tree["snaps"][name]
        has_kids = any(s.sdef.parent == name for s in tree["snaps"].values())
        if (flags & LIST_LEAVES and has_kids) or (flags & LIST_NO_LEAVES and not has_kids):
            continue
        if flags & FILTERS_STATUS:
            state = snap.sdef.state
            kind = LIST_INACTIVE if state == "shutoff" else LIST_DISK_ONLY if state == "disk-snapshot" \
                else LIST_ACTIVE
            if not flags & kind:
                continue
        if (flags & LIST_INTERNAL and _is_external(snap)) or (flags & LIST_EXTERNAL and not _is_external(snap)):
            continue
        out.append(name)
    return out


class SnapshotAPI:
    """Mixed into TestConnection (which supplies _obj, host)."""

    def _snap(self, ref: DomainSnapshotRef) -> tuple[DomainObj, dict, TestSnapshot]:
        obj = self._obj(ref.dom)
        tree = _tree(self.host, obj)
        snap = tree["snaps"].get(ref.name)
        if snap is None:
            raise error(ErrorNumber.NO_DOMAIN_SNAPSHOT, _T, f"no domain snapshot with matching name '{ref.name}'")
        return obj, tree, snap

    async def domain_snapshot_create_xml(self, dom: DomainRef, xml_desc: str, flags: int) -> DomainSnapshotRef:
        # libvirt 9.0's test driver: no NO_METADATA, DISK_ONLY or REUSE_EXT; QUIESCE, ATOMIC
        # and LIVE have nothing to do; VALIDATE checks the document against the schema
        check_flags(flags, CREATE_REDEFINE | CREATE_CURRENT | CREATE_HALT | CREATE_QUIESCE | CREATE_ATOMIC
                    | CREATE_LIVE | CREATE_VALIDATE, "testDomainSnapshotCreateXML", _T)
        obj = self._obj(dom)
        if obj.extra.get("checkpoints"):
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, _T, "cannot create snapshot while checkpoint exists")
        if not obj.persistent and flags & CREATE_HALT:
            raise error(ErrorNumber.OPERATION_INVALID, _T, "cannot halt after transient domain snapshot")
        tree = _tree(self.host, obj)
        if flags & CREATE_REDEFINE:
            return self._redefine_snapshot(obj, tree, xml_desc, flags)
        sdef = snapconf.parse(xml_desc, validate=bool(flags & CREATE_VALIDATE))
        now = int(time.time())
        sdef.name = sdef.name or str(now)
        if sdef.name in tree["snaps"]:
            # the generic moment list's words (virDomainMomentAssignDef), from VIR_FROM_DOMAIN
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.DOMAIN, f"domain moment {sdef.name} already exists")
        current = obj.current
        sdef.creation_time = now
        sdef.state = _STATE_NAMES.get(obj.state, "shutoff")
        sdef.memory = "internal" if obj.active else "no"
        sdef.disks = [snapconf.SnapshotDisk(name=d.target_dev, snapshot="internal")
                      for d in current.devices.disks if d.device == "disk"]
        sdef.parent = tree["current"]
        tune = tuning.current_tune(obj)
        sdef.domain_xml = re.sub(r"^<domain type='([^']*)' id='-?\d+'>", r"<domain type='\1'>",
                                 tuning.decorate_xml(current.format(secure=True), tune, current.vcpus))
        tree["snaps"][sdef.name] = TestSnapshot(sdef, current.copy(), obj.state, copy.deepcopy(tune))
        tree["current"] = sdef.name
        if flags & CREATE_HALT and obj.active:
            self.host.stop(obj, ShutoffReason.FROM_SNAPSHOT, STOPPED_FROM_SNAPSHOT)
        return DomainSnapshotRef(sdef.name, obj.ref())

    def _redefine_snapshot(self, obj: DomainObj, tree: dict, xml_desc: str, flags: int) -> DomainSnapshotRef:
        """testDomainSnapshotRedefine: a snapshot's metadata put back (snapshot-edit,
        snapshot-current NAME), new or replacing the one of that name, with libvirt's
        checks (virDomainSnapshotRedefinePrep); current only with CREATE_CURRENT."""
        sdef = snapconf.parse(xml_desc, redefine=True, validate=bool(flags & CREATE_VALIDATE))
        name = sdef.name or ""
        moments.check_cycles(name, sdef.parent, {n: s.sdef.parent for n, s in tree["snaps"].items()})
        other = tree["snaps"].get(name)
        definition = self._parse_domain(sdef.domain_xml) if sdef.domain_xml else None
        if definition is not None and definition.uuid != obj.uuid:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                        f"definition for snapshot {name} must use uuid {obj.uuid}")
        if other is not None:
            for kinds, what in ((("running", "paused"), "online and offline snapshot state"),
                                (("disk-snapshot",), "disk only and full system")):
                if (other.sdef.state in kinds) != (sdef.state in kinds):
                    raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                                f"cannot change between {what} in snapshot {name}")
        if definition is None and other is None:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.DOMAIN_SNAPSHOT, "missing domain in snapshot")
        if definition is None:
            definition, sdef.domain_xml = other.definition, other.sdef.domain_xml    # type: ignore[union-attr]
        else:
            sdef.domain_xml = definition.format(secure=True)
        offline = sdef.state in ("shutoff", "disk-snapshot")
        sdef.memory = sdef.memory or ("no" if offline else "internal")
        if not sdef.disks:
            sdef.disks = [snapconf.SnapshotDisk(name=d.target_dev, snapshot="internal")
                          for d in definition.devices.disks if d.device == "disk"]
        state = DomainState.SHUTOFF if offline else \
            DomainState.PAUSED if sdef.state == "paused" else DomainState.RUNNING
        tune = other.tune if other is not None else copy.deepcopy(tuning.config_tune(obj))
        tree["snaps"][name] = TestSnapshot(sdef, definition, state, tune)
        if flags & CREATE_CURRENT:
            tree["current"] = name
        return DomainSnapshotRef(name, obj.ref())

    async def domain_snapshot_get_xml_desc(self, snap: DomainSnapshotRef, flags: int) -> str:
        check_flags(flags, 1, "testDomainSnapshotGetXMLDesc", _T)
        return self._snap(snap)[2].sdef.format()

    async def domain_snapshot_num(self, dom: DomainRef, flags: int) -> int:
        return len(self._list(dom, flags, "testDomainSnapshotNum"))

    def _list(self, dom: DomainRef, flags: int, function: str) -> list[str]:
        check_flags(flags, LIST_ROOTS | LIST_TOPOLOGICAL | FILTERS_ALL, function, _T)
        tree = _tree(self.host, self._obj(dom))
        return _select(tree, None, flags)

    async def domain_snapshot_list_names(self, dom: DomainRef, maxnames: int, flags: int) -> list[str]:
        return self._list(dom, flags, "testDomainSnapshotListNames")[:max(maxnames, 0)]

    async def domain_list_all_snapshots(self, dom: DomainRef, need_results: int,
                                        flags: int) -> tuple[list[DomainSnapshotRef], int]:
        names = self._list(dom, flags, "testDomainListAllSnapshots")
        ref = self._obj(dom).ref()
        return ([DomainSnapshotRef(n, ref) for n in names] if need_results else []), len(names)

    async def domain_snapshot_lookup_by_name(self, dom: DomainRef, name: str, flags: int) -> DomainSnapshotRef:
        check_flags(flags, 0, "testDomainSnapshotLookupByName", _T)
        obj = self._obj(dom)
        self._snap(DomainSnapshotRef(name, obj.ref()))
        return DomainSnapshotRef(name, obj.ref())

    async def domain_has_current_snapshot(self, dom: DomainRef, flags: int) -> int:
        check_flags(flags, 0, "testDomainHasCurrentSnapshot", _T)
        return int(_tree(self.host, self._obj(dom))["current"] is not None)

    async def domain_snapshot_current(self, dom: DomainRef, flags: int) -> DomainSnapshotRef:
        check_flags(flags, 0, "testDomainSnapshotCurrent", _T)
        obj = self._obj(dom)
        current = _tree(self.host, obj)["current"]
        if current is None:
            raise error(ErrorNumber.NO_DOMAIN_SNAPSHOT, _T, "the domain does not have a current snapshot")
        return DomainSnapshotRef(current, obj.ref())

    async def domain_snapshot_get_parent(self, snap: DomainSnapshotRef, flags: int) -> DomainSnapshotRef:
        check_flags(flags, 0, "testDomainSnapshotGetParent", _T)
        obj, _, s = self._snap(snap)
        if s.sdef.parent is None:
            raise error(ErrorNumber.NO_DOMAIN_SNAPSHOT, _T, f"snapshot '{snap.name}' does not have a parent")
        return DomainSnapshotRef(s.sdef.parent, obj.ref())

    def _children(self, snap: DomainSnapshotRef, flags: int, function: str) -> tuple[DomainObj, list[str]]:
        check_flags(flags, LIST_DESCENDANTS | LIST_TOPOLOGICAL | FILTERS_ALL, function, _T)
        obj, tree, _ = self._snap(snap)
        return obj, _select(tree, snap.name, flags)

    async def domain_snapshot_num_children(self, snap: DomainSnapshotRef, flags: int) -> int:
        return len(self._children(snap, flags, "testDomainSnapshotNumChildren")[1])

    async def domain_snapshot_list_children_names(self, snap: DomainSnapshotRef, maxnames: int,
                                                  flags: int) -> list[str]:
        return self._children(snap, flags, "testDomainSnapshotListChildrenNames")[1][:max(maxnames, 0)]

    async def domain_snapshot_list_all_children(self, snapshot: DomainSnapshotRef, need_results: int,
                                                flags: int) -> tuple[list[DomainSnapshotRef], int]:
        obj, kids = self._children(snapshot, flags, "testDomainSnapshotListAllChildren")
        return ([DomainSnapshotRef(n, obj.ref()) for n in kids] if need_results else []), len(kids)

    async def domain_snapshot_is_current(self, snap: DomainSnapshotRef, flags: int) -> int:
        check_flags(flags, 0, "testDomainSnapshotIsCurrent", _T)
        _, tree, _ = self._snap(snap)
        return int(tree["current"] == snap.name)

    async def domain_snapshot_has_metadata(self, snap: DomainSnapshotRef, flags: int) -> int:
        check_flags(flags, 0, "testDomainSnapshotHasMetadata", _T)
        self._snap(snap)
        return 1

    async def domain_revert_to_snapshot(self, snap: DomainSnapshotRef, flags: int) -> None:
        check_flags(flags, 7, "testDomainRevertToSnapshot", _T)   # RUNNING, PAUSED, FORCE
        obj, tree, s = self._snap(snap)
        host = self.host
        if obj.active:
            host.stop(obj, ShutoffReason.FROM_SNAPSHOT, STOPPED_FROM_SNAPSHOT)
        obj.definition = s.definition.copy() if obj.persistent else obj.definition
        if obj.persistent:
            tuning.set_config(obj, copy.deepcopy(s.tune))
        if s.state in (DomainState.RUNNING, DomainState.PAUSED) or flags & 3:
            paused = bool(flags & 2) or (s.state == DomainState.PAUSED and not flags & 1)
            host.start(obj, RunningReason.FROM_SNAPSHOT, paused=paused, live_def=s.definition,
                       detail=STARTED_FROM_SNAPSHOT)
            tuning.set_live(obj, copy.deepcopy(s.tune))
        tree["current"] = snap.name

    async def domain_snapshot_delete(self, snap: DomainSnapshotRef, flags: int) -> None:
        check_flags(flags, DELETE_CHILDREN | DELETE_METADATA_ONLY | DELETE_CHILDREN_ONLY,
                    "testDomainSnapshotDelete", _T)
        _, tree, s = self._snap(snap)
        doomed = []
        if flags & (DELETE_CHILDREN | DELETE_CHILDREN_ONLY):
            doomed = _descendants(tree, snap.name)
        if not flags & DELETE_CHILDREN_ONLY:
            doomed.append(snap.name)
            for other in tree["snaps"].values():      # the children move up to the parent
                if other.sdef.parent == snap.name:
                    other.sdef.parent = s.sdef.parent
        if tree["current"] in doomed:
            tree["current"] = None if flags & DELETE_CHILDREN or s.sdef.parent is None else s.sdef.parent
        for name in doomed:
            tree["snaps"].pop(name, None)
