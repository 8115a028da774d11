"""Descriptors a client passes to pyvirtd (CALL_WITH_FDS on its UNIX socket), at the wire.

A descriptor that reaches the daemon is closed by it once the call is answered,
whether or not the procedure takes descriptors: the write end of a pipe passed
and closed here shows it, its read end then reading the end of file.  A client
that announces descriptors and does not send them is dropped, as libvirtd drops it.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest

from daemons import Pyvirtd
from pyvirt.rpc import wire
from pyvirt.rpc.protocol import REMOTE
from pyvirt.rpc.wire import MessageType, Program, Status

FD_PASSING = 8


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Pyvirtd(tmp_path_factory.mktemp("fds") / "daemon")
    d.start()
    try:
        yield d
    finally:
        d.stop()


class RawClient:
    """Calls written by hand on the daemon's UNIX socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.framer = wire.Framer()
        self.serial = 0

    def send(self, name: str, args: tuple, fds: list[int] | None = None, markers: int | None = None) -> int:
        proc = REMOTE.by_name[name]
        self.serial += 1
        kind = MessageType.CALL_WITH_FDS if fds is not None else MessageType.CALL
        count = len(fds or ()) if markers is None else markers
        self.sock.sendall(wire.encode_message((Program.REMOTE, 1, proc.number, kind, self.serial, Status.OK),
                                              proc.encode_args(args), nfds=count))
        for fd in fds or ():
            self.sock.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("@i", fd))])
        if markers is not None and not fds:
            self.sock.sendall(b"\0" * markers)     # the bytes, without the descriptors
        return self.serial

    def reply(self, name: str):
        while True:
            msg = self.framer.next_message()
            if msg is not wire.NEED_DATA:
                break
            data = self.sock.recv(65536)
            assert data, "the daemon closed the connection"
            self.framer.receive_data(data)
        assert msg.header.status == Status.OK, wire.decode_error_payload(msg.payload)
        return REMOTE.by_name[name].decode_ret(msg.payload)

    def call(self, name: str, args: tuple = (), **kw):
        self.send(name, args, **kw)
        return self.reply(name)

    def closed_by_daemon(self) -> bool:
        return self.sock.recv(1) == b""


def _opened(daemon: Pyvirtd) -> RawClient:
    client = RawClient(f"{daemon.sock_dir}/libvirt-sock")
    client.call("CONNECT_OPEN", ("test:///default", 0))
    assert client.call("CONNECT_SUPPORTS_FEATURE", (FD_PASSING,)) == 1   # libvirt's client asks first
    return client


def _passed_and_closed(client: RawClient, name: str, args: tuple):
    """Pass the write end of a pipe with the call; True once the daemon let go of it."""
    r, w = os.pipe()
    try:
        value = client.call(name, args, fds=[w])
        os.close(w)
        w = -1
        return value, os.read(r, 1) == b""     # blocks while a copy of the write end stays open
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_a_procedure_that_takes_no_descriptors_still_gets_them_closed(daemon):
    client = _opened(daemon)
    value, released = _passed_and_closed(client, "CONNECT_GET_TYPE", ())
    assert (value, released) == ("TEST", True)


def test_the_start_closes_the_descriptors_it_was_given(daemon):
    client = _opened(daemon)
    xml = "<domain type='test'><name>raw-fds</name><memory>65536</memory><os><type>hvm</type></os></domain>"
    dom, released = _passed_and_closed(client, "DOMAIN_CREATE_XML_WITH_FILES", (xml, 0))
    assert dom.name == "raw-fds" and released
    client.call("DOMAIN_DESTROY", (dom,))


def test_announced_descriptors_that_do_not_come_drop_the_client(daemon):
    client = _opened(daemon)
    client.send("CONNECT_GET_TYPE", (), fds=[], markers=1)
    assert client.closed_by_daemon()
    assert _opened(daemon).call("CONNECT_GET_TYPE") == "TEST"       # the daemon serves on
