"""Elements the domain model once dropped, kept as libvirt keeps them.

<os><loader>, <dtb>, <root>; <cpu>'s <vendor>, <topology> and model fallback; a LUN's
rawio; an interface's <script>/<downscript>.  Each round-trips through the model, is
checked with libvirt's errors (compared with libvirt's own test driver when python3-libvirt
is installed, which also fixes the expected XML), and the QEMU driver either builds its
option from it (-bios, -dtb) or refuses it before launch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import pyvirt
from pyvirt import conf
from pyvirt.drivers.qemu.command import CommandContext, assign_aliases, build_argv
from pyvirt.errors import libvirtError

LIBVIRT_PYTHON = "/usr/bin/python3"
QEMU_MINIMAL = (Path(__file__).parent / "data" / "qemuargv" / "minimal.xml").read_text()
CTX = CommandContext(emulator="/usr/bin/qemu-system-x86_64", kvm_available=True)


def _domain(os_extra: str = "", cpu: str = "", devices: str = "", os_type: str = "hvm") -> str:
    return (f"<domain type='test'><name>kept</name><uuid>0b0d57b2-4c5e-4fcb-9d3e-2c1c0a7e6a11</uuid>"
            f"<memory>1024</memory><vcpu>4</vcpu>{cpu}<os><type>{os_type}</type>{os_extra}</os>"
            f"<devices>{devices}</devices></domain>")


LUN = ("<disk type='block' device='lun' rawio='{}'><source dev='/dev/sdz'/>"
       "<target dev='sda' bus='scsi'/></disk>")
ROUND_TRIPS = {
    "loader-rom-default": _domain("<loader>/usr/share/fw.bin</loader>"),
    "loader-attributes": _domain("<loader readonly='yes' secure='no' type='pflash' stateless='yes'>"
                                 "/usr/share/OVMF_CODE.fd</loader>"),
    "dtb-root": _domain("<kernel>/boot/vmlinuz</kernel><dtb>/root/ppc.dtb</dtb><root>/dev/sda1</root>",
                        os_type="xen"),
    "cpu-vendor-topology": _domain(cpu="<cpu mode='custom'><model>qemu64</model><vendor>Libvirt</vendor>"
                                   "<topology sockets='1' dies='1' cores='4' threads='1'/></cpu>"),
    "cpu-topology-no-dies": _domain(cpu="<cpu><topology sockets='2' cores='2' threads='1'/></cpu>"),
    "cpu-fallback-forbid": _domain(cpu="<cpu><model fallback='forbid'>qemu64</model></cpu>"),
    "cpu-host-model-vendor": _domain(cpu="<cpu mode='host-model'><model>qemu64</model><vendor>Intel</vendor>"
                                     "</cpu>"),
    "cpu-passthrough-model": _domain(cpu="<cpu mode='host-passthrough'><model fallback='bogus'>x</model>"
                                     "<vendor>Intel</vendor></cpu>"),
    "rawio-yes": _domain(devices=LUN.format("yes")),
    "rawio-no": _domain(devices=LUN.format("no")),
    "scripts": _domain(devices="<interface type='bridge'><mac address='52:54:00:00:00:01'/>"
                               "<source bridge='br0'/><script path='/etc/up'/><downscript path='/etc/down'/>"
                               "</interface>"),
    "implicit-video": _domain(devices="<graphics type='vnc' port='5904'/>"),
    "implicit-video-xen": _domain(devices="<graphics type='vnc' port='5904'/>", os_type="xen"),
    "video-default-model": _domain(devices="<video><model type='vga' vram='9000'/></video>"),
}
ERRORS = {
    "loader-empty": _domain("<loader readonly='no'/>"),      # no firmware auto-selection: a path is needed
    "loader-nothing": _domain("<loader/>"),
    "loader-type-none": _domain("<loader type='none'>/fw</loader>"),
    "loader-type-bogus": _domain("<loader type='bios'>/fw</loader>"),
    "loader-readonly": _domain("<loader readonly='maybe'>/fw</loader>"),
    "loader-secure": _domain("<loader secure='1'>/fw</loader>"),
    "loader-stateless": _domain("<loader stateless='absent'>/fw</loader>"),
    "cpu-vendor-no-model": _domain(cpu="<cpu><vendor>Intel</vendor></cpu>"),
    "cpu-fallback": _domain(cpu="<cpu><model fallback='bogus'>qemu64</model></cpu>"),
    "topology-no-sockets": _domain(cpu="<cpu><topology cores='2' threads='1'/></cpu>"),
    "topology-zero-cores": _domain(cpu="<cpu><topology sockets='1' cores='0' threads='1'/></cpu>"),
    "topology-negative-dies": _domain(cpu="<cpu><topology sockets='1' dies='-1' cores='1' threads='1'/></cpu>"),
    "topology-word-threads": _domain(cpu="<cpu><topology sockets='1' cores='1' threads='two'/></cpu>"),
    "topology-too-big": _domain(cpu="<cpu><topology sockets='4294967296' cores='1' threads='1'/></cpu>"),
    "topology-overflow": _domain(cpu="<cpu><topology sockets='65536' cores='65536' threads='2'/></cpu>"),
    "rawio-not-lun": _domain(devices="<disk type='block' rawio='yes'><source dev='/dev/sdz'/>"
                                     "<target dev='sda'/></disk>"),
    "rawio-value": _domain(devices=LUN.format("on")),
}

# define each document in a test driver of its own, in one process: XML (live, inactive) or the error
_LISTER = r"""
import json, sys
MODULE = sys.argv[1]
lv = __import__(MODULE)
out = {}
for name, xml in json.loads(sys.stdin.read()).items():
    conn = lv.open("test:///default")
    try:
        dom = conn.defineXML(xml)
        dom.create()
        out[name] = [dom.XMLDesc(0), dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE)]
        dom.destroy()       # test:///default is one host per process: leave it as it was
        dom.undefine()
    except lv.libvirtError as e:
        out[name] = [e.get_error_code(), e.get_error_domain(), e.get_error_message()]
    conn.close()
