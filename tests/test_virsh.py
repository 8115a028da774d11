"""Stock virsh 9.0 and python3-libvirt 9.0 drive pyvirtd (the acceptance tests of the daemon)."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daemons import running_copies
from guests import READY, pid_alive, tiny_xml, wait_for, wait_for_text

pytestmark = [pytest.mark.virsh,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]

REPO = Path(__file__).resolve().parent.parent


def virsh(uri: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=timeout)


def ok(uri: str, *args: str) -> str:
    out = virsh(uri, *args)
    assert out.returncode == 0, f"virsh {' '.join(args)} failed: {out.stderr}"
    return out.stdout


@pytest.fixture
def guest_file(pyvirtd, guests_built):
    path = pyvirtd.workdir / "vt.xml"
    path.write_text(tiny_xml("vt", pyvirtd.workdir / "vt-serial.log"))
    return path


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_virsh_qemu_walkthrough(pyvirtd, guest_file, transport):
    uri = pyvirtd.uri if transport == "tcp" else pyvirtd.unix_uri
    assert "Domain 'vt' defined" in ok(uri, "define", str(guest_file))
    assert "Domain 'vt' started" in ok(uri, "start", "vt")
    wait_for_text(pyvirtd.workdir / "vt-serial.log", READY)
    listing = ok(uri, "list", "--all")
    assert " 1    vt     running" in listing
    info = ok(uri, "dominfo", "vt")
    assert "State:          running" in info and "Persistent:     yes" in info
    assert ok(uri, "domstate", "--reason", "vt").strip() == "running (booted)"
    ok(uri, "suspend", "vt")
    assert ok(uri, "domstate", "--reason", "vt").strip() == "paused (user)"
    ok(uri, "resume", "vt")
    assert ok(uri, "domstate", "--reason", "vt").strip() == "running (unpaused)"
    assert "<alias name='serial0'/>" in ok(uri, "dumpxml", "vt")
    ok(uri, "destroy", "vt")
    assert ok(uri, "domstate", "--reason", "vt").strip() == "shut off (destroyed)"
    ok(uri, "undefine", "vt")
    assert "vt" not in ok(uri, "list", "--all")


def test_virsh_test_driver(pyvirtd):
    out = ok(pyvirtd.test_uri, "list --all; domstate --reason test; dominfo test")
    # libvirt 9.0's test host's domain runs with reason unknown (virsh says so against its own too)
    assert " 1    test   running" in out and "running (unknown)" in out
    assert "6695eb01-f6a4-8304-79aa-97f2502e193f" in out


def test_virsh_start_autodestroy(pyvirtd, guest_file):
    ok(pyvirtd.uri, "define", str(guest_file))
    ok(pyvirtd.uri, "start", "--autodestroy", "vt")   # virsh exits: its connection closes
    wait_for(lambda: ok(pyvirtd.uri, "domstate", "--reason", "vt").strip() == "shut off (destroyed)", 10,
             what="the autodestroyed guest to stop")


def test_virsh_errors_print_our_messages(pyvirtd, tmp_path):
    lxc = tmp_path / "lxc.xml"
    lxc.write_text("<domain type='lxc'><name>c</name><memory>1024</memory><os><type>exe</type></os></domain>")
    out = virsh(pyvirtd.uri, "define", str(lxc))
    assert out.returncode == 1
    assert "domain type 'lxc' is not supported by the qemu driver" in out.stderr
    out = virsh(pyvirtd.uri, "domstate", "nosuch")
    assert out.returncode == 1 and "failed to get domain 'nosuch'" in out.stderr


class EventWatcher:
    """``virsh event --loop`` (or ``qemu-monitor-event --loop``) whose output lines
    the test waits for, one by one."""

    def __init__(self, uri: str, *args: str) -> None:
        self.proc = subprocess.Popen(["virsh", "-c", uri, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout: float) -> str | None:
        """The next line, or None if none came within ``timeout``."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            pytest.fail(f"virsh {self.proc.args[3:]} exited: {self.proc.stderr.read()}")
        self.seen.append(line)
        return line

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (line := self.next_line(max(deadline - time.monotonic(), 0))) is None or text not in line:
            if time.monotonic() >= deadline:
                pytest.fail(f"no '{text}' from virsh {self.proc.args[3:]} within {timeout:.0f}s; "
                            f"it printed {self.seen}")

    def until_registered(self, probe, text: str, timeout: float = 30.0) -> None:
        """virsh says nothing when its callback is registered: repeat a probe that causes
        an event until the watcher prints it (each try waits a moment for the line)."""
        deadline = time.monotonic() + timeout
        while True:
            probe()
            line = self.next_line(0.2)
            while line is not None and text not in line:
                line = self.next_line(0.2)
            if line is not None:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"virsh {self.proc.args[3:]} printed no '{text}' within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


