"""What the QEMU driver adds to a definition, as libvirt 9.0's qemu post-parse does.

The same XML must give the same guest as libvirtd gives it, or a guest could
not migrate between the two (each QEMU's migration stream must load into the
other's).  On a *new* definition (define, create, and the XML an incoming
migration or a restored image carries, which libvirt parses like a new one):

* the emulator (the driver's), when none is named;
* the machine type's versioned name (``pc`` → ``pc-i440fx-7.2``, from the
  emulator's own list: :mod:`.machines`);
* the default CPU (``<cpu mode='custom' match='exact' check='none'>`` with the
  machine's default model, ``qemu64``), as qemuDomainDefSetDefaultCPU;
* the default devices of qemuDomainDefAddDefaultDevices: a PS/2 mouse and
  keyboard (x86), the USB controller (``piix3-uhci`` on i440FX, ``qemu-xhci``
  on Q35), the PCI root (``pci-root`` / ``pcie-root``), Q35's built-in SATA
  controller and a virtio memory balloon (``<memballoon model='none'/>``
  opts out);
* a video card when there are graphics but none is given (``cirrus``, the
  first of libvirt's choices this QEMU has) and the video defaults (vram,
  heads);
* USB port addresses for USB devices (``<address type='usb' bus='0' port='1'/>``).

A definition that is not new (a fresh boot of a stored definition, the
status XML of a running guest, a hot-plug) gets none of that: it keeps the
devices it was defined with, so a guest pyvirt already runs never gains one.

On every definition:

* the controllers the disks need (SCSI, IDE, SATA, in libvirt's order), the
  virtio-serial controller of virtio channels and consoles, and a USB
  controller for USB devices;
* virtio-serial port addresses for the channels;
* the serial ports' target type and model (``isa-serial``);
* the ``<console>`` a definition with only a ``<serial>`` implies (libvirt's
  console compatibility: serial port 0 shown again as console 0);
* PCI addresses for every PCI device (:mod:`pyvirt.conf.pciaddr`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...conf import DomainDef
from ...conf import pciaddr
from ...conf.address import OtherAddress
from ...conf.controllers import Controller
from ...conf.devices import Console, Input, Memballoon, Video
from ...conf.domain import CPUDef
from ...errors import ErrorDomain, ErrorNumber, error
from . import machines
from .config import default_emulator

# disk bus -> the controller (type, model) libvirt's qemu driver would add for it,
# in the order of virDomainDefAddImplicitControllers
_IMPLICIT = {"scsi": ("scsi", "virtio-scsi"), "ide": ("ide", None), "sata": ("sata", None),
             "virtio-serial": ("virtio-serial", None), "usb": ("usb", "piix3-uhci")}
X86_ARCHES = ("x86_64", "i686", None)
# the machine's default CPU model (QEMU's default-cpu-type for pc and q35 machines)
DEFAULT_CPU_MODEL = "qemu64"
# video model -> libvirt's default vram (KiB) (virDomainVideoDefaultRAM)
VIDEO_DEFAULT_VRAM = {"cirrus": 16384, "vga": 16384, "vmvga": 16384, "qxl": 65536}
QXL_DEFAULT_RAM = 65536
QXL_DEFAULT_VGAMEM = 16384     # QEMU_QXL_VGAMEM_DEFAULT


def add_implicit_controllers(d: DomainDef) -> None:
    devs = d.devices
    wanted = {disk.target_bus for disk in devs.disks}
    if any(dev.bus == "usb" for dev in devs.inputs):
        wanted.add("usb")
    if any(c.target_type == "virtio" for c in devs.channels) or \
            any(c.target_type == "virtio" for c in devs.consoles):
        wanted.add("virtio-serial")      # virDomainDefMaybeAddVirtioSerialController
    for bus, (ctype, model) in _IMPLICIT.items():
        if bus not in wanted:
            continue
        if bus == "ide" and not pciaddr.is_i440fx(d):
            continue      # Q35 has no IDE; its SATA disks are on the built-in AHCI
        if not any(c.type == ctype and c.index == 0 for c in devs.controllers):
            devs.controllers.append(Controller(ctype, 0, model))


# serial target types whose port 0 libvirt shows again as console 0 (virDomainDefAddConsoleCompat;
# PCI and USB serial ports are not consoles; s390's SCLP has its own console types)
_SERIAL_CONSOLE_TARGETS = (None, "isa-serial", "spapr-vio-serial", "system-serial")


def fill_serial_targets(d: DomainDef) -> None:
    """An x86 serial port is an ISA one unless told otherwise; libvirt writes that down (type and model)."""
    for serial in d.devices.serials:
        if serial.target_type is None:
            serial.target_type = "isa-serial"
        if serial.target_type == "isa-serial" and serial.target_model is None:
            serial.target_model = "isa-serial"


def add_serial_console(d: DomainDef) -> None:
    """The stub console for serial port 0 (virDomainDefAddConsoleCompat), put first when the
    first console is another kind (a virtio one); no QEMU device of its own."""
    devs = d.devices
    if not devs.serials or devs.serials[0].target_type not in _SERIAL_CONSOLE_TARGETS:
        return
    if devs.consoles and devs.consoles[0].target_type in ("serial", "none"):
        return
    serial = devs.serials[0]
    devs.consoles.insert(0, Console(type=serial.type, path=serial.path, mode=serial.mode, alias=serial.alias,
                                    target_type="serial", target_port=serial.target_port))


def expand_machine(d: DomainDef, table: Mapping[str, str]) -> None:
    d.os.machine = machines.canonical(d.os.machine, dict(table)) or d.os.machine or "pc"


def set_default_cpu(d: DomainDef) -> None:
    """qemuDomainDefSetDefaultCPU: no CPU model named → the machine's default, checks off."""
    if d.os.arch not in X86_ARCHES:
        return
    if d.cpu is not None and (d.cpu.mode != "custom" or d.cpu.model):
        return
    cpu = d.cpu or CPUDef()
    cpu.mode, cpu.match, cpu.check = "custom", "exact", "none"
    cpu.model, cpu.fallback = DEFAULT_CPU_MODEL, "forbid"
    d.cpu = cpu


