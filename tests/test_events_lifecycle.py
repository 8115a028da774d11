"""reboot, reset and shutdown modes against real guests, with the events they raise.

``virsh reboot`` is libvirt's fake reboot: the Linux test guest gets the ACPI
power button and powers off, and instead of ending QEMU the daemon resets the
machine and runs it again — the guest boots a second time in the same QEMU
process, and, as with libvirtd 9.0 on this QEMU (checked beside it), only
REBOOT events are raised meanwhile.  ``reset`` restarts the tiny guest at once (QMP system_reset).  The
pyvirt CLI prints what virsh prints for each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from pyvirt.conf import parse_status

from guests import READY, linux_xml, tiny_xml, wait_for, wait_for_text
from test_events import listener

pytestmark = [pytest.mark.virsh,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]

POWEROFF = "PYVIRT-GUEST-POWEROFF"


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60)


def ours(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", uri, *args], capture_output=True,
                          text=True, timeout=60)


def ok(uri: str, *args: str) -> str:
    out = virsh(uri, *args)
    assert out.returncode == 0, f"virsh {' '.join(args)}: {out.stderr}"
    return out.stdout


def status(daemon, name: str):
    return parse_status((daemon.state_dir / "run" / "qemu" / f"{name}.xml").read_text())


def is_event(line: str, *prefix) -> bool:
    """A listener line for an event starting with ``prefix`` (id, domain, first arguments)."""
    return line.startswith("[") and json.loads(line)[:len(prefix)] == list(prefix)


def count(log, text: str) -> int:
    return log.read_text(errors="replace").count(text) if log.exists() else 0


def test_reboot_boots_again_in_the_same_qemu(pyvirtd, guests_built):
    w = pyvirtd.workdir
    log = w / "lx.log"
    (w / "lx.xml").write_text(linux_xml("lx", log))
    ok(pyvirtd.uri, "define", str(w / "lx.xml"))
    ok(pyvirtd.uri, "start", "lx")
    wait_for_text(log, READY, timeout=120)
    pid = status(pyvirtd, "lx").pid
    events = listener("pyvirt", pyvirtd.uri)
    try:
        assert events.wait_for(lambda l: l.startswith("registered")) == "registered 27"
        assert ok(pyvirtd.uri, "reboot", "lx") == "Domain 'lx' is being rebooted\n\n"
        wait_for(lambda: count(log, READY) == 2, 120, what="the second boot")
        events.wait_for(lambda l: is_event(l, 1, "lx"), what="the REBOOT event")
        ok(pyvirtd.uri, "desc", "lx", "after the reboot")      # a last event: all before it are in
        events.wait_for(lambda l: is_event(l, 23, "lx"), what="the METADATA_CHANGE event")
    finally:
        events.stop()
    assert count(log, POWEROFF) == 1                  # the guest did power off, once
    now = status(pyvirtd, "lx")
    assert now.pid == pid                              # ... and came back in the same QEMU
    assert ok(pyvirtd.uri, "domstate", "--reason", "lx").strip() == "running (booted)"
    assert "fakereboot" not in now.extra               # the intent is spent
    got = [json.loads(l) for l in events.lines if l.startswith("[")]
    # as libvirtd 9.0 with this QEMU: the power-off in between is not announced, the
    # reset raises REBOOT (the booting guest may reset itself once more), nothing else
    assert got[-1] == [23, "lx", 0, None]
    assert got[0] == [1, "lx"] and all(e == [1, "lx"] for e in got[:-1])

    # a shutdown through ACPI ends it, as the guest powers off
    assert ok(pyvirtd.uri, "shutdown", "--mode", "acpi", "lx") == "Domain 'lx' is being shutdown\n\n"
    wait_for(lambda: virsh(pyvirtd.uri, "domstate", "--reason", "lx").stdout.strip() == "shut off (shutdown)",
             60, what="the guest to shut off")
    assert count(log, POWEROFF) == 2 and count(log, READY) == 2


def test_on_reboot_destroy_turns_reboot_into_shutdown(pyvirtd, guests_built):
    w = pyvirtd.workdir
    log = w / "lx.log"
    xml = linux_xml("lx", log).replace("</devices>", "</devices>\n  <on_reboot>destroy</on_reboot>")
    (w / "lx.xml").write_text(xml)
    ok(pyvirtd.uri, "define", str(w / "lx.xml"))
    ok(pyvirtd.uri, "start", "lx")
    wait_for_text(log, READY, timeout=120)
    ours_out = ours(pyvirtd.uri, "reboot", "lx")
    assert ours_out.returncode == 0 and ours_out.stdout == "Domain 'lx' is being rebooted\n\n"
    wait_for(lambda: virsh(pyvirtd.uri, "domstate", "--reason", "lx").stdout.strip() == "shut off (shutdown)",
             60, what="the guest to shut off")
    assert count(log, READY) == 1


def test_reset_restarts_the_guest_in_the_same_qemu(pyvirtd, guests_built):
    w = pyvirtd.workdir
    log = w / "rs.log"
    (w / "rs.xml").write_text(tiny_xml("rs", log))
    ok(pyvirtd.uri, "define", str(w / "rs.xml"))
    ok(pyvirtd.uri, "start", "rs")
    wait_for_text(log, READY)
    pid = status(pyvirtd, "rs").pid
    theirs = virsh(pyvirtd.uri, "reset", "rs")
    wait_for(lambda: count(log, READY) == 2, 30, what="the guest to boot again")
    mine = ours(pyvirtd.uri, "reset", "rs")
    wait_for(lambda: count(log, READY) == 3, 30, what="the guest to boot a third time")
    assert mine.stdout == theirs.stdout == "Domain 'rs' was reset\n\n"
    assert status(pyvirtd, "rs").pid == pid
    assert ok(pyvirtd.uri, "domstate", "rs").strip() == "running"


@pytest.mark.parametrize("command", [
    "reset rs", "reboot rs", "shutdown rs",                    # shut off
    "reboot --mode bogus rs", "shutdown --mode acpi,bogus rs",
    "start rs; shutdown --mode agent rs", "reboot --mode agent rs", "shutdown --mode initctl rs",
    "reboot --mode signal rs", "reboot --mode paravirt,acpi rs",
])
def test_lifecycle_errors_print_like_virsh(pyvirtd, guests_built, command):
    w = pyvirtd.workdir
    (w / "rs.xml").write_text(tiny_xml("rs", w / "rs.log"))
    ok(pyvirtd.uri, "define", str(w / "rs.xml"))
    if command.startswith("start"):
        ok(pyvirtd.uri, "start", "rs")
        command = command.split("; ", 1)[1]
    theirs, mine = virsh(pyvirtd.uri, *command.split()), ours(pyvirtd.uri, *command.split())
    assert theirs.returncode == mine.returncode == 1, (theirs.stderr, mine.stderr)
    assert mine.stderr.strip() == theirs.stderr.strip()


def test_reboot_intent_is_kept_across_a_daemon_restart(pyvirtd, guests_built):
    """The tiny guest ignores the power button: the reboot stays pending, recorded in the
    status file (libvirt's fakereboot), so a restarted daemon still turns the guest's
    power-off into a reboot; a shutdown request takes it back."""
    w = pyvirtd.workdir
    (w / "fr.xml").write_text(tiny_xml("fr", w / "fr.log").replace("</os>", "</os>\n  <features><acpi/></features>"))
    ok(pyvirtd.uri, "define", str(w / "fr.xml"))
    ok(pyvirtd.uri, "start", "fr")
    wait_for_text(w / "fr.log", READY)
    ok(pyvirtd.uri, "reboot", "--mode", "acpi", "fr")
    assert status(pyvirtd, "fr").extra.get("fakereboot") == "1"
    pyvirtd.stop()
    pyvirtd.start()
    assert status(pyvirtd, "fr").extra.get("fakereboot") == "1"
    ok(pyvirtd.uri, "shutdown", "fr")
    assert "fakereboot" not in status(pyvirtd, "fr").extra
    assert ok(pyvirtd.uri, "domstate", "fr").strip() == "running"
