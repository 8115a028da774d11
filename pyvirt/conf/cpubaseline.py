"""virConnectBaselineCPU as libvirt's test and QEMU drivers answer it (libvirt's generic
baseline): host CPU definitions in, the guest CPU they all can run out.

libvirt parses each ``<cpu>`` as a host CPU, then hands the list to the CPU
driver of the first one's architecture.  What each driver does:

* arm (armv6l, armv7l, armv7b, aarch64): the first CPU's model, nothing else;
* ppc64 (ppc64, ppc64le): every CPU must name the first one's model, a model of
  its map; vendors, when given, must be that model's;
* s390: has no baseline; any other architecture has no CPU driver at all;
* x86 (i686, x86_64): intersects the CPUID bits of the models and features
  through libvirt's x86 CPU map and names the closest model (:mod:`.cpux86`).

The errors (codes, VIR_FROM_CPU, wording) are libvirt 9.0's.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from ..enums import BaselineCPUFlags
from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from . import cpux86
from .xmlutil import parse_document

EXPAND_FEATURES = int(BaselineCPUFlags.EXPAND_FEATURES)
MIGRATABLE = int(BaselineCPUFlags.MIGRATABLE)


# virArch's names (virArchFromString knows no others; "none" is not one)
ARCHES = frozenset(
    "alpha armv6l armv7l armv7b aarch64 cris i686 ia64 lm32 m68k microblaze microblazeel mips mipsel mips64 "
    "mips64el openrisc parisc parisc64 ppc ppcle ppc64 ppc64le ppcemb riscv32 riscv64 s390 s390x sh4 sh4eb "
    "sparc sparc64 unicore32 x86_64 xtensa xtensaeb".split())
_ARM = frozenset({"armv6l", "armv7l", "armv7b", "aarch64"})
_PPC64 = frozenset({"ppc64", "ppc64le"})
_S390 = frozenset({"s390", "s390x"})
_X86 = frozenset({"i686", "x86_64"})

# ppc64's CPU map: model -> its vendor (every model has one)
_PPC64_MODELS = {"POWER6": "IBM", "POWER7": "IBM", "POWER8": "IBM", "POWER9": "IBM", "POWER10": "IBM",
                 "POWERPC_e5500": "Freescale", "POWERPC_e6500": "Freescale"}
_PPC64_VENDORS = frozenset(_PPC64_MODELS.values())


class HostCPU:
    """What the baseline reads of one host ``<cpu>``."""

    __slots__ = ("arch", "model", "vendor", "features")

    def __init__(self, arch: str, model: str, vendor: str | None, features: list[str]) -> None:
        self.arch, self.model, self.vendor, self.features = arch, model, vendor, features


def _cpu_error(code: ErrorNumber, detail: str) -> libvirtError:
    return error(code, ErrorDomain.CPU, detail)


def parse_host_cpu(xml: str) -> HostCPU:
    """One element of the list, checked in libvirt's order (virCPUDefParseXML, host type)."""
    root = parse_document(xml, None, "(CPU_definition)", ErrorDomain.CPU)
    if root.tag != "cpu":
        raise _cpu_error(ErrorNumber.XML_ERROR, "XML does not contain expected 'cpu' element")
    if root.get("mode") is not None:
        raise _cpu_error(ErrorNumber.CONFIG_UNSUPPORTED, "Attribute mode is only allowed for guest CPU")
    arch = root.findtext("arch")
    if not arch:
        raise _cpu_error(ErrorNumber.XML_ERROR, "Missing CPU architecture")
    if arch not in ARCHES:
        raise _cpu_error(ErrorNumber.CONFIG_UNSUPPORTED, f"Unknown architecture {arch}")
    model = root.findtext("model")
    if not model:
        raise _cpu_error(ErrorNumber.XML_ERROR, "Missing CPU model name")
    features: list[str] = []
    for node in root.findall("feature"):     # a host CPU's policies are ignored
        name = node.get("name")
        if not name:
            raise _cpu_error(ErrorNumber.XML_ERROR, "Invalid CPU feature name")
        if name in features:
            raise _cpu_error(ErrorNumber.XML_ERROR, f"CPU feature '{name}' specified more than once")
        features.append(name)
    return HostCPU(arch, model, root.findtext("vendor") or None, features)


# features libvirt's QEMU driver never gives QEMU (virQEMUCapsCPUFilterFeatures), on x86
QEMU_DROPPED = frozenset({"cmt", "mbm_total", "mbm_local", "osxsave", "ospke"})


def baseline(xml_cpus: list[str], flags: int, dropped: frozenset[str] = frozenset()) -> str:
    """The baseline guest CPU of ``xml_cpus`` as libvirt formats it (flags already checked by
    the driver; MIGRATABLE only where it takes it); ``dropped``: x86 features the driver
    leaves out."""
    if not xml_cpus:
        raise _cpu_error(ErrorNumber.INVALID_ARG, "no CPUs given")
    cpus = [parse_host_cpu(xml) for xml in xml_cpus]
    arch = cpus[0].arch
    if arch in _ARM:
        model, fallback = cpus[0].model, None
    elif arch in _PPC64:
        model, fallback = _ppc64(cpus), "forbid"
    elif arch in _S390:
        raise _cpu_error(ErrorNumber.NO_SUPPORT, f"cannot compute baseline CPU of {arch} architecture")
    elif arch in _X86:
        return cpux86.baseline(cpus, bool(flags & EXPAND_FEATURES), bool(flags & MIGRATABLE),
                               lambda name: name not in dropped)
    else:
        raise _cpu_error(ErrorNumber.NO_SUPPORT, f"'{arch}' architecture is not supported by CPU driver")
    # EXPAND_FEATURES: neither arm nor ppc64 has features to expand, and the baseline keeps none
    model_line = f"  <model fallback='{fallback or 'allow'}'>{escape(model)}</model>"
    return f"<cpu mode='custom' match='exact'>\n{model_line}\n</cpu>\n"


def _ppc64(cpus: list[HostCPU]) -> str:
    model = cpus[0].model
    vendor = _PPC64_MODELS.get(model)
    if vendor is None:
        raise _cpu_error(ErrorNumber.INTERNAL_ERROR, f"Unknown CPU model {model}")
    for cpu in cpus:
        if cpu.model != model:
            raise _cpu_error(ErrorNumber.OPERATION_FAILED, "CPUs are incompatible")
        if cpu.vendor is None:
            continue
        if cpu.vendor not in _PPC64_VENDORS:
            raise _cpu_error(ErrorNumber.OPERATION_FAILED, f"Unknown CPU vendor {cpu.vendor}")
        if cpu.vendor != vendor:
            raise _cpu_error(ErrorNumber.OPERATION_FAILED,
                             f"CPU vendor {vendor} of model {model} differs from vendor {cpu.vendor}")
    return model
