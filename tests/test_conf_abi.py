"""pyvirt.conf.abi: what may and may not change when a guest migrates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pyvirt.conf import DomainDef, check_abi_stability, ensure_abi_stable, parse
from pyvirt.conf.devices import Console, Disk, Input, Interface, Memballoon, Serial, Video
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError

DATA = Path(__file__).parent / "data" / "domain"

SOURCE_XML = """<domain type='kvm' id='4'>
  <name>src</name>
  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
  <title>before</title>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <features><acpi/><apic/></features>
  <cpu mode='host-passthrough'/>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/src/a.qcow2'/><target dev='vda' bus='sata'/>
    </disk>
    <disk type='file' device='cdrom'><target dev='sdb' bus='sata'/></disk>
    <interface type='network'>
      <mac address='52:54:00:00:00:01'/><source network='default'/><model type='virtio'/>
    </interface>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <input type='tablet' bus='usb'/>
    <graphics type='vnc' port='5900' autoport='yes' listen='127.0.0.1' passwd='a'/>
    <video><model type='vga' vram='16384' heads='1'/></video>
    <memballoon model='virtio'/>
  </devices>
</domain>"""


@pytest.fixture
def src() -> DomainDef:
    return parse(SOURCE_XML)


def changed(src: DomainDef, mutate: Callable[[DomainDef], object]) -> DomainDef:
    dst = src.copy()
    mutate(dst)
    return dst


def test_identical_definitions_are_stable(src):
    assert check_abi_stability(src, src.copy()) == []
    ensure_abi_stable(src, src.copy())


@pytest.mark.parametrize("path", sorted(DATA.glob("*.xml")), ids=lambda p: p.stem)
def test_every_golden_definition_is_stable_with_its_inactive_form(path):
    dom = parse(path.read_text())
    assert check_abi_stability(dom, parse(dom.format(secure=True, inactive=True))) == []


ALLOWED: dict[str, Callable[[DomainDef], object]] = {
    "name": lambda d: setattr(d, "name", "renamed"),
    "id": lambda d: setattr(d, "id", 99),
    "title": lambda d: setattr(d, "title", "after"),
    "description": lambda d: setattr(d, "description", "moved"),
    "currentMemory": lambda d: setattr(d, "current_memory_kib", 524288),
    "lifecycle": lambda d: (setattr(d, "on_reboot", "destroy"), setattr(d, "on_crash", "preserve")),
    "emulator": lambda d: setattr(d.devices, "emulator", "/opt/qemu/bin/qemu-system-x86_64"),
    "disk source": lambda d: setattr(d.devices.disks[0], "source", "/dst/a.qcow2"),
    "disk cache": lambda d: setattr(d.devices.disks[0], "driver_cache", "writeback"),
    "disk alias": lambda d: setattr(d.devices.disks[0], "alias", "sata0-0-0"),
    "cdrom media": lambda d: setattr(d.devices.disks[1], "source", "/dst/install.iso"),
    "interface source": lambda d: setattr(d.devices.interfaces[0], "source", "other"),
    "interface tap": lambda d: setattr(d.devices.interfaces[0], "target_dev", "vnet9"),
    "serial pty path": lambda d: setattr(d.devices.serials[0], "path", "/dev/pts/9"),
    "graphics listen": lambda d: setattr(d.devices.graphics[0].listens[0], "address", "0.0.0.0"),
    "graphics port": lambda d: (setattr(d.devices.graphics[0], "port", 5999),
                                setattr(d.devices.graphics[0], "autoport", False)),
    "graphics password": lambda d: setattr(d.devices.graphics[0], "passwd", "b"),
    "graphics keymap": lambda d: setattr(d.devices.graphics[0], "keymap", "de"),
}


@pytest.mark.parametrize("mutate", ALLOWED.values(), ids=ALLOWED.keys())
def test_host_side_differences_are_allowed(src, mutate):
    assert check_abi_stability(src, changed(src, mutate)) == []


def _add(attr: str, item: object) -> Callable[[DomainDef], object]:
    return lambda d: getattr(d.devices, attr).append(item)


FORBIDDEN: list[tuple[str, Callable[[DomainDef], object], str]] = [
    ("virt type", lambda d: setattr(d, "type", "qemu"),
     "Target domain virt type qemu does not match source kvm"),
    ("uuid", lambda d: setattr(d, "uuid", "00000000-0000-0000-0000-000000000001"),
     "Target domain uuid 00000000-0000-0000-0000-000000000001 does not match source c7a5fdbd"),
    ("vcpus", lambda d: setattr(d, "vcpus", 2), "Target vCPU count 2 does not match source 1"),
    ("memory", lambda d: setattr(d, "memory_kib", 2097152),
     "Target memory size 2097152 KiB does not match source 1048576 KiB"),
    ("os type", lambda d: setattr(d.os, "type", "xen"), "Target OS type xen does not match source hvm"),
    ("arch", lambda d: setattr(d.os, "arch", "aarch64"),
     "Target architecture aarch64 does not match source x86_64"),
    ("machine", lambda d: setattr(d.os, "machine", "pc"),
     "Target machine type pc does not match source pc-q35-7.2"),
    ("features", lambda d: d.features.append("pae"),
     "Target feature set acpi apic pae does not match source acpi apic"),
    ("cpu mode", lambda d: setattr(d.cpu, "mode", "host-model"),
     "Target CPU mode host-model does not match source host-passthrough"),
    ("cpu removed", lambda d: setattr(d, "cpu", None), "Target CPU mode none does not match source"),
    ("disk count", _add("disks", Disk(target_dev="vdc", target_bus="virtio")),
     "Target disk count 3 does not match source 2"),
    ("disk target", lambda d: setattr(d.devices.disks[0], "target_dev", "sdc"),
     "Target disk sdc does not match source vda"),
    ("disk bus", lambda d: setattr(d.devices.disks[0], "target_bus", "virtio"),
     "Target disk vda bus virtio does not match source sata"),
    ("disk device", lambda d: setattr(d.devices.disks[1], "device", "disk"),
     "Target disk sdb device type disk does not match source cdrom"),
    ("disk readonly", lambda d: setattr(d.devices.disks[0], "readonly", True),
     "Target disk vda readonly yes does not match source no"),
    ("interface count", _add("interfaces", Interface(type="user")),
     "Target interface count 2 does not match source 1"),
    ("interface mac", lambda d: setattr(d.devices.interfaces[0], "mac", "52:54:00:00:00:02"),
     "Target network card mac 52:54:00:00:00:02 does not match source 52:54:00:00:00:01"),
    ("interface model", lambda d: setattr(d.devices.interfaces[0], "model", "e1000"),
     "Target network card model e1000 does not match source virtio"),
    ("interface type", lambda d: setattr(d.devices.interfaces[0], "type", "bridge"),
     "Target interface #0 type bridge does not match source network"),
    ("serial count", _add("serials", Serial(target_port=1)), "Target serial count 2 does not match source 1"),
    ("serial port", lambda d: setattr(d.devices.serials[0], "target_port", 1),
     "Target serial #0 target port 1 does not match source 0"),
    ("console count", lambda d: d.devices.consoles.clear(), "Target console count 0 does not match source 1"),
    ("console port", lambda d: setattr(d.devices.consoles[0], "target_port", 1),
     "Target console #0 target port 1 does not match source 0"),
    ("console type", lambda d: setattr(d.devices.consoles[0], "target_type", "virtio"),
     "Target console #0 target type virtio does not match source serial"),
    ("graphics count", lambda d: d.devices.graphics.clear(),
     "Target graphics count 0 does not match source 1"),
    ("graphics type", lambda d: setattr(d.devices.graphics[0], "type", "spice"),
     "Target graphics #0 type spice does not match source vnc"),
    ("video count", _add("videos", Video(type="qxl")), "Target video count 2 does not match source 1"),
    ("video model", lambda d: setattr(d.devices.videos[0], "type", "cirrus"),
     "Target video #0 model cirrus does not match source vga"),
    ("video vram", lambda d: setattr(d.devices.videos[0], "vram", 8192),
     "Target video #0 vram 8192 does not match source 16384"),
    ("video heads", lambda d: setattr(d.devices.videos[0], "heads", 2),
     "Target video #0 heads 2 does not match source 1"),
    ("input count", _add("inputs", Input(type="mouse", bus="ps2")),
     "Target input count 2 does not match source 1"),
    ("input type", lambda d: setattr(d.devices.inputs[0], "type", "mouse"),
     "Target input #0 type mouse does not match source tablet"),
    ("input bus", lambda d: setattr(d.devices.inputs[0], "bus", "virtio"),
     "Target input #0 bus virtio does not match source usb"),
    ("memballoon model", lambda d: setattr(d.devices, "memballoon", Memballoon("none")),
     "Target memballoon model none does not match source virtio"),
    ("memballoon removed", lambda d: setattr(d.devices, "memballoon", None),
     "Target memballoon model none does not match source virtio"),
]


@pytest.mark.parametrize("mutate, message", [(m, msg) for _, m, msg in FORBIDDEN],
                         ids=[name for name, _, _ in FORBIDDEN])
def test_guest_visible_differences_are_named(src, mutate, message):
    problems = check_abi_stability(src, changed(src, mutate))
    assert len(problems) == 1, problems
    assert problems[0].startswith(message), problems


def test_count_mismatch_skips_per_device_noise(src):
    dst = changed(src, lambda d: d.devices.disks.pop(0))
    assert check_abi_stability(src, dst) == ["Target disk count 1 does not match source 2"]


def test_ensure_raises_with_every_difference(src):
    dst = changed(src, lambda d: (setattr(d, "vcpus", 4), setattr(d.devices.disks[0], "target_bus", "virtio"),
                                  d.devices.consoles.append(Console(target_port=1))))
    with pytest.raises(libvirtError) as info:
        ensure_abi_stable(src, dst)
    err = info.value
    assert err.get_error_code() == ErrorNumber.CONFIG_UNSUPPORTED
    assert err.get_error_domain() == ErrorDomain.DOMAIN
    message = err.get_error_message()
    assert message.startswith("unsupported configuration: ")
    for part in ("Target vCPU count 4 does not match source 1",
                 "Target disk vda bus virtio does not match source sata",
                 "Target console count 2 does not match source 1"):
        assert part in message


# -- libvirt 9.0's forms of the same guest (tests/data/libvirtargv, scripts/libvirt_argv.py) ----

LIBVIRT = Path(__file__).parent / "data" / "libvirtargv"


def _libvirt_form(name: str, form: str, **kwargs) -> DomainDef:
    return parse((LIBVIRT / f"{name}.{form}.xml").read_text(), ("kvm", "qemu"), "qemu", **kwargs)


def _completed(d: DomainDef) -> DomainDef:
    from test_libvirt_argv import QEMU_72_MACHINES
    from pyvirt.drivers.qemu import postparse
    postparse.complete(d, new_definition=True, machine_aliases=QEMU_72_MACHINES)
    return d


def _pyvirt_form(name: str) -> DomainDef:
    return _completed(parse((DATA / f"{name}.xml").read_text(), ("kvm", "qemu"), "qemu", inactive=True))


@pytest.mark.parametrize("name", ["tiny", "full"])
def test_libvirt_live_xml_is_accepted_as_it_is(name):
    """Aliases, addresses, <seclabel>, <resource>, <audio>, a CPU checked in full with the
    features QEMU enabled: libvirtd's live XML parses, and keeps what the guest sees."""
    live = _libvirt_form(name, "live")
    assert live.cpu.check == "full" and ("require", "lahf_lm") in live.cpu.features
    assert live.devices.memballoon.alias == "balloon0"
    assert {c.type: c.alias for c in live.devices.controllers} == {"usb": "usb", "pci": "pci.0"}
    formatted = live.format()
    assert "<feature policy='require' name='lahf_lm'/>" in formatted
    assert "<address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>" in formatted


