"""libvirt-python's methods for devices and tuning (attach/detach/update devices, memory, vCPUs)."""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any


class DomainDevicesAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference

    # -- devices (libvirt-python returns 0 on success) -------------------------------
    def attachDevice(self, xml: str) -> int:
        self._call("domain_attach_device", xml)
        return 0

    def attachDeviceFlags(self, xml: str, flags: int = 0) -> int:
        self._call("domain_attach_device_flags", xml, flags)
        return 0

    def detachDevice(self, xml: str) -> int:
        self._call("domain_detach_device", xml)
        return 0

    def detachDeviceFlags(self, xml: str, flags: int = 0) -> int:
        self._call("domain_detach_device_flags", xml, flags)
        return 0

    def detachDeviceAlias(self, alias: str, flags: int = 0) -> int:
        self._call("domain_detach_device_alias", alias, flags)
        return 0

    def updateDeviceFlags(self, xml: str, flags: int = 0) -> int:
        self._call("domain_update_device_flags", xml, flags)
        return 0

    # -- memory (KiB) -------------------------------------------------------------------
    def setMemory(self, memory: int) -> int:
        self._call("domain_set_memory", memory)
        return 0

    def setMemoryFlags(self, memory: int, flags: int = 0) -> int:
        self._call("domain_set_memory_flags", memory, flags)
        return 0

    def setMaxMemory(self, memory: int) -> int:
        self._call("domain_set_max_memory", memory)
        return 0

    # -- vCPUs ----------------------------------------------------------------------------
    def setVcpus(self, nvcpus: int) -> int:
        self._call("domain_set_vcpus", nvcpus)
        return 0

    def setVcpusFlags(self, nvcpus: int, flags: int = 0) -> int:
        self._call("domain_set_vcpus_flags", nvcpus, flags)
        return 0

    def vcpusFlags(self, flags: int = 0) -> int:
        return self._call("domain_get_vcpus_flags", flags)


class ConnectDevicesAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: the one place every call goes through
