"""What libvirt's generic domain post-parse gives a definition's controller-based disks,
for the drivers that have no post-parse of their own (the test driver; the QEMU driver
has :mod:`pyvirt.drivers.qemu.postparse`).

* A drive address for each IDE, SCSI, SATA or floppy disk that names none
  (virDomainDiskDefAssignAddress), from the disk's index in its target name: IDE has
  two buses of two units per controller, a narrow SCSI bus seven units, SATA six
  units, a floppy controller two.
* The controllers those addresses need (virDomainDefAddImplicitControllers): every
  index from 0 to the highest a disk names, of each disk type, and the virtio-serial
  controller a virtio channel or console needs; each appended without a model.
"""

from __future__ import annotations

from ..errors import ErrorDomain, ErrorNumber, error
from .address import OtherAddress
from .controllers import Controller
from .devices import disk_index
from .domain import DomainDef

# disk bus -> (disks per controller, disks per bus); the unit is the index within the bus
_LAYOUT = {"ide": (4, 2), "scsi": (7, 7), "sata": (6, 6), "fdc": (2, 2)}
# the order virDomainDefAddImplicitControllers adds them in (controller type = disk bus)
_CONTROLLER_ORDER = ("scsi", "fdc", "ide", "sata")


def drive_address(controller: int, bus: int, unit: int) -> OtherAddress:
    return OtherAddress("drive", (("controller", str(controller)), ("bus", str(bus)), ("target", "0"),
                                  ("unit", str(unit))))


def assign_drive_addresses(d: DomainDef) -> None:
    for disk in d.devices.disks:
        if disk.address is not None:
            continue
        index = disk_index(disk.target_dev)
        if index < 0:
            raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN,
                        f"Unknown disk name '{disk.target_dev}' and no address specified")
        layout = _LAYOUT.get(disk.target_bus)
        if layout is None:
            continue       # not a controller's bus (virtio, USB, ...)
        per_controller, per_bus = layout
        within = index % per_controller
        disk.address = drive_address(index // per_controller, within // per_bus, within % per_bus)


def _controller_of(address: object) -> int | None:
    if not isinstance(address, OtherAddress) or address.type != "drive":
        return None
    value = dict(address.attrs).get("controller", "0")
    return int(value) if value.isdigit() else None


def _maybe_add(d: DomainDef, ctype: str, index: int) -> None:
    if not any(c.type == ctype and c.index == index for c in d.devices.controllers):
        d.devices.controllers.append(Controller(ctype, index))


def add_implicit_controllers(d: DomainDef) -> None:
    devs = d.devices
    for ctype in _CONTROLLER_ORDER:
        used = [_controller_of(disk.address) for disk in devs.disks if disk.target_bus == ctype]
        highest = max((i for i in used if i is not None), default=-1)
        for index in range(highest + 1):
            _maybe_add(d, ctype, index)
    if any(c.target_type == "virtio" for c in (*devs.channels, *devs.consoles)):
        _maybe_add(d, "virtio-serial", 0)


def complete(d: DomainDef) -> None:
    assign_drive_addresses(d)
    add_implicit_controllers(d)
