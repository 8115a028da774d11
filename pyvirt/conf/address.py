"""A device's ``<address>``: where it sits on its bus.

PCI addresses are modelled (libvirt writes them with fixed hex widths and
checks their ranges); every other address type (``drive``, ``usb``, ...) is
kept as given, attribute by attribute, so a definition that names one keeps
it across define and migration.  Addresses are configuration, not live
state: libvirt shows them in inactive XML too.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from .xmlutil import Node, child, el, xml_detail

# field -> (largest value, width of libvirt's hex formatting)
_PCI_FIELDS: dict[str, tuple[int, int]] = {
    "domain": (0xFFFF, 4), "bus": (0xFF, 2), "slot": (0x1F, 2), "function": (0x7, 1),
}


@dataclass(slots=True, frozen=True)
class PCIAddress:
    domain: int = 0
    bus: int = 0
    slot: int = 0
    function: int = 0
    multifunction: str | None = None       # on | off, when given

    type = "pci"

    @classmethod
    def from_xml(cls, node: etree._Element) -> PCIAddress:
        values = {name: _pci_field(node, name, limit) for name, (limit, _w) in _PCI_FIELDS.items()}
        multi = node.get("multifunction")
        if multi is not None and multi not in ("on", "off"):
            raise xml_detail(f"Unknown multifunction setting '{multi}'")
        return cls(**values, multifunction=multi)

    def to_node(self) -> Node:
        return el("address", [
            ("type", "pci"),
            *((name, f"0x{getattr(self, name):0{width}x}") for name, (_l, width) in _PCI_FIELDS.items()),
            ("multifunction", self.multifunction),
        ])

    @property
    def qemu_addr(self) -> str:
        """The ``addr`` property of a QEMU PCI device: ``slot.function``."""
        return f"0x{self.slot:x}" if self.function == 0 else f"0x{self.slot:x}.0x{self.function:x}"

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function:x}"


@dataclass(slots=True, frozen=True)
class OtherAddress:
    """An address of a type pyvirt does not interpret, kept verbatim."""

    type: str
    attrs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_xml(cls, node: etree._Element) -> OtherAddress:
        return cls(node.get("type", ""), tuple((k, v) for k, v in node.attrib.items() if k != "type"))

    def to_node(self) -> Node:
        return el("address", [("type", self.type), *self.attrs])


Address = PCIAddress | OtherAddress


def _pci_field(node: etree._Element, name: str, limit: int) -> int:
    raw = node.get(name)
    if raw is None:
        return 0
    try:
        value = int(raw, 0)
    except ValueError:
        raise xml_detail(f"Cannot parse <address> '{name}' attribute '{raw}'") from None
    if not 0 <= value <= limit:
        raise xml_detail(f"Invalid PCI address {name}='{raw}', must be <= 0x{limit:X}")
    return value


def address_of(node: etree._Element) -> Address | None:
    """The ``<address>`` child of a device element, if any."""
    found = child(node, "address")
    if found is None:
        return None
    atype = found.get("type")
    if not atype:
        raise xml_detail("No type specified for device address")
    if atype == "pci":
        return PCIAddress.from_xml(found)
    return OtherAddress.from_xml(found)


def address_node(addr: Address | None) -> Node | None:
    return addr.to_node() if addr is not None else None
