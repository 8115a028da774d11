"""The test host's device calls: attach, detach and update of devices, the balloon's
statistics period, send-key and the screenshot, in memory.

libvirt 9.0's own test driver has no attach/detach/update calls (they answer
"not supported"); pyvirt's test host applies them to the live and/or
persistent definition with libvirt's flag rules (virDomainObjUpdate-
ModificationImpact) and the QEMU driver's checks and messages, so a tool's
hot-plug code can be tested without a hypervisor.  Nothing is plugged into
anything: a live change is done the moment it is asked for.  The live
devices carry no aliases (libvirt's test driver assigns none), so
DEVICE_ADDED/DEVICE_REMOVED name only devices given one (``ua-...``).

setMemoryStatsPeriod, sendKey and screenshot are libvirt's test driver's own
calls, with its checks and errors.
"""

from __future__ import annotations

import os
from typing import Any

from ...conf import devicexml
from ...conf.controllers import Controller
from ...conf.devices import Disk, Interface
from ...driver import DomainEvent, StreamSink
from ...enums import EventID
from ...enums_more import DeviceModifyFlags, DomainAffect, KeycodeSet
from ...errors import ErrorDomain, ErrorLevel, ErrorNumber, check_flags, error, libvirtError
from ...keycodes import SEND_KEY_MAX_KEYS, to_qnum
from ...refs import DomainRef
from ..domainlist import DomainObj
from . import screenimage

_T = ErrorDomain.TEST
_AFFECT = int(DomainAffect.LIVE | DomainAffect.CONFIG)
_MODELLED = {"disk", "interface", "controller"}
# virKeycodeSetTypeToString: the codeset's name in libvirt's messages
_CODESET_NAMES = {KeycodeSet.OSX: "os_x"}


def _invalid(detail: str, domain: ErrorDomain = ErrorDomain.DOMAIN) -> libvirtError:
    return error(ErrorNumber.OPERATION_INVALID, domain, detail)


def affected(obj: DomainObj, flags: int) -> tuple[bool, bool]:
    """(live, config) for ``flags``, as libvirt's virDomainObjUpdateModificationImpact decides."""
    live, config = bool(flags & DomainAffect.LIVE), bool(flags & DomainAffect.CONFIG)
    if not live and not config:
        live, config = obj.active, not obj.active
    if live and not obj.active:
        raise _invalid("domain is not running")
    if config and not obj.persistent:
        raise _invalid("transient domains do not have any persistent config")
    return live, config


def _invalid_arg(detail: str, function: str, arg: str) -> libvirtError:
    """libvirt's virReportInvalidArg: its text as is, with no "invalid argument" prefix."""
    return libvirtError(detail, ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, ErrorLevel.ERROR,
                        function, arg, None, 0, 0)


def one_definition(obj: DomainObj, flags: int) -> Any:
    """The one definition ``flags`` names (libvirt's virDomainObjGetOneDef)."""
    if flags & DomainAffect.LIVE and flags & DomainAffect.CONFIG:
        raise _invalid_arg("Flags 'VIR_DOMAIN_AFFECT_LIVE' and 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive",
                           "virDomainObjGetOneDefState", "flags")
    live, _config = affected(obj, flags)
    return obj.live if live else obj.definition


def _parse(xml: str, action: str, where: str) -> Any:
    """One device's XML; a kind pyvirt does not model is refused as libvirt refuses one its driver lacks."""
    parsed = devicexml.parse_device(xml, validate=action != "detach")
    if parsed.kind not in _MODELLED:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, _T,
                    f"{where} {action} of device '{parsed.kind}' is not supported")
    return parsed.dev


def _edit(d: Any, dev: Any, action: str, live: bool) -> Any:
    """Apply one attach/detach/update to definition ``d``; return the device affected."""
    if action == "attach":
        devicexml.add(d, dev)
        return dev
    if action == "detach":
        if live and isinstance(dev, Disk) and not any(x.target_dev == dev.target_dev for x in d.devices.disks):
            raise error(ErrorNumber.DEVICE_MISSING, _T, f"disk {dev.target_dev} not found")   # the live wording
        target = devicexml.find(d, dev)
        if live and isinstance(target, Controller) and devicexml.controller_in_use(d, target):
            raise error(ErrorNumber.OPERATION_FAILED, _T, "device cannot be detached: device is busy")
        devicexml.remove(d, target)
        return target
    return _update(d, dev, live)


