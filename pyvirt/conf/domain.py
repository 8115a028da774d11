"""The domain definition: libvirt's ``<domain>`` XML as typed dataclasses.

:func:`parse` reads domain XML the way libvirt's parser does (defaults filled
in, sizes scaled to KiB, a UUID generated when absent, unknown elements
ignored) and :meth:`DomainDef.format` writes it back byte for byte as
libvirt would print it.  The devices live in :mod:`pyvirt.conf.devices`.

Parsing is lossless for live state (``id``, aliases, pty paths, allocated
ports): status XML and migration need it.  Pass ``inactive=True`` to drop it,
as libvirt does when defining a domain; ``format(inactive=True)`` leaves it
out of the output either way.
"""

from __future__ import annotations

import copy
import uuid as uuidlib
from collections.abc import Collection
from dataclasses import dataclass, field

from lxml import etree

from ..errors import ErrorDomain, ErrorLevel, ErrorNumber, error, libvirtError, no_name
from . import metadata as metadata_xml
from .clock import Timer, pm_node, pm_of, timers_of
from .devices import Devices, FormatFlags
from .names import check_name
from .units import UnitError, parse_kib
from .xmlutil import (Node, check_choice, child, child_text, el, int_attr, parse_document, prop_enum,
                      prop_tristate, prop_uint, render, UINT_MAX, text_of, to_int, unsupported, xml_detail)

__all__ = ["DomainDef", "OSDef", "CPUDef", "parse", "from_element", "VIRT_TYPES"]

# libvirt's virDomainVirtType names.
VIRT_TYPES = ("none", "qemu", "kqemu", "kvm", "xen", "lxc", "uml", "openvz", "test", "vmware",
              "hyperv", "vbox", "phyp", "parallels", "bhyve", "vz")
LOADER_TYPES = ("rom", "pflash")
OS_TYPES = ("hvm", "xen", "linux", "exe", "uml")
BOOT_DEVICES = ("fd", "cdrom", "hd", "network")
# The features written as empty elements, in the order libvirt prints them.
FEATURES = ("acpi", "apic", "pae", "hap", "viridian", "privnet")
CPU_MODES = ("custom", "host-model", "host-passthrough", "maximum")
CPU_MATCHES = ("minimum", "exact", "strict")
CPU_CHECKS = ("none", "partial", "full")
CPU_FALLBACKS = ("allow", "forbid")
CPU_FEATURE_POLICIES = ("force", "require", "optional", "disable", "forbid")
# <qemu:commandline> and friends: options pyvirt never passes (see command.py's rules)
QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"
ON_OFF = ("on", "off")
CLOCK_OFFSETS = ("utc", "localtime", "timezone", "variable", "absolute")
VCPU_PLACEMENTS = ("static", "auto")
LIFECYCLE_ACTIONS = ("destroy", "restart", "rename-restart", "preserve")
CRASH_ACTIONS = LIFECYCLE_ACTIONS + ("coredump-destroy", "coredump-restart")
# element (= DomainDef attribute) -> allowed actions, libvirt's default
LIFECYCLE: dict[str, tuple[tuple[str, ...], str]] = {
    "on_poweroff": (LIFECYCLE_ACTIONS, "destroy"),
    "on_reboot": (LIFECYCLE_ACTIONS, "restart"),
    "on_crash": (CRASH_ACTIONS, "destroy"),
}
# <on_lockfailure>: what the lock manager does when a lease is lost ("": libvirt's default,
# which it does not format; the lock manager then powers the guest off)
LOCKFAILURE_ACTIONS = ("poweroff", "restart", "pause", "ignore")


def _xpath_string(node: etree._Element | None) -> str | None:
    """libvirt's virXPathString: the element's whole text, None when there is none."""
    return ("".join(node.itertext()) or None) if node is not None else None


def _uuid(text: str) -> str:
    """Canonical lower-case UUID; libvirt allows dashes and spaces anywhere."""
    digits = text.replace("-", "").replace(" ", "")
    if len(digits) != 32 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise xml_detail(f"malformed uuid element '{text}': expected 32 hex digits "
                         "such as 'c7a5fdbd-edaf-9455-926a-d65c16db1809'")
    return str(uuidlib.UUID(hex=digits))


def _size_kib(node: etree._Element) -> int:
    try:
        return parse_kib(node.text, node.get("unit"))
    except UnitError as exc:
        raise xml_detail(f"invalid size in <{node.tag}>: {exc}") from exc


