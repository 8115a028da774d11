"""The QEMU driver's procedures for devices and tuning (attach/detach/update devices, memory, vCPUs).

A mixin of :class:`.connection.QemuConnection`: methods check flags, find the
domain (``self._obj``/``self._active``), take the right job and call into the
driver, as the core methods there do.  Changes to the persistent definition
are made on a copy, applied to the running guest next (when asked for), and
the copy is saved only if that worked: libvirt's order.
"""

from __future__ import annotations

from typing import Any

from ...conf import devicexml
from ...enums import DeviceModifyFlags, DomainAffect, MemoryModFlags, VcpuFlags
from ...errors import ErrorDomain, ErrorLevel, ErrorNumber, check_flags, error, libvirtError
from ...refs import DomainRef
from . import hotplug, netlink, postparse, tuning
from .jobs import JobKind

_AFFECT = int(DomainAffect.LIVE | DomainAffect.CONFIG)
_SUPPORTED = {"disk", "interface", "controller"}


def _invalid(detail: str) -> Exception:
    return error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, detail)


def _nonzero_memory(memory: int, api: str) -> None:
    """libvirt's public memory setters refuse 0 before any driver sees it (virCheckNonZeroArg:
    its own text, no "invalid argument" prefix); QEMU's balloon would refuse it in its words."""
    if memory == 0:
        raise libvirtError(f"memory in {api} must not be zero", ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                           ErrorLevel.ERROR, api, "memory", None, 0, 0)


def affected(obj: Any, flags: int) -> tuple[bool, bool]:
    """(live, config) for ``flags``, as libvirt's virDomainObjUpdateModificationImpact decides."""
    live, config = bool(flags & DomainAffect.LIVE), bool(flags & DomainAffect.CONFIG)
    if not live and not config:
        live, config = obj.active, not obj.active
    if live and not obj.active:
        raise _invalid("domain is not running")
    if config and not obj.persistent:
        raise _invalid("transient domains do not have any persistent config")
    return live, config


def _parse(xml: str, action: str, where: str) -> Any:
    parsed = devicexml.parse_device(xml, validate=action != "detach")
    if parsed.kind not in _SUPPORTED:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                    f"{where} {action} of device '{parsed.kind}' is not supported")
    return parsed.dev


class DevicesAPI:
    driver: Any
    _obj: Any
    _save_definition: Any

    # -- attach, detach, update -----------------------------------------------------
    async def domain_attach_device(self, dom: DomainRef, xml: str) -> None:
        await self._modify_device(dom, xml, int(DomainAffect.LIVE), "attach", "qemuDomainAttachDeviceFlags")

    async def domain_attach_device_flags(self, dom: DomainRef, xml: str, flags: int) -> None:
        await self._modify_device(dom, xml, flags, "attach", "qemuDomainAttachDeviceFlags")

    async def domain_detach_device(self, dom: DomainRef, xml: str) -> None:
        await self._modify_device(dom, xml, int(DomainAffect.LIVE), "detach", "qemuDomainDetachDeviceFlags")

    async def domain_detach_device_flags(self, dom: DomainRef, xml: str, flags: int) -> None:
        await self._modify_device(dom, xml, flags, "detach", "qemuDomainDetachDeviceFlags")

    async def domain_update_device_flags(self, dom: DomainRef, xml: str, flags: int) -> None:
        await self._modify_device(dom, xml, flags, "update", "qemuDomainUpdateDeviceFlags")

    async def _modify_device(self, dom: DomainRef, xml: str, flags: int, action: str, function: str) -> None:
        allowed = _AFFECT | (int(DeviceModifyFlags.FORCE) if action == "update" else 0)
        check_flags(flags, allowed, function)
        obj = self._obj(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            live, config = affected(obj, flags)
            new_def = None
            if config:
                new_def = obj.definition.copy()
                _edit_config(new_def, _parse(xml, action, "persistent"), action)
            if live:
                dev = _parse(xml, action, "live")
                if action == "attach":
                    await hotplug.attach(self.driver, obj, dev)
                elif action == "detach":
                    await hotplug.detach(self.driver, obj, dev)
                else:
                    await _update_live(self.driver, obj, dev, bool(flags & DeviceModifyFlags.FORCE))
            if new_def is not None:
                self._save_definition(obj, new_def, (obj.definition, obj.persistent))

    async def domain_detach_device_alias(self, dom: DomainRef, alias: str, flags: int) -> None:
        """libvirt's detachDeviceAlias: the live removal is only requested (DEVICE_REMOVED tells its end)."""
        check_flags(flags, _AFFECT, "qemuDomainDetachDeviceAlias")
        obj = self._obj(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            live, config = affected(obj, flags)
            new_def = None
            if config:
                new_def = obj.definition.copy()
                devicexml.remove(new_def, _by_alias(new_def, alias, "persistent"))
            if live:
                await hotplug.detach(self.driver, obj, _by_alias(obj.live, alias, "live"), wait=False)
            if new_def is not None:
                self._save_definition(obj, new_def, (obj.definition, obj.persistent))

    # -- memory ---------------------------------------------------------------------
    async def domain_set_memory(self, dom: DomainRef, memory: int) -> None:
        _nonzero_memory(memory, "virDomainSetMemory")
        await self._set_memory(dom, memory, int(MemoryModFlags.LIVE))

    async def domain_set_max_memory(self, dom: DomainRef, memory: int) -> None:
        _nonzero_memory(memory, "virDomainSetMaxMemory")
        await self._set_memory(dom, memory, int(MemoryModFlags.MAXIMUM))

    async def domain_set_memory_flags(self, dom: DomainRef, memory: int, flags: int) -> None:
        _nonzero_memory(memory, "virDomainSetMemoryFlags")
        await self._set_memory(dom, memory, flags)

    async def _set_memory(self, dom: DomainRef, memory: int, flags: int) -> None:
        check_flags(flags, int(MemoryModFlags.LIVE | MemoryModFlags.CONFIG | MemoryModFlags.MAXIMUM),
                    "qemuDomainSetMemoryFlags")
        obj = self._obj(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            live, config = affected(obj, flags)
            new_def = obj.definition.copy() if config else None
            await tuning.set_memory(obj, new_def, memory, live=live,
                                    maximum=bool(flags & MemoryModFlags.MAXIMUM))
            if new_def is not None:
                self._save_definition(obj, new_def, (obj.definition, obj.persistent))

    # -- vCPUs ----------------------------------------------------------------------
    async def domain_set_vcpus(self, dom: DomainRef, nvcpus: int) -> None:
        await self.domain_set_vcpus_flags(dom, nvcpus, int(VcpuFlags.LIVE))

    async def domain_set_vcpus_flags(self, dom: DomainRef, nvcpus: int, flags: int) -> None:
        check_flags(flags, int(VcpuFlags.LIVE | VcpuFlags.CONFIG | VcpuFlags.MAXIMUM | VcpuFlags.GUEST
                               | VcpuFlags.HOTPLUGGABLE), "qemuDomainSetVcpusFlags")
        if nvcpus == 0:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN,
                        "nvcpus in virDomainSetVcpusFlags must not be zero")
        if flags & VcpuFlags.GUEST:
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU, "QEMU guest agent is not configured")
        obj = self._obj(dom)
        async with self.driver.job_guard(obj, JobKind.MODIFY):
            live, config = affected(obj, flags)
            new_def = obj.definition.copy() if config else None
            await tuning.set_vcpus(self.driver, obj, new_def, nvcpus, live=live,
                                   maximum=bool(flags & VcpuFlags.MAXIMUM))
            if new_def is not None:
                self._save_definition(obj, new_def, (obj.definition, obj.persistent))

    async def domain_get_vcpus_flags(self, dom: DomainRef, flags: int) -> int:
        check_flags(flags, int(VcpuFlags.LIVE | VcpuFlags.CONFIG | VcpuFlags.MAXIMUM | VcpuFlags.GUEST),
                    "qemuDomainGetVcpusFlags")
        obj = self._obj(dom)
        if flags & VcpuFlags.GUEST:
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.QEMU, "QEMU guest agent is not configured")
        live, _config = affected(obj, flags)
        d = obj.live if live and obj.live is not None else obj.definition
        return d.vcpus if flags & VcpuFlags.MAXIMUM else d.current_vcpus


