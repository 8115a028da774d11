"""``<controller>``: the buses disks and USB devices hang off.

Kept with libvirt's types, models and attribute order.  A controller
without an index gets the next free one of its type, as libvirt numbers
them; the alias libvirt gives each is :func:`controller_alias` (it is also
the QEMU id the buses are named after: ``scsi0.0``, ``usb.0``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from .address import Address, address_node, address_of
from .xmlutil import Node, check_choice, child, el, int_attr, xml_detail

CONTROLLER_TYPES = ("ide", "fdc", "scsi", "sata", "virtio-serial", "ccid", "usb", "pci", "xenbus", "isa")
CONTROLLER_MODELS: dict[str, tuple[str, ...]] = {
    "scsi": ("auto", "buslogic", "lsilogic", "lsisas1068", "vmpvscsi", "ibmvscsi", "virtio-scsi",
             "lsisas1078", "virtio-transitional", "virtio-non-transitional", "ncr53c90", "am53c974",
             "dc390"),
    "usb": ("piix3-uhci", "piix4-uhci", "ehci", "ich9-ehci1", "ich9-uhci1", "ich9-uhci2", "ich9-uhci3",
            "vt82c686b-uhci", "pci-ohci", "nec-xhci", "qusb1", "qusb2", "qemu-xhci", "none"),
    "pci": ("pci-root", "pcie-root", "pci-bridge", "dmi-to-pci-bridge", "pcie-root-port",
            "pcie-switch-upstream-port", "pcie-switch-downstream-port", "pci-expander-bus",
            "pcie-expander-bus", "pcie-to-pci-bridge"),
    "ide": ("piix3", "piix4", "ich6"),
}


def _alias_node(alias: str | None, inactive: bool) -> Node | None:
    # Same rule as the other devices: only user aliases ('ua-') survive inactive XML.
    if alias is None or (inactive and not alias.startswith("ua-")):
        return None
    return el("alias", [("name", alias)])


@dataclass(slots=True)
class Controller:
    type: str
    index: int = -1                    # -1: not given (numbered by Devices.from_xml)
    model: str | None = None
    alias: str | None = None
    address: Address | None = None
    # A USB companion (ich9-uhciN beside an ich9-ehci1): <master startport='N'/>,
    # the first port of the EHCI controller it serves.
    master_startport: int | None = None
    # A PCI controller's <model name='pcie-root-port'/> (QEMU's device) and
    # <target chassis='1' port='0x8'/> (the root port's chassis and port numbers)
    model_name: str | None = None
    target_chassis: int | None = None
    target_port: int | None = None

    @classmethod
    def from_xml(cls, node: etree._Element) -> Controller:
        ctype = check_choice(node.get("type", ""), CONTROLLER_TYPES, "controller type")
        model = node.get("model")
        if model is not None and ctype in CONTROLLER_MODELS:
            check_choice(model, CONTROLLER_MODELS[ctype], f"{ctype} controller model")
        index = int_attr(node, "index", minimum=0)
        found = child(node, "alias")
        master = child(node, "master") if ctype == "usb" else None
        model_node = child(node, "model") if ctype == "pci" else None
        target = child(node, "target") if ctype == "pci" else None
        return cls(ctype, -1 if index is None else index, model,
                   (found.get("name") or None) if found is not None else None, address_of(node),
                   int_attr(master, "startport", minimum=0) or 0 if master is not None else None,
                   model_node.get("name") or None if model_node is not None else None,
                   _number(target, "chassis"), _number(target, "port"))

    def to_node(self, inactive: bool) -> Node:
        target = [("chassis", self.target_chassis),
                  ("port", f"0x{self.target_port:x}" if self.target_port is not None else None)]
        return el("controller", [("type", self.type), ("index", self.index), ("model", self.model)], [
            el("model", [("name", self.model_name)]) if self.model_name else None,
            el("target", target) if any(v is not None for _, v in target) else None,
            _alias_node(self.alias, inactive),   # then <master>, as libvirt's virDomainDeviceInfoFormat
            el("master", [("startport", self.master_startport)]) if self.master_startport is not None else None,
            address_node(self.address),
        ])


def number_controllers(controllers: list[Controller]) -> list[Controller]:
    """Give each controller without an index the next free one of its type."""
    previous_usb = None
    for ctrl in controllers:
        if ctrl.type == "usb" and ctrl.index < 0 and ctrl.master_startport is not None:
            # a companion shares the index of the USB controller before it (its EHCI master)
            ctrl.index = previous_usb.index if previous_usb is not None and previous_usb.index >= 0 else 0
        if ctrl.type == "usb":
            previous_usb = ctrl
        if ctrl.index < 0:
            used = {c.index for c in controllers if c.type == ctrl.type}
            ctrl.index = next(i for i in range(len(controllers) + 1) if i not in used)
    return controllers


def _number(node: etree._Element | None, name: str) -> int | None:
    """A decimal or 0x-hex attribute, as libvirt reads <target port='0x8'/>."""
    raw = node.get(name) if node is not None else None
    if raw is None:
        return None
    try:
        value = int(raw, 0)
    except ValueError:
        raise xml_detail(f"Invalid {name} '{raw}' in PCI controller <target>") from None
    if value < 0:
        raise xml_detail(f"Invalid {name} '{raw}' in PCI controller <target>")
    return value


def controller_alias(ctrl: Controller) -> str:
    """libvirt's alias of a controller (``usb``, ``scsi0``, ``pci.0``, ``pcie.0``, ``ide``, ``sata0``)."""
    if ctrl.type == "pci" and ctrl.model == "pcie-root":
        return "pcie.0"
    if ctrl.type == "pci":
        return f"pci.{ctrl.index}"
    if ctrl.type in ("ide", "usb") and ctrl.index == 0:
        return ctrl.type
    return f"{ctrl.type}{ctrl.index}"