@pytest.mark.parametrize("name", ["tiny", "full"])
def test_libvirt_and_pyvirt_forms_of_a_guest_are_abi_stable(name):
    ours = _pyvirt_form(name)
    assert check_abi_stability(_libvirt_form(name, "live"), ours) == []
    # what libvirt's Begin sends, completed by pyvirt's Prepare, is libvirt's guest again
    assert check_abi_stability(_libvirt_form(name, "live"), _completed(_libvirt_form(name, "migratable"))) == []
    # and pyvirt's migratable XML, completed by a receiver, is the same guest
    again = _completed(parse(ours.format(secure=True, migratable=True), ("kvm", "qemu"), "qemu"))
    assert check_abi_stability(ours, again) == []


@pytest.mark.parametrize("name", ["tiny", "full"])
def test_pyvirt_builds_libvirts_qemu_from_libvirts_migratable_xml(name):
    from test_libvirt_argv import CTX, guest_view, libvirt_argv
    from pyvirt.drivers.qemu.command import assign_aliases, build_argv
    d = _completed(_libvirt_form(name, "migratable", inactive=True))
    assign_aliases(d)
    for port, g in enumerate(d.devices.graphics, start=5900):
        g.port = g.port or port
    assert guest_view(build_argv(d, CTX)) == guest_view(libvirt_argv(name))


