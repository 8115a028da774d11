"""The remote driver: the driver contract over libvirt's RPC protocol.

Every driver method whose procedure is in the REMOTE table is generated
from that table (encode the arguments, call, decode the reply), so the
client and the daemon can never disagree on a field.  Opening follows
libvirt 9.0's remote driver: AUTH_LIST, CONNECT_OPEN with the URI's name
(transport, host, port and client-side parameters removed), then event
callbacks registered on demand.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable

from ...driver import DRIVER_METHODS, SECONDARY_METHODS, ConnectionInfo, DomainEvent, EventBus, FdReply, HypervisorConnection
from ...enums import EventID
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ...rpc.client import RPCClient
from ...rpc.stream import Direction
from ...rpc.protocol import REMOTE, Procedure
from ...rpc.protocol.remote import EVENT_CALLBACK_PROCEDURES
from ...rpc.protocol.remote_lifecycle import callback_event_fields
from ...rpc.protocol.remote_object_events import EVENT_MESSAGES as OBJECT_EVENT_MESSAGES
from ...rpc.wire import Message, Program
from ...uri import URI

log = logging.getLogger(__name__)

DEFAULT_SOCKET_DIR = "/run/libvirt"
_CALLBACK_EVENTS = {proc.number: event_id for event_id, proc in EVENT_CALLBACK_PROCEDURES.items()}
LIFECYCLE_LEGACY = REMOTE.by_name["DOMAIN_EVENT_LIFECYCLE"]
CALLBACK_REGISTER = REMOTE.by_name["CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY"]
CALLBACK_DEREGISTER = REMOTE.by_name["CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY"]
# storage pool and network events: message number -> (kind, event id); kind -> its REGISTER_ANY
_OBJECT_EVENTS = {proc.number: (kind, event_id) for kind, procs in OBJECT_EVENT_MESSAGES.items()
                  for event_id, proc in procs.items()}
OBJECT_REGISTER = {"storage": REMOTE.by_name["CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY"],
                   "network": REMOTE.by_name["CONNECT_NETWORK_EVENT_REGISTER_ANY"],
                   "nodedev": REMOTE.by_name["CONNECT_NODE_DEVICE_EVENT_REGISTER_ANY"]}


def socket_path(uri: URI, read_only: bool) -> str:
    explicit = uri.param("socket")
    if explicit:
        return explicit
    return f"{DEFAULT_SOCKET_DIR}/libvirt-sock{'-ro' if read_only else ''}"


async def open_connection(uri: URI, info: ConnectionInfo) -> "RemoteConnection":
    transport = uri.effective_transport
    events = EventBus()
    conn: RemoteConnection

    def on_message(msg: Message) -> None:
        conn._on_message(msg)

    if transport == "tcp":
        client = await RPCClient.connect_tcp(uri.host or "localhost", uri.effective_port() or 16509,
                                             on_message=on_message)
    elif transport == "unix":
        client = await RPCClient.connect_unix(socket_path(uri, info.read_only), on_message=on_message)
    elif transport == "ssh":
        from ...rpc import ssh_transport
        client = await RPCClient.connect_ssh(ssh_transport.plan(uri, info.read_only), on_message=on_message)
    elif transport == "tls":
        client = await RPCClient.connect_tls(uri, on_message=on_message)
    else:
        raise error(ErrorNumber.NO_CONNECT, ErrorDomain.REMOTE,
                    f"{uri}: transport '{transport}' is not supported by pyvirt (use tls, tcp, unix or ssh)")
    conn = RemoteConnection(info, events, client, uri)
    try:
        await conn._handshake()
    except BaseException:
        client.close()
        raise
    return conn


class RemoteConnection(HypervisorConnection):
    error_domain = ErrorDomain.REMOTE

    def __init__(self, info: ConnectionInfo, events: EventBus, client: RPCClient, uri: URI) -> None:
        super().__init__(info, events)
        self.client = client
        self.uri = uri
        self._callback_ids: dict[int, int] = {}     # event id -> the daemon's callback id
        self.object_events = {kind: EventBus() for kind in OBJECT_REGISTER}   # Pool/Network/NodeDeviceEvent
        self._object_callback_ids: dict[tuple[str, int], int] = {}
        client.closed.add_done_callback(lambda _: self._lost())

    async def _handshake(self) -> None:
        auth = await self.client.call(Program.REMOTE, REMOTE.by_name["AUTH_LIST"])
        kind = 0
        if (auth and auth[0] != 0) or self.uri.param("auth"):   # the SASL client only when asked for
            from . import saslclient
            kind = saslclient.pick_auth_type(auth, self.uri.param("auth"))
            if kind == saslclient.AUTH_SASL:
                await saslclient.authenticate(self.client, self.uri, self.info, *self._channel())
                kind = 0
        if kind != 0:
            raise error(ErrorNumber.AUTH_FAILED, ErrorDomain.REMOTE,
                        f"the server wants authentication type {kind}, which pyvirt does not support")
        await self.client.call(Program.REMOTE, REMOTE.by_name["CONNECT_OPEN"],
                               (self.uri.open_name(), 1 if self.info.read_only else 0))

    def _channel(self) -> tuple[bool, int]:
        """(secure, TLS key bits): TLS, UNIX sockets and ssh are secure, as in libvirt's client."""
        transport = self.client.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is not None:
            cipher = ssl_object.cipher()
            return True, int(cipher[2]) if cipher else 0
        return self.uri.effective_transport != "tcp", 0

    def _lost(self) -> None:
        if not self.closed:
            log.info("connection to %s lost", self.uri)
            asyncio.get_running_loop().create_task(HypervisorConnection.connect_close(self))

    async def call(self, proc: Procedure, args: tuple[Any, ...]) -> Any:
        return await self.client.call(Program.REMOTE, proc, args)

    async def connect_is_secure(self) -> int:
        """As libvirt's remote driver: secure when the daemon says so and the channel
        is encrypted (TLS) or not a network one (UNIX socket, ssh); plain TCP is not."""
        secure = await self.client.call(Program.REMOTE, REMOTE.by_name["CONNECT_IS_SECURE"])
        return int(bool(secure) and (self.client.encrypted or self.uri.effective_transport != "tcp"))

    async def connect_close(self) -> None:
        if not self.closed and self.client.is_open:
            try:
                await self.client.call(Program.REMOTE, REMOTE.by_name["CONNECT_CLOSE"])
            except libvirtError as exc:
                log.debug("CONNECT_CLOSE failed: %s", exc)
        self.client.close()
        await HypervisorConnection.connect_close(self)

    # -- events: one callback per event id registered with the daemon on first use --
    async def events_subscribe(self, callback: Callable[[DomainEvent], None], event_id: int = 0) -> int:
        token = self.events.subscribe(callback)
        if event_id not in self._callback_ids:
            try:
                self._callback_ids[event_id] = await self.client.call(
                    Program.REMOTE, CALLBACK_REGISTER, (int(event_id), None))
            except BaseException:
                self.events.unsubscribe(token)
                raise
        return token

    async def object_events_subscribe(self, kind: str, callback: Callable[[Any], None],
                                      event_id: int = 0) -> int:
        """As events_subscribe, for pool ('storage'), network and node-device ('nodedev') events."""
        bus = self.object_events[kind]
        token = bus.subscribe(callback)
        if (kind, event_id) not in self._object_callback_ids:
            try:
                self._object_callback_ids[kind, event_id] = await self.client.call(
                    Program.REMOTE, OBJECT_REGISTER[kind], (int(event_id), None))
            except BaseException:
                bus.unsubscribe(token)
                raise
        return token

    def object_events_unsubscribe(self, kind: str, token: int) -> None:
        self.object_events[kind].unsubscribe(token)

    def _on_object_event(self, kind: str, event_id: int, msg: Message) -> None:
        from ...driver_network import NetworkEvent
        from ...driver_nodedev import NodeDeviceEvent
        from ...driver_storage import PoolEvent
        _cb, obj, *detail = REMOTE[msg.header.proc].decode_args(msg.payload)
        record = {"storage": PoolEvent, "network": NetworkEvent, "nodedev": NodeDeviceEvent}[kind]
        self.object_events[kind].emit(record(event_id, obj, tuple(detail)))

    def _on_message(self, msg: Message) -> None:
        h = msg.header
        if h.prog != Program.REMOTE:
            return
        if h.proc in _OBJECT_EVENTS:
            return self._on_object_event(*_OBJECT_EVENTS[h.proc], msg)
        event_id = _CALLBACK_EVENTS.get(h.proc)
        if event_id is not None:
            proc = REMOTE[h.proc]
            _cb, dom, detail = callback_event_fields(proc, proc.decode_args(msg.payload))
        elif h.proc == LIFECYCLE_LEGACY.number:
            event_id = EventID.LIFECYCLE
            dom, *rest = LIFECYCLE_LEGACY.decode_args(msg.payload)
            detail = tuple(rest)
        else:
            return
        self.events.emit(DomainEvent(int(event_id), dom, detail))


