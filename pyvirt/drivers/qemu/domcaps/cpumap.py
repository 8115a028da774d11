"""The CPU model names ``virConnectGetCPUModelNames`` answers, per CPU driver.

libvirt answers this call from its own CPU map, not from QEMU: the models its
x86 and ppc64 drivers know, in the map's order (libvirt 9.0's), whether or not
the installed QEMU has each of them.  Its s390 and arm drivers list no models
(virsh prints "all CPU models are accepted"); an architecture no CPU driver
serves is refused.
"""

from __future__ import annotations

from ....errors import ErrorNumber, error

VIR_FROM_CPU = 31    # virErrorDomain's VIR_FROM_CPU

X86 = ("486 pentium pentium2 pentium3 pentiumpro coreduo n270 core2duo qemu32 kvm32 cpu64-rhel5 cpu64-rhel6 "
       "qemu64 kvm64 Conroe Penryn Nehalem Nehalem-IBRS Westmere Westmere-IBRS SandyBridge SandyBridge-IBRS "
       "IvyBridge IvyBridge-IBRS Haswell-noTSX Haswell-noTSX-IBRS Haswell Haswell-IBRS Broadwell-noTSX "
       "Broadwell-noTSX-IBRS Broadwell Broadwell-IBRS Skylake-Client Skylake-Client-IBRS "
       "Skylake-Client-noTSX-IBRS Skylake-Server Skylake-Server-IBRS Skylake-Server-noTSX-IBRS "
       "Cascadelake-Server Cascadelake-Server-noTSX Icelake-Client Icelake-Client-noTSX Icelake-Server "
       "Icelake-Server-noTSX Cooperlake Snowridge athlon phenom Opteron_G1 Opteron_G2 Opteron_G3 Opteron_G4 "
       "Opteron_G5 EPYC EPYC-IBPB EPYC-Rome EPYC-Milan Dhyana").split()
PPC64 = "POWER6 POWER7 POWER8 POWER9 POWER10 POWERPC_e5500 POWERPC_e6500".split()

_BY_ARCH: dict[str, list[str]] = {
    "i686": X86, "x86_64": X86, "ppc64": PPC64, "ppc64le": PPC64,
    "s390": [], "s390x": [], "armv6l": [], "armv7l": [], "armv7b": [], "aarch64": [],
}


def model_names(arch: str) -> list[str]:
    """The models of ``arch``'s CPU driver (``arch`` a known virArch name)."""
    models = _BY_ARCH.get(arch)
    if models is None:
        raise error(ErrorNumber.NO_SUPPORT, VIR_FROM_CPU, f"'{arch}' architecture is not supported by CPU driver")
    return list(models)
