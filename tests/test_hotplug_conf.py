"""The XML side of hot-plug: addresses, controllers, PCI slot assignment, device XML edits."""

from __future__ import annotations

import re

import pytest

from pyvirt import conf
from pyvirt.conf import devicexml, pciaddr
from pyvirt.conf.address import PCIAddress
from pyvirt.drivers.qemu import postparse
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError

BASE = """<domain type='qemu'><name>a</name><memory>65536</memory>{vcpu}
<os><type arch='x86_64' machine='{machine}'>hvm</type></os><devices>{devices}</devices></domain>"""


def dom(devices: str = "", machine: str = "pc", vcpu: str = "<vcpu>1</vcpu>") -> conf.DomainDef:
    return conf.parse(BASE.format(devices=devices, machine=machine, vcpu=vcpu))


def test_slots_follow_libvirt_s_order():
    d = dom("""<input type='keyboard' bus='virtio'/><memballoon model='virtio'/>
      <disk type='file'><source file='/a'/><target dev='vda' bus='virtio'/></disk>
      <disk type='file'><source file='/b'/><target dev='sda' bus='scsi'/></disk>
      <video><model type='vga'/></video><video><model type='qxl'/></video>
      <interface type='user'/><input type='tablet' bus='usb'/>""")
    postparse.complete(d, new_definition=True)
    devs = d.devices
    usb = next(c for c in devs.controllers if c.type == "usb")
    scsi = next(c for c in devs.controllers if c.type == "scsi")
    assert usb.address == PCIAddress(slot=1, function=2)          # the PIIX3's own UHCI
    assert devs.videos[0].address.slot == 2                       # primary video
    assert [devs.interfaces[0].address.slot, scsi.address.slot, devs.disks[0].address.slot,
            devs.memballoon.address.slot, devs.videos[1].address.slot, devs.inputs[0].address.slot] == \
        [3, 4, 5, 6, 7, 8]
    assert devs.disks[1].address is None                          # a SCSI disk is not a PCI device
    assert scsi.model == "virtio-scsi"


def test_given_addresses_are_kept_and_skipped():
    d = dom("<interface type='user'><address type='pci' domain='0x0000' bus='0x00' slot='0x03' "
            "function='0x0'/></interface><memballoon model='virtio'/>")
    pciaddr.assign(d)
    # slot 2 is free without a video card (libvirt 9.0 gives it to the balloon then)
    assert d.devices.interfaces[0].address.slot == 3 and d.devices.memballoon.address.slot == 2
    assert pciaddr.next_free(d) == PCIAddress(slot=4)


def test_new_definitions_get_a_balloon_unless_they_say_none():
    d = dom()
    postparse.complete(d, new_definition=True)
    assert d.devices.memballoon.model == "virtio" and d.devices.memballoon.address.slot == 2
    d = dom("<memballoon model='none'/>")
    postparse.complete(d, new_definition=True)
    assert d.devices.memballoon.address is None
    d = dom()
    postparse.complete(d, new_definition=False)     # a saved or migrating guest keeps its devices
    assert d.devices.memballoon is None


def test_q35_puts_each_pcie_device_on_a_root_port_of_its_own():
    d = dom("<interface type='user'/><interface type='user'><model type='e1000'/></interface>",
            machine="q35")
    postparse.complete(d, new_definition=True, machine_aliases={"q35": "pc-q35-7.2"})
    assert d.os.machine == "pc-q35-7.2"
    ports = [c for c in d.devices.controllers if c.model == "pcie-root-port"]
    # the virtio NIC, the XHCI controller, the balloon, and one spare for hot-plug
    assert [(p.index, p.target_chassis, p.target_port, str(p.address)) for p in ports] == [
        (1, 1, 8, "0000:00:01.0"), (2, 2, 9, "0000:00:01.1"), (3, 3, 10, "0000:00:01.2"),
        (4, 4, 11, "0000:00:01.3")]
    assert ports[0].address.multifunction == "on"
    assert d.devices.interfaces[0].address == PCIAddress(bus=1)
    assert d.devices.interfaces[1].address is None     # conventional PCI: left to QEMU (no bridge)
    assert d.devices.memballoon.address == PCIAddress(bus=3)
    sata = next(c for c in d.devices.controllers if c.type == "sata")
    assert sata.address == PCIAddress(slot=0x1F, function=2)
    assert not pciaddr.hotplug_supported(d)
    again = d.copy()
    postparse.complete(again, new_definition=False)      # a stored definition gains nothing
    assert again.devices.controllers == d.devices.controllers