def test_pyvirt_migratable_xml_leaves_out_what_libvirt_leaves_out():
    ours = parse(_pyvirt_form("full").format(secure=True, migratable=True))
    theirs = _libvirt_form("full", "migratable")
    assert [(c.type, c.model) for c in ours.devices.controllers] == \
        [(c.type, c.model) for c in theirs.devices.controllers] == []
    assert [(i.type, i.bus) for i in ours.devices.inputs] == [(i.type, i.bus) for i in theirs.devices.inputs]
    assert ours.cpu.check == theirs.cpu.check == "none" and not ours.cpu.features
    # a guest without a USB controller, balloon or video card says so, so the receiver adds none
    bare = parse(SOURCE_XML.replace("machine='pc-q35-7.2'", "machine='pc-i440fx-7.2'"))
    bare.devices.memballoon = None
    bare.devices.videos = []
    sent = bare.format(migratable=True)
    assert "<controller type='usb' index='0' model='none'/>" in sent
    assert "<memballoon model='none'/>" in sent and "<model type='none'/>" in sent


def test_another_nic_model_fails_with_libvirts_message():
    other = _pyvirt_form("full")
    other.devices.interfaces[0].model = "e1000"
    with pytest.raises(libvirtError) as info:
        ensure_abi_stable(_libvirt_form("full", "live"), other)
    err = info.value
    assert (err.get_error_code(), err.get_error_domain()) == (ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN)
    assert "Target network card model e1000 does not match source virtio" in err.get_error_message()


