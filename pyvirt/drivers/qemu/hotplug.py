"""Devices added to and taken from a running QEMU (libvirt's qemu_hotplug).

Attach: the backend first (``blockdev-add`` of the storage and format
nodes, ``netdev_add``), then ``device_add`` at the PCI address the live
definition gets from :mod:`pyvirt.conf.pciaddr`; a failure removes what was
added.  A SCSI disk brings its virtio-scsi controller along when the guest
has none, as libvirt adds one.

Detach: ``device_del`` asks the guest to let go.  Whether and when it does
is the guest's business: PCI devices need its ACPI hot-plug support, SCSI
and USB devices go at once.  Like libvirt, the call waits up to
:data:`UNPLUG_TIMEOUT` for QEMU's ``DEVICE_DELETED``; if it comes, the
device leaves the live definition (and its backend is deleted) and
``DEVICE_REMOVED`` is emitted; if not, the call still succeeds ("detach
request sent") and the device stays in the live XML until the guest
releases it, whenever that is: :func:`on_device_deleted` then finishes the
removal under a job of its own.

Media change (CD-ROM, floppy): open the tray, remove the medium, delete its
nodes, add the new ones, insert, close the tray (libvirt's blockdev
sequence).
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ...conf import devicexml, pciaddr
from ...conf.address import PCIAddress
from ...conf.controllers import Controller, controller_alias
from ...conf.devices import Devices, Disk, Interface
from ...driver import DomainEvent
from ...enums import EventID
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from . import command, leases
from . import netsource, storage_source
from . import tap as tapmod
from .jobs import JobKind

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

log = logging.getLogger(__name__)

UNPLUG_TIMEOUT = 5.0      # s; libvirt's QEMU_UNPLUG_TIMEOUT on x86
TRAY_TIMEOUT = 5.0        # s; how long libvirt waits for a guest-locked tray to open
_NODE_RE = re.compile(r"libvirt-(\d+)-(?:storage|format)")
_LIVE_DISK_BUSES = ("virtio", "scsi", "usb")
_LIVE_CONTROLLERS = {("scsi", None), ("scsi", "virtio-scsi"), ("usb", "qemu-xhci"), ("usb", "nec-xhci")}
_LABELS = "seclabels"     # the driver's status-XML item of what the security manager labelled


@dataclass
class _Unplug:
    """A device_del QEMU has not confirmed yet: what to clean up once it does."""

    dev: Any
    nodes: list[str] = field(default_factory=list)     # block nodes, format first
    netdev: str | None = None
    released: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    waiting: bool = True        # the detach call still waits for it (else: a late release)


# Per domain: alias -> the unplug waiting for QEMU's DEVICE_DELETED.
_UNPLUGS: "weakref.WeakKeyDictionary[QemuDomainObj, dict[str, _Unplug]]" = weakref.WeakKeyDictionary()


# Per domain: alias -> a DEVICE_DELETED awaited for a device the definition does not list (vCPUs).
_EXPECTED: "weakref.WeakKeyDictionary[QemuDomainObj, dict[str, asyncio.Future]]" = weakref.WeakKeyDictionary()


def expect_deleted(obj: "QemuDomainObj", alias: str) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    _EXPECTED.setdefault(obj, {})[alias] = future
    return future


def stop_expecting(obj: "QemuDomainObj", alias: str) -> None:
    _EXPECTED.get(obj, {}).pop(alias, None)


def _failed(detail: str) -> libvirtError:
    return error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, detail)


def _unsupported(detail: str) -> libvirtError:
    return error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU, detail)


def _monitor(obj: "QemuDomainObj") -> Any:
    if obj.process is None or obj.live is None:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU, "domain is not running")
    return obj.process.monitor


def _emit(driver: "QemuDriver", obj: "QemuDomainObj", event_id: EventID, alias: str) -> None:
    driver.events.emit(DomainEvent(event_id, obj.ref(), (alias,)))


def _pending(obj: "QemuDomainObj") -> dict[str, _Unplug]:
    """The domain's unplugs still waited for; those of an earlier run of the guest are dropped."""
    pending = _UNPLUGS.setdefault(obj, {})
    devs = obj.live.devices if obj.live is not None else Devices()
    present = {id(dev) for dev in (*devs.disks, *devs.interfaces, *devs.controllers)}
    for alias in [a for a, u in pending.items() if id(u.dev) not in present]:
        del pending[alias]
    return pending


