"""Domain events beyond lifecycle, from a real QEMU guest to stock and pyvirt clients.

One pyvirtd, one tiny guest with a qcow2 disk, an empty IDE CD-ROM and VNC.
Listening at once: python3-libvirt and pyvirt's library (the same script,
``scripts/events_listener.py``, registered for every event id), stock
``virsh event --all --loop`` and ``pyvirt event --all --loop`` (their output
must be the same), and ``virsh qemu-monitor-event`` for QEMU's own RTC_CHANGE.
The events are made by QEMU: a reset (REBOOT), an RTC register written
through the HMP ``o`` command (RTC_CHANGE, offset checked against QMP's),
the CD-ROM tray opened and closed (TRAY_CHANGE), a block-stream job
(BLOCK_JOB and BLOCK_JOB_2), a VNC client's handshake (GRAPHICS, addresses
checked against the socket), setMetadata (METADATA_CHANGE) and a save
(JOB_COMPLETED, statistics checked against jobStats).  The legacy
registration form is tested with a daemon that does not offer the callback
form, so stock clients fall back to REGISTER_ANY.
"""

from __future__ import annotations

import json
import re
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from guests import READY, tiny_xml, wait_for_text

pytestmark = [pytest.mark.virsh,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]

REPO = Path(__file__).resolve().parent.parent
LISTENER = REPO / "tests" / "scripts" / "events_listener.py"
NS = "http://pyvirt.test/events"
ALL_IDS = 27          # VIR_DOMAIN_EVENT_ID_LAST in libvirt 9.0
LEGACY_IDS = 16       # the ids up to DEVICE_REMOVED: all the legacy form has


