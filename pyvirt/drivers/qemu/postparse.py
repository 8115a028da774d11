"""What the QEMU driver adds to a definition, as libvirt's qemu post-parse does.

* the controllers the disks and USB devices need (a virtio-scsi controller
  for SCSI disks, an AHCI one for SATA disks, the PIIX3 UHCI for USB),
  written into the definition instead of being implied by the command line;
* a virtio memory balloon when none is given (``<memballoon model='none'/>``
  opts out), on new definitions only: a saved or migrating guest keeps the
  devices its QEMU was started with;
* the serial ports' target type and model (``isa-serial``), as libvirt's
  qemu post-parse writes them;
* the ``<console>`` a definition with only a ``<serial>`` implies: libvirt's
  console compatibility shows the first serial port again as console 0
  (``<target type='serial'/>``, the same source and alias);
* PCI addresses for every PCI device (:mod:`pyvirt.conf.pciaddr`).
"""

from __future__ import annotations

from ...conf import DomainDef
from ...conf import pciaddr
from ...conf.controllers import Controller
from ...conf.devices import Console, Memballoon

# disk bus -> the controller (type, model) libvirt's qemu driver would add for it
_IMPLICIT = {"scsi": ("scsi", "virtio-scsi"), "sata": ("sata", None), "usb": ("usb", "piix3-uhci")}


def add_implicit_controllers(d: DomainDef) -> None:
    devs = d.devices
    wanted = {disk.target_bus for disk in devs.disks}
    if any(dev.bus == "usb" for dev in devs.inputs):
        wanted.add("usb")
    for bus in sorted(wanted):
        if bus not in _IMPLICIT:
            continue
        ctype, model = _IMPLICIT[bus]
        if not any(c.type == ctype and c.index == 0 for c in devs.controllers):
            devs.controllers.append(Controller(ctype, 0, model))


# serial target types whose port is not a serial console (s390's SCLP has its own console types)
_NO_SERIAL_CONSOLE = ("sclp-serial", "sclplm-serial")


def fill_serial_targets(d: DomainDef) -> None:
    """An x86 serial port is an ISA one unless told otherwise; libvirt writes that down (type and model)."""
    for serial in d.devices.serials:
        if serial.target_type is None:
            serial.target_type = "isa-serial"
        if serial.target_type == "isa-serial" and serial.target_model is None:
            serial.target_model = "isa-serial"


def add_serial_console(d: DomainDef) -> None:
    """The stub console for serial port 0 (virDomainDefAddConsoleCompat); no QEMU device of its own."""
    devs = d.devices
    if devs.consoles or not devs.serials or devs.serials[0].target_type in _NO_SERIAL_CONSOLE:
        return
    serial = devs.serials[0]
    devs.consoles.append(Console(type=serial.type, path=serial.path, mode=serial.mode, alias=serial.alias,
                                 target_type="serial", target_port=serial.target_port))


def complete(d: DomainDef, *, new_definition: bool) -> None:
    """Fill in ``d`` in place (see the module docstring)."""
    add_implicit_controllers(d)
    fill_serial_targets(d)
    add_serial_console(d)
    if new_definition and d.devices.memballoon is None:
        d.devices.memballoon = Memballoon("virtio")
    pciaddr.assign(d)
