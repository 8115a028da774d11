"""pyvirt.conf.domain: libvirt domain XML parsed into dataclasses and written back.

Golden files: every ``tests/data/domain/NAME.xml`` is libvirt's own output
shape; parsing it and formatting it (secure, live) must give the same bytes.

Regenerating: after an intended change in formatting, run::

    PYVIRT_REGENERATE=1 .venv/bin/python -m pytest tests/test_conf_domain.py tests/test_conf_status.py

which rewrites each expected file with the current output.  Review the diff
carefully before committing: the files are the contract with libvirt.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pyvirt.conf import DomainDef, parse
from pyvirt.conf.devices import Disk, Interface
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError

DATA = Path(__file__).parent / "data" / "domain"
GOLDEN = sorted(DATA.glob("*.xml"))
REGENERATE = os.environ.get("PYVIRT_REGENERATE") == "1"


def load(name: str) -> DomainDef:
    return parse((DATA / f"{name}.xml").read_text())


def minimal(devices: str = "", extra: str = "", memory: str = "<memory unit='KiB'>219136</memory>",
            dtype: str = "qemu", name: str = "<name>t</name>") -> str:
    return (f"<domain type='{dtype}'>{name}{memory}{extra}"
            f"<os><type>hvm</type></os><devices>{devices}</devices></domain>")


def raises(xml: str, code: ErrorNumber, *needles: str, **kwargs) -> libvirtError:
    with pytest.raises(libvirtError) as info:
        parse(xml, **kwargs)
    err = info.value
    assert err.get_error_code() == code, err
    assert err.get_error_domain() == ErrorDomain.DOMAIN, err
    for needle in needles:
        assert needle in err.get_error_message(), err
    return err


# -- golden round trip ---------------------------------------------------------

def test_golden_files_exist():
    assert len(GOLDEN) >= 8


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_round_trip(path: Path):
    expected = path.read_text()
    actual = parse(expected).format(secure=True)
    if REGENERATE:
        path.write_text(actual)
        return
    assert actual == expected


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_format_parse_is_stable(path: Path):
    """Formatting is a fixed point: what we write parses to the same definition."""
    dom = parse(path.read_text())
    assert parse(dom.format(secure=True)) == dom
    inactive = dom.format(secure=True, inactive=True)
    assert parse(inactive).format(secure=True, inactive=True) == inactive


# -- normalisation -------------------------------------------------------------

def test_libvirt_style_input_variations_normalise():
    xml = """<?xml version="1.0"?>
<domain type="kvm">
  <!-- a comment libvirt drops -->
  <name> demo </name>
  <memory unit="MiB">512</memory>
  <currentMemory unit="GiB">4</currentMemory>
  <vcpu>2</vcpu>
  <os><type arch="x86_64" machine="pc">hvm</type></os>
  <features><pae/><apic/><acpi/><vmport state="off"/></features>
  <cpu><model>qemu64</model></cpu>
  <devices>
    <memballoon model="virtio"/>
    <disk device="cdrom"><target dev="hdc"/></disk>
    <interface type="network"><mac address="52:54:00:AB:CD:E"/><source network="default"/></interface>
    <video><model type="vga"/></video>
    <input type="tablet"/>
    <serial type="pty"/>
    <serial type="pty"><target port="3"/></serial>
    <serial type="pty"/>
    <controller type="usb" index="0"/>
    <sound model="ich9"/>
  </devices>
  <qemu:commandline xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"/>
  <seclabel type="dynamic"/>
