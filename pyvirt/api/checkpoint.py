"""libvirt-python's checkpoint API: virDomainCheckpoint and virDomain's checkpoint methods.

The argument checks libvirt's own entry points make before any driver sees
the call (libvirt-domain-checkpoint.c: read-only connections, flags that
exclude or need each other) are made here, with libvirt's words, so every
driver behind the connection answers them alike.
"""

from __future__ import annotations

from collections.abc import Callable

from ..driver import check_access
from ..errors import ErrorDomain, ErrorNumber, bare_invalid_arg, error
from .moment import DomainMoment, refuse_exclusive
from ..refs import DomainCheckpointRef

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

_C = ErrorDomain.DOMAIN_CHECKPOINT
CREATE_REDEFINE, CREATE_QUIESCE, CREATE_REDEFINE_VALIDATE = 1, 2, 4
XML_SECURE = 1
DELETE_CHILDREN, DELETE_CHILDREN_ONLY = 1, 4



class virDomainCheckpoint(DomainMoment):  # noqa: N801 - libvirt-python's name
    """A checkpoint handle: its name and its domain (``remote_nonnull_domain_checkpoint``)."""

    def getXMLDesc(self, flags: int = 0) -> str:
        if flags & XML_SECURE and self._dom._conn._drv.read_only:
            raise error(ErrorNumber.OPERATION_DENIED, _C, "virDomainCheckpointGetXMLDesc with secure flag")
        return self._call("domain_checkpoint_get_xml_desc", flags)

    def getParent(self, flags: int = 0) -> "virDomainCheckpoint":
        return self._wrap(self._call("domain_checkpoint_get_parent", flags))

    def delete(self, flags: int = 0) -> int:
        check_access(self._dom._conn._drv, "domain_checkpoint_delete")
        refuse_exclusive(flags, DELETE_CHILDREN, DELETE_CHILDREN_ONLY, "VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN",
                         "VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN_ONLY", _C)
        self._call("domain_checkpoint_delete", flags)
        return 0

    def listAllChildren(self, flags: int = 0) -> list["virDomainCheckpoint"]:
        refs, _count = self._call("domain_checkpoint_list_all_children", 1, flags)
        return [self._wrap(ref) for ref in refs]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, virDomainCheckpoint) and other._ref == self._ref

    def __hash__(self) -> int:
        return hash(self._ref)


class DomainCheckpointAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference

    def _checkpoint(self, ref: DomainCheckpointRef) -> virDomainCheckpoint:
        return virDomainCheckpoint(self, ref)   # type: ignore[arg-type]

    def checkpointCreateXML(self, xmlDesc: str, flags: int = 0) -> virDomainCheckpoint:
        check_access(self._conn._drv, "domain_checkpoint_create_xml")   # type: ignore[attr-defined]
        refuse_exclusive(flags, CREATE_REDEFINE, CREATE_QUIESCE, "VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE",
                         "VIR_DOMAIN_CHECKPOINT_CREATE_QUIESCE", _C)
        if flags & CREATE_REDEFINE_VALIDATE and not flags & CREATE_REDEFINE:
            raise bare_invalid_arg("Flag 'VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE' is required by flag "
                                   "'VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE'", _C)
        return self._checkpoint(self._call("domain_checkpoint_create_xml", xmlDesc, flags))

    def checkpointLookupByName(self, name: str, flags: int = 0) -> virDomainCheckpoint:
        return self._checkpoint(self._call("domain_checkpoint_lookup_by_name", name, flags))

    def listAllCheckpoints(self, flags: int = 0) -> list[virDomainCheckpoint]:
        refs, _count = self._call("domain_list_all_checkpoints", 1, flags)
        return [self._checkpoint(ref) for ref in refs]