def _has_input(d: DomainDef, itype: str, bus: str) -> bool:
    return any(i.type == itype and i.bus == bus for i in d.devices.inputs)


def add_default_devices(d: DomainDef) -> None:
    """qemuDomainDefAddDefaultDevices for x86 machines."""
    devs = d.devices
    if d.os.arch not in X86_ARCHES:
        return
    for itype in ("mouse", "keyboard"):      # qemuDomainDefAddImplicitInputDevice
        if not _has_input(d, itype, "ps2"):
            devs.inputs.append(Input(itype, "ps2"))
    q35 = pciaddr.is_q35(d)
    if not any(c.type == "usb" and c.index == 0 for c in devs.controllers) and d.os.machine != "isapc":
        devs.controllers.append(Controller("usb", 0, "qemu-xhci" if q35 else "piix3-uhci"))
    if q35 and not any(c.type == "sata" and c.index == 0 for c in devs.controllers):
        devs.controllers.append(Controller("sata", 0, None))
    if (q35 or pciaddr.is_i440fx(d)) and not any(c.type == "pci" and c.index == 0 for c in devs.controllers):
        devs.controllers.append(Controller("pci", 0, "pcie-root" if q35 else "pci-root"))
    if devs.memballoon is None:
        devs.memballoon = Memballoon("virtio")


def add_video_defaults(d: DomainDef) -> None:
    """virDomainDefAddImplicitVideo and the video post-parse (model, vram, heads)."""
    devs = d.devices
    if devs.graphics and not devs.videos:
        devs.videos.append(Video(type="default", primary=True))
    for video in devs.videos:
        if video.type == "default":
            video.type = "cirrus"            # qemuDomainDefaultVideoDevice on x86
        if video.type == "qxl":
            video.ram = video.ram if video.ram is not None else QXL_DEFAULT_RAM
            if video.vgamem is None:
                video.vgamem = QXL_DEFAULT_VGAMEM
        if video.type in VIDEO_DEFAULT_VRAM and video.vram is None:
            video.vram = VIDEO_DEFAULT_VRAM[video.type]
        if video.type != "none" and video.heads is None:
            video.heads = 1


