"""libvirt's x86 CPU baseline, computed from libvirt's own x86 CPU map.

The map (``/usr/share/libvirt/cpu_map``, installed with libvirt's library) names
every vendor (its CPUID leaf 0 string), feature (CPUID or MSR bits) and model
(an ancestor, signatures, a vendor, features, removed features).  The baseline
of host CPUs is the intersection of their models' and features' bits, named
again as the map's closest model plus the features it lacks or has too many:
what libvirt 9.0's x86 CPU driver does, with no hypervisor model list (the
test driver's case).  The map is read once, on first use; where it is not
installed the call is refused as not supported.

Bits are kept as a dict: key ``("cpuid", eax_in, ecx_in)`` or ``("msr", index)``
-> a tuple of registers (eax, ebx, ecx, edx for CPUID; eax, edx for an MSR).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from lxml import etree

from ..errors import ErrorDomain, ErrorNumber, error

MAP_DIR = "/usr/share/libvirt/cpu_map"
BASE_PENALTY = 2        # libvirt's weight of a disabled feature in a candidate model

Data = dict[tuple, tuple[int, ...]]


def _cpu_error(code: ErrorNumber, detail: str) -> Exception:
    return error(code, ErrorDomain.CPU, detail)


# -- bit sets -------------------------------------------------------------------------------------
def _add(data: Data, other: Data) -> None:
    for key, regs in other.items():
        old = data.get(key)
        data[key] = regs if old is None else tuple(a | b for a, b in zip(old, regs))


def _subtract(data: Data, other: Data) -> None:
    for key, regs in data.items():
        mask = other.get(key)
        if mask is not None:
            data[key] = tuple(a & ~b for a, b in zip(regs, mask))


def _intersect(data: Data, other: Data) -> None:
    for key, regs in data.items():
        mask = other.get(key)
        data[key] = tuple(0 for _ in regs) if mask is None else tuple(a & b for a, b in zip(regs, mask))


def _is_subset(data: Data, subset: Data) -> bool:
    for key, mask in subset.items():
        if not any(mask):
            continue
        regs = data.get(key)
        if regs is None or any((a & b) != b for a, b in zip(regs, mask)):
            return False
    return True


def _is_empty(data: Data) -> bool:
    return not any(any(regs) for regs in data.values())


# -- the map ---------------------------------------------------------------------------------------
@dataclass
class Model:
    name: str
    decode_guest: bool
    vendor: str | None = None
    data: Data = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)


@dataclass
class CPUMap:
    vendors: dict[str, Data] = field(default_factory=dict)      # in the map's order
    features: dict[str, Data] = field(default_factory=dict)     # in the map's order
    not_migratable: set[str] = field(default_factory=set)       # features marked migratable='no'
    models: list[Model] = field(default_factory=list)

    def model(self, name: str) -> Model | None:
        return next((m for m in self.models if m.name == name), None)


def _num(node: etree._Element, attr: str) -> int:
    return int(node.get(attr, "0"), 0)


def _feature_data(node: etree._Element) -> Data:
    data: Data = {}
    for item in node:
        if item.tag == "cpuid":
            _add(data, {("cpuid", _num(item, "eax_in"), _num(item, "ecx_in")):
                        (_num(item, "eax"), _num(item, "ebx"), _num(item, "ecx"), _num(item, "edx"))})
        elif item.tag == "msr":
            _add(data, {("msr", _num(item, "index")): (_num(item, "eax"), _num(item, "edx"))})
    return data


def _vendor_data(string: str) -> Data:
    raw = string.encode()
    words = [int.from_bytes(raw[i:i + 4], "little") for i in (0, 4, 8)]
    return {("cpuid", 0, 0): (0, words[0], words[2], words[1])}     # ebx, edx, ecx spell it


@lru_cache(maxsize=1)
def load_map(directory: str = MAP_DIR) -> CPUMap:
    """The x86 part of libvirt's CPU map, in its index's order (vendors, features, models)."""
    index = etree.parse(os.path.join(directory, "index.xml")).getroot()
    arch = next(a for a in index.findall("arch") if a.get("name") == "x86")
    cpu_map = CPUMap()
    for include in arch.findall("include"):
        root = etree.parse(os.path.join(directory, include.get("filename"))).getroot()
        for node in root.findall("vendor"):
            cpu_map.vendors[node.get("name")] = _vendor_data(node.get("string"))
        for node in root.findall("feature"):
            cpu_map.features[node.get("name")] = _feature_data(node)
            if node.get("migratable") == "no":
                cpu_map.not_migratable.add(node.get("name"))
        for node in root.findall("model"):
            cpu_map.models.append(_parse_model(node, cpu_map))
    return cpu_map


def _parse_model(node: etree._Element, cpu_map: CPUMap) -> Model:
    decode = node.find("decode")
    model = Model(node.get("name"), decode is not None and decode.get("guest") == "on")
    ancestor = node.find("model")
    if ancestor is not None:
        parent = cpu_map.model(ancestor.get("name"))
        if parent is not None:
            model.vendor = parent.vendor
            _add(model.data, parent.data)
    vendor = node.find("vendor")
    if vendor is not None:
        model.vendor = vendor.get("name")
    for feature in node.findall("feature"):
        if feature.get("removed") == "yes":
            model.removed.append(feature.get("name"))
        else:
            _add(model.data, cpu_map.features[feature.get("name")])
    return model


def available(directory: str = MAP_DIR) -> bool:
    return os.path.isfile(os.path.join(directory, "index.xml"))


# -- the baseline -----------------------------------------------------------------------------------
def _host_data(cpu_map: CPUMap, model_name: str, features: list[str]) -> tuple[Model, Data]:
    model = cpu_map.model(model_name)
    if model is None:
        raise _cpu_error(ErrorNumber.INTERNAL_ERROR, f"Unknown CPU model {model_name}")
    data: Data = dict(model.data)
    for name in features:           # a host CPU's features are all required
        bits = cpu_map.features.get(name)
        if bits is None:
            raise _cpu_error(ErrorNumber.INTERNAL_ERROR, f"Unknown CPU feature {name}")
        _add(data, bits)
    return model, data


def _to_features(cpu_map: CPUMap, data: Data) -> list[str]:
    """The map's features ``data`` holds, in the map's order, each taken out of it."""
    found = []
    for name, bits in cpu_map.features.items():
        if _is_subset(data, bits):
            _subtract(data, bits)
            found.append(name)
    return found


def _data_vendor(cpu_map: CPUMap, data: Data) -> str | None:
    for name, bits in cpu_map.vendors.items():
        if _is_subset(data, bits):
            _subtract(data, bits)
            return name
    return None


def _candidate(cpu_map: CPUMap, data: Data, model: Model) -> list[tuple[str, str]]:
    """``model`` described with ``data``: (name, policy) for what it lacks and what it has too many."""
    extra, missing = dict(data), dict(model.data)
    _data_vendor(cpu_map, extra)
    _subtract(extra, model.data)
    _subtract(missing, data)
    features = [(f, "require") for f in _to_features(cpu_map, extra)]
    features += [(f, "disable") for f in _to_features(cpu_map, missing)]
    named = {f for f, _ in features}
    features += [(f, "disable") for f in model.removed if f not in named]
    return features


def _weight(features: list[tuple[str, str]]) -> tuple[int, int]:
    """libvirt's (weight, disabled part) of a candidate.  Its loop runs while the index is below
    the count of enabled features, which shrinks as disabled ones are met: the disabled
    features (listed last) beyond that point are not counted.  Kept, for libvirt's choices."""
    enabled, disabled, penalty = len(features), 0, BASE_PENALTY
    i = 0
    while i < enabled:
        if features[i][1] == "disable":
            enabled -= 1
            disabled += penalty
            penalty += 1
        i += 1
    return enabled + disabled, disabled


