"""Security managers: what labels the files and descriptors QEMU is given.

``new_manager(drivers, user, group, ...)`` makes the stack a QEMU driver
uses (:mod:`.stack`): the ``dac`` driver (:mod:`.dac`, Unix ownership for
the configured user and group) always first when the daemon runs as root,
then the drivers named in ``security_driver`` (qemu.conf's key; ``none``
adds nothing, and ``dac`` is accepted for the one that is always there).
Unprivileged, there is no user to switch to and nothing to chown: the
stack is the ``none`` driver (:mod:`.nop`), as in libvirt's session mode.
A leaf package: it knows domain definitions and errors, nothing of drivers
or QEMU.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

from ..errors import ErrorDomain, ErrorNumber, error
from .base import LabelRecord, ProcessIds, SavedLabel, SecurityManager
from .dac import DACSecurityManager
from .nop import NopSecurityManager
from .stack import SecurityStack, StackedLabel

# Drivers that can sit on top of DAC (none yet besides the no-op one).
DRIVERS: dict[str, Callable[[], SecurityManager]] = {
    "none": NopSecurityManager,
}
KNOWN = ("dac", *DRIVERS)


def driver_names(value: str | Iterable[str]) -> list[str]:
    """qemu.conf's ``security_driver``: one name or a list of them."""
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if name not in KNOWN:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.SECURITY,
                        f"unknown security driver '{name}': use one of {', '.join(KNOWN)}")
    return names


def new_manager(drivers: str | Iterable[str] = "dac", user: str = "root", group: str = "root", *,
                dynamic_ownership: bool = True, remember_owner: bool = True,
                privileged: bool | None = None) -> SecurityStack:
    names = driver_names(drivers)
    if privileged is None:
        privileged = os.geteuid() == 0
    stack: list[SecurityManager] = []
    if privileged:
        stack.append(DACSecurityManager(user, group, dynamic_ownership=dynamic_ownership,
                                        remember_owner=remember_owner))
    for name in dict.fromkeys(names):
        if name != "dac" and (name != "none" or not stack):
            stack.append(DRIVERS[name]())
    if not stack:
        stack.append(NopSecurityManager())
    return SecurityStack(stack)


__all__ = ["SecurityManager", "SavedLabel", "ProcessIds", "LabelRecord", "DACSecurityManager",
           "NopSecurityManager", "SecurityStack", "StackedLabel", "new_manager", "driver_names",
           "DRIVERS", "KNOWN"]
