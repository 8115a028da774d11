"""Domain snapshot XML (``<domainsnapshot>``), as libvirt reads and writes it.

A :class:`SnapshotDef` is what a snapshot knows of itself: its name and
description, the domain's state when it was taken, where memory and each
disk went (``internal``, ``external`` or ``no``), its parent, and the
domain definition of that moment (kept as XML text; it is parsed again only
when a caller wants it formatted).  :func:`parse` reads what a client sends
(virDomainSnapshotCreateXML), :meth:`SnapshotDef.format` writes what
virsh snapshot-dumpxml prints, and with ``internal=True`` the metadata file
the driver keeps (libvirt's, with ``<active>1</active>`` on the current one).
Element and attribute names follow libvirt's domainsnapshot.rng.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from lxml import etree

from ..errors import ErrorDomain, ErrorLevel, ErrorNumber, error, libvirtError
from . import momentdoc
from .xmlutil import Node, child, child_text, children, el, render

# virDomainSnapshotState: the domain's state words, plus disk-snapshot
STATES = ("nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended",
          "disk-snapshot")
LOCATIONS = ("no", "internal", "external", "manual")
# States whose snapshot holds the guest's memory (libvirt's "active" snapshots).
ACTIVE_STATES = ("running", "blocked", "paused", "pmsuspended")


@dataclass(slots=True)
class SnapshotDisk:
    name: str                       # the domain disk's target (vda) or source path
    snapshot: str | None = None     # internal | external | no | manual; None: the default
    source: str | None = None       # external: the new overlay
    driver_type: str | None = None  # external: the overlay's format (qcow2)
    source_type: str = "file"

    def to_node(self) -> Node:
        if self.snapshot != "external":
            return el("disk", [("name", self.name), ("snapshot", self.snapshot)])
        return el("disk", [("name", self.name), ("snapshot", "external"), ("type", self.source_type)], [
            el("driver", [("type", self.driver_type)]) if self.driver_type else None,
            el("source", [("dev" if self.source_type == "block" else "file", self.source)])
            if self.source else None,
        ])


@dataclass(slots=True)
class SnapshotDef:
    name: str | None = None
    description: str | None = None
    state: str | None = None
    creation_time: int = 0
    memory: str | None = None        # internal | external | no
    memory_file: str | None = None
    disks: list[SnapshotDisk] = field(default_factory=list)
    parent: str | None = None
    domain_xml: str | None = None    # the <domain> of the moment, secure, as text
    inactive_xml: str | None = None  # a running domain's persistent definition then (<inactiveDomain>)
    current: bool = False            # metadata only: <active>1</active>

    @property
    def is_external(self) -> bool:
        """libvirt's virDomainSnapshotIsExternal: memory or a disk lives in another file."""
        return self.memory == "external" or any(d.snapshot == "external" for d in self.disks)

    @property
    def location(self) -> str:
        """virsh snapshot-info's Location: internal, external or (nothing at all) none."""
        if self.is_external:
            return "external"
        if self.memory == "internal" or any(d.snapshot == "internal" for d in self.disks):
            return "internal"
        return "none"

    def format(self, *, internal: bool = False, domain_xml: str | None = None) -> str:
        """The document; ``domain_xml`` replaces the stored domain (formatted for this caller)."""
        dom = domain_xml if domain_xml is not None else self.domain_xml
        memory_attrs = [("snapshot", self.memory), ("file", self.memory_file)]
        nodes: list[Node | None] = [
            el("name", text=self.name),
            el("description", text=self.description) if self.description is not None else None,
            el("state", text=self.state) if self.state else None,
            el("parent", children=[el("name", text=self.parent)]) if self.parent else None,
            el("creationTime", text=str(self.creation_time)),
            el("memory", memory_attrs) if self.memory else None,
            el("disks", children=[d.to_node() for d in self.disks]) if self.disks else None,
        ]
        if dom:
            nodes.append(Node("domain", raw=dom.rstrip("\n")))
        if self.inactive_xml:
            nodes.append(Node("inactiveDomain", raw=_retag(self.inactive_xml, "domain", "inactiveDomain")))
        if internal and self.current:
            nodes.append(el("active", text="1"))
        return render(el("domainsnapshot", children=nodes))


def xml_detail(domain: ErrorDomain, message: str) -> libvirtError:
    """VIR_ERR_XML_DETAIL as libvirt words it: the message alone, no "XML error:" prefix."""
    return libvirtError(message, ErrorNumber.XML_DETAIL, domain, ErrorLevel.ERROR, "%s", message)