def test_qemu_namespace_is_refused_with_a_clear_error():
    from pyvirt.drivers.qemu import postparse
    xml = (DATA / "tiny.xml").read_text().replace(
        "<domain type='qemu'>", "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
    ).replace("</devices>", "</devices>\n  <qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline>")
    d = parse(xml, ("kvm", "qemu"), "qemu")
    with pytest.raises(libvirtError) as info:
        postparse.complete(d, new_definition=True, machine_aliases={})
    err = info.value
    assert err.get_error_code() == ErrorNumber.CONFIG_UNSUPPORTED
    assert "<qemu:commandline> is not supported" in err.get_error_message()


def test_timers_pm_and_vmport_are_guest_visible():
    base = parse((DATA / "clock-pm.xml").read_text())
    assert check_abi_stability(base, base.copy()) == []
    no_pm = changed(base, lambda d: d.pm.clear())
    assert check_abi_stability(base, no_pm) == [
        "Target power management none does not match source suspend-to-disk=no suspend-to-mem=no"]
    hpet = changed(base, lambda d: d.timers.pop())
    assert check_abi_stability(base, hpet)[0].startswith("Target timers rtc(,catchup,) pit(,delay,) does not")
    vmport = changed(base, lambda d: setattr(d, "vmport", None))
    assert check_abi_stability(base, vmport) == ["Target vmport state none does not match source off"]