</domain>"""
    dom = parse(xml)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", dom.uuid)
    expected = f"""<domain type='kvm'>
  <name>demo</name>
  <uuid>{dom.uuid}</uuid>
  <memory unit='KiB'>524288</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <pae/>
    <vmport state='off'/>
  </features>
  <cpu mode='custom' match='exact'>
    <model fallback='allow'>qemu64</model>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='cdrom'>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <controller type='usb' index='0'/>
    <interface type='network'>
      <mac address='52:54:00:ab:cd:0e'/>
      <source network='default'/>
    </interface>
    <serial type='pty'>
      <target port='0'/>
    </serial>
    <serial type='pty'>
      <target port='3'/>
    </serial>
    <serial type='pty'>
      <target port='4'/>
    </serial>
    <input type='tablet' bus='usb'/>
    <video>
      <model type='vga' primary='yes'/>
    </video>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""
    assert dom.format() == expected


@pytest.mark.parametrize("unit, text, kib", [
    (None, "1024", 1024), ("KiB", "1024", 1024), ("k", "1", 1), ("KB", "1024", 1000),
    ("b", "1", 1), ("bytes", "1025", 2), ("M", "1", 1024), ("MB", "1", 977), ("GiB", "2", 2097152),
    ("T", "1", 1024**3),
])
def test_memory_units_become_kib(unit, text, kib):
    attr = f" unit='{unit}'" if unit else ""
    dom = parse(minimal(memory=f"<memory{attr}>{text}</memory>"))
    assert dom.memory_kib == kib == dom.current_memory_kib
    assert f"<memory unit='KiB'>{kib}</memory>" in dom.format()


def test_current_memory_is_clamped_to_memory():
    dom = parse(minimal(extra="<currentMemory unit='GiB'>8</currentMemory>"))
    assert (dom.memory_kib, dom.current_memory_kib) == (219136, 219136)
    dom = parse(minimal(extra="<currentMemory unit='KiB'>1024</currentMemory>"))
    assert dom.current_memory_kib == 1024


def test_bytes_and_str_inputs_agree_and_str_may_declare_an_encoding():
    xml = minimal(extra="<title>caf\u00e9</title>").replace("<name>t</name>", "<name>t</name><uuid>"
                                                          "c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>")
    declared = "<?xml version='1.0' encoding='UTF-8'?>\n" + xml
    assert parse(declared) == parse(xml.encode()) == parse(xml)
    assert parse(xml).title == "caf\u00e9"


def test_uuid_is_canonical_lowercase():
    dom = parse(minimal(extra="<uuid>C7A5FDBDEDAF9455926AD65C16DB1809</uuid>"))
    assert dom.uuid == "c7a5fdbd-edaf-9455-926a-d65c16db1809"
    assert dom.uuid_bytes == bytes.fromhex("c7a5fdbdedaf9455926ad65c16db1809")


def test_generated_uuid_and_mac_are_fresh():
    xml = minimal("<interface type='user'/>")
    one, two = parse(xml), parse(xml)
    assert one.uuid != two.uuid
    assert one.devices.interfaces[0].mac.startswith("52:54:00:")
    assert one.devices.interfaces[0].mac != two.devices.interfaces[0].mac


@pytest.mark.parametrize("dev, device, bus", [
    ("hda", "disk", "ide"), ("sda", "disk", "scsi"), ("vdb", "disk", "virtio"),
    ("xvda", "disk", "xen"), ("ubx", "disk", "usb"), ("fda", "floppy", "fdc"), ("other", "disk", "ide"),
])
def test_disk_bus_defaults_from_target_name(dev, device, bus):
    dom = parse(minimal(f"<disk device='{device}'><source file='/x'/><target dev='{dev}'/></disk>"))
    assert dom.devices.disks[0].target_bus == bus


def test_unknown_elements_and_device_types_are_ignored():
    dom = parse(minimal("<controller type='pci' index='0' model='pci-root'/><rng model='virtio'/>",
                        extra="<metadata><app:x xmlns:app='urn:x'/></metadata><pm/>"))
    assert dom.devices.disks == [] and dom.format().count("<devices>") == 1


def test_primary_video_moves_first():
    dom = parse(minimal("<video><model type='vga'/></video><video><model type='qxl' primary='yes'/></video>"))
    assert [(v.type, v.primary) for v in dom.devices.videos] == [("qxl", True), ("vga", False)]


