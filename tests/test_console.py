"""Console and graphics against pyvirtd with real QEMU: openConsole, screenshot, sendKey,
openGraphicsFD, domdisplay — through stock virsh (in a pseudo-terminal where it is
interactive), python3-libvirt and pyvirt's client and CLI."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

import pyvirt
from daemons import qemu_pid
from guests import LINUX_INITRD, LINUX_KERNEL, READY, TINY, private_copy, wait_for, wait_for_text

pytestmark = pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")

SYSTEM_PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parent.parent
HEARTBEAT = re.compile(rb"PYVIRT-HEARTBEAT (\d+)")
ESCAPE = b"\x1d"      # ^]


def console_xml(name: str, where: Path, *, video: bool = True, serial: str | None = None) -> str:
    """The tiny guest printing heartbeats on a pty serial port, with VGA and VNC."""
    serial = _serial() if serial is None else serial
    display = ("<video><model type='vga'/></video>"
               "<graphics type='vnc' autoport='yes' listen='127.0.0.1'/>") if video else ""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{private_copy(TINY, where)}</kernel>
    <cmdline>heartbeat</cmdline>
  </os>
  <devices>
    {serial}
    <console type='pty'><target type='serial' port='0'/></console>
    {display}
  </devices>
</domain>"""


def _serial(kind: str = "pty", path: Path | None = None) -> str:
    if kind == "unix":
        return f"<serial type='unix'><source mode='bind' path='{path}'/><target port='0'/></serial>"
    return "<serial type='pty'><target port='0'/></serial>"


def virsh(uri: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=timeout)