def have_python3_libvirt() -> bool:
    return subprocess.run(["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode == 0


def virsh(uri: str, *args: str) -> str:
    out = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"virsh {' '.join(args)} failed: {out.stderr}"
    return out.stdout


class Watcher:
    """A process whose output lines the test waits for; stopped (by its PID) at the end."""

    def __init__(self, argv: list[str], stdin: bool = False) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def _next(self, timeout: float) -> str | None:
        try:
            line = self.queue.get(timeout=max(timeout, 0))
        except queue.Empty:
            return None
        if line is None:
            pytest.fail(f"{self.proc.args} exited: {self.proc.stderr.read()}")
        self.lines.append(line)
        return line

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "a line") -> str:
        """The first line from now on (or already read) that ``predicate`` accepts."""
        for line in self.lines:
            if predicate(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            line = self._next(deadline - time.monotonic())
            if line is not None and predicate(line):
                return line
            if line is None and time.monotonic() >= deadline:
                pytest.fail(f"no {what} from {self.proc.args[:6]} within {timeout:.0f}s; it printed {self.lines}")

    def probe_until(self, probe, predicate, timeout: float = 30.0, what: str = "a line") -> None:
        """virsh says nothing when its callbacks are registered: repeat ``probe`` until
        the watcher prints a line ``predicate`` accepts."""
        deadline = time.monotonic() + timeout
        while not any(predicate(line) for line in self.lines):
            probe()
            line = self._next(0.3)
            while line is not None and not predicate(line):
                line = self._next(0.3)
            if line is None and time.monotonic() > deadline:
                pytest.fail(f"{self.proc.args[:6]} printed no {what} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()          # the listener script ends cleanly
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                self.proc.send_signal(2)         # virsh event --loop: SIGINT ends its loop
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # whatever it printed while stopping
        while (line := self._drain()) is not None:
            self.lines.append(line)

    def _drain(self) -> str | None:
        try:
            return self.queue.get(timeout=2)
        except queue.Empty:
            return None


def events(watcher: Watcher) -> list[list]:
    """The listener's events, as [event id, domain, args...], probes left out."""
    out = [json.loads(line) for line in watcher.lines if line.startswith("[")]
    return [e for e in out if not (e[0] == 23 and e[2] == 0)]    # description probes


def listener(module: str, uri: str, mode: str = "any") -> Watcher:
    python = "/usr/bin/python3" if module == "libvirt" else sys.executable
    return Watcher([python, str(LISTENER), module, uri, mode], stdin=True)


def vnc_handshake(port: int) -> int:
    """A VNC client up to the server's ServerInit (QEMU: connected, then initialized); returns its port."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert s.recv(12) == b"RFB 003.008\n"
        s.sendall(b"RFB 003.008\n")
        count = s.recv(1)[0]
        assert 1 in s.recv(count)           # security type None
        s.sendall(b"\x01")
        assert s.recv(4) == b"\0\0\0\0"
        s.sendall(b"\x01")                  # ClientInit, shared
        assert len(s.recv(1024)) >= 24      # ServerInit
        return s.getsockname()[1]


@pytest.fixture
def event_guest(pyvirtd, guests_built):
    """The guest, defined and running, with its disk image and serial log."""
    w = pyvirtd.workdir
    disk = w / "ev.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    os.chmod(disk, 0o644)
    devices = f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>"""
    xml = w / "ev.xml"
    xml.write_text(tiny_xml("ev", w / "ev.log", extra_devices=devices))
    virsh(pyvirtd.uri, "define", str(xml))
    virsh(pyvirtd.uri, "start", "ev")
    wait_for_text(w / "ev.log", READY)
    return disk


def qmp(uri: str, command: str, **arguments) -> str:
    return virsh(uri, "qemu-monitor-command", "ev", json.dumps({"execute": command, "arguments": arguments}))


def write_rtc_seconds(uri: str) -> None:
    """Set the guest's RTC seconds through its I/O ports (QEMU's RTC_CHANGE follows)."""
    virsh(uri, "qemu-monitor-command", "--hmp", "ev", "o /b 0x70 0x00")
    virsh(uri, "qemu-monitor-command", "--hmp", "ev", "o /b 0x71 0x30")


@pytest.mark.skipif(not have_python3_libvirt(), reason="python3-libvirt is not installed")
def test_qemu_events_reach_python3_libvirt_pyvirt_and_virsh(pyvirtd, event_guest):
    uri = pyvirtd.uri
    disk = event_guest
    watchers = {"py3": listener("libvirt", uri), "ours": listener("pyvirt", uri),
                "virsh": Watcher(["virsh", "-c", uri, "event", "--all", "--loop"]),
                "cli": Watcher([sys.executable, "-m", "pyvirt.cli", "-c", uri, "event", "--all", "--loop"]),
                "qmp": Watcher(["virsh", "-c", uri, "qemu-monitor-event", "--loop", "--event", "RTC_CHANGE"])}
    py3, ours, vsh, cli, qmon = watchers.values()
    try:
        for w in (py3, ours):
            assert w.wait_for(lambda l: l.startswith("registered"), what="registration") == f"registered {ALL_IDS}"
        probes = iter(range(1000))
        for w in (vsh, cli):
            w.probe_until(lambda: virsh(uri, "desc", "ev", f"probe {next(probes)}"),
                          lambda l: "metadata-change" in l, what="probe event")
        qmon.probe_until(lambda: write_rtc_seconds(uri), lambda l: "RTC_CHANGE" in l, what="RTC_CHANGE")

        qmp(uri, "blockdev-open-tray", id="ide0-1-0")
        qmp(uri, "blockdev-close-tray", id="ide0-1-0")
        qmp(uri, "block-stream", **{"job-id": "drive-virtio-disk0", "device": "libvirt-1-format"})
        vnc_port = int(virsh(uri, "domdisplay", "ev").strip().rsplit(":", 1)[1]) + 5900
        client_port = vnc_handshake(vnc_port)
        virsh(uri, "metadata", "ev", NS, "--key", "ev", "--set", "<app state='on'/>")
        qmon_seen = len([l for l in qmon.lines if "RTC_CHANGE" in l])
        write_rtc_seconds(uri)
        qmp_rtc = qmon.wait_for(lambda l: "RTC_CHANGE" in l and qmon.lines.index(l) >= qmon_seen,
                                what="the last RTC_CHANGE")
        virsh(uri, "reset", "ev")         # late: the guest resets its devices (and itself) once more
        virsh(uri, "save", "ev", str(pyvirtd.workdir / "ev.save"))

        for w in (py3, ours):
            w.wait_for(lambda l: l.startswith("[21,"), what="job-completed")
            w.wait_for(lambda l: l.startswith("[0,") and json.loads(l)[2:] == [5, 4], what="stopped saved")
        for w in (vsh, cli):
            w.wait_for(lambda l: "Stopped Saved" in l, what="the stopped event")
    finally:
        for w in watchers.values():
            w.stop()

    got = events(py3)
    assert events(ours) == got, "pyvirt's library saw other events than python3-libvirt"
    assert [1, "ev"] in got                                             # reset: REBOOT
    assert [10, "ev", "ide0-1-0", 0] in got and [10, "ev", "ide0-1-0", 1] in got
    assert got.index([10, "ev", "ide0-1-0", 0]) < got.index([10, "ev", "ide0-1-0", 1])
    assert [8, "ev", str(disk), 1, 0] in got                            # Block Pull completed
    assert [16, "ev", "vda", 1, 0] in got
    assert [23, "ev", 2, NS] in got
    graphics = [e for e in got if e[0] == 5]
    assert [e[2] for e in graphics] == [0, 1, 2]                        # connect, initialize, disconnect
    for e in graphics:
        assert e[3] == {"family": 0, "node": "127.0.0.1", "service": str(vnc_port)}
        assert e[4] == {"family": 0, "node": "127.0.0.1", "service": str(client_port)}
        assert e[5] == "none" and e[6] == []
    # the offset libvirt reports is QEMU's own
    offset = json.loads(qmp_rtc.split(": ", 1)[1])["offset"]
    assert [e for e in got if e[0] == 2][-1] == [2, "ev", offset]
    completed = [e for e in got if e[0] == 21]
    assert len(completed) == 1
    params = completed[0][2]
    assert params["operation"] == 2                                     # VIR_DOMAIN_JOB_OPERATION_SAVE
    stats = json.loads(subprocess.run(
        ["/usr/bin/python3", "-c", "import json, libvirt, sys; d = libvirt.open(sys.argv[1]).lookupByName('ev');"
         " print(json.dumps(d.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)))", uri],
        capture_output=True, text=True, check=True).stdout)
    for key in ("memory_total", "memory_processed", "data_total", "memory_iteration"):
        assert params[key] == stats[key], key
    assert params["memory_total"] >= 128 * 2**20

    def shown(w: Watcher) -> list[str]:
        return [l for l in w.lines if l.startswith("event ") and "type description" not in l]
    assert shown(cli) == shown(vsh), "pyvirt event printed otherwise than virsh event"
    assert "event 'block-job-2' for domain 'ev': Block Pull for vda completed" in shown(vsh)
    assert "event 'tray-change' for domain 'ev' disk ide0-1-0: opened" in shown(vsh)


@pytest.fixture
def legacy_pyvirtd(tmp_path):
    """A pyvirtd that does not offer the callback form of events (as libvirt before 1.2.1)."""
    from daemons import Pyvirtd

    daemon = Pyvirtd(tmp_path / "legacy", extra_config="remote_event_callback = 0")
    try:
        daemon.start()
        yield daemon
    finally:
        leaked = daemon.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


@pytest.mark.skipif(not have_python3_libvirt(), reason="python3-libvirt is not installed")
def test_legacy_registration_form(legacy_pyvirtd, guests_built):
    """Stock clients register with CONNECT_DOMAIN_EVENT_REGISTER(_ANY) and get the
    DOMAIN_EVENT_* messages; ids after DEVICE_REMOVED are refused, as by libvirtd."""
    uri = legacy_pyvirtd.uri
    w = legacy_pyvirtd.workdir
    xml = w / "ev.xml"
    xml.write_text(tiny_xml("ev", w / "ev.log"))
    virsh(uri, "define", str(xml))
    virsh(uri, "start", "ev")
    wait_for_text(w / "ev.log", READY)
    any_form, old_form = listener("libvirt", uri), listener("libvirt", uri, "legacy")
    vsh = Watcher(["virsh", "-c", uri, "event", "--all", "--loop"])
    try:
        assert any_form.wait_for(lambda l: l.startswith("registered")) == f"registered {LEGACY_IDS}"
        assert old_form.wait_for(lambda l: l.startswith("registered")) == "registered 1"
        assert f"refused {LEGACY_IDS}: internal error: unsupported event ID {LEGACY_IDS}" in any_form.lines
        vsh.probe_until(lambda: virsh(uri, "suspend", "ev") and virsh(uri, "resume", "ev"),
                        lambda l: "Resumed Unpaused" in l, what="lifecycle event")
        virsh(uri, "reset", "ev")
        virsh(uri, "desc", "ev", "not delivered in the legacy form")
        virsh(uri, "destroy", "ev")
        for watcher in (any_form, old_form):
            watcher.wait_for(lambda l: l.startswith("[0,") and json.loads(l)[2:] == [5, 1], what="stopped")
        vsh.wait_for(lambda l: "Stopped Destroyed" in l, what="stopped")
    finally:
        for watcher in (any_form, old_form, vsh):
            watcher.stop()
    got = events(any_form)
    assert [1, "ev"] in got
    assert not [e for e in got if e[0] == 23]            # METADATA_CHANGE has no legacy form
    assert [e for e in events(old_form) if e[0] != 0] == []
    assert [3, 0] in [e[2:] for e in events(old_form)]     # Suspended Paused, lifecycle only
    assert "event 'reboot' for domain 'ev'" in vsh.lines
    assert not [l for l in vsh.lines if "metadata-change" in l]


def test_event_registration_errors_over_rpc(pyvirtd):
    """REGISTER_ANY refuses ids the legacy form never had, and doubles; callbacks
    refuse unknown ids — libvirtd 9.0's errors (asked of it the same way beside pyvirtd)."""
    import asyncio

    from pyvirt.errors import libvirtError
    from pyvirt.rpc.client import RPCClient
    from pyvirt.rpc.protocol import REMOTE
    from pyvirt.rpc.wire import Program

    async def ask() -> list[str]:
        client = await RPCClient.connect_tcp("127.0.0.1", pyvirtd.tcp_port)
        out = []
        try:
            call = client.call
            await call(Program.REMOTE, REMOTE.by_name["CONNECT_OPEN"], ("qemu:///system", 0))
            for name, args in (("CONNECT_DOMAIN_EVENT_REGISTER_ANY", (16,)),
                               ("CONNECT_DOMAIN_EVENT_REGISTER_ANY", (1,)),
                               ("CONNECT_DOMAIN_EVENT_REGISTER_ANY", (1,)),
                               ("CONNECT_DOMAIN_EVENT_DEREGISTER_ANY", (2,)),
                               ("CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY", (27, None)),
                               ("CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY", (26, None)),
                               ("CONNECT_DOMAIN_EVENT_DEREGISTER", ()),
                               ("CONNECT_DOMAIN_EVENT_REGISTER", ()),
                               ("CONNECT_DOMAIN_EVENT_REGISTER_ANY", (0,)),
                               ("CONNECT_DOMAIN_EVENT_DEREGISTER", ()),
                               ("CONNECT_DOMAIN_EVENT_DEREGISTER_ANY", (0,)),
                               ("CONNECT_DOMAIN_EVENT_REGISTER_ANY", (-1,))):
                try:
                    result = await call(Program.REMOTE, REMOTE.by_name[name], args)
                    out.append(f"ok {result!r}" if result in (None, 0) else "ok id")
                except libvirtError as exc:
                    out.append(exc.get_error_message())
        finally:
            client.close()
        return out
    assert asyncio.run(asyncio.wait_for(ask(), 30)) == [
        "internal error: unsupported event ID 16",
        "ok None",
        "invalid argument: event callback already tracked",
        "internal error: domain event 2 not registered",
        "internal error: unsupported event ID 27",
        "ok id",
        "internal error: domain event 0 not registered",     # the old lifecycle-only form: REGISTER_ANY(0)
        "ok 0",
        "invalid argument: event callback already tracked",
        "ok 0",
        "internal error: domain event 0 not registered",
        "internal error: unsupported event ID -1",
    ]


def _event_command(argv: list[str], uri: str, wait_for_one: bool) -> tuple[int, list[str], str]:
    w = Watcher(argv)
    try:
        if wait_for_one:     # suspend and resume the test driver's domain until one event is printed
            w.probe_until(lambda: virsh(uri, "suspend", "test") and virsh(uri, "resume", "test"),
                          lambda l: "event 'lifecycle'" in l, what="an event")
        w.proc.wait(30)
    finally:
        w.stop()
    return w.proc.returncode, w.lines, w.proc.stderr.read()


@pytest.mark.parametrize("options, wait_for_one", [
    (["--event", "lifecycle"], True),
    (["--domain", "test", "--all", "--timestamp"], True),
    (["--event", "lifecycle", "--timeout", "1"], False),
    (["--domain", "test", "--event", "reboot", "--loop", "--timeout", "1"], False),
    (["--list"], False),
    (["--domain", "nosuch", "--all"], False),
    (["--all", "--event", "reboot"], False),
    (["--list", "--event", "reboot"], False),
    (["--event", "nosuch"], False),
    ([], False),
    (["--all", "--timeout", "-1"], False),
    (["--all", "--timeout", "soon"], False),
])
def test_event_command_prints_like_virsh(pyvirtd, options, wait_for_one):
    """pyvirt event and virsh event on the daemon's test driver: a one-shot wait (its
    first event, then the count), the domain filter, --timestamp's format, a timed-out
    loop, --list, and the option errors."""
    uri = pyvirtd.test_uri
    theirs = _event_command(["virsh", "-c", uri, "event", *options], uri, wait_for_one)
    ours = _event_command([sys.executable, "-m", "pyvirt.cli", "-c", uri, "event", *options], uri, wait_for_one)
    (rc1, out1, err1), (rc2, out2, err2) = theirs, ours
    assert rc1 == rc2, (theirs, ours)
    if "--timestamp" in options:      # the times differ: their format must not
        stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+0000: "
        assert re.match(stamp, out1[0]) and re.match(stamp, out2[0]), (out1, out2)
        out1, out2 = [re.sub(stamp, "", l) for l in out1], [re.sub(stamp, "", l) for l in out2]
    if wait_for_one:       # the first event is the suspend or the resume, as registration and probe meet
        toggles = ("event 'lifecycle' for domain 'test': Suspended Paused",
                   "event 'lifecycle' for domain 'test': Resumed Unpaused")
        assert out1[0] in toggles and out2[0] in toggles, (out1, out2)
        assert out1[1:] == ["events received: 1", ""]
        out1, out2 = out1[1:], out2[1:]
    assert out2 == out1
    assert err2.strip() == err1.strip()


def test_embedded_driver_delivers_the_same_events(embed_uri, tmp_path):
    """qemu:///embed: pyvirt's library gets the driver's events in-process, with
    libvirt-python's callback shapes."""
    import pyvirt
    conn = pyvirt.open(embed_uri)
    dom = conn.defineXML(tiny_xml("em", tmp_path / "em.log"))
    dom.create()
    wait_for_text(tmp_path / "em.log", READY)
    seen: queue.Queue = queue.Queue()
    ids = [conn.domainEventRegisterAny(dom, event_id, lambda c, d, *rest: seen.put((rest[-1], d.name(), rest[:-1])),
                                       event_id)
           for event_id in (pyvirt.VIR_DOMAIN_EVENT_ID_REBOOT, pyvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE)]
    dom.reset(0)
    dom.setMetadata(pyvirt.VIR_DOMAIN_METADATA_ELEMENT, "<x/>", "k", NS, pyvirt.VIR_DOMAIN_AFFECT_LIVE)
    got = [seen.get(timeout=30), seen.get(timeout=30)]
    while (got[-1][0] != pyvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE):     # the guest may reset itself again
        got.append(seen.get(timeout=30))
    assert got[0] == (pyvirt.VIR_DOMAIN_EVENT_ID_REBOOT, "em", ())
    assert got[-1] == (pyvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, "em", (pyvirt.VIR_DOMAIN_METADATA_ELEMENT, NS))
    for callback_id in ids:
        conn.domainEventDeregisterAny(callback_id)
    dom.destroy()


IGNORING_SIGINT = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); os.execvp(sys.argv[1], sys.argv[1:])"


def test_event_loop_ends_on_sigint_even_when_started_with_it_ignored(pyvirtd):
    """A shell's background job starts with SIGINT ignored; virsh's event loop still ends
    on it, and so does pyvirt's."""
    uri = pyvirtd.uri
    xml = pyvirtd.workdir / "bg.xml"
    xml.write_text(tiny_xml("bg", pyvirtd.workdir / "bg.log", uuid="6b1f2c3d-0000-4000-8000-00000000b9b9"))
    watchers = {name: Watcher([sys.executable, "-c", IGNORING_SIGINT, *argv, "-c", uri, "event", "--all", "--loop"])
                for name, argv in (("virsh", ["virsh"]), ("pyvirt", [sys.executable, "-m", "pyvirt.cli"]))}
    try:
        for watcher in watchers.values():
            watcher.probe_until(lambda: virsh(uri, "define", str(xml)), lambda l: "Defined" in l,
                                what="lifecycle event")
        for name, watcher in watchers.items():
            watcher.proc.send_signal(2)
            assert watcher.proc.wait(30) == 0, f"{name} did not end its loop on SIGINT"
    finally:
        for watcher in watchers.values():
            watcher.stop()
    for name, watcher in watchers.items():
        assert "event loop interrupted" in watcher.lines, (name, watcher.lines)
