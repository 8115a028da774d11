"""libvirt-python's calls that reach into the guest or its control state: core dumps, rename, the guest
agent's (setUserPassword, fsFreeze, fsThaw, fSTrim, fsInfo, interfaceAddresses), injectNMI,
sendProcessSignal, controlInfo, setLifecycleAction.

Shapes are libvirt-python's: ``fsInfo`` a list of ``(mountpoint, name, fstype,
[aliases])``, ``interfaceAddresses`` ``{name: {'hwaddr', 'addrs': [{'type', 'addr',
'prefix'}]}}``, ``controlInfo`` ``[state, details, stateTime]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class DomainGuestAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]

    def coreDump(self, to: str, flags: int = 0) -> int:
        # libvirt's client makes the path absolute before it leaves the process
        self._call("domain_core_dump", os.path.abspath(to), flags)
        return 0

    def coreDumpWithFormat(self, to: str, dumpformat: int, flags: int = 0) -> int:
        self._call("domain_core_dump_with_format", os.path.abspath(to), dumpformat, flags)
        return 0

    def memoryPeek(self, start: int, size: int, flags: int = 0) -> bytes:
        return bytes(self._call("domain_memory_peek", start, size, flags))

    def rename(self, new_name: str, flags: int = 0) -> int:
        return self._call("domain_rename", new_name, flags)

    def setUserPassword(self, user: str, password: str, flags: int = 0) -> int:
        self._call("domain_set_user_password", user, password, flags)
        return 0

    def fsFreeze(self, mountpoints: list[str] | None = None, flags: int = 0) -> int:
        return self._call("domain_fsfreeze", list(mountpoints or []), flags)

    def fsThaw(self, mountpoints: list[str] | None = None, flags: int = 0) -> int:
        return self._call("domain_fsthaw", list(mountpoints or []), flags)

    def fSTrim(self, mountPoint: str | None, minimum: int, flags: int = 0) -> int:  # noqa: N803
        self._call("domain_fstrim", mountPoint, minimum, flags)
        return 0

    def fsInfo(self, flags: int = 0) -> list[tuple[str, str, str, list[str]]]:
        info, _count = self._call("domain_get_fsinfo", flags)
        return [(mount, name, fstype, list(aliases)) for mount, name, fstype, aliases in info]

    def interfaceAddresses(self, source: int, flags: int = 0) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, hwaddr, addrs in self._call("domain_interface_addresses", source, flags):
            # libvirt-python's key order
            out[name] = {"addrs": [{"addr": addr, "prefix": prefix, "type": kind} for kind, addr, prefix in addrs],
                         "hwaddr": hwaddr}
        return out

    def injectNMI(self, flags: int = 0) -> int:
        self._call("domain_inject_nmi", flags)
        return 0

    def sendProcessSignal(self, pid_value: int, signum: int, flags: int = 0) -> int:
        self._call("domain_send_process_signal", pid_value, signum, flags)
        return 0

    def messages(self, flags: int = 0) -> list[str]:
        return list(self._call("domain_get_messages", flags))

    def controlInfo(self, flags: int = 0) -> list[int]:
        state, details, state_time = self._call("domain_get_control_info", flags)
        return [state, details, state_time]

    def setLifecycleAction(self, type: int, action: int, flags: int = 0) -> int:  # noqa: A002 - libvirt's name
        self._call("domain_set_lifecycle_action", type, action, flags)
        return 0
