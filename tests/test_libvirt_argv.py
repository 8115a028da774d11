"""pyvirt's QEMU command line against libvirt 9.0's, for the same domain XML.

The reference is ``tests/data/libvirtargv/NAME.args``: what ``virsh
domxml-to-native qemu-argv tests/data/domain/NAME.xml`` printed on a private
libvirtd 9.0 (regenerate with ``scripts/libvirt_argv.py``; NAME.error holds
libvirt's refusal where it refused).  pyvirt's argv for the same XML, after
the post-parse a new definition gets, must describe the same guest: the device
list (drivers, ids, buses, addresses, properties, in order), machine type and
its properties, CPU, accelerator, vCPU topology, memory size, ``-global``s and
boot settings match exactly.  What may differ is what only the host sees; each
rule of :func:`guest_view` says why it changes neither what the guest sees nor
what the migration stream carries.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from pyvirt import VIR_ERR_CONFIG_UNSUPPORTED, conf
from pyvirt.errors import libvirtError
from pyvirt.drivers.qemu import machines, postparse
from pyvirt.drivers.qemu.command import CommandContext, assign_aliases, build_argv

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "libvirtargv"
DOMAINS = DATA / "domain"
CASES = sorted(p.stem for p in GOLDEN.glob("*.args"))
REFUSED = sorted(p.stem for p in GOLDEN.glob("*.error"))
CTX = CommandContext(emulator="/usr/bin/qemu-system-x86_64", kvm_available=True)
# The aliases the QEMU 7.2 the golden files were made with reported (``-machine help``):
# fixed here so the comparison does not depend on the QEMU installed.
QEMU_72_MACHINES = {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2", "": "pc-i440fx-7.2"}

# Domain XMLs whose argv pyvirt does not build like libvirt yet, and why (it refuses them).
NOT_YET = {
    "disks": "floppy disks and libvirt's default SCSI model (lsi) are not supported by pyvirt",
}

# Options that describe only the host side of the guest.  Why each cannot change
# the guest or the migration stream:
HOST_ONLY = {
    "-S": "CPUs start stopped until the manager says go: no device or state",
    "-sandbox": "QEMU's seccomp filter on its own system calls, invisible to the guest",
    "-msg": "timestamps in QEMU's own log lines",
    "-display": "the host-side display backend; a guest display device is a -device",
    "-audiodev": "a host audio backend; the guest has a sound device only through -device",
    "-incoming": "where the stream comes from, not what it carries",
    "-mon": "the manager's monitor connection",
    "-name": "the host-side name and thread naming (the guest sees neither)",
}


def _split_opts(value: str) -> list[str]:
    """QEMU's key=value,... list (',,' is a literal comma)."""
    return [part.replace("\0", ",") for part in value.replace(",,", "\0").split(",")]


def guest_view(argv: list[str]) -> dict:
    """What of ``argv`` the guest sees, with the host-only parts normalised away."""
    view: dict = {"devices": [], "globals": [], "chardevs": [], "netdevs": [], "blockdevs": [],
                  "graphics": [], "flags": []}
    node_names: dict[str, str] = {}
    args = argv[1:]            # the emulator's path is the host's
    i = 0
    while i < len(args):
        opt = args[i]
        value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("-") else None
        i += 1 if value is None else 2
        if opt in HOST_ONLY:
            continue
        if opt == "-machine":
            parts = _split_opts(value)
            props = dict(p.split("=", 1) for p in parts[1:])
            # libvirt gives the RAM as a memory-backend-ram named pc.ram, pyvirt as -m size=;
            # QEMU names the RAM block pc.ram either way, so the stream's RAM section is the same.
            props.pop("memory-backend", None)
            view["machine"] = (parts[0], props)
        elif opt == "-no-acpi":
            # the same machine property acpi=off, spelled as libvirt 9.0 still does
            view.setdefault("machine", ("", {}))[1]["acpi"] = "off"
        elif opt == "-m":
            size = value.removeprefix("size=")
            view["memory"] = int(size[:-1]) * 1024 if size.endswith("k") else int(size) * 1024 * 1024
        elif opt == "-object":
            obj = json.loads(value)
            if obj["qom-type"] == "memory-backend-ram":
                continue   # the guest RAM, counted by -m above
            if obj["qom-type"] == "secret":
                continue   # libvirt's master key / pyvirt's secrets: descriptors for the monitor
            view.setdefault("objects", []).append(obj)
        elif opt == "-chardev":
            parts = _split_opts(value)
            props = dict(p.split("=", 1) for p in parts[1:])
            if props.get("id") == "charmonitor":
                continue   # the monitor socket: a path (libvirt) or a descriptor (pyvirt)
            # Host-side: the file or socket path and how it is opened (append=on, server mode);
            # the guest sees only the serial port device, which names the chardev by id.
            view["chardevs"].append((parts[0], props["id"]))
        elif opt == "-netdev":
            # Host-side NIC backend (domxml-to-native replaces every backend by a tap fd);
            # the guest sees the NIC device, which names the netdev by id.
            view["netdevs"].append(json.loads(value)["id"])
        elif opt == "-blockdev":
            node = json.loads(value)
            # Node names (libvirt numbers them down, pyvirt up) and cache flags are host-side:
            # devices carry their own state in the stream by device id, not by node name.
            node_names[node["node-name"]] = f"node{len(node_names)}"
            kept = {k: node[k] for k in ("driver", "read-only") if k in node}
            if "file" in node:
                kept["file"] = node_names.get(node["file"], node["file"])
            if kept.get("driver") in ("file", "host_device"):
                kept = {"protocol": kept["driver"]}
            view["blockdevs"].append(kept)
        elif opt == "-device":
            dev = json.loads(value)
            if "drive" in dev:
                dev["drive"] = node_names.get(dev["drive"], dev["drive"])
            view["devices"].append(dev)
        elif opt == "-global":
            view["globals"].append(value)
        elif opt in ("-vnc", "-spice"):
            # Listen address, port (autoport picks them per host), passwords and audio backend
            # are host-side; that the guest has a VNC/SPICE server matters (SPICE's agent
            # channel and seamless migration state) and stays.
            view["graphics"].append(opt)
        elif value is None:
            view["flags"].append(opt)
        else:
            view.setdefault("options", {})[opt] = value
    view["flags"].sort()
    return view