def _edit_config(new_def: Any, dev: Any, action: str) -> None:
    """libvirt's qemuDomain{Attach,Detach,Update}DeviceConfig on a copy of the definition."""
    if action == "attach":
        devicexml.add(new_def, dev)
        postparse.complete(new_def, new_definition=False)    # its controller, its PCI slot
    elif action == "detach":
        devicexml.remove(new_def, devicexml.find(new_def, dev))
    else:
        old = _find_for_update(new_def, dev)
        if getattr(dev, "address", None) is None:
            dev.address = old.address
        group = new_def.devices.disks if old in new_def.devices.disks else new_def.devices.interfaces
        group[group.index(old)] = dev


def _by_alias(d: Any, alias: str, where: str) -> Any:
    """The device of ``d`` with ``alias`` (virDomainDefFindDevice), if it is one pyvirt can detach."""
    devs = d.devices
    kinds = (("disk", devs.disks), ("interface", devs.interfaces), ("controller", devs.controllers),
             ("serial", devs.serials), ("console", devs.consoles), ("video", devs.videos),
             ("input", devs.inputs), ("graphics", devs.graphics),
             ("memballoon", [devs.memballoon] if devs.memballoon is not None else []))
    for kind, group in kinds:
        for dev in group:
            if getattr(dev, "alias", None) == alias:
                if kind not in _SUPPORTED:
                    raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                                f"{where} detach of device '{kind}' is not supported")
                return dev
    raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.DOMAIN, f"no device found with alias {alias}")


def _find_for_update(d: Any, dev: Any) -> Any:
    from ...conf.devices import Disk, Interface
    if isinstance(dev, Disk):
        found = next((disk for disk in d.devices.disks if disk.target_dev == dev.target_dev), None)
        if found is None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, f"target {dev.target_dev} doesn't exist.")
        return found
    if isinstance(dev, Interface):
        return devicexml.find(d, dev)
    raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                "persistent update of device 'controller' is not supported")


async def _update_live(driver: Any, obj: Any, dev: Any, force: bool) -> None:
    from ...conf.devices import Disk, Interface
    if isinstance(dev, Interface):
        await netlink.update_live(obj, dev)
        return
    if not isinstance(dev, Disk):
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                    f"live update of device '{type(dev).__name__.lower()}' is not supported")
    await hotplug.change_media(driver, obj, dev, force)