def test_addresses_round_trip_in_inactive_xml():
    d = dom("<disk type='file'><source file='/a'/><target dev='vda' bus='virtio'/>"
            "<address type='pci' domain='0' bus='0' slot='10' function='0'/></disk>"
            "<disk type='file'><source file='/b'/><target dev='sda' bus='scsi'/>"
            "<address type='drive' controller='0' bus='0' target='0' unit='0'/></disk>"
            "<controller type='scsi' model='virtio-scsi'/><controller type='scsi'/>")
    text = d.format(inactive=True)
    assert "<address type='pci' domain='0x0000' bus='0x00' slot='0x0a' function='0x0'/>" in text
    assert "<address type='drive' controller='0' bus='0' target='0' unit='0'/>" in text
    assert "<controller type='scsi' index='0' model='virtio-scsi'/>" in text
    assert "<controller type='scsi' index='1'/>" in text
    assert conf.parse(text).format(inactive=True) == text


@pytest.mark.parametrize("attrs, words", [
    ("slot='0x20'", "Invalid PCI address slot='0x20', must be <= 0x1F"),
    ("function='8'", "Invalid PCI address function='8', must be <= 0x7"),
    ("slot='x'", "Cannot parse <address> 'slot' attribute 'x'"),
])
def test_bad_pci_addresses_are_refused(attrs, words):
    with pytest.raises(libvirtError) as info:
        dom(f"<interface type='user'><address type='pci' {attrs}/></interface>")
    assert words in info.value.get_error_message()


def test_vcpu_current():
    d = dom(vcpu="<vcpu current='2'>4</vcpu>")
    assert (d.vcpus, d.current_vcpus) == (4, 2)
    assert "<vcpu placement='static' current='2'>4</vcpu>" in d.format()
    assert dom(vcpu="<vcpu current='4'>4</vcpu>").vcpus_current is None
    with pytest.raises(libvirtError) as info:
        dom(vcpu="<vcpu current='5'>4</vcpu>")
    assert "maxvcpus must not be less than current vcpus (4 < 5)" in info.value.get_error_message()


def test_malformed_device_xml_gets_libvirts_parser_error():
    # libvirt's virDomainDeviceDefParse names the document (device_definition), from the domain code
    with pytest.raises(libvirtError) as info:
        devicexml.parse_device("<disk type='file'>\n <target dev='vdb'></disk>")
    err = info.value
    assert (err.get_error_code(), err.get_error_domain()) == (ErrorNumber.XML_DETAIL, ErrorDomain.DOMAIN)
    assert err.get_error_message() == ("(device_definition):2: Opening and ending tag mismatch: target line 2 "
                                       "and disk\n <target dev='vdb'></disk>\n--------------------------^")


def test_block_copy_target_is_read_as_libvirts_disk_definition():
    from pyvirt.drivers.qemu.api_blockjob import _copy_target
    with pytest.raises(libvirtError) as info:
        _copy_target("<disk")
    assert info.value.get_error_message() == "(disk_definition):1: Couldn't find end of Start Tag disk line 1\n<disk\n-----^"
    with pytest.raises(libvirtError) as info:
        _copy_target("<volume/>")
    assert info.value.get_error_message() == "XML error: expecting root element of 'disk', not 'volume'"


