"""One device's XML (virsh attach-device FILE) and the edits of a definition.

:func:`parse_device` reads a ``<disk>``, ``<interface>`` or ``<controller>``
element as libvirt's virDomainDeviceDefParse does; the other device kinds
libvirt knows are recognised by name and refused by the caller with
libvirt's "attach of device 'X' is not supported".  :func:`add`,
:func:`find` and :func:`remove` are the persistent-definition edits
(libvirt's qemuDomain{Attach,Detach,Update}DeviceConfig), also used on the
live definition once QEMU has the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ErrorDomain, ErrorNumber, error
from .address import PCIAddress
from .controllers import Controller
from .devices import Disk, Interface
from .xmlutil import parse_document

# libvirt's virDomainDeviceType names (the element each is written as).
DEVICE_ELEMENTS = ("disk", "lease", "filesystem", "interface", "input", "sound", "video", "hostdev",
                   "watchdog", "controller", "graphics", "hub", "redirdev", "smartcard", "serial",
                   "parallel", "channel", "console", "memballoon", "nvram", "rng", "shmem", "tpm",
                   "panic", "memory", "iommu", "vsock", "audio", "crypto")
MODELLED = {"disk": Disk, "interface": Interface, "controller": Controller}


@dataclass
class DeviceDef:
    """A parsed device: its libvirt kind (``disk``, ``interface``, ...) and, if pyvirt models it, the object."""

    kind: str
    dev: Any = None


def parse_device(xml: str, *, validate: bool = True) -> DeviceDef:
    """One device's XML; ``validate``: libvirt's checks on it (skipped for a detach)."""
    root = parse_document(xml, None, "(device_definition)")
    kind = root.tag if isinstance(root.tag, str) else ""
    if kind not in DEVICE_ELEMENTS:
        raise error(ErrorNumber.XML_ERROR, ErrorDomain.DOMAIN, f"unknown device type '{kind}'")
    cls = MODELLED.get(kind)
    if cls is None:
        return DeviceDef(kind)
    # a controller without an index is numbered against the domain it joins (see add)
    dev = cls.from_xml(root)
    if validate and isinstance(dev, Disk):
        dev.validate_source(root)
    return DeviceDef(kind, dev)


def _invalid(detail: str) -> Exception:
    return error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, detail)


def _missing(detail: str) -> Exception:
    return error(ErrorNumber.DEVICE_MISSING, ErrorDomain.DOMAIN, detail)


def check_addable(d: Any, dev: Any) -> None:
    """Refuse a device that clashes with one ``d`` has (libvirt's duplicate checks)."""
    devs = d.devices
    if isinstance(dev, Disk):
        if any(disk.target_dev == dev.target_dev for disk in devs.disks):
            raise _invalid(f"target {dev.target_dev} already exists")
    elif isinstance(dev, Interface):
        if any(nic.mac == dev.mac for nic in devs.interfaces):
            raise _invalid(f"mac {dev.mac} already exists")
    elif isinstance(dev, Controller):
        if dev.index >= 0 and any(c.type == dev.type and c.index == dev.index for c in devs.controllers):
            raise _invalid(f"controller index='{dev.index}' already exists")
    if isinstance(getattr(dev, "address", None), PCIAddress):
        taken = [other for other in _with_addresses(d) if other.address == dev.address]
        if taken:
            raise _invalid(f"PCI address {dev.address} is in use")


def _with_addresses(d: Any) -> list[Any]:
    devs = d.devices
    return [x for x in (*devs.disks, *devs.controllers, *devs.interfaces, *devs.videos,
                        *([devs.memballoon] if devs.memballoon else []))
            if getattr(x, "address", None) is not None]


def add(d: Any, dev: Any) -> None:
    """Put ``dev`` into ``d`` where libvirt would (controllers after their kind, by index)."""
    check_addable(d, dev)
    devs = d.devices
    if isinstance(dev, Disk):
        devs.disks.append(dev)
    elif isinstance(dev, Interface):
        devs.interfaces.append(dev)
    elif isinstance(dev, Controller):
        if dev.index < 0:
            used = {c.index for c in devs.controllers if c.type == dev.type}
            dev.index = next(i for i in range(len(used) + 1) if i not in used)
        same = [n for n, c in enumerate(devs.controllers) if c.type == dev.type and c.index < dev.index]
        devs.controllers.insert(same[-1] + 1 if same else len(devs.controllers), dev)


def find(d: Any, dev: Any) -> Any:
    """The device of ``d`` that ``dev`` (as given to a detach or update) names."""
    devs = d.devices
    if isinstance(dev, Disk):
        found = next((disk for disk in devs.disks if disk.target_dev == dev.target_dev), None)
        if found is None:
            raise _missing(f"no target device {dev.target_dev}")
        return found
    if isinstance(dev, Interface):
        matches = [nic for nic in devs.interfaces if nic.mac == dev.mac]
        if isinstance(dev.address, PCIAddress):
            matches = [nic for nic in matches if nic.address == dev.address]
        if not matches:
            raise _missing(f"no device matching MAC address {dev.mac} found")
        if len(matches) > 1:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.DOMAIN,
                        f"multiple devices matching MAC address {dev.mac} found")
        return matches[0]
    if isinstance(dev, Controller):
        found = next((c for c in devs.controllers
                      if c.type == dev.type and (dev.index < 0 or c.index == dev.index)), None)
        if found is None:
            raise _missing("device not present in domain configuration")
        return found
    raise _missing("device not present in domain configuration")


def remove(d: Any, dev: Any) -> None:
    """Take ``dev`` (an object of ``d``, from :func:`find`) out of ``d``."""
    for group in (d.devices.disks, d.devices.interfaces, d.devices.controllers):
        for n, item in enumerate(group):
            if item is dev:
                del group[n]
                return


def controller_in_use(d: Any, ctrl: Controller) -> bool:
    """A disk still sits on ``ctrl`` (pyvirt puts SCSI, SATA and USB disks on index 0)."""
    if ctrl.index != 0:
        return False
    return any(disk.target_bus == ctrl.type for disk in d.devices.disks)