@dataclass(slots=True)
class Loader:
    """<os><loader>: the firmware image (``path``, None when the element is empty)."""
    path: str | None = None
    type: str | None = None            # rom | pflash; rom when a path is given without one
    readonly: bool | None = None
    secure: bool | None = None
    stateless: bool | None = None

    @classmethod
    def from_xml(cls, node: etree._Element) -> Loader:
        loader = cls(readonly=prop_tristate(node, "readonly"), type=prop_enum(node, "type", LOADER_TYPES),
                     path="".join(node.itertext()) or None, secure=prop_tristate(node, "secure"),
                     stateless=prop_tristate(node, "stateless"))
        if loader.path is not None and loader.type is None:
            loader.type = "rom"      # libvirt's post-parse default
        return loader

    def to_node(self) -> Node | None:
        def tri(value: bool | None) -> str | None:
            return None if value is None else ("yes" if value else "no")
        attrs = [("readonly", tri(self.readonly)), ("secure", tri(self.secure)), ("type", self.type),
                 ("stateless", tri(self.stateless))]
        if self.path is None and all(v is None for _n, v in attrs):
            return None              # libvirt prints nothing for an element with nothing in it
        return el("loader", attrs, text=self.path)


@dataclass(slots=True)
class OSDef:
    type: str = "hvm"
    arch: str | None = None
    machine: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    dtb: str | None = None             # a device tree blob for the guest
    root: str | None = None            # the root device a Xen PV kernel is told of
    loader: Loader | None = None
    boot: list[str] = field(default_factory=list)

    @classmethod
    def from_xml(cls, node: etree._Element | None) -> OSDef:
        type_node = child(node, "type") if node is not None else None
        os_type = text_of(type_node, strip=True)
        if node is None or type_node is None or os_type is None:
            raise error(ErrorNumber.OS_TYPE, ErrorDomain.DOMAIN,
                        "an os <type> must be specified, e.g. <os><type>hvm</type></os>")
        boot = [check_choice(b.get("dev", ""), BOOT_DEVICES, "boot device")
                for b in node.findall("boot")]
        if not boot and os_type == "hvm":
            boot = ["hd"]   # libvirt's default boot device for hvm guests
        return cls(
            type=check_choice(os_type, OS_TYPES, "os type"),
            arch=type_node.get("arch"), machine=type_node.get("machine"),
            kernel=child_text(node, "kernel", strip=True), initrd=child_text(node, "initrd", strip=True),
            cmdline=child_text(node, "cmdline"), boot=boot,
            dtb=_xpath_string(child(node, "dtb")), root=_xpath_string(child(node, "root")),
            loader=Loader.from_xml(child(node, "loader")) if child(node, "loader") is not None else None,
        )

    def to_node(self) -> Node:
        return el("os", (), [
            el("type", [("arch", self.arch), ("machine", self.machine)], text=self.type),
            self.loader.to_node() if self.loader else None,
            el("kernel", text=self.kernel) if self.kernel else None,
            el("initrd", text=self.initrd) if self.initrd else None,
            el("cmdline", text=self.cmdline) if self.cmdline else None,
            el("dtb", text=self.dtb) if self.dtb else None,
            el("root", text=self.root) if self.root else None,
            *(el("boot", [("dev", dev)]) for dev in self.boot),
        ])