def pending_unplug(obj: "QemuDomainObj", alias: str | None) -> bool:
    return alias is not None and alias in _pending(obj)


# -- aliases and nodes -------------------------------------------------------------

def _taken_aliases(d: Any) -> set[str]:
    devs = d.devices
    return {dev.alias for dev in (*devs.disks, *devs.interfaces, *devs.controllers, *devs.serials,
                                  *devs.consoles, *devs.videos, *devs.inputs,
                                  *([devs.memballoon] if devs.memballoon else [])) if dev.alias}


def _disk_alias(d: Any, disk: Disk) -> str:
    taken = _taken_aliases(d)
    index = command._target_index(disk.target_dev)
    if disk.target_bus == "virtio":
        # libvirt names a virtio disk after its target's index (vdb: virtio-disk1)
        candidates = (f"virtio-disk{n}" for n in [index, *range(index + 1, index + 1000)])
    else:
        base = command.DISK_ALIAS_BY_BUS.get(disk.target_bus, lambda i: f"{disk.target_bus}-disk{i}")(index)
        candidates = (name for name in [base, *(f"{base}-{n}" for n in range(1, 1000))])
    return next(name for name in candidates if name not in taken)


def _net_alias(d: Any) -> str:
    taken = _taken_aliases(d)
    used = [int(a[3:]) for a in taken if a.startswith("net") and a[3:].isdigit()]
    return f"net{max(used, default=-1) + 1}"


async def _next_node_index(monitor: Any) -> int:
    nodes = await monitor.execute("query-named-block-nodes", {"flat": True})
    found = [int(m.group(1)) for n in nodes if (m := _NODE_RE.fullmatch(str(n.get("node-name", ""))))]
    return max(found, default=0) + 1


async def _disk_nodes(monitor: Any, alias: str) -> list[str]:
    """The format and storage nodes a disk's device uses now (format first)."""
    for blk in await monitor.execute("query-block"):
        qdev = str(blk.get("qdev", ""))
        if qdev == alias or qdev.startswith(f"/machine/peripheral/{alias}/"):
            node = (blk.get("inserted") or {}).get("node-name")
            if not node:
                return []
            storage = node[: -len("-format")] + "-storage" if node.endswith("-format") else None
            return [node, *([storage] if storage else [])]
    return []


async def _del_nodes(monitor: Any, nodes: list[str]) -> None:
    for node in nodes:
        try:
            await monitor.execute("blockdev-del", {"node-name": node})
        except libvirtError as exc:
            log.warning("cannot delete block node %s: %s", node, exc)


async def _add_nodes(monitor: Any, disk: Disk) -> list[str]:
    """blockdev-add the disk's nodes; the names added, format first (empty: no medium)."""
    blockdevs, _drive = command.disk_blockdevs(disk, await _next_node_index(monitor))
    added: list[str] = []
    try:
        for node in blockdevs:
            await monitor.execute("blockdev-add", node)
            added.insert(0, node["node-name"])
    except BaseException:
        await _del_nodes(monitor, added)
        raise
    return added


# -- security labels of one disk --------------------------------------------------------

def _disk_only(live: Any, disk: Disk) -> Any:
    """A definition holding only ``disk``: what the security manager is asked to label."""
    mini = live.copy()
    mini.os.kernel = mini.os.initrd = mini.os.dtb = None
    mini.devices = Devices(disks=[disk])
    return mini


def _label_disk(driver: "QemuDriver", obj: "QemuDomainObj", disk: Disk) -> None:
    import json
    record = driver.security.set_all_label(_disk_only(obj.live, disk))
    if record is None:
        return
    current = json.loads(obj.extra.get(_LABELS, "null"))
    obj.extra[_LABELS] = json.dumps(_merge(current, record), separators=(",", ":"))


