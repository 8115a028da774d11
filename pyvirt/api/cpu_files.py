"""libvirt-python's CPU baseline and compare calls, launchSecurityInfo, the starts
that pass file descriptors, and isEncrypted."""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

from ..driver import check_access
from ..enums import DriverFeature
from ..errors import ErrorDomain, ErrorNumber, error
from .tuning import _dict, string_okay




def _strings(values: Any, what: str) -> list[str]:
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{what} must be a list of strings")
    return [str(v) for v in values]


def _descriptors(files: Any) -> list[int]:
    if not isinstance(files, (list, tuple)):
        raise TypeError("files must be a list of file descriptors")
    return [int(fd) for fd in files]


class ConnectCPUFilesAPI:
    """Mixed into :class:`pyvirt.connection.virConnect`."""

    _call: Callable[..., Any]
    _drv: Any

    def baselineCPU(self, xmlCPUs: list[str], flags: int = 0) -> str:
        return self._call("connect_baseline_cpu", _strings(xmlCPUs, "xmlCPUs"), flags)

    def compareCPU(self, xmlDesc: str, flags: int = 0) -> int:
        return self._call("connect_compare_cpu", xmlDesc, flags)

    def baselineHypervisorCPU(self, emulator: str | None, arch: str | None, machine: str | None,
                              virttype: str | None, xmlCPUs: list[str], flags: int = 0) -> str:
        return self._call("connect_baseline_hypervisor_cpu", emulator, arch, machine, virttype,
                          _strings(xmlCPUs, "xmlCPUs"), flags)

    def compareHypervisorCPU(self, emulator: str | None, arch: str | None, machine: str | None,
                             virttype: str | None, xmlCPU: str, flags: int = 0) -> int:
        return self._call("connect_compare_hypervisor_cpu", emulator, arch, machine, virttype, xmlCPU, flags)

    def isEncrypted(self) -> int:
        # not a call of the driver table's RPC: a local driver is not encrypted (libvirt's answer 0);
        # the remote driver knows its channel
        probe = getattr(self._drv, "connect_is_encrypted", None)
        return 0 if probe is None else self._call("connect_is_encrypted")

    def createXMLWithFiles(self, xmlDesc: str, files: list[int], flags: int = 0) -> Any:
        fds = _descriptors(files)
        _check_fd_passing(self, "domain_create_xml_with_files", fds)
        ref = self._call("domain_create_xml_with_files", xmlDesc, flags, fds)
        return self._domain(ref)  # type: ignore[attr-defined]


class DomainCPUFilesAPI:
    """Mixed into :class:`pyvirt.domain.virDomain`."""

    _call: Callable[..., Any]
    _conn: Any
    _ref: Any

    def launchSecurityInfo(self, flags: int = 0) -> dict[str, Any]:
        check_access(self._conn._drv, "domain_get_launch_security_info")   # read-only first, as libvirt
        return _dict(self._call("domain_get_launch_security_info", string_okay(self._conn, flags)))

    def createWithFiles(self, files: list[int], flags: int = 0) -> int:
        fds = _descriptors(files)
        _check_fd_passing(self._conn, "domain_create_with_files", fds)
        self._ref = self._call("domain_create_with_files", flags, fds)
        return 0


def _check_fd_passing(conn: Any, method: str, fds: list[int]) -> None:
    """libvirt's order: read-only refused, then (descriptors given) the driver asked for FD_PASSING."""
    check_access(conn._drv, method)
    if fds and not conn._call("connect_supports_feature", DriverFeature.FD_PASSING):
        raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.DOMAIN,
                    "fd passing is not supported by this connection")


__all__ = ["ConnectCPUFilesAPI", "DomainCPUFilesAPI"]
