"""A blocking remote connection, for one command-line call.

``pyvirt list`` makes three or four calls and exits; starting an event loop
(and importing asyncio) for them costs more than the calls.  This connection
speaks the same protocol over a plain blocking socket, with the same
procedure table and the same sans-I/O framing and XDR as the remote driver
(:mod:`pyvirt.drivers.remote.driver`), so the two cannot disagree on a field.
Its methods return :class:`pyvirt.aio.Done`, which the client API returns at
once.

What it leaves to the full remote driver: events, streams, descriptors,
concurrent calls from several threads (a progress bar beside a migration),
keepalive, TLS, ssh and SASL.  :func:`open_connection` returns None when the
URI or the daemon asks for any of those at connect time; the caller then
opens the full driver.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from ...aio import Done
from ...driver import DRIVER_METHODS, SECONDARY_METHODS, ConnectionInfo, EventBus, HypervisorConnection
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ...rpc.protocol import REMOTE, Procedure
from ...rpc.protocol.keepalive import PING, PONG
from ...rpc.wire import (EOF, NEED_DATA, Framer, MessageType, Program, ProtocolError, Status,
                         decode_error_payload, encode_call, encode_message)
from ...uri import URI

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SOCKET_DIR = "/run/libvirt"      # as the remote driver's


def _eof() -> libvirtError:
    return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC, "End of file while reading data: Input/output error")


class BlockingClient:
    """Calls one at a time on a connected socket; anything but our reply
    (an event, a keepalive PING) is answered or dropped on the way."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.framer = Framer()
        self.serial = 0

    def call(self, proc: Procedure, args: tuple[Any, ...] = ()) -> Any:
        serial = self.serial
        self.serial += 1
        try:
            self.sock.sendall(encode_call(Program.REMOTE, proc.number, serial, proc.encode_args(args)))
            while True:
                msg = self._next()
                h = msg.header
                if h.prog == Program.REMOTE and h.type == MessageType.REPLY and h.serial == serial:
                    if h.status != Status.OK:
                        raise decode_error_payload(msg.payload)
                    return proc.decode_ret(msg.payload)
                if h.prog == Program.KEEPALIVE and h.proc == PING:
                    self.sock.sendall(encode_message((Program.KEEPALIVE, 1, PONG, MessageType.MESSAGE, 0,
                                                      Status.OK)))
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC, f"Cannot talk to the server: {exc}") from exc
        except ProtocolError as exc:
            raise error(ErrorNumber.RPC, ErrorDomain.RPC, f"protocol error from the server: {exc}") from exc

    def _next(self) -> Any:
        while True:
            msg = self.framer.next_message()
            if msg is EOF:
                raise _eof()
            if msg is not NEED_DATA:
                return msg
            self.framer.receive_data(self.sock.recv(65536))     # b"": the server closed

    def close(self) -> None:
        self.sock.close()


def _connect(uri: URI, read_only: bool) -> socket.socket | None:
    transport = uri.effective_transport
    if transport == "tcp":
        host, port = uri.host or "localhost", uri.effective_port() or 16509
        try:
            # an ASCII name as bytes: getaddrinfo then skips the IDNA codec (and its imports)
            sock = socket.create_connection((host.encode() if host.isascii() else host, port))
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC,
                        f"unable to connect to server at '{host}:{port}': {exc.strerror or exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    if transport == "unix":
        path = uri.param("socket") or f"{DEFAULT_SOCKET_DIR}/libvirt-sock{'-ro' if read_only else ''}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC,
                        f"Failed to connect socket to '{path}': {exc.strerror or exc}") from exc
        return sock
    return None           # tls, ssh, ...: the full driver


def open_connection(uri: URI, info: ConnectionInfo) -> "BlockingConnection | None":
    """A blocking connection to the daemon ``uri`` names, or None when this
    URI needs the full remote driver (another transport, authentication)."""
    if uri.param("auth"):
        return None
    sock = _connect(uri, info.read_only)
    if sock is None:
        return None
    client = BlockingClient(sock)
    try:
        auth = client.call(REMOTE.by_name["AUTH_LIST"])
        if auth and auth[0] != 0:          # SASL (or polkit): the full driver negotiates it
            client.close()
            return None
        client.call(REMOTE.by_name["CONNECT_OPEN"], (uri.open_name(), 1 if info.read_only else 0))
    except BaseException:
        client.close()
        raise
    return BlockingConnection(info, client, uri)


class BlockingConnection(HypervisorConnection):
    error_domain = ErrorDomain.REMOTE

    def __init__(self, info: ConnectionInfo, client: BlockingClient, uri: URI) -> None:
        super().__init__(info, EventBus())
        self.client = client
        self.uri = uri

    def connect_is_secure(self) -> Done[int]:
        """As the remote driver: plain TCP is not secure, whatever the daemon says."""
        secure = self.client.call(REMOTE.by_name["CONNECT_IS_SECURE"])
        return Done(int(bool(secure) and self.uri.effective_transport != "tcp"))

    def connect_close(self) -> Done[None]:   # type: ignore[override]
        if self.closed:
            return Done(None)
        try:
            self.client.call(REMOTE.by_name["CONNECT_CLOSE"])
        except libvirtError:
            pass
        self.client.close()
        self.closed = True
        for hook in self.info.close_hooks[::-1]:
            hook()
        self.info.close_hooks = []
        return Done(None)


def _needs_full_driver(name: str) -> Callable[..., Any]:
    """What the blocking connection refuses, loudly (never a silent no-event)."""
    def method(self: BlockingConnection, *args: Any, **kwargs: Any) -> Any:
        raise error(ErrorNumber.NO_SUPPORT, ErrorDomain.REMOTE,
                    f"{name}: events, streams and descriptors need pyvirt's full remote driver, "
                    "not the blocking connection of one-shot commands")
    method.__name__ = name
    return method


BlockingConnection.events_subscribe = _needs_full_driver("events_subscribe")   # type: ignore[method-assign]


def _forward(proc: Procedure) -> Callable[..., Any]:
    def method(self: BlockingConnection, *args: Any) -> Done[Any]:
        return Done(self.client.call(proc, args))
    method.__name__ = proc.method or proc.name.lower()
    method.__doc__ = f"REMOTE_PROC_{proc.name} ({proc.number}), blocking."
    return method


for _proc in REMOTE:
    if ((_proc.method not in DRIVER_METHODS and _proc.method not in SECONDARY_METHODS)
            or _proc.method in ("connect_close", "connect_is_secure")):
        continue
    if _proc.stream is not None or _proc.method == "domain_open_graphics_fd":
        setattr(BlockingConnection, _proc.method, _needs_full_driver(_proc.method))
    else:
        setattr(BlockingConnection, _proc.method, _forward(_proc))
del _proc


def _without_files(name: str) -> Callable[..., Any]:
    """A start that passes descriptors: only the full remote driver sends them; without any it is a plain call."""
    proc = REMOTE.by_name[name]
    refuse = _needs_full_driver(proc.method or name.lower())

    def method(self: BlockingConnection, *args: Any) -> Any:
        *wire_args, files = args
        if files:
            return refuse(self)
        return Done(self.client.call(proc, tuple(wire_args)))
    method.__name__ = proc.method or name.lower()
    return method


BlockingConnection.domain_create_xml_with_files = _without_files("DOMAIN_CREATE_XML_WITH_FILES")  # type: ignore
BlockingConnection.domain_create_with_files = _without_files("DOMAIN_CREATE_WITH_FILES")  # type: ignore