@dataclass(slots=True)
class CPUDef:
    mode: str = "custom"               # custom | host-model | host-passthrough | maximum
    match: str | None = None           # custom only: minimum | exact | strict
    check: str | None = None
    migratable: str | None = None      # host-passthrough / maximum: on | off
    model: str | None = None           # custom: the CPU model name
    fallback: str | None = None
    # <feature policy='require' name='lahf_lm'/>, in order: the live XML of a running
    # guest lists what QEMU really enabled (check='full')
    features: list[tuple[str, str]] = field(default_factory=list)

    vendor: str | None = None          # <vendor>: custom and host-model CPUs only
    # <topology sockets dies cores threads/>: all four, or None (dies defaults to 1)
    topology: tuple[int, int, int, int] | None = None

    @classmethod
    def from_xml(cls, node: etree._Element) -> CPUDef:
        model = child(node, "model")
        name = text_of(model, strip=True)
        mode = check_choice(node.get("mode", "custom"), CPU_MODES, "CPU mode")
        match = node.get("match")
        if match is None and mode == "custom" and name:
            match = "exact"    # libvirt's default when a model is named
        cpu = cls(
            mode=mode,
            match=check_choice(match, CPU_MATCHES, "CPU match") if match else None,
            check=check_choice(node.get("check"), CPU_CHECKS, "CPU check") if node.get("check") else None,
            migratable=(check_choice(node.get("migratable"), ON_OFF, "CPU migratable")
                        if node.get("migratable") else None),
            model=name,
        )
        fallback = model.get("fallback") if model is not None else None
        if fallback is not None and mode not in ("host-passthrough", "maximum"):    # ignored there
            if fallback not in CPU_FALLBACKS:
                raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.CPU, "Invalid fallback attribute")
            cpu.fallback = fallback
        cpu.vendor = _xpath_string(child(node, "vendor"))
        if cpu.vendor is not None and cpu.model is None:
            raise error(ErrorNumber.XML_ERROR, ErrorDomain.CPU, "CPU vendor specified without CPU model")
        topology = child(node, "topology")
        if topology is not None:
            sockets = prop_uint(topology, "sockets", required=True, nonzero=True)
            dies = prop_uint(topology, "dies", nonzero=True)
            cores = prop_uint(topology, "cores", required=True, nonzero=True)
            threads = prop_uint(topology, "threads", required=True, nonzero=True)
            cpu.topology = (sockets, 1 if dies is None else dies, cores, threads)   # type: ignore[assignment]
        cpu.features = [(check_choice(f.get("policy", "require"), CPU_FEATURE_POLICIES, "CPU feature policy"),
                         f.get("name") or "") for f in node.findall("feature")]
        return cpu

    def to_node(self) -> Node:
        # libvirt prints a guest model's fallback always, 'allow' unless set otherwise
        models = self.mode in ("custom", "host-model")
        fallback = (self.fallback or "allow") if self.model is not None else self.fallback
        has_model = models and (self.model is not None or self.fallback is not None)
        # a custom CPU without a model (only a topology) is printed without attributes
        attrs = [("mode", self.mode), ("match", self.match), ("check", self.check),
                 ("migratable", self.migratable)] if self.mode != "custom" or self.model is not None else []
        return el("cpu", attrs, [
            el("model", [("fallback", fallback)], text=self.model) if has_model else None,
            el("vendor", text=self.vendor) if models and self.vendor else None,
            el("topology", [("sockets", t[0]), ("dies", t[1]), ("cores", t[2]), ("threads", t[3])])
            if (t := self.topology) else None,
            *(el("feature", [("policy", policy), ("name", name)]) for policy, name in self.features),
        ])

    @property
    def topology_cpus(self) -> int | None:
        """How many vCPUs the topology describes (None without one)."""
        if self.topology is None:
            return None
        sockets, dies, cores, threads = self.topology
        return sockets * dies * cores * threads