def pyvirt_cli(uri: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", uri, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))


def libvirt_script(code: str, *argv: str, timeout: float = 60) -> dict:
    """Run python3-libvirt code that prints one JSON object last; return it."""
    if subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    out = subprocess.run([SYSTEM_PYTHON, "-c", code, *argv], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


class Terminal:
    """A command run in a pseudo-terminal of its own, as a user at a console would."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env=env, cwd=REPO)
        os.close(slave)
        self.output = b""

    def read_until(self, pattern: re.Pattern[bytes] | bytes, timeout: float = 30.0, start: int = 0) -> re.Match:
        """Wait (on the terminal's output) until ``pattern`` appears after offset ``start``."""
        rx = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            found = rx.search(self.output, start)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {rx.pattern!r} within {timeout:.0f}s; the terminal shows {self.output[-400:]!r}")
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:      # the command exited and closed the terminal
                    chunk = b""
                if not chunk:
                    pytest.fail(f"the terminal closed before {rx.pattern!r}; it showed {self.output[-400:]!r}")
                self.output += chunk

    def heartbeats(self, count: int = 2, timeout: float = 30.0) -> list[int]:
        """The next ``count`` heartbeat numbers the guest prints, after what was read so far."""
        start, seen = len(self.output), []
        while len(seen) < count:
            found = self.read_until(HEARTBEAT, timeout, start)
            seen.append(int(found.group(1)))
            start = found.end()
        return seen

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def drain(self) -> None:
        """Whatever is left to read after the command exited."""
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.drain()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminals():
    opened: list[Terminal] = []

    def open_terminal(argv: list[str], env: dict[str, str] | None = None) -> Terminal:
        term = Terminal(argv, env)
        opened.append(term)
        return term
    yield open_terminal
    for term in opened:
        term.close()


@pytest.fixture
def guest(pyvirtd, guests_built):
    """A running tiny guest 'c1' with a pty console, VGA and VNC."""
    xml = pyvirtd.workdir / "c1.xml"
    xml.write_text(console_xml("c1", pyvirtd.workdir))
    out = virsh(pyvirtd.uri, "create", str(xml))
    assert out.returncode == 0, out.stderr
    return "c1"


def _is_consecutive(beats: list[int]) -> bool:
    return all(b == a + 1 for a, b in zip(beats, beats[1:]))


# -- openConsole ---------------------------------------------------------------------------

_UNFORCED_OPEN = r"""
import json, sys, libvirt
conn = libvirt.open(sys.argv[1])
dom = conn.lookupByName(sys.argv[2])
try:
    dom.openConsole(None, conn.newStream(0), 0)
    print(json.dumps({"opened": True}))
except libvirt.libvirtError as e:
    print(json.dumps({"opened": False, "code": e.get_error_code(), "message": e.get_error_message()}))
"""


def test_virsh_console_shows_heartbeats_and_force_takes_over(pyvirtd, guest, terminals):
    first = terminals(["virsh", "-c", pyvirtd.uri, "console", guest])
    first.read_until(b"Connected to domain 'c1'")
    first.read_until(b"Escape character is ^] (Ctrl + ])")
    beats = first.heartbeats(2)
    assert _is_consecutive(beats), beats

    # a second session without --force is refused, as libvirt refuses it
    refused = libvirt_script(_UNFORCED_OPEN, pyvirtd.uri, guest)
    assert refused == {"opened": False, "code": pyvirt.VIR_ERR_OPERATION_FAILED,
                       "message": "operation failed: Active console session exists for this domain"}

    # --force takes the console over: the first session ends, the second one reads on
    second = terminals(["virsh", "-c", pyvirtd.uri, "console", "--force", guest])
    later = second.heartbeats(2)
    assert later[0] > beats[-1] and _is_consecutive(later), (beats, later)
    first.wait()
    assert first.proc.returncode is not None

    # ^] leaves virsh's console; the guest runs on and its console is free again
    second.type(ESCAPE)
    assert second.wait() == 0, second.output[-400:]
    assert virsh(pyvirtd.uri, "domstate", guest).stdout.strip() == "running"
    assert libvirt_script(_UNFORCED_OPEN, pyvirtd.uri, guest) == {"opened": True}


_VANISHING_CLIENT = r"""
import os, re, sys, libvirt
conn = libvirt.open(sys.argv[1])
dom = conn.lookupByName(sys.argv[2])
st = conn.newStream(0)
dom.openConsole(None, st, 0)
buf = b""
while not re.search(rb"PYVIRT-HEARTBEAT \d+", buf):
    buf += st.recv(1024)
print("READING", flush=True)
sys.stdin.read()       # killed while holding the console
"""

_READ_HEARTBEATS = r"""
import json, re, sys, libvirt
conn = libvirt.open(sys.argv[1])
dom = conn.lookupByName(sys.argv[2])
st = conn.newStream(0)
try:
    dom.openConsole(None, st, 0)
except libvirt.libvirtError as e:
    print(json.dumps({"error": e.get_error_message()}))
    sys.exit(0)
buf = b""
while len(re.findall(rb"PYVIRT-HEARTBEAT (\d+)\r\n", buf)) < 2:
    buf += st.recv(1024)
st.finish()
print(json.dumps({"beats": [int(n) for n in re.findall(rb"PYVIRT-HEARTBEAT (\d+)\r\n", buf)]}))
"""


_FORCED_OUT = r"""
import json, sys, libvirt
conn = libvirt.open(sys.argv[1])
dom = conn.lookupByName(sys.argv[2])
first = conn.newStream(0)
dom.openConsole(None, first, 0)
first.recv(64)
second = conn.newStream(0)
dom.openConsole(None, second, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
try:
    while first.recv(1024):
        pass
    print(json.dumps({"ended": "without an error"}))
except libvirt.libvirtError as e:
    print(json.dumps({"code": e.get_error_code(), "domain": e.get_error_domain(), "message": str(e)}))
"""


def test_forced_open_ends_the_old_session_as_libvirtd_does(pyvirtd, guest):
    """libvirtd 9.0 aborts the old stream; its client's next recv raises VIR_ERR_RPC from
    VIR_FROM_STREAMS, 'stream had I/O failure' (what libvirtd's stream code reports)."""
    out = libvirt_script(_FORCED_OUT, pyvirtd.uri, guest)
    assert out == {"code": pyvirt.VIR_ERR_RPC, "domain": pyvirt.VIR_FROM_STREAMS, "message": "stream had I/O failure"}


def test_client_vanishing_mid_console_leaves_guest_and_console_usable(pyvirtd, guest):
    if subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")
    pid_before = qemu_pid(pyvirtd, guest)
    holder = subprocess.Popen([SYSTEM_PYTHON, "-c", _VANISHING_CLIENT, pyvirtd.uri, guest],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "READING"
    finally:
        holder.kill()
        holder.wait()
    # the daemon frees the console once it has seen the connection close: nothing
    # signals that to us, so ask until the console opens without --force
    result: dict = {}

    def reopened() -> bool:
        result.update(libvirt_script(_READ_HEARTBEATS, pyvirtd.uri, guest))
        return "beats" in result
    wait_for(reopened, 20, interval=0.1, what=lambda: f"the console to be free again ({result})")
    assert _is_consecutive(result["beats"]), result
    assert qemu_pid(pyvirtd, guest) == pid_before
    assert virsh(pyvirtd.uri, "domstate", guest).stdout.strip() == "running"


def test_pyvirt_client_console_reads_heartbeats_and_sends(pyvirtd, guest):
    conn = pyvirt.open(pyvirtd.uri)
    try:
        dom = conn.lookupByName(guest)
        stream = conn.newStream(0)
        dom.openConsole("serial0", stream, 0)
        buf = b""
        while len(HEARTBEAT.findall(buf)) < 2:
            buf += stream.recv(1024)
        beats = [int(n) for n in HEARTBEAT.findall(buf)]
        assert _is_consecutive(beats), buf
        assert stream.send(b"ignored by the guest\r") == len(b"ignored by the guest\r")
        with pytest.raises(pyvirt.libvirtError, match="Active console session exists for this domain"):
            dom.openConsole(None, conn.newStream(0), 0)
        stream.finish()
        with pytest.raises(pyvirt.libvirtError, match="cannot find character device nosuch"):
            dom.openConsole("nosuch", conn.newStream(0), 0)
        # the live XML shows the pty QEMU picked, as libvirt's does
        pts = re.search(r"<console type='pty' tty='(/dev/pts/\d+)'>\s*<source path='\1'/>", dom.XMLDesc(0))
        assert pts and os.path.exists(pts.group(1))
    finally:
        conn.close()


def test_a_serial_port_alone_is_the_console(pyvirtd, guests_built, terminals):
    """No <console> in the XML: libvirt's implied console 0 (serial port 0 again, alias
    serial0) is what virsh console opens, and what the live XML shows."""
    xml = pyvirtd.workdir / "s1.xml"
    xml.write_text(console_xml("s1", pyvirtd.workdir, video=False).replace(
        "<console type='pty'><target type='serial' port='0'/></console>", ""))
    assert virsh(pyvirtd.uri, "create", str(xml)).returncode == 0
    live = virsh(pyvirtd.uri, "dumpxml", "s1").stdout
    found = re.search(r"<serial type='pty'>\s*<source path='(/dev/pts/\d+)'/>.*?<alias name='serial0'/>\s*"
                      r"</serial>\s*<console type='pty' tty='\1'>\s*<source path='\1'/>\s*"
                      r"<target type='serial' port='0'/>\s*<alias name='serial0'/>\s*</console>", live, re.S)
    assert found, live
    term = terminals(["virsh", "-c", pyvirtd.uri, "console", "s1"])
    term.read_until(b"Connected to domain 's1'")
    assert _is_consecutive(term.heartbeats(2))
    term.type(ESCAPE)
    assert term.wait() == 0
    conn = pyvirt.open(pyvirtd.uri)      # pyvirt's client opens it by the alias the XML shows
    try:
        stream = conn.newStream(0)
        conn.lookupByName("s1").openConsole("serial0", stream, 0)
        buf = b""
        while not HEARTBEAT.search(buf):
            buf += stream.recv(1024)
        stream.finish()
    finally:
        conn.close()


def test_console_of_a_unix_socket_serial(pyvirtd, guests_built):
    # QEMU's unprivileged user creates the socket: a directory it may write to (never relabelled)
    sockets = pyvirtd.workdir / "sockets"
    sockets.mkdir()
    os.chmod(sockets, 0o777)
    sock = sockets / "c2.console"
    xml = pyvirtd.workdir / "c2.xml"
    xml.write_text(console_xml("c2", pyvirtd.workdir, video=False, serial=_serial("unix", sock))
                   .replace("<console type='pty'>", "<console type='unix'>"
                            f"<source mode='bind' path='{sock}'/>"))
    assert virsh(pyvirtd.uri, "create", str(xml)).returncode == 0
    result = libvirt_script(_READ_HEARTBEATS, pyvirtd.uri, "c2")
    assert "beats" in result and _is_consecutive(result["beats"]), result


def test_console_errors(pyvirtd, guests_built):
    xml = pyvirtd.workdir / "c3.xml"
    xml.write_text(console_xml("c3", pyvirtd.workdir, video=False,
                               serial=f"<serial type='file'><source path='{pyvirtd.workdir}/c3.log'/>"
                                      "<target port='0'/></serial>").replace(
        "<console type='pty'><target type='serial' port='0'/></console>", ""))
    out = virsh(pyvirtd.uri, "define", str(xml))
    assert out.returncode == 0, out.stderr
    out = libvirt_script(_UNFORCED_OPEN, pyvirtd.uri, "c3")
    assert out == {"opened": False, "code": pyvirt.VIR_ERR_OPERATION_INVALID,
                   "message": "Requested operation is not valid: domain is not running"}
    for args in (("console", "c3"), ("domdisplay", "c3"), ("screenshot", "c3", "/nonexistent/x")):
        ours, theirs = pyvirt_cli(pyvirtd.uri, *args), virsh(pyvirtd.uri, *args)
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), args
    assert virsh(pyvirtd.uri, "start", "c3").returncode == 0
    out = libvirt_script(_UNFORCED_OPEN, pyvirtd.uri, "c3")
    assert out == {"opened": False, "code": pyvirt.VIR_ERR_INTERNAL_ERROR,
                   "message": "internal error: character device serial0 is not using a PTY"}


# -- screenshot ------------------------------------------------------------------------------

def png_image(data: bytes) -> tuple[int, int, bytes]:
    """Check a PNG completely (signature, chunk CRCs, IHDR, IDAT inflating to whole rows):
    (width, height, the raw scanlines)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc, = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
    assert depth == 8 and color == 2, (depth, color)            # 8-bit RGB
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)
    return width, height, raw


def ppm_image(data: bytes) -> tuple[int, int, bytes]:
    found = re.match(rb"P6\s+(\d+)\s+(\d+)\s+255\s", data)
    assert found, data[:20]
    width, height = int(found.group(1)), int(found.group(2))
    pixels = data[found.end():]
    assert len(pixels) == width * height * 3
    return width, height, pixels


def image_size(mime: str, data: bytes) -> tuple[int, int]:
    if mime == "image/png":
        width, height, _ = png_image(data)
    else:
        assert mime == "image/x-portable-pixmap", mime
        width, height, _ = ppm_image(data)
    return width, height


_SCREENSHOT = r"""
import base64, json, sys, libvirt
conn = libvirt.open(sys.argv[1])
dom = conn.lookupByName(sys.argv[2])
st = conn.newStream(0)
mime = dom.screenshot(st, 0, 0)
parts = []
st.recvAll(lambda s, data, o: parts.append(data), None)
st.finish()
print(json.dumps({"mime": mime, "data": base64.b64encode(b"".join(parts)).decode()}))
"""

# The guest's screen as QEMU shows it: SeaBIOS leaves the VGA in 80x25 text mode (720x400).
TEXT_MODE = (720, 400)


def wait_until_booted(uri: str, name: str) -> None:
    """The guest's first heartbeat, read on its console: the firmware is done with the screen
    (it shows 640x480 graphics while it runs, then leaves the 720x400 text mode)."""
    conn = pyvirt.open(uri)
    try:
        stream = conn.newStream(0)
        conn.lookupByName(name).openConsole(None, stream, 0)
        buf = b""
        while not HEARTBEAT.search(buf):
            buf += stream.recv(1024)
        stream.finish()
    finally:
        conn.close()


def test_screenshot_is_the_guests_screen(pyvirtd, guest, tmp_path):
    import base64
    wait_until_booted(pyvirtd.uri, guest)
    shot = libvirt_script(_SCREENSHOT, pyvirtd.uri, guest)
    assert shot["mime"] in ("image/png", "image/x-portable-pixmap")
    assert image_size(shot["mime"], base64.b64decode(shot["data"])) == TEXT_MODE

    out = virsh(pyvirtd.uri, "screenshot", guest, str(tmp_path / "virsh.img"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"Screenshot saved to {tmp_path / 'virsh.img'}, with type of {shot['mime']}"
    assert image_size(shot["mime"], (tmp_path / "virsh.img").read_bytes()) == TEXT_MODE

    conn = pyvirt.open(pyvirtd.uri)
    try:
        dom = conn.lookupByName(guest)
        stream = conn.newStream(0)
        mime = dom.screenshot(stream, 0, 0)
        parts: list[bytes] = []
        stream.recvAll(lambda _s, data, _o: parts.append(data), None)
        stream.finish()
        assert mime == shot["mime"]
        assert image_size(mime, b"".join(parts)) == TEXT_MODE
        with pytest.raises(pyvirt.libvirtError, match="no such screen ID"):
            dom.screenshot(conn.newStream(0), 1, 0)
    finally:
        conn.close()


def test_screenshot_without_video_is_refused(pyvirtd, guests_built):
    xml = pyvirtd.workdir / "nv.xml"
    xml.write_text(console_xml("nv", pyvirtd.workdir, video=False))
    assert virsh(pyvirtd.uri, "create", str(xml)).returncode == 0
    for run in (virsh, pyvirt_cli):
        out = run(pyvirtd.uri, "screenshot", "nv", str(pyvirtd.workdir / "nv.img"))
        assert out.returncode == 1
        assert out.stderr.strip().splitlines() == [
            "error: could not take a screenshot of nv",
            "error: operation failed: no screens to take screenshot from"], (run, out.stderr)


# -- sendKey ---------------------------------------------------------------------------------

@pytest.fixture
def linux_guest(pyvirtd, guests_built):
    """The Linux guest with a PS/2 keyboard: the kernel answers Alt+SysRq+H on its serial log."""
    log = pyvirtd.workdir / "lk.log"
    xml = pyvirtd.workdir / "lk.xml"
    xml.write_text(f"""<domain type='qemu'>
  <name>lk</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{private_copy(LINUX_KERNEL, pyvirtd.workdir)}</kernel>
    <initrd>{private_copy(LINUX_INITRD, pyvirtd.workdir)}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
  </devices>
</domain>""")
    assert virsh(pyvirtd.uri, "create", str(xml)).returncode == 0
    wait_for_text(log, READY, 60)
    return log


def _sysrq_helps(log: Path) -> int:
    return log.read_text(errors="replace").count("sysrq: HELP")


def test_send_key_reaches_the_guest(pyvirtd, linux_guest):
    # stock virsh, linux key names: Alt+SysRq+H makes the guest's kernel print its SysRq help
    out = virsh(pyvirtd.uri, "send-key", "lk", "KEY_LEFTALT", "KEY_SYSRQ", "KEY_H")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: _sysrq_helps(linux_guest) == 1, 30, what="the guest's SysRq help (virsh, linux codeset)")

    # pyvirt's client, USB HID codes, translated by the daemon to the same keys
    conn = pyvirt.open(pyvirtd.uri)
    try:
        conn.lookupByName("lk").sendKey(pyvirt.VIR_KEYCODE_SET_USB, 50, [226, 70, 11], 3, 0)
    finally:
        conn.close()
    wait_for(lambda: _sysrq_helps(linux_guest) == 2, 30, what="the guest's SysRq help (usb codeset)")

    # pyvirt's CLI, xt_kbd numbers
    out = pyvirt_cli(pyvirtd.uri, "send-key", "lk", "--codeset", "xt_kbd", "56", "84", "35")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: _sysrq_helps(linux_guest) == 3, 30, what="the guest's SysRq help (xt_kbd codeset)")

    # stock python3-libvirt, QEMU's own qnum codes (Alt 0x38, SysRq 0x54, H 0x23)
    assert libvirt_script("import json, sys, libvirt\n"
                          "dom = libvirt.open(sys.argv[1]).lookupByName('lk')\n"
                          "print(json.dumps(dom.sendKey(libvirt.VIR_KEYCODE_SET_QNUM, 0, [0x38, 0x54, 0x23], 3, 0)))",
                          pyvirtd.uri) == 0
    wait_for(lambda: _sysrq_helps(linux_guest) == 4, 30, what="the guest's SysRq help (qnum codeset)")


def test_send_key_errors_match_virsh(pyvirtd, guest):
    cases = [("send-key", guest, "250"),                           # a linux code with no PC key
             ("send-key", guest, "--codeset", "klingon", "KEY_A"),
             ("send-key", guest, "KEY_NOSUCH"),
             ("send-key", guest, *["KEY_A"] * 17)]
    for case in cases:
        ours, theirs = pyvirt_cli(pyvirtd.uri, *case), virsh(pyvirtd.uri, *case)
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), case
    assert "cannot translate keycode 250 of linux codeset to qnum keycode" in virsh(
        pyvirtd.uri, "send-key", guest, "250").stderr


# -- openGraphicsFD and domdisplay -------------------------------------------------------------

_GRAPHICS_FD = r"""
import json, os, sys, libvirt
conn = libvirt.open(sys.argv[1])
dom = conn.lookupByName(sys.argv[2])
out = {}
try:
    fd = dom.openGraphicsFD(0, libvirt.VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH)
    out["banner"] = os.read(fd, 12).decode()
    os.close(fd)
except libvirt.libvirtError as e:
    out["error"] = e.get_error_message()
try:
    dom.openGraphicsFD(1, 0)
except libvirt.libvirtError as e:
    out["idx1"] = e.get_error_message()
print(json.dumps(out))
"""


def test_open_graphics_fd_is_a_vnc_client(pyvirtd, guest):
    out = libvirt_script(_GRAPHICS_FD, pyvirtd.unix_uri, guest)
    assert out == {"banner": "RFB 003.008\n", "idx1": "internal error: No graphics backend with index 1"}
    # over TCP no descriptor can travel (libvirt's client refuses it, as the daemon would)
    over_tcp = libvirt_script(_GRAPHICS_FD, pyvirtd.uri, guest)
    assert over_tcp["error"] == "Requested operation is not valid: Connection does not support file descriptor passing"


def test_domdisplay_and_screenshot_cli_match_virsh(pyvirtd, guest, tmp_path):
    out = virsh(pyvirtd.uri, "domdisplay", guest)
    assert out.returncode == 0 and re.fullmatch(r"vnc://127\.0\.0\.1:\d+\n", out.stdout), out
    port = int(re.search(r"<graphics type='vnc' port='(\d+)'", virsh(pyvirtd.uri, "dumpxml", guest).stdout).group(1))
    assert out.stdout == f"vnc://127.0.0.1:{port - 5900}\n"
    for args in (("domdisplay", guest), ("domdisplay", "--type", "spice", guest),
                 ("domdisplay", "--include-password", guest),
                 ("screenshot", guest, str(tmp_path / "same.img")), ("send-key", guest, "KEY_A")):
        ours, theirs = pyvirt_cli(pyvirtd.uri, *args), virsh(pyvirtd.uri, *args)
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), args


def test_pyvirt_cli_console_in_a_terminal(pyvirtd, guest, terminals):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    term = terminals([sys.executable, "-m", "pyvirt.cli", "-c", pyvirtd.uri, "console", guest], env)
    term.read_until(b"Connected to domain 'c1'")
    term.read_until(b"Escape character is ^] (Ctrl + ])")
    assert _is_consecutive(term.heartbeats(2))
    term.type(ESCAPE)
    assert term.wait() == 0, term.output[-400:]
    # the session is over: virsh gets the console without --force
    again = terminals(["virsh", "-c", pyvirtd.uri, "console", guest])
    assert _is_consecutive(again.heartbeats(2))


_READ_ONLY = r"""
import json, sys, libvirt
conn = libvirt.openReadOnly(sys.argv[1])
dom = conn.lookupByName(sys.argv[2])
out = {}
for name, call in (("openConsole", lambda: dom.openConsole(None, conn.newStream(0), 0)),
                   ("screenshot", lambda: dom.screenshot(conn.newStream(0), 0, 0)),
                   ("sendKey", lambda: dom.sendKey(0, 0, [30], 1, 0)),
                   ("openGraphicsFD", lambda: dom.openGraphicsFD(0, 0))):
    try:
        call()
        out[name] = "allowed"
    except libvirt.libvirtError as e:
        out[name] = [e.get_error_code(), e.get_error_message()]
print(json.dumps(out))
"""


def test_read_only_connections_are_refused(pyvirtd, guest, tmp_path):
    for args in (("screenshot", guest, str(tmp_path / "ro.img")), ("send-key", guest, "KEY_A")):
        out = virsh(pyvirtd.unix_ro_uri, "-r", *args)
        assert out.returncode == 1 and "read only access prevents" in out.stderr, (args, out.stderr)
    out = libvirt_script(_READ_ONLY, pyvirtd.unix_ro_uri, guest)
    for name in ("openConsole", "screenshot", "sendKey", "openGraphicsFD"):
        assert out[name] == [pyvirt.VIR_ERR_OPERATION_DENIED,
                             f"operation forbidden: read only access prevents virDomain{name[0].upper()}{name[1:]}"], out


def test_pyvirt_client_open_graphics_fd_over_the_unix_socket(pyvirtd, guest):
    conn = pyvirt.open(pyvirtd.unix_uri)
    try:
        dom = conn.lookupByName(guest)
        fd = dom.openGraphicsFD(0, pyvirt.VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH)
        try:
            assert os.read(fd, 12) == b"RFB 003.008\n"
        finally:
            os.close(fd)
        assert dom.isActive() == 1       # the connection goes on after the descriptor
        with pytest.raises(pyvirt.libvirtError, match="No graphics backend with index 3"):
            dom.openGraphicsFD(3, 0)
    finally:
        conn.close()
    tcp = pyvirt.open(pyvirtd.uri)
    try:
        with pytest.raises(pyvirt.libvirtError, match="Connection does not support file descriptor passing"):
            tcp.lookupByName(guest).openGraphicsFD(0, 0)
    finally:
        tcp.close()


def test_console_ends_when_the_guest_stops(pyvirtd, guest, terminals):
    term = terminals(["virsh", "-c", pyvirtd.uri, "console", guest])
    term.heartbeats(1)
    assert virsh(pyvirtd.uri, "destroy", guest).returncode == 0
    # QEMU's end of the pty is gone: the stream's data ends and virsh leaves the console
    term.wait()
    assert term.proc.returncode is not None
    assert b"PYVIRT-HEARTBEAT" in term.output
    assert guest not in virsh(pyvirtd.uri, "list", "--all").stdout     # transient: gone once destroyed


def test_embedded_driver_console_screenshot_and_keys(embed_uri, embed_root):
    """The same calls without a daemon: the virStream reads the driver's descriptors itself."""
    conn = pyvirt.open(embed_uri)
    try:
        dom = conn.createXML(console_xml("e1", embed_root.parent), 0)
        first = conn.newStream(0)
        dom.openConsole(None, first, 0)
        buf = b""
        while len(HEARTBEAT.findall(buf)) < 2:
            buf += first.recv(1024)
        assert _is_consecutive([int(n) for n in HEARTBEAT.findall(buf)])
        second = conn.newStream(0)
        dom.openConsole(None, second, pyvirt.VIR_DOMAIN_CONSOLE_FORCE)
        with pytest.raises(pyvirt.libvirtError, match="stream had I/O failure"):
            while first.recv(1024):
                pass
        later = b""
        while not HEARTBEAT.search(later):          # the new session reads on
            later += second.recv(1024)
        second.finish()
        shot = conn.newStream(0)
        mime = dom.screenshot(shot, 0, 0)
        parts: list[bytes] = []
        shot.recvAll(lambda _s, data, _o: parts.append(data), None)
        shot.finish()
        assert image_size(mime, b"".join(parts)) == TEXT_MODE       # booted: heartbeats were read
        assert dom.sendKey(pyvirt.VIR_KEYCODE_SET_LINUX, 0, [30], 1, 0) == 0
        dom.destroy()
    finally:
        conn.close()


def test_pyvirt_read_only_refusals_name_libvirts_functions(pyvirtd, guest):
    conn = pyvirt.openReadOnly(pyvirtd.unix_ro_uri)
    try:
        dom = conn.lookupByName(guest)
        for call, name in ((lambda: dom.openConsole(None, conn.newStream(0), 0), "virDomainOpenConsole"),
                           (lambda: dom.screenshot(conn.newStream(0), 0, 0), "virDomainScreenshot"),
                           (lambda: dom.sendKey(0, 0, [30], 1, 0), "virDomainSendKey"),
                           (lambda: dom.openGraphicsFD(0, 0), "virDomainOpenGraphicsFD")):
            with pytest.raises(pyvirt.libvirtError, match=f"read only access prevents {name}$"):
                call()
    finally:
        conn.close()


@pytest.mark.libvirtd
def test_forced_open_ends_the_old_session_on_libvirtd_the_same_way(pyvirtd, guest, tmp_path):
    """The same forced open on a private libvirtd 9.0: the old session's error is the same."""
    sys.path.insert(0, str(REPO / "bench"))
    import libvirt_ref
    available, why = libvirt_ref.libvirt_available()
    if not available:
        pytest.skip(f"libvirtd not available: {why}")
    work = tmp_path / "files"
    work.mkdir()
    work.chmod(0o755)
    (work / "lc.xml").write_text(console_xml("lc", work, video=False))
    host = libvirt_ref.LibvirtHost(tmp_path / "libvirtd", libvirt_ref.pick_free_ports(1)[0],
                                   cache_dir=tmp_path / "cache")
    host.start()
    try:
        assert virsh(host.uri, "create", str(work / "lc.xml")).returncode == 0
        try:
            theirs = libvirt_script(_FORCED_OUT, host.uri, "lc")
        finally:
            virsh(host.uri, "destroy", "lc")
    finally:
        assert not host.stop()
    assert libvirt_script(_FORCED_OUT, pyvirtd.uri, guest) == theirs