def assign_usb_addresses(d: DomainDef) -> None:
    """Ports on USB bus 0 for the USB devices without an address, from port 1 in
    device order, as libvirt's qemuDomainAssignUSBAddresses (the ports it took
    are the first free ones)."""
    devices = [disk for disk in d.devices.disks if disk.target_bus == "usb"] + \
              [i for i in d.devices.inputs if i.bus == "usb"]
    taken = {dict(dev.address.attrs).get("port") for dev in devices
             if isinstance(dev.address, OtherAddress) and dev.address.type == "usb"}
    port = 1
    for dev in devices:
        if dev.address is not None:
            continue
        while str(port) in taken:
            port += 1
        dev.address = OtherAddress("usb", (("bus", "0"), ("port", str(port))))
        taken.add(str(port))


def refuse_qemu_namespace(d: DomainDef) -> None:
    """libvirt's qemu namespace passes options, environment and capabilities to QEMU
    verbatim; pyvirt builds every option itself (no XML value may add one), so it
    refuses them, naming the element, rather than run a guest without them."""
    if d.qemu_namespace:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU,
                    f"the qemu namespace element <qemu:{d.qemu_namespace}> is not supported: pyvirt "
                    "passes no QEMU options, environment or capabilities of the domain XML's own")


def assign_channel_addresses(d: DomainDef) -> None:
    """virtio-serial ports for the channels without one, from port 1 on controller 0
    (port 0 is the console's), as libvirt's virDomainVirtioSerialAddrAutoAssign."""
    channels = [c for c in d.devices.channels if c.target_type == "virtio"]
    taken = {dict(c.address.attrs).get("port") for c in channels
             if isinstance(c.address, OtherAddress) and c.address.type == "virtio-serial"}
    port = 1
    for channel in channels:
        if channel.address is not None:
            continue
        while str(port) in taken:
            port += 1
        channel.address = OtherAddress("virtio-serial", (("controller", "0"), ("bus", "0"), ("port", str(port))))
        taken.add(str(port))


def refuse_unmodelled_devices(d: DomainDef) -> None:
    """A running guest's devices must all be there on arrival: one pyvirt has no model of
    (a sound card, an RNG...) would be missing from its QEMU, whose migration stream (or
    saved state) then cannot load.  Said before any QEMU starts, the source keeps running."""
    if d.devices.unmodelled:
        names = ", ".join(f"<{tag}>" for tag in d.devices.unmodelled)
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU,
                    f"the guest has devices pyvirt does not support ({names}): it cannot run here "
                    "with the hardware it has")


def complete(d: DomainDef, *, new_definition: bool, machine_aliases: Mapping[str, str] | None = None,
             emulator: str | None = None, incoming: bool = False) -> None:
    """Fill in ``d`` in place (see the module docstring).  ``machine_aliases``: the
    emulator's (:func:`.machines.aliases`), asked for when None; ``emulator``: the
    driver's, written into a new definition that names none (as libvirt does);
    ``incoming``: ``d`` describes a guest that already runs (a migration, a restore)."""
    refuse_qemu_namespace(d)
    if incoming:
        refuse_unmodelled_devices(d)
    if new_definition:
        d.devices.emulator = d.devices.emulator or emulator or default_emulator()
        table = machine_aliases if machine_aliases is not None else machines.aliases(d.devices.emulator)
        expand_machine(d, table)
        set_default_cpu(d)
        add_default_devices(d)
    add_implicit_controllers(d)
    fill_serial_targets(d)
    add_serial_console(d)
    assign_channel_addresses(d)
    if new_definition:
        add_video_defaults(d)
        assign_usb_addresses(d)
    pciaddr.assign(d)
