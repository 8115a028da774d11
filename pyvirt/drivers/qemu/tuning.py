"""Memory and vCPU counts, in the definition and in the running QEMU.

Memory goes through the balloon (QMP ``balloon``): the guest gives pages
back if its balloon driver cooperates, and QEMU reports the new size in
``BALLOON_CHANGE``, which updates the live ``currentMemory`` — not this
call, as in libvirt: asking is not getting.

vCPUs are hot-plugged as CPU devices (``query-hotpluggable-cpus`` lists the
free sockets of a guest started with ``-smp N,maxcpus=M``); those plugged in
while running are named ``vcpuN`` and only they can be unplugged, which
(like any unplug) needs the guest's cooperation and is waited for as
libvirt waits.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from . import hotplug

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj
    from .driver import QemuDriver

_PERIPHERAL = "/machine/peripheral/"


def _invalid_arg(detail: str) -> Exception:
    return error(ErrorNumber.INVALID_ARG, ErrorDomain.QEMU, detail)


async def set_memory(obj: "QemuDomainObj", new_def: Any, kib: int, *, live: bool, maximum: bool) -> None:
    """libvirt's qemuDomainSetMemoryFlags: ``new_def`` is the copy of the persistent definition to edit."""
    if maximum:
        if live:
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        "cannot resize the maximum memory on an active domain")
        if new_def is not None:
            if kib <= 0:
                raise _invalid_arg("memory size must be greater than zero")
            new_def.memory_kib = kib
            new_def.current_memory_kib = min(new_def.current_memory_kib, kib)
        return
    for d in ([obj.live] if live else []) + ([new_def] if new_def is not None else []):
        if kib > d.memory_kib:
            raise _invalid_arg("cannot set memory higher than max memory")
    if new_def is not None:
        new_def.current_memory_kib = kib
    if live:
        balloon = obj.live.devices.memballoon
        if balloon is None or balloon.model == "none":
            raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                        "Unable to change memory of active domain without the balloon device "
                        "and guest OS balloon driver")
        await hotplug._monitor(obj).execute("balloon", {"value": kib * 1024})


async def set_vcpus(driver: "QemuDriver", obj: "QemuDomainObj", new_def: Any, count: int, *,
                    live: bool, maximum: bool) -> None:
    """libvirt's qemuDomainSetVcpusFlags: ``new_def`` is the copy of the persistent definition to edit."""
    if maximum:
        if live:
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU,
                        "maximum vcpu count of a live domain can't be modified")
        if new_def is not None:
            if count > 255:
                raise _invalid_arg(f"requested vcpus is greater than max allowable vcpus for "
                                   f"the persistent domain: {count} > 255")
            current = new_def.current_vcpus
            new_def.vcpus = count
            new_def.set_current_vcpus(min(current, count))
        return
    if new_def is not None and count > new_def.vcpus:
        raise _invalid_arg(f"requested vcpus is greater than max allowable vcpus for the persistent "
                           f"domain: {count} > {new_def.vcpus}")
    if live and count > obj.live.vcpus:
        raise _invalid_arg(f"requested vcpus is greater than max allowable vcpus for the live "
                           f"domain: {count} > {obj.live.vcpus}")
    if live:
        await _hotplug_vcpus(driver, obj, count)
    if new_def is not None:
        new_def.set_current_vcpus(count)


async def _hotplug_vcpus(driver: "QemuDriver", obj: "QemuDomainObj", count: int) -> None:
    monitor = hotplug._monitor(obj)
    cpus = await monitor.execute("query-hotpluggable-cpus")
    present = [c for c in cpus if c.get("qom-path")]
    free = sorted((c for c in cpus if not c.get("qom-path")), key=lambda c: c["props"].get("socket-id", 0))
    online = len(present)
    try:
        if count > online:
            for cpu in free[: count - online]:
                socket = cpu["props"].get("socket-id", 0)
                await monitor.execute("device_add", {"driver": cpu["type"], "id": f"vcpu{socket}",
                                                     **cpu["props"]})
                online += 1
        elif count < online:
            plugged = sorted((c for c in present if str(c["qom-path"]).startswith(_PERIPHERAL)),
                             key=lambda c: c["props"].get("socket-id", 0), reverse=True)
            if online - count > len(plugged):
                boot = online - len(plugged)
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.QEMU,
                            f"vcpus 0-{boot - 1} were not hot-plugged and cannot be unplugged")
            for cpu in plugged[: online - count]:
                await _unplug_vcpu(driver, obj, str(cpu["qom-path"])[len(_PERIPHERAL):])
                online -= 1
    finally:
        obj.live.set_current_vcpus(online)
        obj.save_status()


async def _unplug_vcpu(driver: "QemuDriver", obj: "QemuDomainObj", alias: str) -> None:
    monitor = hotplug._monitor(obj)
    released = hotplug.expect_deleted(obj, alias)
    try:
        await monitor.execute("device_del", {"id": alias})
        await asyncio.wait_for(asyncio.shield(released), hotplug.UNPLUG_TIMEOUT)
    except asyncio.TimeoutError:
        raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU,
                    "vcpu unplug request timed out. Unplug result must be manually inspected "
                    "in the domain") from None
    except libvirtError:
        raise
    finally:
        hotplug.stop_expecting(obj, alias)
