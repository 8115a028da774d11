"""A network interface's link state (``<link state='up|down'/>``) on a running guest.

QEMU has no start-up option for it: libvirt tells QEMU (``set_link``, by the
NIC's alias) once the process runs, and a live ``updateDeviceFlags`` of an
interface may change only that, as in libvirt's qemuDomainChangeNet for the
parts QEMU can change without a reconnect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...conf import devicexml
from ...conf.devices import Interface
from ...errors import ErrorDomain, ErrorNumber, error

if TYPE_CHECKING:
    from .domainobj import QemuDomainObj


def _unsupported(detail: str) -> Exception:
    return error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.QEMU, detail)


async def apply_at_start(obj: "QemuDomainObj") -> None:
    """Take down the links the definition says are down (QEMU starts every link up)."""
    for nic in obj.live.devices.interfaces:
        if nic.link_state == "down":
            await obj.process.monitor.execute("set_link", {"name": nic.alias, "up": False})


async def update_live(obj: "QemuDomainObj", new: Interface) -> None:
    """The running guest's interface ``new`` names (by MAC) gets ``new``'s link state;
    anything else that differs is refused as libvirt refuses it."""
    old: Any = devicexml.find(obj.live, new)
    if (new.type, new.source) != (old.type, old.source):
        raise _unsupported(f"unable to change config on '{old.type}' network type")
    if new.model is not None and new.model != old.model:
        raise _unsupported(f"cannot modify network device model from {old.model or 'default'} "
                           f"to {new.model}")
    if new.address is not None and new.address != old.address:
        raise _unsupported("cannot modify network device guest address")
    if new.target_dev is not None and new.target_dev != old.target_dev:
        raise _unsupported("cannot modify network device tap name")
    if (new.link_state or "up") != (old.link_state or "up"):
        await obj.process.monitor.execute("set_link", {"name": old.alias, "up": new.link_state != "down"})
    old.link_state = new.link_state
    obj.save_status()