def test_cdrom_is_always_readonly():
    dom = parse(minimal("<disk type='file' device='cdrom'><source file='/a.iso'/><target dev='hdc'/></disk>"))
    assert dom.devices.disks[0].readonly


def test_graphics_listen_attribute_fills_listen_element():
    dom = parse(minimal("<graphics type='vnc' listen='10.0.0.1'><listen type='address'/></graphics>"))
    assert dom.devices.graphics[0].listen_address == "10.0.0.1"


# -- secure and inactive output --------------------------------------------------

def test_password_only_in_secure_xml():
    dom = load("graphics")
    assert "passwd=" not in dom.format()
    assert "passwd='s3cr&apos;t'" in dom.format(secure=True)
    assert dom.devices.graphics[0].passwd == "s3cr't"


@pytest.mark.parametrize("name, live_only", [
    ("disks", ["id='7'", "<alias name='virtio-disk0'/>"]),
    ("network", ["<target dev='vnet3'/>", "<alias name='net0'/>"]),
    ("chardev", ["tty='/dev/pts/19'", "<source path='/dev/pts/19'/>", "<alias name='serial0'/>"]),
    ("graphics", ["port='5901'", "address='192.168.122.1'"]),
])
def test_inactive_xml_leaves_out_live_state(name, live_only):
    dom = load(name)
    live, inactive = dom.format(), dom.format(inactive=True)
    for text in live_only:
        assert text in live
        assert text not in inactive


def test_inactive_xml_keeps_configuration():
    inactive = load("graphics").format(inactive=True)
    assert "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1' keymap='en-us'>" in inactive
    assert "<graphics type='spice' port='5902' tlsPort='5903' autoport='no' listen='0.0.0.0'>" in inactive
    assert "<listen type='network' network='default'/>" in inactive
    disks = load("disks").format(inactive=True)
    assert "<alias name='ua-shared'/>" in disks       # user aliases are configuration
    assert "<target dev='tap-guest1'/>" in load("network").format(inactive=True)


def test_inactive_parse_drops_live_state():
    dom = parse((DATA / "chardev.xml").read_text(), inactive=True)
    assert dom.id is None
    assert dom.devices.serials[0].path is None and dom.devices.serials[0].alias is None
    assert dom.devices.serials[1].path == "/var/log/guests/chardev-serial1.log"
    vnc = parse((DATA / "graphics.xml").read_text(), inactive=True).devices.graphics[0]
    assert (vnc.port, vnc.autoport) == (0, True)


def test_copy_is_deep():
    dom = load("disks")
    clone = dom.copy()
    clone.devices.disks[0].source = "/elsewhere"
    clone.features.append("acpi")
    assert dom.devices.disks[0].source == "/var/lib/libvirt/images/disks.qcow2"
    assert dom.features == [] and clone == clone.copy()


def test_programmatic_definition_formats():
    dom = DomainDef(type="kvm", name="built", memory_kib=1024, current_memory_kib=1024,
                    uuid="c7a5fdbd-edaf-9455-926a-d65c16db1809")
    dom.devices.disks.append(Disk(target_dev="vda", target_bus="virtio", source="/a.img"))
    dom.devices.interfaces.append(Interface(type="user", mac="52:54:00:00:00:01"))
    dom.validate()
    assert parse(dom.format()) == parse(parse(dom.format()).format())
    assert "<source file='/a.img'/>" in dom.format()


# -- errors --------------------------------------------------------------------

def test_not_xml_quotes_the_parser_and_line():
    # libvirt's layout: document name, line, libxml2's message, the line, a pointer to the stop
    err = raises("<domain type='kvm'>\n<name>x</nam>\n</domain>", ErrorNumber.XML_DETAIL)
    assert err.get_error_message() == ("(domain_definition):2: Opening and ending tag mismatch: name line 2 "
                                       "and nam\n<name>x</nam>\n-------------^")
    assert (err.get_str1(), err.get_str2()) == ("%s", err.get_error_message())


