"""The test host's tuning state: memtune, blkiotune, numatune, perf events, CPU pins,
interface bandwidth and disk I/O limits, as libvirt's test driver keeps them.

libvirt keeps these in the domain definition; pyvirt's domain model leaves them
out, so the test driver keeps one :class:`Tune` per definition (the persistent
one, and the running one copied from it at each start) and writes the elements
into the domain XML where libvirt's formatter puts them.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from ... import errors
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..domainlist import DomainObj

_T = ErrorDomain.TEST
UNLIMITED = 9007199254740991           # VIR_DOMAIN_MEMORY_PARAM_UNLIMITED
AFFECT_LIVE, AFFECT_CONFIG = 1, 2
PERF_EVENTS = ("cmt", "mbmt", "mbml", "cpu_cycles", "instructions", "cache_references", "cache_misses",
               "branch_instructions", "branch_misses", "bus_cycles", "stalled_cycles_frontend",
               "stalled_cycles_backend", "ref_cpu_cycles", "cpu_clock", "task_clock", "page_faults",
               "context_switches", "cpu_migrations", "page_faults_min", "page_faults_maj",
               "alignment_faults", "emulation_faults")
NUMA_MODES = ("strict", "preferred", "interleave", "restrictive")
# blkio per-device parameters and the element each fills in <blkiotune><device>, in libvirt's order
BLKIO_DEVICE_FIELDS = (("device_weight", "weight"), ("device_read_iops_sec", "read_iops_sec"),
                       ("device_write_iops_sec", "write_iops_sec"),
                       ("device_read_bytes_sec", "read_bytes_sec"),
                       ("device_write_bytes_sec", "write_bytes_sec"))
# virDomainBlockIoTuneInfo's fields in virDomainGetBlockIoTune's order (group_name is a string)
IOTUNE_FIELDS = ("total_bytes_sec", "read_bytes_sec", "write_bytes_sec", "total_iops_sec", "read_iops_sec",
                 "write_iops_sec", "total_bytes_sec_max", "read_bytes_sec_max", "write_bytes_sec_max",
                 "total_iops_sec_max", "read_iops_sec_max", "write_iops_sec_max", "size_iops_sec", "group_name",
                 "total_bytes_sec_max_length", "read_bytes_sec_max_length", "write_bytes_sec_max_length",
                 "total_iops_sec_max_length", "read_iops_sec_max_length", "write_iops_sec_max_length")
# ... and the order libvirt's <iotune> element lists them in
IOTUNE_XML_ORDER = ("total_bytes_sec", "read_bytes_sec", "write_bytes_sec", "total_iops_sec", "read_iops_sec",
                    "write_iops_sec", "total_bytes_sec_max", "read_bytes_sec_max", "write_bytes_sec_max",
                    "total_iops_sec_max", "read_iops_sec_max", "write_iops_sec_max", "size_iops_sec",
                    "group_name", "total_bytes_sec_max_length", "read_bytes_sec_max_length",
                    "write_bytes_sec_max_length", "total_iops_sec_max_length", "read_iops_sec_max_length",
                    "write_iops_sec_max_length")
BANDWIDTH_KEYS = ("average", "peak", "burst", "floor")


@dataclass
class Tune:
    hard_limit: int = UNLIMITED
    soft_limit: int = UNLIMITED
    swap_hard_limit: int = UNLIMITED
    blkio_weight: int = 0
    blkio_devices: list[dict[str, Any]] = field(default_factory=list)    # {"path", "weight", ...}
    numa_mode: int = 0
    numa_nodeset: list[int] | None = None
    perf: dict[str, bool] = field(default_factory=dict)
    vcpupin: dict[int, list[int]] = field(default_factory=dict)
    emulatorpin: list[int] | None = None
    bandwidth: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)   # mac -> in/out -> rate
    iotune: dict[str, dict[str, Any]] = field(default_factory=dict)                # target dev -> fields
    iothreads: list[int] = field(default_factory=list)                              # <iothreadids>, in order
    iothreads_auto: set[int] = field(default_factory=set)   # numbered by libvirt from <iothreads>N</iothreads>
    iothreadpin: dict[int, list[int]] = field(default_factory=dict)


def config_tune(obj: DomainObj) -> Tune:
    tune = obj.extra.get("tune")
    if not isinstance(tune, Tune):
        tune = obj.extra["tune"] = Tune()      # type: ignore[assignment]
    return tune


def live_tune(obj: DomainObj) -> Tune:
    """The running definition's tuning: the persistent one's, copied at each start."""
    kept = obj.extra.get("tune-live")
    if not (isinstance(kept, tuple) and kept[0] == obj.id):
        kept = obj.extra["tune-live"] = (obj.id, copy.deepcopy(config_tune(obj)))   # type: ignore[assignment]
    return kept[1]


def bare_invalid_arg(message: str) -> libvirtError:
    """The API's argument checks, from the domain's error domain (no "invalid argument: " prefix)."""
    return errors.bare_invalid_arg(message, ErrorDomain.DOMAIN)


def one_def(obj: DomainObj, flags: int) -> tuple[Tune, bool]:
    """virDomainObjGetOneDefState: the definition ``flags`` name, and whether it is the live one."""
    if flags & AFFECT_LIVE and flags & AFFECT_CONFIG:
        raise bare_invalid_arg("Flags 'VIR_DOMAIN_AFFECT_LIVE' and 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive")
    if not flags & (AFFECT_LIVE | AFFECT_CONFIG):
        flags |= AFFECT_LIVE if obj.active else AFFECT_CONFIG
    if flags & AFFECT_LIVE and not obj.active:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")
    if flags & AFFECT_CONFIG and not obj.persistent:
        raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOMAIN,
                    "transient domains do not have any persistent config")
    if flags & AFFECT_LIVE:
        return live_tune(obj), True
    return config_tune(obj), False


def current_tune(obj: DomainObj) -> Tune:
    return live_tune(obj) if obj.active else config_tune(obj)


# -- typed parameters -------------------------------------------------------------------------
_TYPE_NAMES = {1: "int", 2: "uint", 3: "llong", 4: "ullong", 5: "double", 6: "boolean", 7: "string"}


def validate(params: list, allowed: dict[str, int]) -> None:
    """virTypedParamsValidate: known names, each once, each of its type."""
    seen = set()
    for name, ptype, _value in params:
        if name in seen:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, f"parameter '{name}' occurs multiple times")
        seen.add(name)
        if name not in allowed:
            raise error(ErrorNumber.ARGUMENT_UNSUPPORTED, ErrorDomain.NONE, f"parameter '{name}' not supported")
        if ptype != allowed[name]:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE,
                        f"invalid type '{_TYPE_NAMES.get(ptype, ptype)}' for parameter '{name}', "
                        f"expected '{_TYPE_NAMES[allowed[name]]}'")


# -- CPU sets as libvirt writes and reads them ---------------------------------------------------
def format_cpuset(cpus: list[int]) -> str:
    """virBitmapFormat: ranges of two or more joined with '-', the rest with ','."""
    out, cpus = [], sorted(set(cpus))
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


def parse_cpuset(text: str) -> list[int]:
    """virBitmapParse of a nodeset ('1,3-5', '^2' exclusions)."""
    cpus: set[int] = set()
    excluded: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        neg = part.startswith("^")
        part = part[1:] if neg else part
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, f"Failed to parse bitmap '{text}'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi >= 4096:         # VIR_DOMAIN_CPUMASK_LEN
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.NONE, f"Failed to parse bitmap '{text}'")
        (excluded if neg else cpus).update(range(lo, hi + 1))
    return sorted(cpus - excluded)


def cpus_of(cpumap: bytes) -> list[int]:
    return [n for n in range(len(cpumap) * 8) if cpumap[n // 8] & (1 << (n % 8))]


def cpumap_of(cpus: list[int], maplen: int) -> bytes:
    out = bytearray(maplen)
    for cpu in cpus:
        if cpu < maplen * 8:
            out[cpu // 8] |= 1 << (cpu % 8)
    return bytes(out)


# -- the XML libvirt writes for them ----------------------------------------------------------------
def _memtune(t: Tune) -> list[str]:
    rows = [f"    <{name} unit='KiB'>{value}</{name}>" for name, value in
            (("hard_limit", t.hard_limit), ("soft_limit", t.soft_limit), ("swap_hard_limit", t.swap_hard_limit))
            if value < UNLIMITED]
    return ["  <memtune>", *rows, "  </memtune>"] if rows else []


def _blkiotune(t: Tune) -> list[str]:
    rows = [f"    <weight>{t.blkio_weight}</weight>"] if t.blkio_weight else []
    for dev in t.blkio_devices:
        fields = [f"      <{tag}>{dev[tag]}</{tag}>" for _param, tag in BLKIO_DEVICE_FIELDS if dev.get(tag)]
        if fields:
            rows += ["    <device>", f"      <path>{dev['path']}</path>", *fields, "    </device>"]
    return ["  <blkiotune>", *rows, "  </blkiotune>"] if rows else []


def _cputune(t: Tune, vcpus: int) -> list[str]:
    rows = [f"    <vcpupin vcpu='{n}' cpuset='{format_cpuset(cpus)}'/>"
            for n, cpus in sorted(t.vcpupin.items()) if n < vcpus]
    if t.emulatorpin is not None:
        rows.append(f"    <emulatorpin cpuset='{format_cpuset(t.emulatorpin)}'/>")
    rows += [f"    <iothreadpin iothread='{n}' cpuset='{format_cpuset(cpus)}'/>"
             for n, cpus in sorted(t.iothreadpin.items()) if n in t.iothreads]
    return ["  <cputune>", *rows, "  </cputune>"] if rows else []


def _iothreads(t: Tune) -> list[str]:
    if not t.iothreads:
        return []
    count = [f"  <iothreads>{len(t.iothreads)}</iothreads>"]
    if all(n in t.iothreads_auto for n in t.iothreads):
        return count        # libvirt writes no ids it numbered itself
    return count + ["  <iothreadids>", *(f"    <iothread id='{n}'/>" for n in t.iothreads), "  </iothreadids>"]


def _numatune(t: Tune) -> list[str]:
    if t.numa_nodeset is None:
        return []
    return ["  <numatune>",
            f"    <memory mode='{NUMA_MODES[t.numa_mode]}' nodeset='{format_cpuset(t.numa_nodeset)}'/>",
            "  </numatune>"]


def _perf(t: Tune) -> list[str]:
    rows = [f"    <event name='{name}' enabled='{'yes' if t.perf[name] else 'no'}'/>"
            for name in PERF_EVENTS if name in t.perf]
    return ["  <perf>", *rows, "  </perf>"] if rows else []


def _bandwidth(rates: dict[str, dict[str, int]]) -> list[str]:
    rows = []
    for direction in ("inbound", "outbound"):
        rate = rates.get(direction)
        if rate:
            attrs = "".join(f" {k}='{rate[k]}'" for k in BANDWIDTH_KEYS if rate.get(k))
            rows.append(f"        <{direction}{attrs}/>")
    return ["      <bandwidth>", *rows, "      </bandwidth>"] if rows else []


def _iotune(fields: dict[str, Any]) -> list[str]:
    rows = [f"        <{k}>{fields[k]}</{k}>" for k in IOTUNE_XML_ORDER if fields.get(k)]
    return ["      <iotune>", *rows, "      </iotune>"] if rows else []


# the <interface> children libvirt writes after <bandwidth>
_AFTER_BANDWIDTH = ("<vlan", "<script", "<downscript", "<backenddomain", "<target", "<guest", "<model",
                    "<driver", "<backend", "<filterref", "<tune", "<teaming", "<link", "<mtu", "<coalesce",
                    "<boot", "<rom", "<alias", "<address", "</interface>")


def decorate_xml(xml: str, t: Tune, vcpus: int) -> str:
    """Put the tuning elements into a formatted domain XML where libvirt puts them."""
    out: list[str] = []
    disk = iface = False
    mac = None
    for line in xml.split("\n"):
        stripped = line.strip()
        if line.startswith("  <devices>"):
            out += _perf(t)
        if iface and mac is not None and stripped.startswith(_AFTER_BANDWIDTH):
            out += _bandwidth(t.bandwidth.get(mac, {}))
            mac = None
        out.append(line)
        if line.startswith("  <currentMemory"):
            out += _blkiotune(t) + _memtune(t)
        elif line.startswith("  <vcpu"):
            out += _iothreads(t) + _cputune(t, vcpus) + _numatune(t)
        elif stripped.startswith("<disk "):
            disk = True
        elif stripped.startswith("<interface "):
            iface, mac = True, None
        elif disk and stripped.startswith("<target dev="):
            m = re.search(r"dev='([^']*)'", stripped)
            out += _iotune(t.iotune.get(m.group(1), {})) if m else []
        elif iface and stripped.startswith("<mac address="):
            m = re.search(r"address='([^']*)'", stripped)
            mac = m.group(1) if m else None
        if stripped == "</disk>":
            disk = False
        elif stripped == "</interface>":
            iface, mac = False, None
    return "\n".join(out)


# -- reading them back from a domain document ------------------------------------------------------
def parse_tune(xml: str, definition: Any) -> Tune:
    """The tuning elements of a domain document (pyvirt's domain model leaves them out).

    ``definition`` is the document parsed by the domain model: its interfaces, in
    document order, give each ``<bandwidth>`` the MAC address it was assigned."""
    from lxml import etree
    from ...conf import units
    t = Tune()
    try:
        root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml,
                                etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return t                 # the domain parser has already said what is wrong
    for name in ("hard_limit", "soft_limit", "swap_hard_limit"):
        node = root.find(f"memtune/{name}")
        if node is not None and (node.text or "").strip():
            setattr(t, name, min(units.parse_kib(node.text, node.get("unit")), UNLIMITED))
    weight = root.findtext("blkiotune/weight")
    if weight and weight.strip().isdigit():
        t.blkio_weight = int(weight)
    for dev in root.findall("blkiotune/device"):
        path = (dev.findtext("path") or "").strip()
        entry: dict[str, Any] = {"path": path}
        for _param, tag in BLKIO_DEVICE_FIELDS:
            text = (dev.findtext(tag) or "").strip()
            if text.isdigit():
                entry[tag] = int(text)
        if path:
            t.blkio_devices.append(entry)
    mem = root.find("numatune/memory")
    if mem is not None and mem.get("nodeset"):
        t.numa_nodeset = parse_cpuset(mem.get("nodeset"))
        mode = mem.get("mode", "strict")
        t.numa_mode = NUMA_MODES.index(mode) if mode in NUMA_MODES else 0
    for pin in root.findall("cputune/vcpupin"):
        if (pin.get("vcpu") or "").isdigit() and pin.get("cpuset"):
            t.vcpupin[int(pin.get("vcpu"))] = parse_cpuset(pin.get("cpuset"))
    ids = [int(n.get("id")) for n in root.findall("iothreadids/iothread") if (n.get("id") or "").isdigit()]
    count = (root.findtext("iothreads") or "").strip()
    # <iothreads>N</iothreads> without ids: libvirt numbers the missing ones from 1 up
    for n in range(1, 1 + (int(count) if count.isdigit() else 0)):
        if len(ids) >= int(count):
            break
        if n not in ids:
            ids.append(n)
            t.iothreads_auto.add(n)
    t.iothreads = ids
    for pin in root.findall("cputune/iothreadpin"):
        if (pin.get("iothread") or "").isdigit() and pin.get("cpuset"):
            t.iothreadpin[int(pin.get("iothread"))] = parse_cpuset(pin.get("cpuset"))
    emu = root.find("cputune/emulatorpin")
    if emu is not None and emu.get("cpuset"):
        t.emulatorpin = parse_cpuset(emu.get("cpuset"))
    for event in root.findall("perf/event"):
        if event.get("name") in PERF_EVENTS:
            t.perf[event.get("name")] = event.get("enabled") == "yes"
    nets = list(getattr(definition.devices, "interfaces", []))
    for n, iface in enumerate(root.findall("devices/interface")):
        band = iface.find("bandwidth")
        if band is None or n >= len(nets) or not nets[n].mac:
            continue
        rates = {}
        for direction in ("inbound", "outbound"):
            node = band.find(direction)
            if node is not None:
                rates[direction] = {k: int(node.get(k)) for k in BANDWIDTH_KEYS
                                    if (node.get(k) or "").isdigit() and int(node.get(k))}
        t.bandwidth[nets[n].mac.lower()] = rates
    for disk in root.findall("devices/disk"):
        tune, target = disk.find("iotune"), disk.find("target")
        if tune is None or target is None or not target.get("dev"):
            continue
        fields: dict[str, Any] = {}
        for child in tune:
            text = (child.text or "").strip()
            if child.tag == "group_name":
                fields["group_name"] = text
            elif child.tag in IOTUNE_FIELDS and text.isdigit():
                fields[child.tag] = int(text)
        t.iotune[target.get("dev")] = fields
    return t


def set_config(obj: DomainObj, tune: Tune) -> None:
    obj.extra["tune"] = tune          # type: ignore[assignment]


DEFAULT_POLL = (32768, 0, 0)        # a new IOThread's poll-max-ns, poll-grow, poll-shrink


def iothread_params(obj: DomainObj) -> list[list[int]]:
    """libvirt's per-domain poll parameters: [id, poll-max-ns, poll-grow, poll-shrink], kept for
    every IOThread ever added to either definition (the test driver keeps one list)."""
    return obj.extra.setdefault("iothread-params", [])      # type: ignore[return-value]


def generate_iothread_params(obj: DomainObj, tune: Tune) -> None:
    """testDomainGenerateIOThreadInfos (a host file's domains only): each IOThread gets
    default poll figures for the domain statistics."""
    params = iothread_params(obj)
    for n in tune.iothreads:
        if not any(entry[0] == n for entry in params):
            params.append([n, *DEFAULT_POLL])


def set_live(obj: DomainObj, tune: Tune) -> None:
    obj.extra["tune-live"] = (obj.id, tune)     # type: ignore[assignment]