@dataclass(slots=True, kw_only=True)
class DomainDef:
    type: str                          # virt type: kvm, qemu, test, ...
    name: str
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    id: int | None = None              # set while running
    title: str | None = None
    description: str | None = None
    metadata: list[etree._Element] = field(default_factory=list)   # see conf.metadata
    metadata_kept: bool = False        # libvirt writes <metadata/> once there was one, even emptied
    memory_kib: int = 0
    current_memory_kib: int = 0
    vcpus: int = 1                     # the maximum (<vcpu>'s text)
    vcpu_placement: str = "static"
    vcpus_current: int | None = None   # <vcpu current='N'>: fewer online than the maximum
    os: OSDef = field(default_factory=OSDef)
    features: list[str] = field(default_factory=list)
    cpu: CPUDef | None = None
    # The CPU as defined, when ``cpu`` is what QEMU expanded it to (an incoming migration's
    # cookie): libvirt's origCPU, which its migratable XML shows.  Not formatted; lost with
    # a daemon restart, after which the expanded CPU is sent (the same guest CPU).
    orig_cpu: CPUDef | None = None
    clock_offset: str = "utc"
    timers: list[Timer] = field(default_factory=list)
    vmport: str | None = None          # <features><vmport state='on|off'/>
    pm: dict[str, str] = field(default_factory=dict)    # <pm>: suspend-to-mem/-disk -> yes | no
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"
    on_lockfailure: str = ""
    devices: Devices = field(default_factory=Devices)
    # <qemu:commandline> and the like: not kept; the QEMU driver refuses them by this name
    qemu_namespace: str | None = None

    @property
    def uuid_bytes(self) -> bytes:
        return uuidlib.UUID(self.uuid).bytes

    def copy(self) -> DomainDef:
        return copy.deepcopy(self)

    @property
    def current_vcpus(self) -> int:
        """The vCPUs online (libvirt's virDomainDefGetVcpus), at most the maximum."""
        return self.vcpus_current if self.vcpus_current is not None else self.vcpus

    def set_current_vcpus(self, count: int) -> None:
        self.vcpus_current = count if count < self.vcpus else None

    def format(self, secure: bool = False, inactive: bool = False, migratable: bool = False) -> str:
        """libvirt's XML for this domain.

        ``secure`` includes passwords; ``inactive`` leaves out live state
        (id, aliases, pty paths, ports chosen by autoport); ``migratable`` is
        the XML another host receives (:mod:`.migratable`; inactive too).
        """
        if migratable:
            from .migratable import migratable_copy
            return render(migratable_copy(self).to_node(FormatFlags(secure=secure, inactive=True)))
        return render(self.to_node(FormatFlags(secure=secure, inactive=inactive)))

    def to_node(self, flags: FormatFlags) -> Node:
        shown_id = self.id if self.id is not None and not flags.inactive else None
        return el("domain", [("type", self.type), ("id", shown_id)], [
            el("name", text=self.name),
            el("uuid", text=self.uuid),
            el("title", text=self.title) if self.title else None,
            el("description", text=self.description) if self.description else None,
            metadata_xml.to_node(self.metadata, self.metadata_kept),
            el("memory", [("unit", "KiB")], text=str(self.memory_kib)),
            el("currentMemory", [("unit", "KiB")], text=str(self.current_memory_kib)),
            el("vcpu", [("placement", self.vcpu_placement), ("current", self.vcpus_current)],
               text=str(self.vcpus)),
            self.os.to_node(),
            el("features", (), [*(el(name) for name in self.features),
                                el("vmport", [("state", self.vmport)]) if self.vmport else None])
            if self.features or self.vmport else None,
            self.cpu.to_node() if self.cpu else None,
            el("clock", [("offset", self.clock_offset)], [t.to_node() for t in self.timers]),
            *(el(action, text=getattr(self, action)) for action in LIFECYCLE),
            el("on_lockfailure", text=self.on_lockfailure) if self.on_lockfailure else None,
            pm_node(self.pm),
            self.devices.to_node(flags),
        ])

    def clear_live_state(self) -> None:
        """Forget what only a running domain has, as libvirt's inactive parse does."""
        self.id = None
        self.devices.clear_live()

    def validate(self) -> None:
        """The checks libvirt makes on every parsed definition."""
        if not self.name:
            raise no_name()
        check_name(self.name)
        if self.title and "\n" in self.title:
            raise xml_detail("domain title cannot contain newlines")
        if self.memory_kib <= 0:
            raise xml_detail("memory size must be specified with <memory> and be greater than zero")
        if self.vcpus < 1:
            raise xml_detail(f"<vcpu> count must be at least 1, got {self.vcpus}")
        if self.os.loader is not None and self.os.loader.path is None:
            # pyvirt has no firmware auto-selection (<os firmware=...>): a loader must name its image
            detail = "no loader path specified and firmware auto selection disabled"
            # libvirt's XML_DETAIL carries its message bare (no "XML error: " in front)
            raise libvirtError(detail, ErrorNumber.XML_DETAIL, ErrorDomain.DOMAIN, ErrorLevel.ERROR, "%s", detail)
        if self.cpu is not None and (self.cpu.topology_cpus or 0) > UINT_MAX:
            raise unsupported(f"cpu topology results in more than {UINT_MAX} cpus")
        seen: dict[str, str | None] = {}
        for disk in self.devices.disks:
            if disk.target_dev in seen:
                raise xml_detail(f"target '{disk.target_dev}' duplicated for disk sources "
                                 f"'{seen[disk.target_dev] or '(none)'}' and '{disk.source or '(none)'}'")
            seen[disk.target_dev] = disk.source


def parse(xml: str | bytes, allowed_types: Collection[str] | None = None, driver_name: str = "",
          *, inactive: bool = False) -> DomainDef:
    """Parse domain XML.

    ``allowed_types`` are the virt types the calling driver runs (refused
    otherwise with CONFIG_UNSUPPORTED naming ``driver_name``).  With
    ``inactive=True`` live state is dropped, as libvirt does for define.
    """
    root = parse_document(xml, "domain", "(domain_definition)")
    return from_element(root, allowed_types, driver_name, inactive=inactive)


