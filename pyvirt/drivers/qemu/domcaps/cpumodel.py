"""Host CPU model and feature names: the named model closest to what QEMU (or /proc/cpuinfo) reports.

libvirt describes a host CPU as the named model that needs the fewest extra
lines (features to add plus features to remove) and lists those lines; the
same rule over QEMU's own model definitions gives libvirt's answer here
(kvm64 under KVM, EPYC under TCG on this kind of host).  Feature names are
QEMU's, turned into libvirt's spelling where the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from .probe import AccelProbe, CPUModel

# QEMU property name -> libvirt's cpu_map name, where they differ.
_LIBVIRT_NAMES = {
    "tsc-adjust": "tsc_adjust", "lahf-lm": "lahf_lm", "fxsr-opt": "fxsr_opt", "cmp-legacy": "cmp_legacy",
    "pclmulqdq": "pclmuldq", "nodeid-msr": "nodeid_msr", "perfctr-core": "perfctr_core",
    "perfctr-nb": "perfctr_nb", "ds-cpl": "ds_cpl", "kvm-pv-unhalt": "kvm_pv_unhalt",
    "kvm-pv-eoi": "kvm_pv_eoi", "kvm-asyncpf": "kvm_asyncpf", "kvm-steal-time": "kvm_steal_time",
    "kvm-nopiodelay": "kvm_nopiodelay", "kvm-mmu": "kvm_mmu", "kvmclock-stable-bit": "kvmclock_stable_bit",
    "kvm-asyncpf-int": "kvm_asyncpf_int", "kvm-pv-tlb-flush": "kvm_pv_tlb_flush",
    "kvm-pv-ipi": "kvm_pv_ipi", "kvm-poll-control": "kvm_poll_control",
    "kvm-pv-sched-yield": "kvm_pv_sched_yield",
}
# /proc/cpuinfo flag -> QEMU property name, where the simple respellings do not find it.
_CPUINFO_NAMES = {
    "tsc_deadline_timer": "tsc-deadline", "sha_ni": "sha-ni", "avx512_vnni": "avx512vnni",
    "avx512_bitalg": "avx512bitalg", "avx512_vpopcntdq": "avx512-vpopcntdq", "avx512_vbmi2": "avx512vbmi2",
    "avx512_bf16": "avx512-bf16", "avx_vnni": "avx-vnni", "avx512_vp2intersect": "avx512-vp2intersect",
    "pclmulqdq": "pclmulqdq", "sse4_1": "sse4.1", "sse4_2": "sse4.2", "pni": "pni",
    "cr8_legacy": "cr8legacy",
}


def libvirt_name(feature: str) -> str:
    return _LIBVIRT_NAMES.get(feature, feature)


def from_cpuinfo(flags: list[str], known: set[str]) -> set[str]:
    """QEMU names of the cpuinfo flags QEMU knows as CPUID features."""
    out: set[str] = set()
    if {"constant_tsc", "nonstop_tsc"} <= set(flags) and "invtsc" in known:
        out.add("invtsc")                 # an invariant TSC is the two flags together
    for flag in flags:
        for name in (_CPUINFO_NAMES.get(flag), flag, flag.replace("_", "-"), flag.replace("_", ".")):
            if name and name in known:
                out.add(name)
                break
    return out


@dataclass
class HostModel:
    name: str
    vendor: str                       # QEMU vendor string of the host
    require: list[str]                # QEMU names the host has beyond the model
    disable: list[str]                # the model's features the host lacks


def closest(host: set[str], models: list[CPUModel], definitions: dict[str, CPUModel],
            subset: bool = False) -> CPUModel | None:
    """The model needing the fewest feature lines; ties: fewer removals, then QEMU's order.
    ``subset``: only models the host has every feature of (libvirt's rule for the host CPU
    in ``<capabilities>``, which never says 'disable')."""
    best: tuple[int, int, int] | None = None
    pick: CPUModel | None = None
    for index, model in enumerate(models):
        features = set(definitions.get(model.name, model).features)
        if subset and features - host:
            continue
        score = (len(host - features) + len(features - host), len(features - host), index)
        if best is None or score < best:
            best, pick = score, model
    return pick


def _paravirt(feature: str) -> bool:
    """KVM's paravirtual leaves: QEMU lists them with the CPUID features, libvirt's models do not."""
    return feature.startswith("kvm")


def host_model(ap: AccelProbe, definitions: dict[str, CPUModel], host: set[str] | None = None,
               subset: bool = False) -> HostModel | None:
    """Host-model for one accelerator; ``definitions`` are the models as QEMU defines them
    (TCG's static expansions: under KVM a model's expansion is already filtered by the host)."""
    features = {f for f in (ap.host_features if host is None else host) if not _paravirt(f)}
    model = closest(features, ap.models, definitions, subset)
    if model is None:
        return None
    own = set(definitions.get(model.name, model).features)
    return HostModel(model.name, ap.host_vendor, sorted(features - own), sorted(own - features))


# Models libvirt's CPU map gives no vendor (QEMU defines each with one): libvirt says 'unknown'.
GENERIC_MODELS = frozenset({"qemu64", "qemu32", "kvm64", "kvm32", "pentium", "pentium2", "pentium3",
                            "pentiumpro", "486"})


def model_vendor(model: CPUModel, definitions: dict[str, CPUModel]) -> str:
    """The vendor a model is defined with (under KVM QEMU reports the host's for every model);
    "" for the generic models."""
    if model.name in GENERIC_MODELS:
        return ""
    return definitions.get(model.name, model).vendor


def host_cpu(ap: AccelProbe, definitions: dict[str, CPUModel], host: set[str]) -> HostModel | None:
    """The host CPU of ``<capabilities>``: the model host-model names (so both documents
    agree) when the host has all of its features, else the closest model it has all of."""
    guest = host_model(ap, definitions)
    if guest is not None:
        own = set(definitions.get(guest.name, CPUModel(guest.name, True, "", [], [])).features)
        features = {f for f in host if not _paravirt(f)}
        if own <= features:
            return HostModel(guest.name, ap.host_vendor, sorted(features - own), [])
    return host_model(ap, definitions, host, subset=True)
