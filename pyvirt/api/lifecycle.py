"""libvirt-python's methods for lifecycle and metadata (reset, metadata, title and description)."""

from __future__ import annotations

from typing import Any, Callable


class DomainLifecycleAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]   # virDomain's: the handle's connection and reference


class ConnectLifecycleAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]   # virConnect's: the one place every call goes through