def from_element(root: etree._Element, allowed_types: Collection[str] | None = None,
                 driver_name: str = "", *, inactive: bool = False) -> DomainDef:
    """Parse an already-parsed ``<domain>`` element (status XML embeds one)."""
    vtype = _virt_type(root, allowed_types, driver_name)
    name = child_text(root, "name", strip=True)
    if not name:
        raise no_name()
    dom_id = int_attr(root, "id", minimum=-1)
    uuid_text = child_text(root, "uuid", strip=True)
    memory = child(root, "memory")
    if memory is None:
        raise xml_detail("memory size must be specified with <memory> and be greater than zero")
    memory_kib = _size_kib(memory)
    current = child(root, "currentMemory")
    current_kib = _size_kib(current) if current is not None else 0
    vcpu = child(root, "vcpu")
    cpu = child(root, "cpu")
    clock = child(root, "clock")
    features = child(root, "features")
    present = {c.tag for c in features} if features is not None else set()

    dom = DomainDef(
        type=vtype,
        id=dom_id if dom_id is not None and dom_id >= 0 else None,
        name=name,
        uuid=_uuid(uuid_text) if uuid_text else str(uuidlib.uuid4()),
        title=child_text(root, "title"),
        description=child_text(root, "description"),
        metadata=metadata_xml.from_xml(child(root, "metadata")),
        metadata_kept=child(root, "metadata") is not None,
        memory_kib=memory_kib,
        # libvirt clamps the balloon to the memory size, and an unset one means "all of it"
        current_memory_kib=current_kib if 0 < current_kib <= memory_kib else memory_kib,
        # virDomainGetInfo reports vCPUs in 16 bits, and no QEMU machine type takes more
        vcpus=to_int(vcpu.text or "", "element <vcpu>", maximum=65535) if vcpu is not None else 1,
        vcpu_placement=check_choice(vcpu.get("placement", "static") if vcpu is not None else "static",
                                    VCPU_PLACEMENTS, "vcpu placement"),
        vcpus_current=_current_vcpus(vcpu),
        os=OSDef.from_xml(child(root, "os")),
        features=[name for name in FEATURES if name in present],
        cpu=CPUDef.from_xml(cpu) if cpu is not None else None,
        clock_offset=check_choice(clock.get("offset", "utc") if clock is not None else "utc",
                                  CLOCK_OFFSETS, "clock offset"),
        timers=timers_of(clock),
        vmport=_vmport(features),
        pm=pm_of(child(root, "pm")),
        devices=Devices.from_xml(child(root, "devices")),
        qemu_namespace=_qemu_namespace_element(root),
    )
    for action, (allowed, default) in LIFECYCLE.items():
        setattr(dom, action, check_choice(child_text(root, action, strip=True) or default,
                                          allowed, f"<{action}> action"))
    lockfailure = child_text(root, "on_lockfailure", strip=True)
    if lockfailure:
        dom.on_lockfailure = check_choice(lockfailure, LOCKFAILURE_ACTIONS, "<on_lockfailure> action")
    dom.validate()
    if inactive:
        dom.clear_live_state()
    return dom


def _vmport(features: etree._Element | None) -> str | None:
    node = child(features, "vmport") if features is not None else None
    if node is None or not node.get("state"):
        return None
    return check_choice(node.get("state"), ON_OFF, "vmport state")


def _qemu_namespace_element(root: etree._Element) -> str | None:
    """The first element of libvirt's qemu namespace (``commandline``, ``capabilities``...), if any."""
    found = next((n for n in root.iter() if isinstance(n.tag, str) and n.tag.startswith(f"{{{QEMU_NAMESPACE}}}")),
                 None)
    return etree.QName(found).localname if found is not None else None


def _current_vcpus(vcpu: etree._Element | None) -> int | None:
    """<vcpu current='N'>: None when absent or equal to the maximum (libvirt omits it then)."""
    if vcpu is None or vcpu.get("current") is None:
        return None
    current = int_attr(vcpu, "current", minimum=1)
    maximum = to_int(vcpu.text or "", "element <vcpu>", maximum=65535)
    if current is not None and current > maximum:
        raise xml_detail(f"maxvcpus must not be less than current vcpus ({maximum} < {current})")
    return current if current is not None and current < maximum else None


def _virt_type(root: etree._Element, allowed: Collection[str] | None, driver_name: str) -> str:
    vtype = root.get("type")
    if not vtype:
        raise xml_detail("missing domain type attribute: use e.g. <domain type='kvm'>")
    check_choice(vtype, VIRT_TYPES, "domain type")
    if allowed is not None and vtype not in allowed:
        by = f" by the {driver_name} driver" if driver_name else ""
        raise unsupported(f"domain type '{vtype}' is not supported{by} "
                          f"(supported: {', '.join(sorted(allowed))})")
    return vtype
