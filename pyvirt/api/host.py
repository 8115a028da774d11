"""libvirt-python's methods for host and capabilities (node info and memory, sysinfo, domain capabilities, CPU models)."""

from __future__ import annotations

from typing import Any, Callable


class DomainHostAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference


class ConnectHostAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: the one place every call goes through
