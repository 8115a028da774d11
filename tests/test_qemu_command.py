"""DomainDef → QEMU argv, golden files in tests/data/qemuargv/NAME.{xml,args}.

Set PYVIRT_REGENERATE=1 to rewrite the .args files from the current code;
review the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyvirt import conf
from pyvirt.drivers.qemu.command import CommandContext, assign_aliases, build_argv
from pyvirt.errors import libvirtError

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
    ("<interface type='network'><source network='default'/></interface>", "virtual network"),
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
