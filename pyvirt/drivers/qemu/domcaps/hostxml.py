"""``<capabilities>``: the host (CPU, power, migration, NUMA topology, security models) and
the guests the probed emulator offers, in libvirt 9.0's layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ....security import ProcessIds
from .. import hostinfo
from . import cpumodel
from .probe import Probe

WORDSIZE = {"x86_64": 64, "i686": 32, "aarch64": 64, "ppc64": 64, "ppc64le": 64, "s390x": 64}


@dataclass
class HostFacts:
    """What the caller knows that the probe does not."""
    uuid: str
    kvm: bool
    dac: ProcessIds | None         # QEMU's user and group under the DAC model; None without DAC
    root: Path = Path("/")


def _machines(probe: Probe, indent: str) -> list[str]:
    out = []
    # libvirt lists the default machine type first, then QEMU's order
    for m in sorted(probe.machines, key=lambda m: not m.is_default):
        dep = " deprecated='yes'" if m.deprecated else ""
        out.append(f"{indent}<machine maxCpus='{m.cpu_max}'{dep}>{m.name}</machine>")
        if m.alias:
            out.append(f"{indent}<machine canonical='{m.name}' maxCpus='{m.cpu_max}'{dep}>{m.alias}</machine>")
    return out


def _host_cpu(probe: Probe | None, facts: HostFacts) -> list[str]:
    root = facts.root
    arch = os.uname().machine
    lines = ["    <cpu>", f"      <arch>{arch}</arch>"]
    flags = hostinfo.cpuinfo_value("flags", root).split()
    ap = None
    if probe is not None:
        ap = probe.accels.get("kvm") if facts.kvm else None
        ap = ap or probe.accels.get("tcg")
    if ap is not None:
        definitions = {m.name: m for m in probe.accels["tcg"].models} if "tcg" in probe.accels else {}
        known = set(ap.known_features)
        host = cpumodel.from_cpuinfo(flags, known) if flags else set(ap.host_features)
        hm = cpumodel.host_cpu(ap, definitions, host)
        if hm is not None:
            lines.append(f"      <model>{hm.name}</model>")
    vendor = hostinfo.cpuinfo_value("vendor_id", root)
    if vendor:
        lines.append(f"      <vendor>{hostinfo.vendor_name(vendor)}</vendor>")
    microcode = hostinfo.cpuinfo_value("microcode", root)
    if microcode:
        try:
            lines.append(f"      <microcode version='{int(microcode, 0)}'/>")
        except ValueError:
            pass
    family, model, stepping = (hostinfo.cpuinfo_value(k, root) for k in ("cpu family", "model", "stepping"))
    if family and model and stepping:
        lines.append(f"      <signature family='{family}' model='{model}' stepping='{stepping}'/>")
    info = hostinfo.node_info(root)
    lines.append(f"      <topology sockets='{info.sockets}' dies='1' cores='{info.cores}' threads='{info.threads}'/>")
    bits = hostinfo.address_bits(root)
    if bits:
        lines.append(f"      <maxphysaddr mode='emulate' bits='{bits}'/>")
    if ap is not None and hm is not None:
        lines += [f"      <feature name='{cpumodel.libvirt_name(f)}'/>" for f in hm.require]
        lines += [f"      <feature policy='disable' name='{cpumodel.libvirt_name(f)}'/>" for f in hm.disable]
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    lines += [f"      <pages unit='KiB' size='{size}'/>" for size in [page_kib, *hostinfo.hugepage_sizes(root)]]
    lines.append("    </cpu>")
    return lines


def _topology(root: Path) -> list[str]:
    cells = hostinfo.cells(root)
    lines = ["    <topology>", f"      <cells num='{len(cells)}'>"]
    for c in cells:
        lines.append(f"        <cell id='{c.id}'>")
        lines.append(f"          <memory unit='KiB'>{c.memory_kib}</memory>")
        lines += [f"          <pages unit='KiB' size='{size}'>{n}</pages>" for size, n in c.pages.items()]
        if c.distances:
            lines.append("          <distances>")
            lines += [f"            <sibling id='{n}' value='{v}'/>" for n, v in c.distances]
            lines.append("          </distances>")
        lines.append(f"          <cpus num='{len(c.cpus)}'>")
        lines += [f"            <cpu id='{t.id}' socket_id='{t.socket}' die_id='{t.die}' core_id='{t.core}'"
                  f" siblings='{t.siblings}'/>" for t in c.cpus]
        lines.append("          </cpus>")
        lines.append("        </cell>")
    lines += ["      </cells>", "    </topology>"]
    return lines


def _iommu(root: Path) -> str:
    groups = root / "sys/kernel/iommu_groups"
    present = groups.is_dir() and any(groups.iterdir())
    return f"    <iommu support='{'yes' if present else 'no'}'/>"


def capabilities_xml(probe: Probe | None, facts: HostFacts, guests: list[Probe] | None = None) -> str:
    """``probe`` is the host's own emulator (its CPU model); ``guests`` every emulator
    listed as a <guest> (by default ``probe`` alone)."""
    lines = ["<capabilities>", "", "  <host>", f"    <uuid>{facts.uuid}</uuid>"]
    lines += _host_cpu(probe, facts)
    lines += ["    <power_management/>", _iommu(facts.root), "    <migration_features>", "      <live/>",
              "      <uri_transports>", "        <uri_transport>tcp</uri_transport>",
              "      </uri_transports>", "    </migration_features>"]
    lines += _topology(facts.root)
    if facts.dac is not None:
        label = f"+{facts.dac.uid}:+{facts.dac.gid}"
        lines += ["    <secmodel>", "      <model>dac</model>", "      <doi>0</doi>",
                  f"      <baselabel type='kvm'>{label}</baselabel>",
                  f"      <baselabel type='qemu'>{label}</baselabel>", "    </secmodel>"]
    else:
        lines += ["    <secmodel>", "      <model>none</model>", "      <doi>0</doi>", "    </secmodel>"]
    lines += ["  </host>", ""]
    for probe in (guests if guests is not None else [probe] if probe is not None else []):
        lines += ["  <guest>", "    <os_type>hvm</os_type>", f"    <arch name='{probe.arch}'>",
                  f"      <wordsize>{WORDSIZE.get(probe.arch, 64)}</wordsize>",
                  f"      <emulator>{probe.emulator}</emulator>"]
        lines += _machines(probe, "      ")
        lines.append("      <domain type='qemu'/>")
        if facts.kvm and "kvm" in probe.accels:
            lines.append("      <domain type='kvm'/>")
        lines += ["    </arch>", "    <features>"]
        if probe.arch == "i686":
            lines += ["      <pae/>", "      <nonpae/>"]
        lines += ["      <acpi default='on' toggle='yes'/>", "      <apic default='on' toggle='no'/>",
                  "      <cpuselection/>", "      <deviceboot/>",
                  "      <disksnapshot default='on' toggle='no'/>", "    </features>", "  </guest>", ""]
    lines.append("</capabilities>")
    return "\n".join(lines) + "\n"
