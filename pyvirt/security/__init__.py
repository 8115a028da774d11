"""Security managers: what labels the files and descriptors QEMU is given.

``new_manager(driver, user, group)`` makes the manager a QEMU driver uses;
the drivers are ``none`` (:mod:`.nop`) and ``dac`` (:mod:`.dac`, Unix
ownership for the configured user and group).  A leaf package: it knows
domain definitions and errors, nothing of drivers or QEMU.
"""

from __future__ import annotations

from typing import Callable

from ..errors import ErrorDomain, ErrorNumber, error
from .base import SavedLabel, SecurityManager
from .dac import DACSecurityManager
from .nop import NopSecurityManager

DRIVERS: dict[str, Callable[[str, str], SecurityManager]] = {
    "none": lambda user, group: NopSecurityManager(),
    "dac": DACSecurityManager,
}


def new_manager(driver: str = "dac", user: str = "root", group: str = "root") -> SecurityManager:
    try:
        make = DRIVERS[driver]
    except KeyError:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.SECURITY,
                    f"unknown security driver '{driver}': use one of {', '.join(DRIVERS)}") from None
    return make(user, group)


__all__ = ["SecurityManager", "SavedLabel", "DACSecurityManager", "NopSecurityManager", "new_manager",
           "DRIVERS"]
