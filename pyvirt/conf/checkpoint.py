"""Domain checkpoint XML (``<domaincheckpoint>``), as libvirt reads and writes it.

A :class:`CheckpointDef` is what a checkpoint knows of itself: its name and
description, when it was made, its parent, and for each disk of the domain
whether a dirty bitmap tracks it (``checkpoint='bitmap'``, with the bitmap's
name) or not (``'no'``).  :func:`parse` reads what a client sends
(virDomainCheckpointCreateXML); :func:`align_disks` fills the disk list in
from the domain's disks as libvirt's virDomainCheckpointAlignDisks does;
:meth:`CheckpointDef.format` writes what virsh checkpoint-dumpxml prints.

As in libvirt, every document is checked against libvirt's
domaincheckpoint.rng (when libvirt's schemas are installed), so a bad name
or an unknown element fails with libvirt's own schema message.  The
``<domain>`` a redefinition carries is handed back as text: parsing it is
the driver's business (its domain types, its tuning elements).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from lxml import etree

from ..errors import ErrorDomain, ErrorNumber, error
from . import momentdoc
from .devices import Disk
from .xmlutil import Node, el, render

_C = ErrorDomain.DOMAIN_CHECKPOINT
# virDomainCheckpointType, as written ("default" is never written)
TYPES = ("no", "bitmap")
# libvirt's schema; virDomainCheckpointDefParseString always validates against it
CHECKPOINT_RNG = momentdoc.schema_path("domaincheckpoint")
_SOURCE = "domain_checkpoint"       # how libvirt names the document in syntax errors


@dataclass(slots=True)
class CheckpointDisk:
    name: str                   # the domain disk's target (vda); a source path until aligned
    type: str | None = None     # 'bitmap' | 'no'; None: libvirt's "default", not written
    bitmap: str | None = None   # the dirty bitmap's name (the checkpoint's, unless given)
    size: int | None = None     # bytes the bitmap marks dirty, when the driver knows it (XML_SIZE)

    def to_node(self, size: bool) -> Node:
        shown = self.size if size and self.bitmap is not None else None
        return el("disk", [("name", self.name), ("checkpoint", self.type), ("bitmap", self.bitmap),
                           ("size", shown)])


@dataclass(slots=True)
class CheckpointDef:
    name: str | None = None
    description: str | None = None
    creation_time: int = 0
    parent: str | None = None
    disks: list[CheckpointDisk] = field(default_factory=list)
    domain_xml: str | None = None   # a redefinition's <domain> as sent, for the driver to parse

    def format(self, *, size: bool = False, domain_xml: str | None = None) -> str:
        """The document; ``domain_xml`` is the domain of the moment, formatted for this caller
        (None: no <domain>, as with VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN)."""
        nodes: list[Node | None] = [
            el("name", text=self.name),
            el("description", text=self.description) if self.description is not None else None,
            el("parent", children=[el("name", text=self.parent)]) if self.parent else None,
            el("creationTime", text=str(self.creation_time)) if self.creation_time else None,
            el("disks", children=[d.to_node(size) for d in self.disks]) if self.disks else None,
        ]
        if domain_xml:
            nodes.append(Node("domain", raw=domain_xml.rstrip("\n")))
        return render(el("domaincheckpoint", children=nodes))


def _document(xml: str) -> etree._Element:
    return momentdoc.document(xml, "domaincheckpoint", _SOURCE, _C, check_schema=True)


def _string(root: etree._Element, path: str) -> str | None:
    """XPath ``string(PATH)``, an empty string read as absent (libvirt's virXPathString)."""
    found = root.find(path)
    value = "".join(found.itertext()) if found is not None else ""
    return value or None


def parse(xml: str, *, redefine: bool = False, now: int | None = None) -> CheckpointDef:
    """A client's ``<domaincheckpoint>``.  A new checkpoint gets the time ``now`` (default: the
    clock) as its creation time and, without a name, as its name; its parent and any creation
    time sent are ignored.  With ``redefine`` the document is a checkpoint's whole metadata."""
    root = _document(xml)
    chk = CheckpointDef(name=_string(root, "name"), description=_string(root, "description"))
    if redefine:
        if chk.name is None:
            raise error(ErrorNumber.XML_ERROR, _C, "a redefined checkpoint must have a name")
        created = _string(root, "creationTime")
        if created is None or not re.fullmatch(r"\s*[-+]?\d+\s*", created):
            raise error(ErrorNumber.INTERNAL_ERROR, _C, "missing creationTime from existing checkpoint")
        chk.creation_time = int(created)
        chk.parent = _string(root, "parent/name")
        dom = root.find("domain")
        if dom is not None:
            dom.tail = None
            chk.domain_xml = etree.tostring(dom, encoding="unicode")
    else:
        chk.creation_time = int(time.time()) if now is None else now
        chk.name = chk.name or str(chk.creation_time)
    disks = root.find("disks")
    for node in (disks.iterchildren(tag=etree.Element) if disks is not None else ()):
        # the schema allows no other value; libvirt reads a missing one as a bitmap
        chk.disks.append(CheckpointDisk(node.get("name") or "", node.get("checkpoint") or "bitmap",
                                        node.get("bitmap")))
    return chk


def assign_bitmap_names(chk: CheckpointDef) -> None:
    """A disk with a bitmap and no bitmap name gets the checkpoint's name."""
    for disk in chk.disks:
        if disk.type == "bitmap" and disk.bitmap is None:
            disk.bitmap = chk.name


def _untracked(disk: Disk) -> bool:
    """libvirt's empty-or-read-only test: such a disk can have no bitmap."""
    empty = disk.source is None and not (disk.type == "volume" and disk.source_volume)
    return empty or disk.readonly


def _disk_by_name(disks: Sequence[Disk], name: str) -> Disk | None:
    """libvirt's virDomainDiskByName: a target name, or (with a leading slash) a source path
    only one disk has."""
    if not name.startswith("/"):
        return next((d for d in disks if d.target_dev == name), None)
    found = [d for d in disks if d.source == name]
    return found[0] if len(found) == 1 else None


def align_disks(chk: CheckpointDef, disks: Sequence[Disk]) -> None:
    """libvirt's virDomainCheckpointAlignDisks: one entry per domain disk, in the domain's order,
    each named by its target.  A disk the checkpoint does not name gets a bitmap when the
    checkpoint names none (every disk), else none; an empty or read-only disk never gets one."""
    if len(chk.disks) > len(disks):
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, _C, "too many disk checkpoint requests for domain")
    if not disks:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, _C, "domain must have at least one disk to perform checkpoints")
    default = "no" if chk.disks else "bitmap"
    asked: dict[str, CheckpointDisk] = {}
    for want in chk.disks:
        disk = _disk_by_name(disks, want.name)
        if disk is None:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, _C, f"no disk named '{want.name}'")
        if disk.target_dev in asked:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, _C, f"disk '{want.name}' specified twice")
        if _untracked(disk) and want.type != "no":
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, _C, f"disk '{want.name}' is empty or readonly")
        want.name = disk.target_dev
        asked[disk.target_dev] = want
    chk.disks = [asked.get(d.target_dev) or CheckpointDisk(d.target_dev, "no" if _untracked(d) else default)
                 for d in disks]
    assign_bitmap_names(chk)


__all__ = ["CheckpointDef", "CheckpointDisk", "parse", "align_disks", "assign_bitmap_names", "TYPES"]