def _check_name(name: str) -> str:
    if "/" in name:
        raise xml_detail(ErrorDomain.DOMAIN_SNAPSHOT, f"invalid snapshot name '{name}': name can't contain '/'")
    if "\n" in name:
        raise xml_detail(ErrorDomain.DOMAIN_SNAPSHOT, f"invalid char in name: {chr(10)}")
    return name


def _retag(xml: str, old: str, new: str) -> str:
    """A formatted <old> document as <new> (libvirt's <inactiveDomain> is a <domain> renamed)."""
    text = xml.rstrip("\n")
    assert text.startswith(f"<{old}") and text.endswith(f"</{old}>")
    return f"<{new}{text[len(old) + 1:-len(old) - 3]}</{new}>"


def _domain_text(xml: str) -> str:
    """A stored <domain> in libvirt's own layout again (lxml writes double quotes);
    as read when it is not a definition this version understands."""
    from .domain import parse as parse_domain
    try:
        return parse_domain(xml).format(secure=True)
    except Exception:
        return xml + "\n"


def _choice(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN_SNAPSHOT, f"unknown {what} '{value}'")
    return value


def _disk(node: etree._Element) -> SnapshotDisk:
    name = node.get("name")
    if not name:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN_SNAPSHOT, "missing name from disk snapshot element")
    src = child(node, "source")
    drv = child(node, "driver")
    source_type = node.get("type") or "file"
    source = None
    if src is not None:
        source = src.get("dev") if source_type == "block" else src.get("file")
    location = _choice(node.get("snapshot"), LOCATIONS, "disk snapshot setting")
    if location is None and (source is not None or (drv is not None and drv.get("type"))):
        location = "external"           # a <source> or <driver> implies an external snapshot
    return SnapshotDisk(name, location, source, drv.get("type") if drv is not None else None, source_type)


def parse(xml: str, *, redefine: bool = False, validate: bool = False) -> SnapshotDef:
    """A client's ``<domainsnapshot>``.  Without ``redefine`` only what a new
    snapshot may ask for is read (name, description, memory, disks), as libvirt
    ignores the rest; with it (and for metadata files) everything.  ``validate``
    (VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE): checked against libvirt's schema first."""
    root = momentdoc.document(xml, "domainsnapshot", "domain_snapshot", ErrorDomain.DOMAIN_SNAPSHOT,
                              check_schema=validate)
    snap = SnapshotDef()
    name = child_text(root, "name", strip=True)
    snap.name = _check_name(name) if name else None
    snap.description = child_text(root, "description")
    mem = child(root, "memory")
    if mem is not None:
        snap.memory = _choice(mem.get("snapshot"), LOCATIONS, "memory snapshot setting")
        snap.memory_file = mem.get("file")
        if snap.memory_file and snap.memory is None:
            snap.memory = "external"
        if snap.memory == "external" and not snap.memory_file:
            raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN_SNAPSHOT,
                        "memory snapshot file path must be specified with external memory snapshot")
    disks = child(root, "disks")
    if disks is not None:
        snap.disks = [_disk(d) for d in children(disks, "disk")]
        seen: set[str] = set()
        for d in snap.disks:
            if d.name in seen:
                raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN_SNAPSHOT,
                            f"disk '{d.name}' specified twice")
            seen.add(d.name)
    if redefine:
        if snap.name is None:
            raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN_SNAPSHOT, "a redefined snapshot must have a name")
        created = child_text(root, "creationTime", strip=True)    # libvirt reads the time first
        if created is None or not created.isdigit():
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.DOMAIN_SNAPSHOT,
                        "missing creationTime from existing snapshot")
        snap.creation_time = int(created)
        state = child_text(root, "state", strip=True)
        if state is None:
            raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN_SNAPSHOT, "missing state from existing snapshot")
        snap.state = _choice(state, STATES, "state type")
        parent = child(root, "parent")
        snap.parent = child_text(parent, "name", strip=True) if parent is not None else None
        dom = child(root, "domain")
        if dom is not None:
            dom.tail = None
            snap.domain_xml = _domain_text(etree.tostring(dom, encoding="unicode"))
        inactive = child(root, "inactiveDomain")
        if inactive is not None:
            inactive.tail = None
            inactive.tag = "domain"
            snap.inactive_xml = _domain_text(etree.tostring(inactive, encoding="unicode"))
        snap.current = child_text(root, "active", strip=True) == "1"
    else:
        snap.creation_time = int(time.time())
    return snap


__all__ = ["SnapshotDef", "SnapshotDisk", "parse", "STATES", "ACTIVE_STATES"]