def _unlabel_disk(driver: "QemuDriver", obj: "QemuDomainObj", disk: Disk) -> None:
    import json
    current = json.loads(obj.extra.get(_LABELS, "null"))
    if current is None or disk.source is None:
        return
    mine, rest = _split(current, disk.source)
    driver.security.restore_all_label(_disk_only(obj.live, disk), mine)
    if rest:
        obj.extra[_LABELS] = json.dumps(rest, separators=(",", ":"))
    else:
        obj.extra.pop(_LABELS, None)


def _merge(current: Any, record: Any) -> Any:
    if current is None:
        return record
    if isinstance(current, dict) and isinstance(record, dict):
        merged = {k: list(v) for k, v in current.items()}
        for model, entries in record.items():
            merged.setdefault(model, []).extend(entries)
        return merged
    return [*current, *record]


def _split(record: Any, path: str) -> tuple[Any, Any]:
    """The entries for ``path`` (the newest of them) and the rest, in the record's own shape."""
    if isinstance(record, dict):
        parts = {model: _split(entries, path) for model, entries in record.items()}
        mine = {m: p[0] for m, p in parts.items() if p[0]}
        rest = {m: p[1] for m, p in parts.items() if p[1]}
        return mine or None, rest or None
    hits = [n for n, entry in enumerate(record) if entry and entry[0] == path]
    if not hits:
        return None, record or None
    last = hits[-1]
    return [record[last]], [e for n, e in enumerate(record) if n != last] or None


# -- attach --------------------------------------------------------------------------

async def attach(driver: "QemuDriver", obj: "QemuDomainObj", dev: Any) -> None:
    """Add ``dev`` to the running guest and its live definition (the caller holds a MODIFY job)."""
    live = obj.live
    _monitor(obj)
    if isinstance(dev, Disk):
        clash = next((disk for disk in live.devices.disks if disk.target_dev == dev.target_dev), None)
        if clash is not None:      # libvirt's live check is its definition validation
            raise error(ErrorNumber.XML_DETAIL, ErrorDomain.DOMAIN,
                        f"target '{dev.target_dev}' duplicated for disk sources "
                        f"'{clash.source or '(none)'}' and '{dev.source or '(none)'}'")
    devicexml.check_addable(live, dev)
    if isinstance(dev, Disk):
        await _attach_disk(driver, obj, dev)
    elif isinstance(dev, Interface):
        await _attach_interface(driver, obj, dev)
    elif isinstance(dev, Controller):
        await _attach_controller(driver, obj, dev)
    obj.save_status()
    _emit(driver, obj, EventID.DEVICE_ADDED, dev.alias)


def _pci_slot(obj: "QemuDomainObj", dev: Any, what: str) -> None:
    live = obj.live
    if not pciaddr.hotplug_supported(live):
        raise _unsupported(f"hot-plug of {what} needs PCI hot-plug, which pyvirt offers for i440FX "
                           f"(pc) machines only, not '{live.os.machine}'")
    if dev.address is None:
        dev.address = pciaddr.next_free(live)
    elif not isinstance(dev.address, PCIAddress):
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU,
                    f"{what} cannot have an address of type '{dev.address.type}'")


