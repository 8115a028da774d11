"""The migration cookie's ``<nbd>`` part (pure, no I/O), in libvirt's format::

    <nbd port='49153'>
      <disk target='vda' capacity='1073741824'/>
    </nbd>

Begin sends the disks to copy with their sizes (the destination creates
missing images from them); Prepare answers with the port of the NBD server
that exports them.  Either side may leave out what it does not know: a
Prepare reply has no disks, a Begin cookie no port.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from ....conf.xmlutil import Node, el
from ....errors import ErrorDomain, ErrorNumber, error


@dataclass(frozen=True, slots=True)
class NbdDisk:
    target: str
    capacity: int


@dataclass(slots=True)
class CookieNbd:
    port: int = 0
    disks: list[NbdDisk] = field(default_factory=list)

    def to_node(self) -> Node:
        attrs = [("port", str(self.port))] if self.port else []
        return el("nbd", attrs, [el("disk", [("target", d.target), ("capacity", str(d.capacity))])
                                 for d in self.disks])

    @classmethod
    def from_element(cls, node: etree._Element) -> CookieNbd:
        port = _number(node.get("port"), "port", 65535) if node.get("port") is not None else 0
        disks = []
        for disk in node.findall("disk"):
            target = disk.get("target")
            if not target:
                raise _fail("missing target of an <nbd> disk in migration cookie")
            disks.append(NbdDisk(target, _number(disk.get("capacity"), "capacity", 2**64 - 1)))
        return cls(port, disks)

    def capacity_of(self, target: str) -> int | None:
        return next((d.capacity for d in self.disks if d.target == target), None)


def _fail(detail: str) -> Exception:
    return error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU, detail)


def _number(raw: str | None, what: str, hi: int) -> int:
    text = (raw or "").strip()
    if not text.isascii() or not text.isdigit() or int(text) > hi:
        raise _fail(f"malformed nbd {what} '{raw}' in migration cookie")
    return int(text)
