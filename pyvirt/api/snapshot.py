"""libvirt-python's snapshot API: virDomainSnapshot and virDomain's snapshot methods.

The argument checks libvirt's own entry points make before any driver sees
the call (libvirt-domain-snapshot.c: read-only connections, flags that
exclude or need each other) are made here, with libvirt's words, so every
driver behind the connection answers them alike.
"""

from __future__ import annotations

from collections.abc import Callable

from ..driver import check_access
from ..errors import ErrorDomain, ErrorNumber, bare_invalid_arg, error
from .moment import DomainMoment, refuse_exclusive
from ..refs import DomainSnapshotRef

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any


_S = ErrorDomain.DOMAIN_SNAPSHOT
XML_SECURE = 1
CREATE_REDEFINE, CREATE_CURRENT, CREATE_NO_METADATA, CREATE_HALT = 1, 2, 4, 8
REVERT_RUNNING, REVERT_PAUSED = 1, 2
DELETE_CHILDREN, DELETE_CHILDREN_ONLY = 1, 4



class virDomainSnapshot(DomainMoment):  # noqa: N801 - libvirt-python's name
    """A snapshot handle: its name and its domain (``remote_nonnull_domain_snapshot``)."""

    def getXMLDesc(self, flags: int = 0) -> str:
        if flags & XML_SECURE and self._dom._conn._drv.read_only:
            raise error(ErrorNumber.OPERATION_DENIED, _S, "virDomainSnapshotGetXMLDesc with secure flag")
        return self._call("domain_snapshot_get_xml_desc", flags)

    def getParent(self, flags: int = 0) -> "virDomainSnapshot":
        return self._wrap(self._call("domain_snapshot_get_parent", flags))

    def delete(self, flags: int = 0) -> int:
        check_access(self._dom._conn._drv, "domain_snapshot_delete")
        refuse_exclusive(flags, DELETE_CHILDREN, DELETE_CHILDREN_ONLY, "VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN",
                         "VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY", _S)
        self._call("domain_snapshot_delete", flags)
        return 0

    def isCurrent(self, flags: int = 0) -> int:
        return self._call("domain_snapshot_is_current", flags)

    def hasMetadata(self, flags: int = 0) -> int:
        return self._call("domain_snapshot_has_metadata", flags)

    def numChildren(self, flags: int = 0) -> int:
        return self._call("domain_snapshot_num_children", flags)

    def listChildrenNames(self, flags: int = 0) -> list[str]:
        count = self.numChildren(flags)
        return list(self._call("domain_snapshot_list_children_names", count, flags)) if count else []

    def listAllChildren(self, flags: int = 0) -> list["virDomainSnapshot"]:
        refs, _count = self._call("domain_snapshot_list_all_children", 1, flags)
        return [self._wrap(ref) for ref in refs]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, virDomainSnapshot) and other._ref == self._ref

    def __hash__(self) -> int:
        return hash(self._ref)


class DomainSnapshotAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference

    def _snapshot(self, ref: DomainSnapshotRef) -> virDomainSnapshot:
        return virDomainSnapshot(self, ref)   # type: ignore[arg-type]

    def snapshotCreateXML(self, xmlDesc: str, flags: int = 0) -> virDomainSnapshot:
        check_access(self._conn._drv, "domain_snapshot_create_xml")   # type: ignore[attr-defined]
        if flags & CREATE_CURRENT and not flags & CREATE_REDEFINE:
            raise bare_invalid_arg("Flag 'VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE' is required by flag "
                                   "'VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT'", _S)
        refuse_exclusive(flags, CREATE_REDEFINE, CREATE_NO_METADATA, "VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE",
                         "VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA", _S)
        refuse_exclusive(flags, CREATE_REDEFINE, CREATE_HALT, "VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE",
                         "VIR_DOMAIN_SNAPSHOT_CREATE_HALT", _S)
        return self._snapshot(self._call("domain_snapshot_create_xml", xmlDesc, flags))

    def snapshotNum(self, flags: int = 0) -> int:
        return self._call("domain_snapshot_num", flags)

    def snapshotListNames(self, flags: int = 0) -> list[str]:
        count = self.snapshotNum(flags)
        return list(self._call("domain_snapshot_list_names", count, flags)) if count else []

    def listAllSnapshots(self, flags: int = 0) -> list[virDomainSnapshot]:
        refs, _count = self._call("domain_list_all_snapshots", 1, flags)
        return [self._snapshot(ref) for ref in refs]

    def snapshotLookupByName(self, name: str, flags: int = 0) -> virDomainSnapshot:
        return self._snapshot(self._call("domain_snapshot_lookup_by_name", name, flags))

    def snapshotCurrent(self, flags: int = 0) -> virDomainSnapshot:
        return self._snapshot(self._call("domain_snapshot_current", flags))

    def hasCurrentSnapshot(self, flags: int = 0) -> int:
        return self._call("domain_has_current_snapshot", flags)

    def revertToSnapshot(self, snap: virDomainSnapshot, flags: int = 0) -> int:
        check_access(self._conn._drv, "domain_revert_to_snapshot")   # type: ignore[attr-defined]
        refuse_exclusive(flags, REVERT_RUNNING, REVERT_PAUSED, "VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING",
                         "VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED", _S)
        self._conn._call("domain_revert_to_snapshot", snap._ref, flags)   # type: ignore[attr-defined]
        return 0