def _update(d: Any, dev: Any, live: bool) -> Any:
    """libvirt's update: a disk by its target, a NIC by its MAC.  The persistent definition
    takes the new device whole; a live one changes only what a running guest can change."""
    if isinstance(dev, Disk):
        old = next((x for x in d.devices.disks if x.target_dev == dev.target_dev), None)
        if old is None:
            if live:
                raise error(ErrorNumber.INTERNAL_ERROR, _T, f"disk '{dev.target_dev}' not found")
            raise error(ErrorNumber.INVALID_ARG, _T, f"target {dev.target_dev} doesn't exist.")
        if live:
            return _change_medium(old, dev)
        group = d.devices.disks
    elif isinstance(dev, Interface):
        old = devicexml.find(d, dev)
        if live:
            _check_nic_change(old, dev)
        group = d.devices.interfaces
    else:
        where = "live" if live else "persistent"
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, _T, f"{where} update of device 'controller' is not supported")
    if getattr(dev, "address", None) is None:
        dev.address = old.address
    if dev.alias is None:
        dev.alias = old.alias
    group[group.index(old)] = dev
    return dev


def _change_medium(old: Disk, new: Disk) -> Disk:
    """A live disk update: a CD-ROM's or floppy's medium changes (or is ejected), nothing else."""
    if (new.source, new.type) == (old.source, old.type):
        return old           # nothing a running guest could see changed: accepted as is
    if old.device not in ("cdrom", "floppy"):
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, _T, "disk source can be changed only in removable media")
    old.source, old.type = new.source, new.type
    return old


def _check_nic_change(old: Interface, new: Interface) -> None:
    """What libvirt's live NIC update refuses to change (qemuDomainChangeNet's checks)."""
    if new.target_dev is None:
        new.target_dev = old.target_dev
    if (new.model or None) != (old.model or None):
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, _T,
                    f"cannot modify network device model from {old.model} to {new.model}")
    if new.target_dev != old.target_dev:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, _T, "cannot modify network device tap name")
    if new.address is not None and new.address != old.address:
        raise error(ErrorNumber.OPERATION_UNSUPPORTED, _T, "cannot modify network device guest PCI address")


def _by_alias(d: Any, alias: str) -> Any:
    devs = d.devices
    for dev in (*devs.disks, *devs.interfaces, *devs.controllers):
        if getattr(dev, "alias", None) == alias:
            return dev
    raise error(ErrorNumber.DEVICE_MISSING, ErrorDomain.DOMAIN, f"no device found with alias {alias}")