def test_pointer_counts_bytes_and_keeps_tabs():
    err = raises("<a>\t\u00e9<b></a>", ErrorNumber.XML_DETAIL)
    assert err.get_error_message().endswith("\n<a>\t\u00e9<b></a>\n---\t---------^")


@pytest.mark.parametrize("xml, message", [
    ("", "(domain_definition):1: Document is empty\n(null)\n^"),
    ("  ", "(domain_definition):1: Start tag expected, '<' not found\n  \n--^"),
    ("<domain>\n<name>x</name>\n", "(domain_definition):3: Premature end of data in tag domain line 1\n(null)\n^"),
])
def test_empty_or_cut_document(xml: str, message: str):
    assert raises(xml, ErrorNumber.XML_DETAIL).get_error_message() == message


def test_wrong_root_element():
    with pytest.raises(libvirtError) as info:
        parse("<network><name>x</name></network>")
    assert info.value.get_error_code() == ErrorNumber.XML_ERROR
    assert info.value.get_error_domain() == ErrorDomain.XML
    assert info.value.get_error_message() == "XML error: expecting root element of 'domain', not 'network'"


def test_virt_type_not_allowed_by_driver():
    err = raises(minimal(dtype="lxc"), ErrorNumber.CONFIG_UNSUPPORTED,
                 allowed_types=("qemu", "kvm"), driver_name="qemu")
    assert err.get_error_message() == ("unsupported configuration: domain type 'lxc' is not supported "
                                       "by the qemu driver (supported: kvm, qemu)")


def test_unknown_and_missing_virt_type():
    raises(minimal(dtype="kvmm"), ErrorNumber.XML_DETAIL, "domain type 'kvmm'", "kvm")
    raises(minimal().replace(" type='qemu'", "", 1), ErrorNumber.XML_DETAIL, "missing domain type")


def test_missing_name():
    # libvirt's bare message for the code, no hint added
    err = raises(minimal(name=""), ErrorNumber.NO_NAME)
    assert (err.get_error_message(), err.get_str1()) == ("missing name information", "missing name information")


def test_name_with_slash():
    # libvirt 9.0: VIR_ERR_XML_ERROR, "XML error: name a/b cannot contain '/'"
    raises(minimal(name="<name>a/b</name>"), ErrorNumber.XML_ERROR, "XML error: name a/b cannot contain '/'")


def test_bad_uuid():
    raises(minimal(extra="<uuid>not-a-uuid</uuid>"), ErrorNumber.XML_DETAIL, "malformed uuid", "not-a-uuid")


@pytest.mark.parametrize("memory", ["", "<memory unit='KiB'>0</memory>"])
def test_memory_missing_or_zero(memory):
    raises(minimal(memory=memory), ErrorNumber.XML_DETAIL, "memory size must be specified")


def test_unknown_memory_unit():
    raises(minimal(memory="<memory unit='XB'>1</memory>"), ErrorNumber.XML_DETAIL,
           "<memory>", "unknown unit 'XB'")


def test_memory_not_a_number():
    raises(minimal(memory="<memory>1.5</memory>"), ErrorNumber.XML_DETAIL, "<memory>", "'1.5'")


def test_vcpus_below_one():
    raises(minimal(extra="<vcpu>0</vcpu>"), ErrorNumber.XML_DETAIL, "<vcpu>", "at least 1", "0")
    raises(minimal(extra="<vcpu>two</vcpu>"), ErrorNumber.XML_DETAIL, "<vcpu>", "'two'")


def test_duplicate_disk_targets():
    raises(minimal("<disk><source file='/a.img'/><target dev='vda'/></disk>"
                   "<disk><source file='/b.img'/><target dev='vda'/></disk>"),
           ErrorNumber.XML_DETAIL, "target 'vda' duplicated for disk sources '/a.img' and '/b.img'")