print(json.dumps(out))
"""


def _run(python: str, module: str, docs: dict[str, str]) -> dict:
    out = subprocess.run([python, "-c", _LISTER, module], input=json.dumps(docs), capture_output=True,
                         text=True, timeout=120, env={"PYTHONPATH": str(Path(__file__).parent.parent)})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def libvirt_results() -> dict:
    if subprocess.run([LIBVIRT_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    return _run(LIBVIRT_PYTHON, "libvirt", {**ROUND_TRIPS, **ERRORS})


@pytest.fixture(scope="module")
def pyvirt_results() -> dict:
    return _run(sys.executable, "pyvirt", {**ROUND_TRIPS, **ERRORS})


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_test_driver_keeps_it_as_libvirt(libvirt_results, pyvirt_results, name):
    want = libvirt_results[name]
    assert isinstance(want[0], str), want       # libvirt took it
    assert pyvirt_results[name] == want


@pytest.mark.parametrize("name", ERRORS)
def test_test_driver_refuses_it_as_libvirt(libvirt_results, pyvirt_results, name):
    want = libvirt_results[name]
    assert isinstance(want[0], int), want       # libvirt refused it
    assert pyvirt_results[name] == want


# -- the model on its own (no libvirt needed) --------------------------------------

def _kept(xml: str) -> str:
    first = conf.parse(xml).format()
    assert conf.parse(first).format() == first      # a fixed point: nothing lost the second time
    return first


def test_loader_round_trip_and_rom_default():
    out = _kept(_domain("<loader>/usr/share/fw.bin</loader>"))
    assert "<loader type='rom'>/usr/share/fw.bin</loader>" in out
    out = _kept(_domain("<loader secure='yes' type='pflash' readonly='yes' stateless='no'>/c.fd</loader>"))
    assert "<loader readonly='yes' secure='yes' type='pflash' stateless='no'>/c.fd</loader>" in out
    with pytest.raises(libvirtError) as info:
        conf.parse(_domain("<loader/>"))
    assert info.value.get_error_code() == pyvirt.VIR_ERR_XML_DETAIL


def test_dtb_and_root_after_cmdline():
    out = _kept(_domain("<root>/dev/sda1</root><dtb>/b.dtb</dtb><cmdline>ro</cmdline>"))
    assert "<cmdline>ro</cmdline>\n    <dtb>/b.dtb</dtb>\n    <root>/dev/sda1</root>\n" in out


def test_cpu_vendor_topology_fallback():
    out = _kept(_domain(cpu="<cpu><topology sockets='2' cores='2' threads='1'/><vendor>AMD</vendor>"
                            "<model>qemu64</model></cpu>"))
    assert ("<model fallback='allow'>qemu64</model>\n    <vendor>AMD</vendor>\n"
            "    <topology sockets='2' dies='1' cores='2' threads='1'/>\n") in out


def test_rawio_and_scripts():
    assert "<disk type='block' device='lun' rawio='yes'>" in _kept(_domain(devices=LUN.format("yes")))
    out = _kept(_domain(devices="<interface type='ethernet'><script path='/up'/><downscript path='/down'/>"
                                "</interface>"))
    assert "<script path='/up'/>\n      <downscript path='/down'/>\n" in out


@pytest.mark.parametrize("name,words", [
    ("loader-type-none", "Invalid value for attribute 'type' in element 'loader': 'none'."),
    ("loader-empty", "no loader path specified and firmware auto selection disabled"),
    ("cpu-vendor-no-model", "CPU vendor specified without CPU model"),
    ("topology-no-sockets", "Missing required attribute 'sockets' in element 'topology'"),
    ("topology-zero-cores", "Invalid value for attribute 'cores' in element 'topology': Zero is not permitted"),
    ("rawio-not-lun", "rawio can be used only with device='lun'"),
])
def test_errors_name_what_is_wrong(name, words):
    conn = pyvirt.open("test:///default")
    try:
        with pytest.raises(libvirtError) as info:
            conn.defineXML(ERRORS[name])
    finally:
        conn.close()
    assert words in info.value.get_error_message()


# -- the QEMU driver: the option libvirt builds, or a refusal before launch --------------

def _argv(os_extra: str = "", cpu: str = "", devices: str = "") -> list[str]:
    xml = QEMU_MINIMAL.replace("hvm</type>", f"hvm</type>{os_extra}")
    xml = xml.replace("</os>", f"</os>{cpu}<devices>{devices}</devices>")
    d = conf.parse(xml, ("kvm", "qemu"), "qemu")
    assign_aliases(d)
    return build_argv(d, CTX)


def test_qemu_rom_loader_is_bios_after_cpu_and_dtb_after_append():
    argv = _argv("<loader>/usr/share/seabios/bios.bin</loader><kernel>/k</kernel><cmdline>ro</cmdline>"
                 "<dtb>/b.dtb</dtb>", cpu="<cpu><model>qemu64</model></cpu>")
    assert argv[argv.index("-bios") - 2:argv.index("-bios") + 3] == \
        ["-cpu", "qemu64", "-bios", "/usr/share/seabios/bios.bin", "-m"]
    assert argv[argv.index("-append"):argv.index("-append") + 4] == ["-append", "ro", "-dtb", "/b.dtb"]
    assert "-bios" not in _argv() and "-dtb" not in _argv()


@pytest.mark.parametrize("kw,words", [
    ({"os_extra": "<loader type='pflash'>/OVMF_CODE.fd</loader>"}, "pflash firmware"),
    ({"os_extra": "<loader readonly='yes'>/bios.bin</loader>"}, "only a ROM image"),
    ({"os_extra": "<loader stateless='yes'>/bios.bin</loader>"}, "only a ROM image"),
    ({"cpu": "<cpu><model>qemu64</model><vendor>Intel</vendor></cpu>"}, "<cpu><vendor>"),
    ({"cpu": "<cpu><topology sockets='1' cores='1' threads='1'/></cpu>"}, "<cpu><topology>"),
    ({"devices": "<interface type='user'><script path='/up'/></interface>"},
     "scripts are not supported on interfaces of type user"),
    ({"devices": "<interface type='bridge'><source bridge='br0'/><script path='/up'/></interface>"},
     "scripts are not supported on interfaces of type bridge"),
    ({"devices": "<interface type='ethernet'><downscript path='/down'/></interface>"},
     "<script> and <downscript> are not supported"),
    ({"devices": "<disk type='block' device='lun' rawio='yes'><source dev='/dev/sdz'/>"
                 "<target dev='sda' bus='scsi'/></disk>"}, "lun on bus 'scsi' is not supported"),
])
def test_qemu_refuses_what_it_cannot_build(kw, words):
    with pytest.raises(libvirtError) as info:
        _argv(**kw)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_CONFIG_UNSUPPORTED
    assert words in info.value.get_error_message()


def test_cpu_vendor_and_topology_are_guest_abi():
    from pyvirt.conf.abi import check_abi_stability
    old = conf.parse(_domain(cpu="<cpu><model>qemu64</model><vendor>AMD</vendor>"
                                 "<topology sockets='1' cores='4' threads='1'/></cpu>"))
    new = conf.parse(_domain(cpu="<cpu><model>qemu64</model><vendor>Intel</vendor>"
                                 "<topology sockets='2' cores='2' threads='1'/></cpu>"))
    assert check_abi_stability(old, new) == [
        "Target CPU vendor Intel does not match source AMD",
        "Target CPU sockets 2 does not match source 1",
        "Target CPU cores 2 does not match source 4"]
    assert check_abi_stability(old, old.copy()) == []