async def _attach_disk(driver: "QemuDriver", obj: "QemuDomainObj", disk: Disk) -> None:
    live, monitor = obj.live, _monitor(obj)
    if disk.device not in ("disk", "lun") or disk.target_bus not in _LIVE_DISK_BUSES:
        if disk.device in ("cdrom", "floppy"):
            raise _unsupported("cdrom/floppy device hotplug isn't supported")
        raise _unsupported(f"disk bus '{disk.target_bus}' cannot be hotplugged.")
    storage_source.resolve_disk(disk, driver.storage_resolver)   # <disk type='volume'>
    disk.alias = _disk_alias(live, disk)
    if disk.target_bus == "virtio":
        _pci_slot(obj, disk, "a virtio disk")
    elif disk.target_bus == "scsi" and not any(c.type == "scsi" and c.index == 0 for c in live.devices.controllers):
        await _attach_controller(driver, obj, Controller("scsi", 0, "virtio-scsi"), announce=True)
    elif disk.target_bus == "usb" and not any(c.type == "usb" and c.model != "none"
                                              for c in live.devices.controllers):
        raise _failed(f"cannot attach USB disk '{disk.target_dev}': the domain has no USB controller")
    model, props = command.disk_device_props(disk, None)
    await leases.disk_attached(driver, obj, disk)      # before QEMU may write to it
    _label_disk(driver, obj, disk)
    nodes: list[str] = []
    try:
        nodes = await _add_nodes(monitor, disk)
        if nodes:
            props = {"drive": nodes[0], **props}
        await monitor.execute("device_add", {"driver": model, **props})
    except BaseException:
        await _del_nodes(monitor, nodes)
        _unlabel_disk(driver, obj, disk)
        await leases.disk_detached(driver, obj, disk)
        raise
    devicexml.add(live, disk)
    storage_source.remember(obj)


async def _attach_interface(driver: "QemuDriver", obj: "QemuDomainObj", nic: Interface) -> None:
    live, monitor = obj.live, _monitor(obj)
    model = command.NIC_MODELS.get(nic.model)
    if model is None:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU,
                    f"interface model '{nic.model}' is not supported")
    command.check_nic_scripts(nic)
    nic.alias = _net_alias(live)
    _pci_slot(obj, nic, "a network interface")
    netdev = f"host{nic.alias}"
    if nic.type == "user":
        await monitor.execute("netdev_add", {"type": "user", "id": netdev})
    elif nic.type in ("bridge", "network", "ethernet"):
        if nic.type == "network":
            nic.source_bridge = netsource.bridge_of(driver.networks, nic)
        tap = await (netsource.create_ethernet(nic, vhost=False) if nic.type == "ethernet"
                     else tapmod._create_in_bridge(nic, vhost=False))
        try:
            await monitor.getfd(tap.fd, f"fd-{nic.alias}")
            await monitor.execute("netdev_add", {"type": "tap", "fd": f"fd-{nic.alias}", "id": netdev})
        finally:
            tap.close()      # QEMU holds its own copy; the tap goes with its netdev
    else:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.QEMU,
                    f"interface type '{nic.type}' is not supported")
    try:
        await monitor.execute("device_add", {"driver": model, "netdev": netdev, "id": nic.alias,
                                             "mac": nic.mac, **command.pci_props(nic)})
    except BaseException:
        try:
            await monitor.execute("netdev_del", {"id": netdev})
        except libvirtError as exc:
            log.warning("cannot remove netdev %s: %s", netdev, exc)
        raise
    devicexml.add(live, nic)
    netsource.attached(driver.networks, live, [nic])


async def _attach_controller(driver: "QemuDriver", obj: "QemuDomainObj", ctrl: Controller,
                             announce: bool = False) -> None:
    """``announce``: a controller a disk brought along gets its own DEVICE_ADDED."""
    live, monitor = obj.live, _monitor(obj)
    if (ctrl.type, ctrl.model) not in _LIVE_CONTROLLERS:
        raise _unsupported(f"'{ctrl.type}' controller{f' model {ctrl.model}' if ctrl.model else ''} "
                           "cannot be hot plugged.")
    if ctrl.index < 0:
        devicexml.add(live.copy(), ctrl)      # numbers it against the live controllers
    devicexml.check_addable(live, ctrl)
    ctrl.alias = controller_alias(ctrl)
    _pci_slot(obj, ctrl, f"a {ctrl.type} controller")
    model, props = command.controller_props(ctrl)
    await monitor.execute("device_add", {"driver": model, **props})
    devicexml.add(live, ctrl)
    if announce:
        obj.save_status()
        _emit(driver, obj, EventID.DEVICE_ADDED, ctrl.alias)


# -- detach ---------------------------------------------------------------------------