def _decode(cpu_map: CPUMap, data: Data, preferred: list[str]) -> tuple[str, str | None, list[tuple[str, str]]]:
    work = dict(data)
    vendor = _data_vendor(cpu_map, work)
    best: tuple[Model, list[tuple[str, str]]] | None = None
    for model in reversed(cpu_map.models):        # newest first
        if vendor and model.vendor and vendor != model.vendor:
            continue
        if not model.decode_guest:
            continue
        features = _candidate(cpu_map, data, model)
        is_preferred = model.name in preferred
        if is_preferred and len(preferred) == 1:
            best = (model, features)
            break
        if best is None:
            best = (model, features)
            continue
        weight, disabled = _weight(features)
        best_weight, best_disabled = _weight(best[1])
        if weight < best_weight or (weight == best_weight and disabled < best_disabled) \
                or (is_preferred and disabled < best_disabled):
            best = (model, features)
    if best is None:
        raise _cpu_error(ErrorNumber.INTERNAL_ERROR, "Cannot find suitable CPU model for given data")
    return best[0].name, vendor, best[1]


def baseline(cpus: list, expand: bool, migratable: bool = False, keep: Callable[[str], bool] = lambda f: True,
             directory: str = MAP_DIR) -> str:
    """``cpus``: parsed host CPUs (arch, model, vendor, features); libvirt's XML of their baseline.
    ``migratable``: without the features that block migration; ``keep``: a driver's filter of
    the features it can use (applied before the expansion, as libvirt's QEMU driver does)."""
    if not available(directory):
        raise _cpu_error(ErrorNumber.NO_SUPPORT, "the x86 CPU map of libvirt is not installed "
                                                 f"({directory})")
    cpu_map = load_map(directory)
    first_model, data = _host_data(cpu_map, cpus[0].model, cpus[0].features)
    vendor = cpus[0].vendor
    output_vendor = vendor is not None
    if vendor is not None and vendor not in cpu_map.vendors:
        raise _cpu_error(ErrorNumber.OPERATION_FAILED, f"Unknown CPU vendor {vendor}")
    names = [cpus[0].model]
    for cpu in cpus[1:]:
        if cpu.model not in names:
            names.append(cpu.model)
        model, more = _host_data(cpu_map, cpu.model, cpu.features)
        if cpu.vendor and model.vendor and cpu.vendor != model.vendor:
            raise _cpu_error(ErrorNumber.OPERATION_FAILED,
                             f"CPU vendor {model.vendor} of model {model.name} differs from vendor {cpu.vendor}")
        this_vendor = cpu.vendor
        if this_vendor is None:
            output_vendor = False
            this_vendor = model.vendor
        if this_vendor:
            if vendor is None:
                if this_vendor not in cpu_map.vendors:
                    raise _cpu_error(ErrorNumber.OPERATION_FAILED, f"Unknown CPU vendor {this_vendor}")
                vendor = this_vendor
            elif vendor != this_vendor:
                raise _cpu_error(ErrorNumber.OPERATION_FAILED, "CPU vendors do not match")
        _intersect(data, more)
    if _is_empty(data):
        raise _cpu_error(ErrorNumber.OPERATION_FAILED, "CPUs are incompatible")
    if vendor:
        _add(data, cpu_map.vendors[vendor])
    name, found_vendor, features = _decode(cpu_map, data, names)
    if migratable:
        features = [(f, policy) for f, policy in features if f not in cpu_map.not_migratable]
    features = [(f, policy) for f, policy in features if keep(f)]
    fallback = "forbid" if len(names) == 1 and name == names[0] else "allow"
    if expand:
        features = _expanded(cpu_map, name, features)
    lines = ["<cpu mode='custom' match='exact'>", f"  <model fallback='{fallback}'>{name}</model>"]
    if output_vendor and found_vendor:
        lines.append(f"  <vendor>{found_vendor}</vendor>")
    lines += [f"  <feature policy='{policy}' name='{feat}'/>" for feat, policy in features]
    return "\n".join(lines + ["</cpu>", ""])


def _expanded(cpu_map: CPUMap, name: str, features: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES: every feature of the model spelt out, sorted by name."""
    model = cpu_map.model(name)
    assert model is not None
    out = dict.fromkeys(_to_features(cpu_map, dict(model.data)), "require")
    for feat, policy in features:
        out[feat] = policy
    for feat in model.removed:
        out.setdefault(feat, "disable")
    return sorted(out.items())