def libvirt_argv(name: str) -> list[str]:
    lines = [line for line in (GOLDEN / f"{name}.args").read_text().splitlines() if not line.startswith("#")]
    return shlex.split(" ".join(lines))


def source_xml(name: str) -> Path:
    """The XML a golden argv was made from: tests/data/domain/NAME.xml, or libvirt's own
    live XML of a guest it ran (NAME.live.xml beside the golden file)."""
    return DOMAINS / f"{name}.xml" if (DOMAINS / f"{name}.xml").exists() else GOLDEN / f"{name}.xml"


def pyvirt_argv(name: str) -> list[str]:
    d = conf.parse(source_xml(name).read_text(), ("kvm", "qemu"), "qemu", inactive=True)
    postparse.complete(d, new_definition=True, machine_aliases=QEMU_72_MACHINES)
    assign_aliases(d)
    for port, g in enumerate(d.devices.graphics, start=5900):   # what autoport would pick
        if g.autoport:
            g.port = port
    return build_argv(d, CTX)


def test_golden_files_cover_the_new_guests():
    assert {"tiny", "full", "q35", "minimal", "full.live"} <= set(CASES)
    for name in CASES + REFUSED:
        suffix = "args" if name in CASES else "error"
        first = (GOLDEN / f"{name}.{suffix}").read_text().splitlines()[0]
        made_from = source_xml(name).relative_to(Path(__file__).parent.parent)
        assert first == f"# virsh -c qemu:///system domxml-to-native qemu-argv {made_from}"


@pytest.mark.parametrize("name", CASES)
def test_same_guest_as_libvirt(name):
    if name in NOT_YET:
        # never a different guest: pyvirt refuses what it cannot build as libvirt does
        with pytest.raises(libvirtError) as info:
            pyvirt_argv(name)
        assert info.value.get_error_code() == VIR_ERR_CONFIG_UNSUPPORTED, NOT_YET[name]
        return
    ours, theirs = guest_view(pyvirt_argv(name)), guest_view(libvirt_argv(name))
    assert ours["devices"] == theirs["devices"]
    assert ours == theirs


def test_normalisation_keeps_guest_visible_differences():
    """The view must still tell two different guests apart."""
    base = pyvirt_argv("full")
    nic = [a.replace('"virtio-net-pci"', '"e1000"') for a in base]
    assert guest_view(nic) != guest_view(base)
    cpu = list(base)
    cpu[cpu.index("-cpu") + 1] = "Nehalem"
    assert guest_view(cpu) != guest_view(base)
    moved = [a.replace('"addr":"0x3"', '"addr":"0x9"') for a in base]
    assert guest_view(moved) != guest_view(base)


def test_machine_aliases_from_qemu_help():
    text = ("Supported machines are:\n"
            "pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)\n"
            "pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)\n"
            "q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)\n"
            "pc-q35-7.2           Standard PC (Q35 + ICH9, 2009)\n")
    table = machines.parse_help(text)
    assert table == {"pc": "pc-i440fx-7.2", "": "pc-i440fx-7.2", "q35": "pc-q35-7.2"}
    assert machines.canonical("q35", table) == "pc-q35-7.2"
    assert machines.canonical("pc-q35-6.2", table) == "pc-q35-6.2"
    assert machines.canonical(None, table) == "pc-i440fx-7.2"


def test_machine_aliases_of_the_installed_qemu():
    emulator = CTX.emulator
    if not Path(emulator).exists():
        pytest.skip(f"{emulator} is not installed")
    table = machines.aliases(emulator)
    assert re.fullmatch(r"pc-i440fx-\d+\.\d+", table["pc"])
    assert re.fullmatch(r"pc-q35-\d+\.\d+", table["q35"])


def test_a_channel_without_socket_path_is_the_same_port_with_nothing_behind():
    """libvirt creates a unix channel's socket under its own directory when none is named
    (and leaves that path out of migratable XML); pyvirt gives the guest the same port on a
    null backend: the same device and migration state, nothing listening on the host."""
    xml = (DOMAINS / "channels.xml").read_text().replace(
        "<source mode='bind' path='/var/lib/guests/channels.agent'/>", "")
    d = conf.parse(xml, ("kvm", "qemu"), "qemu", inactive=True)
    postparse.complete(d, new_definition=True, machine_aliases=QEMU_72_MACHINES)
    assign_aliases(d)
    d.devices.graphics[0].port = 5900      # what autoport would pick
    argv = build_argv(d, CTX)
    assert "null,id=charchannel0" in argv
    assert guest_view(argv)["devices"] == guest_view(libvirt_argv("channels"))["devices"]