def test_device_xml_parsing_and_edits():
    with pytest.raises(libvirtError) as info:
        devicexml.parse_device("<gizmo/>")
    assert info.value.get_error_code() == ErrorNumber.XML_ERROR
    assert "unknown device type 'gizmo'" in info.value.get_error_message()
    assert devicexml.parse_device("<sound model='ich9'/>").dev is None
    d = dom("<controller type='usb' index='0' model='qemu-xhci'/>")
    ctrl = devicexml.parse_device("<controller type='usb' model='nec-xhci'/>").dev
    devicexml.add(d, ctrl)
    assert ctrl.index == 1
    with pytest.raises(libvirtError) as info:
        devicexml.add(d, devicexml.parse_device("<controller type='usb' index='1'/>").dev)
    assert "controller index='1' already exists" in info.value.get_error_message()
    disk = devicexml.parse_device("<disk><source file='/a'/><target dev='vdb'/></disk>").dev
    with pytest.raises(libvirtError) as info:
        devicexml.find(d, disk)
    assert info.value.get_error_code() == ErrorNumber.DEVICE_MISSING
    devicexml.add(d, disk)
    assert devicexml.find(d, disk) is disk
    with pytest.raises(libvirtError) as info:
        devicexml.add(d, devicexml.parse_device("<disk><source file='/b'/><target dev='vdb'/></disk>").dev)
    assert "target vdb already exists" in info.value.get_error_message()
    devicexml.remove(d, disk)
    assert d.devices.disks == []


def test_abi_check_knows_addresses_controllers_and_online_vcpus():
    src = dom("<interface type='user'/><controller type='scsi' model='virtio-scsi'/>",
              vcpu="<vcpu current='2'>3</vcpu>")
    pciaddr.assign(src)
    assert conf.check_abi_stability(src, src.copy()) == []
    moved = src.copy()
    moved.devices.interfaces[0].address = PCIAddress(slot=9)
    moved.devices.controllers[0].model = None
    moved.set_current_vcpus(3)
    assert conf.check_abi_stability(src, moved) == [
        "Target vCPUs online 3 does not match source 2",
        "Target controller scsi0 model none does not match source virtio-scsi",
        "Target interface #0 address 0000:00:09.0 does not match source 0000:00:02.0"]
    bare = src.copy()                    # no addresses given: the destination places them
    bare.devices.interfaces[0].address = bare.devices.controllers[0].address = None
    assert conf.check_abi_stability(src, bare) == []


def test_a_serial_port_implies_console_zero():
    from pyvirt.drivers.qemu.command import assign_aliases
    d = dom("<serial type='pty'><target port='0'/></serial><serial type='file'><source path='/l'/>"
            "<target port='1'/></serial>")
    postparse.complete(d, new_definition=True)
    assign_aliases(d)
    (console,) = d.devices.consoles
    assert (console.type, console.target_type, console.target_port, console.alias) == ("pty", "serial", 0, "serial0")
    assert [(s.target_type, s.target_model) for s in d.devices.serials] == [("isa-serial", "isa-serial")] * 2
    assert re.search(r"<console type='pty'>\s*<target type='serial' port='0'/>\s*</console>",
                     d.format(inactive=True))
    # a console given is left alone (and still shares serial port 0's alias); no serial, no console
    d = dom("<serial type='pty'/><console type='pty'><target type='serial' port='0'/></console>")
    postparse.complete(d, new_definition=True)
    assign_aliases(d)
    assert len(d.devices.consoles) == 1 and d.devices.consoles[0].alias == "serial0"
    d = dom()
    postparse.complete(d, new_definition=True)
    assert d.devices.consoles == []


def test_a_stored_or_running_definition_gains_no_default_device():
    """libvirt's default devices are added to new definitions (and to the XML of a guest
    arriving); a definition pyvirt already keeps (a fresh boot, a hot-plug) gains none, so
    a guest defined before them is started, and moved, with the devices it had."""
    d = dom("<serial type='pty'/>")
    postparse.complete(d, new_definition=False)
    assert d.os.machine == "pc" and d.cpu is None
    assert [(c.type, c.model) for c in d.devices.controllers] == []
    assert d.devices.inputs == [] and d.devices.memballoon is None
    new = dom("<serial type='pty'/>")
    postparse.complete(new, new_definition=True, machine_aliases={"pc": "pc-i440fx-7.2"})
    assert new.os.machine == "pc-i440fx-7.2" and new.cpu.model == "qemu64" and new.cpu.check == "none"
    assert [(c.type, c.model) for c in new.devices.controllers] == [("usb", "piix3-uhci"), ("pci", "pci-root")]
    assert [(i.type, i.bus) for i in new.devices.inputs] == [("mouse", "ps2"), ("keyboard", "ps2")]
    # and what pyvirt sends of the older guest tells a receiver to add nothing either
    sent = d.format(migratable=True)
    assert "<controller type='usb' index='0' model='none'/>" in sent and "<memballoon model='none'/>" in sent