def test_virsh_event_loop_prints_lifecycle_events(pyvirtd, guest_file):
    ok(pyvirtd.uri, "define", str(guest_file))
    same = pyvirtd.workdir / "vt-as-defined.xml"
    same.write_text(ok(pyvirtd.uri, "dumpxml", "--inactive", "vt"))
    watcher = EventWatcher(pyvirtd.uri, "event", "--loop", "--event", "lifecycle")
    try:
        # redefining the domain as it is is a harmless event: Defined Updated
        watcher.until_registered(lambda: ok(pyvirtd.uri, "define", str(same)), "Defined Updated")
        ok(pyvirtd.uri, "start vt; suspend vt; resume vt; destroy vt")
        watcher.wait_for("Stopped Destroyed")
    finally:
        watcher.stop()
    lines = [line for line in watcher.seen if line.startswith("event '") and "Defined Updated" not in line]
    assert lines == [
        "event 'lifecycle' for domain 'vt': Resumed Unpaused",
        "event 'lifecycle' for domain 'vt': Started Booted",
        "event 'lifecycle' for domain 'vt': Suspended Paused",
        "event 'lifecycle' for domain 'vt': Resumed Unpaused",
        "event 'lifecycle' for domain 'vt': Shutdown Finished after host request",
        "event 'lifecycle' for domain 'vt': Stopped Destroyed",
    ], watcher.seen


def test_python3_libvirt_and_pyvirt_agree_over_the_wire(pyvirtd):
    if subprocess.run(["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    script = REPO / "tests" / "scripts" / "walkthrough.py"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    theirs = subprocess.run(["/usr/bin/python3", str(script), "libvirt", pyvirtd.test_uri],
                            capture_output=True, text=True, timeout=60, env=env)
    ours = subprocess.run([sys.executable, str(script), "pyvirt", pyvirtd.test_uri],
                          capture_output=True, text=True, timeout=60, env=env)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout
    assert "read-only True" in ours.stdout


def test_python3_libvirt_qemu_walkthrough(pyvirtd, guests_built):
    if subprocess.run(["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    xml = tiny_xml("py3", pyvirtd.workdir / "py3.log")
    code = f"""
import libvirt
c = libvirt.open({pyvirtd.uri!r})
d = c.defineXML({xml!r})
d.create()
print(d.state(), d.isActive(), d.ID() > 0)
d.suspend(); print(d.state())
d.resume(); print(d.state())
d.destroy(); print(d.state())
d.undefine()
try:
    c.defineXML("<domain type='lxc'><name>c</name><memory>1024</memory><os><type>exe</type></os></domain>")
except libvirt.libvirtError as e:
    print(e.get_error_code(), e.get_error_domain())
"""
    out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[1, 1] 1 True", "[3, 1]", "[1, 5]", "[5, 2]", "67 20"]


def test_sigterm_leaves_guests_running_and_restart_adopts_them(pyvirtd, guest_file):
    ok(pyvirtd.uri, "define", str(guest_file))
    ok(pyvirtd.uri, "start", "vt")
    status = (pyvirtd.state_dir / "run" / "qemu" / "vt.xml").read_text()
    qemu = int(status.split("pid='", 1)[1].split("'", 1)[0])
    pyvirtd.stop()                       # SIGTERM
    assert pid_alive(qemu)
    assert running_copies([pyvirtd], "vt") == 1    # asked on its monitor socket: the CPUs run on
    pyvirtd.start()
    assert ok(pyvirtd.uri, "domstate", "--reason", "vt").strip() == "running (booted)"
    assert running_copies([pyvirtd], "vt") == 1
    ok(pyvirtd.uri, "destroy", "vt")
    assert not pid_alive(qemu)


def test_virsh_qemu_monitor_command_and_event(pyvirtd, guest_file):
    ok(pyvirtd.uri, "define", str(guest_file))
    ok(pyvirtd.uri, "start", "vt")
    out = ok(pyvirtd.uri, "qemu-monitor-command", "vt", '{"execute":"query-status"}')
    assert '"status": "running"' in out or '"status":"running"' in out
    assert "running" in ok(pyvirtd.uri, "qemu-monitor-command", "--hmp", "vt", "info status")
    assert "CommandNotFound" in ok(pyvirtd.uri, "qemu-monitor-command", "vt", '{"execute":"no-such"}')
    watcher = EventWatcher(pyvirtd.uri, "qemu-monitor-event", "--loop", "--event", "STOP")
    try:
        watcher.until_registered(lambda: ok(pyvirtd.uri, "suspend vt; resume vt"), "event STOP")
    finally:
        watcher.stop()
    events = [line for line in watcher.seen if line.startswith("event ")]
    assert events and all(line.startswith("event STOP") for line in events), watcher.seen   # RESUME filtered out
    ok(pyvirtd.uri, "destroy", "vt")
