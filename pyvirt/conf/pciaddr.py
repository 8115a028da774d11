"""PCI addresses for a pc (i440FX) guest, assigned as libvirt assigns them.

Without explicit addresses QEMU places devices in command-line order, so a
guest that gained or lost a device since it booted would come up with a
different bus layout on a migration's destination (or after a restore) and
its device state would not load.  libvirt avoids that by writing an
address into the definition for every PCI device; so does this module:

* slot 0 is the host bridge, slot 1 the PIIX3 (ISA bridge at .0, IDE at .1,
  its UHCI USB controller at .2, power management at .3), slot 2 the
  primary video card when there is one;
* everything else gets the next free slot from 2 on, in libvirt's order
  (qemuDomainAssignDevicePCISlots): network interfaces, controllers (SCSI,
  SATA, USB), virtio disks, the memory balloon, further video cards, virtio
  input devices.

Hot-plug asks :func:`next_free` for one more slot.

On the q35 machine libvirt puts each PCIe device alone on a ``pcie-root-port``
of its own (the device at slot 0 of the port's bus), the ports on the root
bus's slot 1 (slot 2 when the primary video card has slot 1), eight
functions a slot, plus one spare port, for hot-plug; the built-in SATA
controller is at 00:1f.2.  Conventional PCI devices (e1000, rtl8139, UHCI
controllers, qxl) would need a PCIe-to-PCI bridge, which pyvirt does not
create: they are left to QEMU's placement on the root bus.  PCI hot-plug on
q35 is refused (see :func:`hotplug_supported`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import ErrorDomain, ErrorNumber, error
from .address import PCIAddress
from .controllers import Controller

MAX_SLOT = 0x1F
FIRST_FREE_SLOT = 2
PIIX3_SLOT = 1
PRIMARY_VIDEO_SLOT = 2
# Controller models that are not PCI devices of their own.
_NOT_PCI_CONTROLLERS = {("usb", "none"), ("pci", "pci-root"), ("pci", "pcie-root")}


def is_i440fx(d: Any) -> bool:
    machine = d.os.machine or "pc"
    return machine == "pc" or machine.startswith(("pc-i440fx", "pc-1.", "pc-0."))


def is_q35(d: Any) -> bool:
    machine = d.os.machine or "pc"
    return machine == "q35" or machine.startswith("pc-q35")


def hotplug_supported(d: Any) -> bool:
    return is_i440fx(d)


def is_piix3_usb(ctrl: Controller) -> bool:
    return ctrl.type == "usb" and ctrl.index == 0 and ctrl.model in (None, "piix3-uhci")


def controller_is_pci(ctrl: Controller) -> bool:
    if (ctrl.type, ctrl.model) in _NOT_PCI_CONTROLLERS or ctrl.type in ("fdc", "ccid", "isa", "xenbus"):
        return False
    if ctrl.type == "ide" and ctrl.index == 0:
        return False           # the PIIX3's own IDE function
    return ctrl.type in ("scsi", "sata", "usb", "virtio-serial", "pci", "ide")


def pci_devices(d: Any) -> Iterator[Any]:
    """Every device that becomes a PCI device, in libvirt's assignment order
    (the primary video card first: it has its own slot)."""
    devs = d.devices
    videos = [v for v in devs.videos if v.type not in ("none", "ramfb")]
    yield from videos[:1]
    yield from devs.interfaces
    yield from (c for c in devs.controllers if controller_is_pci(c))
    yield from (disk for disk in devs.disks if disk.target_bus == "virtio")
    if devs.memballoon is not None and devs.memballoon.model != "none":
        yield devs.memballoon
    yield from videos[1:]
    yield from (dev for dev in devs.inputs if dev.bus == "virtio")


def _used(d: Any) -> set[tuple[int, int]]:
    used = {(0, 0), (PIIX3_SLOT, 0), (PIIX3_SLOT, 1), (PIIX3_SLOT, 3)}
    for dev in pci_devices(d):
        addr = getattr(dev, "address", None)
        if isinstance(addr, PCIAddress) and addr.bus == 0:
            used.add((addr.slot, addr.function))
    return used


def _slot_free(used: set[tuple[int, int]], slot: int) -> bool:
    return not any(s == slot for s, _f in used)


def next_free(d: Any, used: set[tuple[int, int]] | None = None) -> PCIAddress:
    """The first whole free slot on pci.0 from slot 2 on."""
    used = _used(d) if used is None else used
    for slot in range(FIRST_FREE_SLOT, MAX_SLOT + 1):
        if _slot_free(used, slot):
            used.add((slot, 0))
            return PCIAddress(slot=slot)
    raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.DOMAIN, "No more available PCI slots")


def assign(d: Any) -> None:
    """Give every PCI device of ``d`` without an address one (i440FX and Q35 guests)."""
    if is_q35(d):
        _assign_q35(d)
        return
    if not is_i440fx(d):
        return
    used = _used(d)
    usb = next((c for c in d.devices.controllers if is_piix3_usb(c)), None)
    if usb is not None and usb.address is None:
        if (PIIX3_SLOT, 2) in used:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.DOMAIN,
                        "PIIX3 USB controller at index 0 must have PCI address 0:0:1.2")
        usb.address = PCIAddress(slot=PIIX3_SLOT, function=2)
        used.add((PIIX3_SLOT, 2))
    devices = list(pci_devices(d))
    videos = [v for v in d.devices.videos if v.type not in ("none", "ramfb")]
    if videos and videos[0].address is None and _slot_free(used, PRIMARY_VIDEO_SLOT):
        videos[0].address = PCIAddress(slot=PRIMARY_VIDEO_SLOT)
        used.add((PRIMARY_VIDEO_SLOT, 0))
    _assign_usb2_sets(d, used, devices)
    for dev in devices:
        if dev.address is None:
            dev.address = next_free(d, used)
        elif not isinstance(dev.address, PCIAddress):
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN,
                        f"a PCI device cannot have an address of type '{dev.address.type}'")


# An ICH9 USB2 set (virt-install's default USB for an unknown OS): EHCI and its
# UHCI companions share one slot, as libvirt places them: EHCI at function 7,
# UHCI1-3 at functions 0-2 with multifunction on the first.
USB2_FUNCTIONS = {"ich9-ehci1": 7, "ich9-uhci1": 0, "ich9-uhci2": 1, "ich9-uhci3": 2}


def _assign_usb2_sets(d: Any, used: set[tuple[int, int]], devices: list[Any]) -> None:
    """Give the ICH9 USB2 controllers of each index their shared slot, before the
    general assignment reaches them (only when none of a set has an address)."""
    sets: dict[int, list[Controller]] = {}
    for ctrl in d.devices.controllers:
        if ctrl.type == "usb" and ctrl.model in USB2_FUNCTIONS:
            sets.setdefault(ctrl.index, []).append(ctrl)
    for ctrls in sets.values():
        if any(c.address is not None for c in ctrls) or not any(c in devices for c in ctrls):
            continue
        slot = next_free(d, used).slot
        for ctrl in ctrls:
            function = USB2_FUNCTIONS[ctrl.model or ""]
            ctrl.address = PCIAddress(slot=slot, function=function,
                                      multifunction="on" if function == 0 else None)
            used.add((slot, function))


# QEMU models that are PCI Express endpoints (placed on a root port of their own on q35)
_PCIE_NICS = (None, "virtio", "e1000e")
_PCIE_CONTROLLERS = {("usb", "qemu-xhci"), ("usb", "nec-xhci"), ("scsi", "virtio-scsi"), ("scsi", None),
                     ("virtio-serial", None)}
Q35_SATA = PCIAddress(slot=0x1F, function=2)
ROOT_PORT_FUNCTIONS = 8


def _pcie_capable(dev: Any) -> bool:
    kind = type(dev).__name__
    if kind == "Interface":
        return dev.model in _PCIE_NICS
    if kind == "Controller":
        return (dev.type, dev.model) in _PCIE_CONTROLLERS
    if kind == "Video":
        return dev.type == "virtio"
    return kind in ("Disk", "Memballoon", "Input")     # virtio disks, balloon and inputs


def _assign_q35(d: Any) -> None:
    devs = d.devices
    used = {(0, 0)} | {(0x1F, f) for f in range(8)}     # the host bridge; the ICH9's own slot
    for dev in (*pci_devices(d), *devs.controllers):
        addr = getattr(dev, "address", None)
        if isinstance(addr, PCIAddress) and addr.bus == 0:
            used.add((addr.slot, addr.function))
    sata = next((c for c in devs.controllers if c.type == "sata" and c.index == 0), None)
    if sata is not None and sata.address is None:
        sata.address = Q35_SATA
    videos = [v for v in devs.videos if v.type not in ("none", "ramfb")]
    if videos and videos[0].address is None and _slot_free(used, 1):
        videos[0].address = PCIAddress(slot=1)
        used.add((1, 0))
    ports = [c for c in devs.controllers if c.type == "pci" and c.model == "pcie-root-port"]
    taken = {dev.address.bus for dev in pci_devices(d) if isinstance(getattr(dev, "address", None), PCIAddress)}
    added = 0
    for dev in pci_devices(d):
        if dev.address is not None or (dev is sata) or not _pcie_capable(dev) or \
                (videos and dev is videos[0]):
            continue
        port = next((p for p in ports if p.index not in taken), None)
        if port is None:
            port = _new_root_port(devs)
            ports.append(port)
            added += 1
        dev.address = PCIAddress(bus=port.index, slot=0)
        taken.add(port.index)
    if added and all(p.index in taken for p in ports):
        ports.append(_new_root_port(devs))     # a free one, for hot-plug
    _place_root_ports([p for p in ports if p.address is None], used)


def _new_root_port(devs: Any) -> Controller:
    index = max((c.index for c in devs.controllers if c.type == "pci"), default=0) + 1
    port = Controller("pci", index, "pcie-root-port", model_name="pcie-root-port", target_chassis=index)
    # after the last PCI controller, as libvirt inserts controllers of one type together
    last = max((i for i, c in enumerate(devs.controllers) if c.type == "pci"), default=len(devs.controllers) - 1)
    devs.controllers.insert(last + 1, port)
    return port


def _place_root_ports(ports: list[Controller], used: set[tuple[int, int]]) -> None:
    """Root ports on the root bus, eight functions a slot from the first free slot,
    their port number (slot << 3) + function, as libvirt numbers them."""
    slot = 1
    while ports:
        while not _slot_free(used, slot):
            slot += 1
            if slot > MAX_SLOT:
                raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.DOMAIN, "No more available PCI slots")
        group, ports = ports[:ROOT_PORT_FUNCTIONS], ports[ROOT_PORT_FUNCTIONS:]
        for function, port in enumerate(group):
            port.address = PCIAddress(slot=slot, function=function,
                                      multifunction="on" if function == 0 and len(group) > 1 else None)
            port.target_port = port.target_port if port.target_port is not None else (slot << 3) + function
            used.add((slot, function))