class DeviceAPI:
    """Mixed into TestConnection (which supplies _obj, _active, host)."""

    host: Any
    _obj: Any
    _active: Any

    # -- attach, detach, update ---------------------------------------------------------------
    async def domain_attach_device(self, dom: DomainRef, xml: str) -> None:
        await self._modify_device(dom, xml, int(DomainAffect.LIVE), "attach", "testDomainAttachDeviceFlags")

    async def domain_attach_device_flags(self, dom: DomainRef, xml: str, flags: int) -> None:
        await self._modify_device(dom, xml, flags, "attach", "testDomainAttachDeviceFlags")

    async def domain_detach_device(self, dom: DomainRef, xml: str) -> None:
        await self._modify_device(dom, xml, int(DomainAffect.LIVE), "detach", "testDomainDetachDeviceFlags")

    async def domain_detach_device_flags(self, dom: DomainRef, xml: str, flags: int) -> None:
        await self._modify_device(dom, xml, flags, "detach", "testDomainDetachDeviceFlags")

    async def domain_update_device_flags(self, dom: DomainRef, xml: str, flags: int) -> None:
        await self._modify_device(dom, xml, flags, "update", "testDomainUpdateDeviceFlags")

    async def _modify_device(self, dom: DomainRef, xml: str, flags: int, action: str, function: str) -> None:
        allowed = _AFFECT | (int(DeviceModifyFlags.FORCE) if action == "update" else 0)
        check_flags(flags, allowed, function, _T)
        obj = self._obj(dom)
        live, config = affected(obj, flags)
        # libvirt's order: the persistent change on a copy, then the live one, then the copy kept,
        # so a refused live change leaves the persistent definition as it was
        new_def = None
        if config:
            new_def = obj.definition.copy()
            _edit(new_def, _parse(xml, action, "persistent"), action, live=False)
        if live:
            changed = _edit(obj.live, _parse(xml, action, "live"), action, live=True)
            self._device_event(obj, action, changed)
        if new_def is not None:
            obj.definition = new_def

    async def domain_detach_device_alias(self, dom: DomainRef, alias: str, flags: int) -> None:
        check_flags(flags, _AFFECT, "testDomainDetachDeviceAlias", _T)
        obj = self._obj(dom)
        live, config = affected(obj, flags)
        new_def = None
        if config:
            new_def = obj.definition.copy()
            devicexml.remove(new_def, _by_alias(new_def, alias))
        if live:
            dev = _by_alias(obj.live, alias)
            devicexml.remove(obj.live, dev)
            self._device_event(obj, "detach", dev)
        if new_def is not None:
            obj.definition = new_def

    def _device_event(self, obj: DomainObj, action: str, dev: Any) -> None:
        alias = getattr(dev, "alias", None)
        if alias and action != "update":
            event_id = EventID.DEVICE_ADDED if action == "attach" else EventID.DEVICE_REMOVED
            self.host.events.emit(DomainEvent(event_id, obj.ref(), (alias,)))

    # -- the balloon's statistics period (libvirt's testDomainSetMemoryStatsPeriod) -----------------
    async def domain_set_memory_stats_period(self, dom: DomainRef, period: int, flags: int) -> None:
        check_flags(flags, _AFFECT, "testDomainSetMemoryStatsPeriod", _T)
        if period < 0:      # libvirt's public entry point refuses it before any driver
            raise libvirtError("period in virDomainSetMemoryStatsPeriod must be zero or greater",
                               ErrorNumber.INVALID_ARG, ErrorDomain.DOMAIN, ErrorLevel.ERROR,
                               "virDomainSetMemoryStatsPeriod", "period", None, 0, 0)
        d = one_definition(self._obj(dom), flags)
        balloon = d.devices.memballoon
        if balloon is None or balloon.model == "none":
            raise error(ErrorNumber.INTERNAL_ERROR, _T,
                        "No memory balloon device configured, can not set the collection period")
        balloon.period = period or None

    # -- keyboard and screen -----------------------------------------------------------------------
    async def domain_send_key(self, dom: DomainRef, codeset: int, holdtime: int, keycodes: list[int],
                              flags: int) -> None:
        _check_send_key_args(codeset, keycodes)
        check_flags(flags, 0, "testDomainSendKey", _T)
        self._active(dom)
        for code in keycodes:
            # libvirt's test driver asks only whether the code exists in its own codeset
            if to_qnum(codeset, code) is None:
                cs = KeycodeSet(codeset)
                name = _CODESET_NAMES.get(cs, cs.name.lower())
                raise error(ErrorNumber.INTERNAL_ERROR, _T, f"invalid keycode {code} of {name} codeset")

    async def domain_screenshot(self, dom: DomainRef, screen: int, flags: int) -> tuple[str, StreamSink]:
        # As libvirt's test driver: neither the domain's state nor the screen number matter,
        # every call streams the host's one fixed picture
        check_flags(flags, 0, "testDomainScreenshot", _T)
        image = os.memfd_create("test.screenshot", os.MFD_CLOEXEC)
        try:
            os.write(image, screenimage.png())
            os.lseek(image, 0, os.SEEK_SET)
        except BaseException:
            os.close(image)
            raise
        return "image/png", StreamSink(image, lambda err: None)


def _check_send_key_args(codeset: int, keycodes: list[int]) -> None:
    """virDomainSendKey's own checks, made before any driver is asked."""
    if not keycodes:
        raise libvirtError("nkeycodes in virDomainSendKey must be greater than zero", ErrorNumber.INVALID_ARG,
                           ErrorDomain.DOMAIN, ErrorLevel.ERROR, "virDomainSendKey", "nkeycodes", None, 0, 0)
    if codeset not in set(KeycodeSet):
        raise _invalid_arg(f"Unsupported codeset '{codeset}'", "virDomainSendKey", "codeset")
    if len(keycodes) > SEND_KEY_MAX_KEYS:
        raise _invalid_arg(f"nkeycodes must be <= {SEND_KEY_MAX_KEYS}", "virDomainSendKey", "nkeycodes")
