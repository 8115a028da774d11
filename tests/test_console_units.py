"""Console and graphics, one layer at a time: keycode tables, the driver's checks, the
daemon's download/two-way stream, virsh's display URIs.  No QEMU here (test_console.py
has the real thing)."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace

import pytest

from pyvirt import keycodes
from pyvirt.cli.console_cmds import display_uris
from pyvirt.drivers.qemu import console, graphics
from pyvirt.enums import KeycodeSet
from pyvirt.errors import libvirtError
from pyvirt.rpc.stream import Abort, Ack, Data, Direction, EndOfData, Finish, Role, Stream
from pyvirt.rpc.stream.incoming import FdStream
from pyvirt.rpc.wire import Framer, Header, MessageType, Program, NEED_DATA


# -- keycodes -------------------------------------------------------------------------------

@pytest.mark.parametrize("codeset, code, qnum", [
    (KeycodeSet.LINUX, 30, 0x1e),          # KEY_A
    (KeycodeSet.LINUX, 96, 0x9c),          # KEY_KPENTER: 0xe0 0x1c
    (KeycodeSet.LINUX, 99, 0x54),          # KEY_SYSRQ shares XT code 0x54
    (KeycodeSet.LINUX, 125, 0xdb),         # KEY_LEFTMETA: 0xe0 0x5b
    (KeycodeSet.XT_KBD, 0x11c, 0x9c),
    (KeycodeSet.ATSET1, 30, 0x1e),
    (KeycodeSet.ATSET2, 28, 0x1e),         # set 2 'A'
    (KeycodeSet.USB, 4, 0x1e),             # HID usage 'a'
    (KeycodeSet.USB, 226, 0x38),           # left alt
    (KeycodeSet.WIN32, 0x41, 0x1e),        # VK_A
    (KeycodeSet.WIN32, 0x11, 0x1d),        # VK_CONTROL, the second name of left control
    (KeycodeSet.OSX, 0x00, 0x1e),          # ANSI_A
    (KeycodeSet.QNUM, 0x1234, 0x1234),     # QEMU's own numbers pass untranslated
])
def test_keycodes_translate_to_qnum(codeset, code, qnum):
    assert keycodes.to_qnum(codeset, code) == qnum


def test_keycodes_without_a_pc_key():
    assert keycodes.to_qnum(KeycodeSet.LINUX, 250) is None
    assert keycodes.to_qnum(KeycodeSet.XT, 0) is None
    with pytest.raises(libvirtError, match="cannot translate keycode 250 of linux codeset to qnum keycode"):
        graphics.qnum_keycodes(KeycodeSet.LINUX, [30, 250])
    with pytest.raises(libvirtError, match="of os_x codeset"):
        graphics.qnum_keycodes(KeycodeSet.OSX, [0x7f7f])
    with pytest.raises(libvirtError, match="must not be zero"):
        graphics.qnum_keycodes(KeycodeSet.LINUX, [])
    with pytest.raises(libvirtError, match="nkeycodes must be <= 16"):
        graphics.qnum_keycodes(KeycodeSet.LINUX, [30] * 17)
    with pytest.raises(libvirtError, match="unknown keycode set 42"):
        graphics.qnum_keycodes(42, [30])


def test_key_names_as_virsh_takes_them():
    assert keycodes.from_name(KeycodeSet.LINUX, "KEY_LEFTALT") == 56
    assert keycodes.from_name(KeycodeSet.LINUX, "KEY_SHIFT") == 42
    assert keycodes.from_name(KeycodeSet.LINUX, "KEY_NOSUCH") is None
    assert keycodes.CODESET_NAMES["rfb"] == keycodes.CODESET_NAMES["qnum"] == KeycodeSet.QNUM
    assert keycodes.CODESET_NAMES["os_x"] == KeycodeSet.OSX


# -- the driver's checks ------------------------------------------------------------------------

def _obj(consoles=(), serials=(), videos=(), graphics_devs=()):
    devices = SimpleNamespace(consoles=list(consoles), serials=list(serials), videos=list(videos),
                              graphics=list(graphics_devs))
    return SimpleNamespace(live=SimpleNamespace(devices=devices), uuid="u-1")


def test_find_chardev_as_libvirt():
    serial = SimpleNamespace(alias="serial0", type="pty", path="/dev/pts/7", mode=None)
    cons = SimpleNamespace(alias="console0", type="pty", path="/dev/pts/7", mode=None)
    assert console.find_chardev(_obj([cons], [serial]), None) is cons
    assert console.find_chardev(_obj([], [serial]), None) is serial
    assert console.find_chardev(_obj([cons], [serial]), "serial0") is serial
    with pytest.raises(libvirtError, match="cannot find character device nosuch"):
        console.find_chardev(_obj([cons], [serial]), "nosuch")
    with pytest.raises(libvirtError, match=r"cannot find character device <null>"):
        console.find_chardev(_obj(), None)
    with pytest.raises(libvirtError, match="character device serial0 is not using a PTY"):
        console.open_console(object(), _obj([], [SimpleNamespace(alias="serial0", type="file", path="/x")]), None, 0)
    with pytest.raises(libvirtError, match="PTY device is not yet assigned"):
        console.open_console(object(), _obj([], [SimpleNamespace(alias="serial0", type="pty", path=None)]), None, 0)
    with pytest.raises(libvirtError, match=r"unsupported flags \(0x4\)"):
        console.open_console(object(), _obj([cons]), None, 4)


def test_console_sessions_one_per_device_force_ends_the_other():
    sessions = console.ConsoleSessions()
    key = ("u-1", "/dev/pts/7")
    r, w = os.pipe()
    first = sessions.add(key, r)
    with pytest.raises(libvirtError, match="Active console session exists for this domain"):
        sessions.claim(key, force=False)
    ended: list[BaseException] = []
    first.cancel = ended.append
    sessions.claim(key, force=True)          # the first session is told to end
    assert len(ended) == 1 and str(ended[0]) == "stream had I/O failure"     # what libvirtd says
    second = sessions.add(key, w)
    first.done(ended[0])                     # its stream ends late: the new session stays
    assert sessions.open[key].sink is second
    second.done(None)
    assert key not in sessions.open
    sessions.claim(key, force=False)         # free again
    os.close(r)
    os.close(w)


def test_screens_are_counted_head_by_head():
    videos = [SimpleNamespace(alias="video0", heads=2), SimpleNamespace(alias="video1", heads=None)]
    obj = _obj(videos=videos)
    assert graphics.screen_device(obj, 0) == (None, 0)
    assert graphics.screen_device(obj, 1) == ("video0", 1)
    assert graphics.screen_device(obj, 2) == ("video1", 0)
    with pytest.raises(libvirtError, match="no such screen ID"):
        graphics.screen_device(obj, 3)
    with pytest.raises(libvirtError, match="no screens to take screenshot from"):
        graphics.screen_device(_obj(), 0)


def test_png_support_is_read_from_qemus_schema():
    schema = [{"name": "screendump", "meta-type": "command", "arg-type": "0"},
              {"name": "0", "meta-type": "object", "members": [{"name": "filename", "type": "str"},
                                                               {"name": "format", "type": "1"}]},
              {"name": "1", "meta-type": "enum", "values": ["ppm", "png"]}]
    assert graphics._schema_has_png_screendump(schema)
    schema[2]["values"] = ["ppm"]
    assert not graphics._schema_has_png_screendump(schema)
    assert not graphics._schema_has_png_screendump(schema[:1] + [{"name": "0", "members": []}])


def test_graphics_fd_checks():
    vnc = SimpleNamespace(type="vnc")
    obj = _obj(graphics_devs=[vnc, SimpleNamespace(type="rdp")])
    assert graphics.graphics_protocol(obj, 0, 1) == "vnc"
    with pytest.raises(libvirtError, match="No graphics backend with index 2"):
        graphics.graphics_protocol(obj, 2, 0)
    with pytest.raises(libvirtError, match="Can only open VNC or SPICE graphics backends, not rdp"):
        graphics.graphics_protocol(obj, 1, 0)
    with pytest.raises(libvirtError, match=r"unsupported flags \(0x2\)"):
        graphics.graphics_protocol(obj, 0, 2)


# -- the daemon's stream over a descriptor ---------------------------------------------------------

class _Client:
    """The part of a ServerClient a stream uses."""

    def __init__(self) -> None:
        self.closed = False
        self.transport = None
        self.peer = "test"
        self.sent = bytearray()
        self.paused: set[str] = set()

    def send_parts(self, parts) -> None:
        for part in parts:
            self.sent += bytes(part)

    def pause(self, reason: str) -> None:
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        self.paused.discard(reason)

    def packets(self, peer: Stream) -> list:
        framer, events = Framer(), []
        framer.receive_data(bytes(self.sent))
        self.sent.clear()
        while (msg := framer.next_message()) is not NEED_DATA:
            events.append(peer.receive(msg))
        return events


HEADER = Header(Program.REMOTE, 1, 201, MessageType.CALL, 7, 0)


def _from_client(peer: Stream, event) -> object:
    framer = Framer()
    framer.receive_data(b"".join(bytes(p) for p in peer.send(event)))
    return framer.next_message()


def test_fd_stream_both_ways_over_a_socketpair():
    import socket

    async def run() -> None:
        ours, guest = socket.socketpair()
        client, done = _Client(), []
        stream = FdStream(client, ours.detach(), done.append, HEADER, Direction.BOTH)
        peer = Stream(HEADER.prog, HEADER.proc, HEADER.serial, role=Role.CLIENT, direction=Direction.BOTH)
        stream.start()
        guest.sendall(b"login: ")
        while not client.sent:
            await asyncio.sleep(0)         # one loop turn per readiness: the reader runs
        assert client.packets(peer) == [Data(b"login: ")]
        stream.receive(_from_client(peer, Data(b"root\r")))
        assert guest.recv(100) == b"root\r"
        stream.receive(_from_client(peer, Finish()))
        assert client.packets(peer) == [Ack()] and done == [None]
        assert guest.recv(100) == b""      # the stream closed its end
        guest.close()
    asyncio.run(run())


def test_fd_stream_download_of_a_file_ends_with_end_of_data():
    async def run() -> None:
        fd = os.memfd_create("shot")
        os.write(fd, b"P6\n1 1\n255\n\x00\x00\x00" * 100000)
        os.lseek(fd, 0, os.SEEK_SET)
        client, done = _Client(), []
        header = HEADER._replace(proc=211)
        stream = FdStream(client, fd, done.append, header, Direction.DOWNLOAD)
        peer = Stream(header.prog, header.proc, header.serial, role=Role.CLIENT, direction=Direction.DOWNLOAD)
        stream.start()
        events: list = []
        while not events or not isinstance(events[-1], EndOfData):
            await asyncio.sleep(0)
            events += client.packets(peer)
        assert b"".join(e.data for e in events[:-1]) == b"P6\n1 1\n255\n\x00\x00\x00" * 100000
        stream.receive(_from_client(peer, Finish()))
        assert client.packets(peer) == [Ack()] and done == [None]
    asyncio.run(run())


def test_fd_stream_abort_and_cancel():
    async def run() -> None:
        r, w = os.pipe()
        client, done = _Client(), []
        stream = FdStream(client, r, done.append, HEADER, Direction.BOTH)
        peer = Stream(HEADER.prog, HEADER.proc, HEADER.serial, role=Role.CLIENT, direction=Direction.BOTH)
        stream.start()
        stream.receive(_from_client(peer, Abort()))
        assert client.packets(peer) == [Ack()] and "aborted" in str(done[0])
        os.close(w)

        r, w = os.pipe()
        client, done = _Client(), []
        stream = FdStream(client, r, done.append, HEADER, Direction.BOTH)
        peer = Stream(HEADER.prog, HEADER.proc, HEADER.serial, role=Role.CLIENT, direction=Direction.BOTH)
        stream.start()
        from pyvirt.errors import ErrorDomain, ErrorNumber, error
        stream.fail(error(ErrorNumber.OPERATION_ABORTED, ErrorDomain.STREAMS, "taken over"))
        failed = client.packets(peer)
        assert len(failed) == 1 and "taken over" in str(failed[0].error) and "taken over" in str(done[0])
        os.close(w)
    asyncio.run(run())


# -- virsh's domdisplay ---------------------------------------------------------------------------

def _xml(graphics_xml: str) -> str:
    return f"<domain><devices>{graphics_xml}</devices></domain>"


def test_display_uris_as_virsh_builds_them():
    vnc = "<graphics type='vnc' port='5907' autoport='yes' listen='127.0.0.1' passwd='s3'/>"
    assert display_uris(_xml(vnc), "qemu:///system", False, None) == ["vnc://127.0.0.1:7"]
    assert display_uris(_xml(vnc), "qemu:///system", True, None) == ["vnc://:s3@127.0.0.1:7"]
    wild = "<graphics type='vnc' port='5901' listen='0.0.0.0'/>"
    assert display_uris(_xml(wild), "qemu+tcp://hostb:16509/system", False, None) == ["vnc://hostb:1"]
    assert display_uris(_xml(wild), "qemu:///system", False, None) == ["vnc://localhost:1"]
    v6 = "<graphics type='vnc' port='5902' listen='::1'/>"
    assert display_uris(_xml(v6), "qemu:///system", False, None) == ["vnc://[::1]:2"]
    spice = "<graphics type='spice' port='5930' tlsPort='5931' listen='10.0.0.1' passwd='pw'/>"
    assert display_uris(_xml(spice), "qemu:///system", True, None) == \
        ["spice://10.0.0.1:5930?tls-port=5931&password=pw"]
    sock = "<graphics type='vnc' socket='/run/v.sock'><listen type='socket' socket='/run/v.sock'/></graphics>"
    assert display_uris(_xml(sock), "qemu:///system", False, None) == ["vnc+unix:///run/v.sock"]
    both = _xml(vnc + spice)
    assert display_uris(both, "qemu:///system", False, "spice") == ["spice://10.0.0.1:5930?tls-port=5931"]
    assert len(display_uris(both, "qemu:///system", False, None)) == 2
    assert display_uris(_xml("<graphics type='vnc' port='-1' autoport='yes'/>"), "qemu:///system", False,
                        None) == []