_SPARSE_CAPABLE = ("STORAGE_VOL_UPLOAD", "STORAGE_VOL_DOWNLOAD")


def _forward(proc: Procedure) -> Callable[..., Any]:
    if proc.stream is not None:
        async def method(self: RemoteConnection, *args: Any) -> Any:
            """Opens a stream: returns (reply, the stream's client end)."""
            # a volume's stream carries holes when opened with VIR_STORAGE_VOL_*_SPARSE_STREAM (1)
            sparse = proc.name in _SPARSE_CAPABLE and bool(args[-1] & 1)
            if proc.stream == Direction.UPLOAD:
                return await self.client.call_upload(Program.REMOTE, proc, args, sparse=sparse)
            return await self.client.call_stream(Program.REMOTE, proc, args, sparse=sparse)
        method.__name__ = proc.method or proc.name.lower()
        return method

    async def method(self: RemoteConnection, *args: Any) -> Any:  # type: ignore[no-redef]
        return await self.client.call(Program.REMOTE, proc, args)
    method.__name__ = proc.method or proc.name.lower()
    method.__doc__ = f"REMOTE_PROC_{proc.name} ({proc.number}) over RPC."
    return method


for _proc in REMOTE:
    if ((_proc.method in DRIVER_METHODS or _proc.method in SECONDARY_METHODS)
            and _proc.method not in ("connect_close", "connect_is_secure")):
        setattr(RemoteConnection, _proc.method, _forward(_proc))
