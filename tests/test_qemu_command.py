"""DomainDef → QEMU argv, golden files in tests/data/qemuargv/NAME.{xml,args}.

Set PYVIRT_REGENERATE=1 to rewrite the .args files from the current code;
review the diff before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pyvirt import conf
from pyvirt.drivers.qemu.command import CommandContext, assign_aliases, build_argv, opt_value, qemu_opts
from pyvirt.drivers.qemu.secrets import SecretPlan
from pyvirt.errors import libvirtError
from pyvirt import VIR_ERR_CONFIG_UNSUPPORTED, VIR_ERR_XML_ERROR

DATA = Path(__file__).parent / "data" / "qemuargv"
CASES = sorted(p.stem for p in DATA.glob("*.xml"))
REGENERATE = os.environ.get("PYVIRT_REGENERATE") == "1"
CTX = CommandContext(emulator="/usr/bin/qemu-system-x86_64", kvm_available=True)


def argv_for(name: str, ctx: CommandContext = CTX) -> list[str]:
    d = conf.parse((DATA / f"{name}.xml").read_text(), ("kvm", "qemu"), "qemu")
    assign_aliases(d)
    for g in d.devices.graphics:     # what the driver's autoport would pick first
        if g.autoport:
            g.port = 5900
    return build_argv(d, ctx)


@pytest.mark.parametrize("name", CASES)
def test_golden_argv(name):
    got = "\n".join(argv_for(name)) + "\n"
    expected = DATA / f"{name}.args"
    if REGENERATE or not expected.exists():
        expected.write_text(got)
    assert got == expected.read_text()


def test_incoming_defer_and_monitor_placeholder():
    argv = argv_for("minimal", CommandContext("/usr/bin/qemu-system-x86_64", False, incoming="defer"))
    assert argv[argv.index("-incoming") + 1] == "defer"
    assert "-S" in argv and "-no-shutdown" in argv
    assert any("fd=@MONITOR_FD@" in a for a in argv)
    assert argv[argv.index("-accel") + 1] == "tcg"


def test_kvm_domain_needs_kvm():
    with pytest.raises(libvirtError) as info:
        argv_for("graphics", CommandContext("/usr/bin/qemu-system-x86_64", kvm_available=False))
    assert "/dev/kvm" in info.value.get_error_message()


@pytest.mark.parametrize("device,words", [
    ("<video><model type='vmvga'/></video>", "video model 'vmvga'"),
    ("<input type='tablet' bus='xen'/>", "input device 'tablet' on bus 'xen'"),
])
def test_unsupported_devices_refused_before_launch(device, words):
    xml = (DATA / "minimal.xml").read_text().replace("</os>", f"</os><devices>{device}</devices>")
    d = conf.parse(xml, ("kvm", "qemu"), "qemu")
    assign_aliases(d)
    with pytest.raises(libvirtError) as info:
        build_argv(d, CTX)
    assert words in info.value.get_error_message()


# -- no XML value can add a QEMU option -------------------------------------------

# Options QEMU 7.2 parses as key=value lists (QemuOpts or keyval), with the
# key of a leading bare value.  Everything else built from XML is JSON.
OPTS_OPTIONS = {"-name": "guest", "-machine": "type", "-chardev": "backend", "-spice": None,
                "-vnc": "vnc", "-mon": None, "-smp": "cpus", "-m": "size", "-rtc": None,
                "-boot": "order", "-overcommit": None, "-msg": None}
JSON_OPTIONS = ("-blockdev", "-device", "-netdev", "-object")


def parse_qemu_opts(text: str, implied: str | None) -> list[tuple[str, str | None]]:
    """QEMU's reading of ``key=value,...`` (util/qemu-option.c get_opt_name_value,
    util/keyval.c): a value ends at a single comma, ``,,`` is a literal comma,
    only the first item may omit its key, a later item without '=' is a flag."""
    items: list[tuple[str, str | None]] = []
    i = 0
    while i < len(text):
        end = i
        while end < len(text) and text[end] not in "=,":
            end += 1
        if end < len(text) and text[end] == "=":
            key, i = text[i:end], end + 1
        elif not items and implied:
            key = implied
        else:
            items.append((text[i:end], None))
            i = end + 1
            continue
        value = []
        while i < len(text):
            if text[i] == ",":
                if text[i + 1:i + 2] != ",":
                    break
                i += 1
            value.append(text[i])
            i += 1
        items.append((key, "".join(value)))
        i += 1
    return items


def options_of(argv: list[str]) -> list[tuple[str, str]]:
    return [(argv[i], argv[i + 1]) for i in range(1, len(argv) - 1) if argv[i].startswith("-")
            and argv[i] in (*OPTS_OPTIONS, *JSON_OPTIONS, "-kernel", "-initrd", "-append", "-cpu")]


@pytest.mark.parametrize("name", CASES)
def test_every_option_parses_as_built(name):
    """Each key appears once, JSON options are JSON, and nothing that runs a
    program or opens an extra file is ever written."""
    argv = argv_for(name)
    for opt, value in options_of(argv):
        if opt in JSON_OPTIONS:
            parsed = json.loads(value)
            assert isinstance(parsed, dict)
            assert parsed.get("type") != "bridge" and not {"helper", "script", "downscript", "data"} & set(parsed)
        elif opt in OPTS_OPTIONS:
            keys = [k for k, _ in parse_qemu_opts(value, OPTS_OPTIONS[opt])]
            assert len(keys) == len(set(keys)), (opt, value)
            assert not {"helper", "script", "downscript", "logfile", "data", "password"} & set(keys) \
                or opt == "-vnc", (opt, value)    # -vnc password=on: set over QMP after start


def opts(argv: list[str], opt: str, which: int = 0) -> dict[str, str | None]:
    values = [v for o, v in options_of(argv) if o == opt]
    return dict(parse_qemu_opts(values[which], OPTS_OPTIONS[opt]))


def test_commas_in_xml_values_stay_inside_their_value():
    argv = argv_for("injection")
    assert opts(argv, "-name") == {"guest": "evil,debug-threads=off", "debug-threads": "on"}
    assert opts(argv, "-chardev", 1) == {"backend": "file", "id": "charserial0",
                                         "path": "/srv/a,logfile=/srv/b", "append": "on"}
    assert opts(argv, "-chardev", 2) == {"backend": "socket", "id": "charserial1",
                                         "path": "/srv/s,server=off,,x.sock", "server": "on", "wait": "off"}
    spice = opts(argv, "-spice")
    assert spice == {"port": "5900", "addr": "127.0.0.1", "password-secret": "graphics0-secret",
                     "seamless-migration": "on"}
    assert opts(argv, "-vnc") == {"vnc": "[::1]:0", "password": "on"}
    # -kernel/-initrd/-append are single machine properties QEMU does not parse
    assert argv[argv.index("-kernel") + 1] == "/srv/a,b/kernel.elf"
    assert argv[argv.index("-append") + 1] == "console=ttyS0,115200 dirty=1,2"
    blockdev = json.loads(argv[argv.index("-blockdev") + 1])
    assert blockdev["filename"] == "/srv/disk,file.driver=vvfat" and "file.driver" not in blockdev


def test_bridge_nic_never_lets_qemu_run_a_helper():
    argv = argv_for("injection")
    joined = "\n".join(argv)
    assert "helper" not in joined and "br0" not in joined and "bridge" not in joined
    netdev = json.loads(argv[argv.index("-netdev") + 1])
    assert netdev == {"type": "tap", "fd": "@TAP_FD:net0@", "id": "hostnet0"}


def test_vhost_net_descriptor_for_virtio_nics_when_available():
    argv = argv_for("injection", CommandContext(CTX.emulator, True, vhost_net=True))
    assert json.loads(argv[argv.index("-netdev") + 1]) == {
        "type": "tap", "fd": "@TAP_FD:net0@", "vhost": True, "vhostfd": "@VHOST_FD:net0@", "id": "hostnet0"}


def test_passwords_never_on_the_command_line():
    d = parse_case("injection")
    plan = SecretPlan()
    argv = build_argv(d, CTX, plan)
    joined = "\n".join(argv)
    assert "pw,password=x" not in joined and "vnc,pw" not in joined and "data" not in joined
    secret = json.loads(argv[argv.index("-object") + 1])
    assert secret == {"qom-type": "secret", "id": "graphics0-secret", "format": "raw",
                      "file": "/proc/self/fd/@SECRET_FD:graphics0-secret@"}
    assert plan.ids == ["graphics0-secret"]
    with plan.handed() as handed:
        fd = handed.by_id["graphics0-secret"]
        assert os.pread(fd, 100, 0) == b"pw,password=x"
        assert handed.substitute(argv)[argv.index("-object") + 1].endswith(f'"/proc/self/fd/{fd}"}}')


def test_opt_value_doubles_commas_and_bare_values_cannot_hold_a_key():
    assert opt_value("a,b,,c") == "a,,b,,,,c"
    assert qemu_opts("file", ("path", "/x,y=z")) == "file,path=/x,,y=z"
    with pytest.raises(libvirtError):
        qemu_opts("key=value")


def parse_case(name: str, replace: tuple[str, str] | None = None):
    xml = (DATA / f"{name}.xml").read_text()
    if replace:
        assert replace[0] in xml
        xml = xml.replace(*replace)
    d = conf.parse(xml, ("kvm", "qemu"), "qemu")
    assign_aliases(d)
    for g in d.devices.graphics:
        g.port = g.port or 5900
    return d


@pytest.mark.parametrize("case,replace,code,words", [
    ("minimal", ("machine='pc'", "machine='pc,dump-guest-core=on'"), VIR_ERR_CONFIG_UNSUPPORTED,
     "does not support machine type 'pc,dump-guest-core=on'"),
    ("minimal", ("machine='pc'", "machine='type=pc'"), VIR_ERR_CONFIG_UNSUPPORTED, "machine type 'type=pc'"),
    ("graphics", ("address='127.0.0.1'", "address='127.0.0.1,port=5988'"), VIR_ERR_XML_ERROR,
     "spice listen address '127.0.0.1,port=5988' is neither an IP address nor a host name"),
    ("graphics", ("listen='0.0.0.0'", "listen='0.0.0.0,websocket=5700'"), VIR_ERR_XML_ERROR,
     "vnc listen address '0.0.0.0,websocket=5700'"),
    ("graphics", ("listen='0.0.0.0'", "listen='unix:/tmp/x'"), VIR_ERR_XML_ERROR, "'unix:/tmp/x'"),
    ("graphics", ("<cpu mode='host-passthrough'/>", "<cpu><model>qemu64,+vmx</model></cpu>"),
     VIR_ERR_CONFIG_UNSUPPORTED, "CPU model 'qemu64,+vmx' is not supported"),
    ("disks", ("type='qcow2'", "type='vvfat'"), VIR_ERR_CONFIG_UNSUPPORTED, "unknown driver format value 'vvfat'"),
    ("kernel-boot", ("<target port='0'/></serial>", "<target port='0'/><alias name='ua-x,id=y'/></serial>"),
     VIR_ERR_XML_ERROR, "alias 'ua-x,id=y' has invalid characters"),
    ("kernel-boot", ("<target port='0'/></serial>", "<target port='0'/><alias name='ua-s'/></serial>"
                     "<serial type='pty'><alias name='ua-s'/></serial>"),
     VIR_ERR_XML_ERROR, "non unique alias detected: ua-s"),
])
def test_values_that_cannot_be_legal_are_refused(case, replace, code, words):
    with pytest.raises(libvirtError) as info:
        build_argv(parse_case(case, replace), CTX)
    assert info.value.get_error_code() == code
    assert words in info.value.get_error_message()


def test_host_names_and_ipv6_listen_addresses_are_accepted():
    d = parse_case("graphics", ("address='127.0.0.1'", "address='spice-host.example.org'"))
    assert opts(build_argv(d, CTX), "-spice")["addr"] == "spice-host.example.org"


def test_a_mac_that_is_not_a_mac_is_refused_when_parsed():
    xml = (DATA / "network-serial.xml").read_text().replace(
        "52:54:00:12:34:56", "52:54:00:12:34:56,romfile=/etc/shadow")
    with pytest.raises(libvirtError) as info:
        conf.parse(xml, ("kvm", "qemu"), "qemu")
    assert "unable to parse mac address '52:54:00:12:34:56,romfile=/etc/shadow'" in info.value.get_error_message()
