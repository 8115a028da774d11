"""libvirt-python's methods for devices and tuning (attach/detach/update devices, memory, vCPUs)."""

from __future__ import annotations

from typing import Any, Callable


class DomainDevicesAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference


class ConnectDevicesAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: the one place every call goes through
