"""The test driver's CPU baseline, launch-security query and starts with descriptors.

libvirt's test driver answers these with little of its own: the baseline is
libvirt's generic one (:mod:`pyvirt.conf.cpubaseline`), the starts with
descriptors are its plain starts (the descriptors go unused), and the
launch-security query accepts no flag at all, although libvirt's API entry
point adds VIR_TYPED_PARAM_STRING_OKAY for every driver that reports typed
string parameters, as this one does: so it always fails, in libvirt 9.0 too.
"""

from __future__ import annotations

from typing import Any

from ...conf import cpubaseline
from ...errors import ErrorDomain, check_flags
from ...refs import DomainRef

_T = ErrorDomain.TEST


class CPUFilesAPI:
    """Mixed into :class:`pyvirt.drivers.test.driver.TestConnection`."""

    domain_create_xml: Any
    domain_create_with_flags: Any

    async def connect_baseline_cpu(self, xml_cpus: list[str], flags: int) -> str:
        check_flags(flags, cpubaseline.EXPAND_FEATURES, "testConnectBaselineCPU", _T)
        return cpubaseline.baseline(list(xml_cpus), flags)

    async def domain_get_launch_security_info(self, dom: DomainRef, flags: int) -> list[tuple[str, int, Any]]:
        check_flags(flags, 0, "testDomainGetLaunchSecurityInfo", _T)
        return []

    # the descriptors belong to the caller (the daemon closes them when the call ends)
    async def domain_create_xml_with_files(self, xml_desc: str, flags: int, files: list[int]) -> DomainRef:
        return await self.domain_create_xml(xml_desc, flags)

    async def domain_create_with_files(self, dom: DomainRef, flags: int, files: list[int]) -> DomainRef:
        return await self.domain_create_with_flags(dom, flags)