del _proc


async def _open_graphics_fd(self: RemoteConnection, dom: Any, idx: int, flags: int) -> FdReply:
    """The socket comes back as a descriptor after the reply (REPLY_WITH_FDS)."""
    proc = REMOTE.by_name["DOMAIN_OPEN_GRAPHICS_FD"]
    _ret, fds = await self.client.call_with_fds(Program.REMOTE, proc, (dom, idx, flags))
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise error(ErrorNumber.RPC, ErrorDomain.REMOTE, f"openGraphicsFD: the daemon sent {len(fds)} descriptors, not 1")
    return FdReply(None, fds)
RemoteConnection.domain_open_graphics_fd = _open_graphics_fd  # type: ignore[attr-defined]


def _with_files(name: str) -> Any:
    proc = REMOTE.by_name[name]

    async def method(self: RemoteConnection, *args: Any) -> Any:
        """The descriptors (the last argument) go after the call (CALL_WITH_FDS)."""
        *wire_args, files = args
        return await self.client.call_passing_fds(Program.REMOTE, proc, tuple(wire_args), list(files))
    method.__name__ = proc.method or name.lower()
    return method


RemoteConnection.domain_create_xml_with_files = _with_files("DOMAIN_CREATE_XML_WITH_FILES")  # type: ignore
RemoteConnection.domain_create_with_files = _with_files("DOMAIN_CREATE_WITH_FILES")  # type: ignore


async def _is_encrypted(self: RemoteConnection) -> int:
    """libvirt's remote driver: encrypted when the channel is (TLS, a SASL layer) and the
    daemon's connection is secure."""
    secure = await self.client.call(Program.REMOTE, REMOTE.by_name["CONNECT_IS_SECURE"])
    return int(bool(secure) and self.client.encrypted)
RemoteConnection.connect_is_encrypted = _is_encrypted  # type: ignore[attr-defined]