def test_disk_without_target():
    raises(minimal("<disk><source file='/a.img'/></disk>"), ErrorNumber.NO_TARGET, "/a.img", "<target")


@pytest.mark.parametrize("mac", ["52:54:00:zz:00:01", "52:54:00:00:01", "525400000001"])
def test_bad_mac(mac):
    raises(minimal(f"<interface type='user'><mac address='{mac}'/></interface>"),
           ErrorNumber.INVALID_ARG, f"unable to parse mac address '{mac}'")


def test_multicast_mac():
    raises(minimal("<interface type='user'><mac address='01:00:5e:00:00:01'/></interface>"),
           ErrorNumber.XML_ERROR, "multicast", "01:00:5e:00:00:01")


@pytest.mark.parametrize("devices, needle", [
    ("<disk type='network'><target dev='vda'/></disk>", "disk type 'network'"),
    ("<interface type='vhostuser'/>", "interface type 'vhostuser'"),
    ("<graphics type='sdl'/>", "graphics type 'sdl'"),
    ("<serial type='tcp'/>", "<serial> type 'tcp'"),
])
def test_unmodelled_device_types_are_refused_not_dropped(devices, needle):
    raises(minimal(devices), ErrorNumber.CONFIG_UNSUPPORTED, needle)


@pytest.mark.parametrize("devices, needles", [
    ("<interface type='network'/>", ["<source network=", "type='network'"]),
    ("<graphics type='vnc' port='70000'/>", ["'70000'", "port"]),
    ("<graphics type='vnc' autoport='maybe'/>", ["'maybe'", "autoport"]),
    ("<video><model type='cga'/></video>", ["video model 'cga'"]),
    ("<input type='joystick'/>", ["input type 'joystick'"]),
    ("<memballoon/>", ["<memballoon>", "model"]),
    ("<serial type='file'/>", ["<serial type='file'>", "<source path="]),
    ("<graphics type='vnc' listen='1.1.1.1'><listen type='address' address='2.2.2.2'/></graphics>",
     ["'1.1.1.1'", "'2.2.2.2'"]),
    ("<video><model type='vga' primary='yes'/></video><video><model type='qxl' primary='yes'/></video>",
     ["primary"]),
])
def test_bad_device_values_name_the_cause(devices, needles):
    raises(minimal(devices), ErrorNumber.XML_DETAIL, *needles)


@pytest.mark.parametrize("extra, needles", [
    ("<on_reboot>explode</on_reboot>", ["<on_reboot>", "'explode'"]),
    ("<clock offset='mars'/>", ["clock offset 'mars'"]),
    ("<cpu mode='host-ish'/>", ["CPU mode 'host-ish'"]),
    ("<title>two\nlines</title>", ["title", "newlines"]),
])
def test_bad_domain_values_name_the_cause(extra, needles):
    raises(minimal(extra=extra), ErrorNumber.XML_DETAIL, *needles)


def test_missing_os_type():
    raises("<domain type='kvm'><name>x</name><memory>1024</memory></domain>",
           ErrorNumber.OS_TYPE, "<type>")


def test_a_disk_to_attach_needs_a_source_and_one_to_detach_does_not():
    """libvirt validates a device to attach or update (a disk must have a source), and
    skips it for a detach, where the target names the disk."""
    from pyvirt.conf import devicexml
    bare = "<disk type='file' device='disk'><target dev='vdd' bus='virtio'/></disk>"
    with pytest.raises(libvirtError) as exc:
        devicexml.parse_device(bare)
    assert (exc.value.get_error_code(), str(exc.value)) == (ErrorNumber.NO_SOURCE,
                                                          "missing source information for device vdd")
    assert devicexml.parse_device(bare, validate=False).dev.target_dev == "vdd"
    assert devicexml.parse_device(bare.replace("device='disk'", "device='cdrom'")).dev.source is None