async def detach(driver: "QemuDriver", obj: "QemuDomainObj", dev: Any, *, wait: bool = True) -> None:
    """Ask QEMU to remove the live device ``dev`` names; wait for the guest as libvirt does
    (``wait=False``: detachDeviceAlias's asynchronous removal, finished by DEVICE_DELETED)."""
    live, monitor = obj.live, _monitor(obj)
    if isinstance(dev, Disk) and not any(d.target_dev == dev.target_dev for d in live.devices.disks):
        raise error(ErrorNumber.DEVICE_MISSING, ErrorDomain.QEMU, f"disk {dev.target_dev} not found")
    target = devicexml.find(live, dev)
    if isinstance(target, Controller):
        if devicexml.controller_in_use(live, target):
            raise _failed("device cannot be detached: device is busy")
        if not pciaddr.controller_is_pci(target) or target.type == "pci":
            raise _unsupported(f"'{target.type}' controller cannot be hot unplugged.")
    elif isinstance(target, Disk) and (target.device in ("cdrom", "floppy")
                                       or target.target_bus not in _LIVE_DISK_BUSES):
        raise _unsupported(f"disk device type '{target.device}' on bus '{target.target_bus}' "
                           "cannot be detached")
    alias = target.alias
    pending = _pending(obj)
    if alias in pending:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                    f"unplug of device '{alias}' is already in progress")
    unplug = _Unplug(target)
    if isinstance(target, Disk):
        unplug.nodes = await _disk_nodes(monitor, alias)
    elif isinstance(target, Interface):
        unplug.netdev = await _netdev_of(monitor, alias)
    pending[alias] = unplug
    try:
        await monitor.execute("device_del", {"id": alias})
    except BaseException:
        pending.pop(alias, None)
        raise
    if not wait:
        unplug.waiting = False
        if unplug.released.done() and obj.process is not None:   # released before QEMU's reply came
            pending.pop(alias, None)
            await _finish_removal(driver, obj, unplug)
        return
    gone = asyncio.ensure_future(obj.stopped.wait())
    try:
        await asyncio.wait({unplug.released, gone}, timeout=UNPLUG_TIMEOUT,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    unplug.waiting = False
    if unplug.released.done() and obj.process is not None:
        pending.pop(alias, None)
        await _finish_removal(driver, obj, unplug)
    else:    # libvirt's "detach request sent": a later DEVICE_DELETED finishes it
        log.info("%s: detach request for '%s' sent; the guest has not released it yet", obj.name, alias)


async def _netdev_of(monitor: Any, alias: str) -> str | None:
    try:
        value = await monitor.execute("qom-get", {"path": f"/machine/peripheral/{alias}", "property": "netdev"})
    except libvirtError:
        return None
    return str(value) or None


async def _finish_removal(driver: "QemuDriver", obj: "QemuDomainObj", unplug: _Unplug) -> None:
    """QEMU released the device: drop its backend and its place in the live definition."""
    monitor, dev = _monitor(obj), unplug.dev
    await _del_nodes(monitor, unplug.nodes)
    if unplug.netdev:
        try:
            await monitor.execute("netdev_del", {"id": unplug.netdev})
        except libvirtError as exc:
            log.warning("%s: cannot remove netdev %s: %s", obj.name, unplug.netdev, exc)
    if isinstance(dev, Disk):
        _unlabel_disk(driver, obj, dev)
        await leases.disk_detached(driver, obj, dev)
    elif isinstance(dev, Interface):
        netsource.detached(driver.networks, obj.live, [dev])
    devicexml.remove(obj.live, dev)
    obj.save_status()
    _emit(driver, obj, EventID.DEVICE_REMOVED, dev.alias)


def on_tray_moved(obj: "QemuDomainObj", data: Mapping[str, Any]) -> None:
    """QEMU's DEVICE_TRAY_MOVED: wake a media change waiting for the guest to open the tray."""
    if data.get("tray-open"):
        waiter = _EXPECTED.get(obj, {}).pop(f"tray:{data.get('id')}", None)
        if waiter is not None and not waiter.done():
            waiter.set_result(True)


def on_device_deleted(driver: "QemuDriver", obj: "QemuDomainObj", data: Mapping[str, Any]) -> None:
    """QEMU's DEVICE_DELETED: wake the detach that waits for it, or finish a late one."""
    alias = data.get("device")
    if not alias:
        return                       # a device's inner part (its virtio backend), not the device
    expected = _EXPECTED.get(obj, {}).pop(str(alias), None)
    if expected is not None and not expected.done():
        expected.set_result(True)
    unplug = _UNPLUGS.get(obj, {}).get(str(alias))
    if unplug is None:
        return
    if not unplug.released.done():
        unplug.released.set_result(True)
    if unplug.waiting:
        return                       # the detach call finishes the removal itself
    _UNPLUGS[obj].pop(str(alias), None)
    driver._spawn(_late_removal(driver, obj, unplug), f"device-removed-{obj.name}-{alias}")


async def _late_removal(driver: "QemuDriver", obj: "QemuDomainObj", unplug: _Unplug) -> None:
    try:
        async with driver.job_guard(obj, JobKind.MODIFY):
            if obj.process is not None and obj.live is not None:
                await _finish_removal(driver, obj, unplug)
    except libvirtError as exc:
        log.error("%s: cannot finish removing '%s': %s", obj.name, unplug.dev.alias, exc)


# -- media change ------------------------------------------------------------------------

async def _open_tray(obj: "QemuDomainObj", disk: Disk, force: bool) -> None:
    """Open the tray; a guest that locked it is asked to let go, and waited for (unless forced)."""
    monitor, key = _monitor(obj), f"tray:{disk.alias}"
    opened = expect_deleted(obj, key)        # registered first: the event may beat the reply
    try:
        await monitor.execute("blockdev-open-tray", {"id": disk.alias, "force": force})
        if await _tray_is_open(monitor, disk.alias):
            return
        try:
            await asyncio.wait_for(asyncio.shield(opened), TRAY_TIMEOUT)
        except asyncio.TimeoutError:
            raise _failed(f"timed out waiting to open tray of '{disk.target_dev}'") from None
    finally:
        stop_expecting(obj, key)


async def _tray_is_open(monitor: Any, alias: str) -> bool:
    for blk in await monitor.execute("query-block"):
        if blk.get("qdev") == alias or str(blk.get("qdev", "")).startswith(f"/machine/peripheral/{alias}/"):
            return bool(blk.get("tray_open"))
    return False


async def change_media(driver: "QemuDriver", obj: "QemuDomainObj", new: Disk, force: bool) -> None:
    """Put ``new``'s source (or none: eject) into the live CD-ROM or floppy with its target."""
    live, monitor = obj.live, _monitor(obj)
    disk = devicexml.find(live, new)
    if disk.device not in ("cdrom", "floppy"):
        if new.source != disk.source or new.type != disk.type:
            raise _unsupported("disk source can be changed only in removable media")
        return       # nothing that can change live was changed: libvirt accepts it as is
    if new.source == disk.source and new.type == disk.type:
        return
    old_nodes = await _disk_nodes(monitor, disk.alias)
    await _open_tray(obj, disk, force)
    await monitor.execute("blockdev-remove-medium", {"id": disk.alias})
    await _del_nodes(monitor, old_nodes)
    _unlabel_disk(driver, obj, disk)
    disk.source, disk.type = None, new.type
    disk.driver_type = new.driver_type or disk.driver_type
    if new.source is not None:
        disk.source = new.source
        _label_disk(driver, obj, disk)
        try:
            nodes = await _add_nodes(monitor, disk)
            await monitor.execute("blockdev-insert-medium", {"id": disk.alias, "node-name": nodes[0]})
        except BaseException:
            _unlabel_disk(driver, obj, disk)
            disk.source = None
            obj.save_status()
            raise
        await monitor.execute("blockdev-close-tray", {"id": disk.alias})
    obj.save_status()
