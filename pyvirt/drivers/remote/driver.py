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
from typing import Any, Callable

from ...driver import DRIVER_METHODS, ConnectionInfo, DomainEvent, EventBus, HypervisorConnection
from ...enums import EventID
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ...rpc import ssh_transport
from ...rpc.client import RPCClient
from ...rpc.protocol import REMOTE, Procedure
from ...rpc.wire import Message, Program
from ...uri import URI

log = logging.getLogger(__name__)

DEFAULT_SOCKET_DIR = "/run/libvirt"
LIFECYCLE_CALLBACK = REMOTE.by_name["DOMAIN_EVENT_CALLBACK_LIFECYCLE"]
LIFECYCLE_LEGACY = REMOTE.by_name["DOMAIN_EVENT_LIFECYCLE"]
CALLBACK_REGISTER = REMOTE.by_name["CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY"]
CALLBACK_DEREGISTER = REMOTE.by_name["CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY"]


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
        client = await RPCClient.connect_ssh(ssh_transport.plan(uri, info.read_only), on_message=on_message)
    else:
        raise error(ErrorNumber.NO_CONNECT, ErrorDomain.REMOTE,
                    f"{uri}: transport '{transport}' is not supported by pyvirt (use tcp, unix or ssh)")
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
        self._callback_id: int | None = None
        client.closed.add_done_callback(lambda _: self._lost())

    async def _handshake(self) -> None:
        auth = await self.client.call(Program.REMOTE, REMOTE.by_name["AUTH_LIST"])
        if auth and auth[0] != 0:
            raise error(ErrorNumber.AUTH_FAILED, ErrorDomain.REMOTE,
                        f"the server wants authentication type {auth[0]}, which pyvirt does not support")
        await self.client.call(Program.REMOTE, REMOTE.by_name["CONNECT_OPEN"],
                               (self.uri.open_name(), 1 if self.info.read_only else 0))

    def _lost(self) -> None:
        if not self.closed:
            log.info("connection to %s lost", self.uri)
            asyncio.get_running_loop().create_task(HypervisorConnection.connect_close(self))

    async def call(self, proc: Procedure, args: tuple[Any, ...]) -> Any:
        return await self.client.call(Program.REMOTE, proc, args)

    async def connect_close(self) -> None:
        if not self.closed and self.client.is_open:
            try:
                await self.client.call(Program.REMOTE, REMOTE.by_name["CONNECT_CLOSE"])
            except libvirtError as exc:
                log.debug("CONNECT_CLOSE failed: %s", exc)
        self.client.close()
        await HypervisorConnection.connect_close(self)

    # -- events: one lifecycle callback registered with the daemon on first use --
    async def events_subscribe(self, callback: Callable[[DomainEvent], None]) -> int:
        token = self.events.subscribe(callback)
        if self._callback_id is None:
            self._callback_id = await self.client.call(
                Program.REMOTE, CALLBACK_REGISTER, (int(EventID.LIFECYCLE), None))
        return token

    def _on_message(self, msg: Message) -> None:
        h = msg.header
        if h.prog != Program.REMOTE:
            return
        if h.proc == LIFECYCLE_CALLBACK.number:
            _cb, (dom, event, detail) = LIFECYCLE_CALLBACK.decode_args(msg.payload)
        elif h.proc == LIFECYCLE_LEGACY.number:
            dom, event, detail = LIFECYCLE_LEGACY.decode_args(msg.payload)
        else:
            return
        self.events.emit(DomainEvent(EventID.LIFECYCLE, dom, (event, detail)))


def _forward(proc: Procedure) -> Callable[..., Any]:
    if proc.stream is not None:
        async def method(self: RemoteConnection, *args: Any) -> Any:
            """Opens a stream: returns (reply, the stream's sending end)."""
            return await self.client.call_upload(Program.REMOTE, proc, args)
        method.__name__ = proc.method or proc.name.lower()
        return method

    async def method(self: RemoteConnection, *args: Any) -> Any:  # type: ignore[no-redef]
        return await self.client.call(Program.REMOTE, proc, args)
    method.__name__ = proc.method or proc.name.lower()
    method.__doc__ = f"REMOTE_PROC_{proc.name} ({proc.number}) over RPC."
    return method


for _proc in REMOTE:
    if _proc.method in DRIVER_METHODS and _proc.method != "connect_close":
        setattr(RemoteConnection, _proc.method, _forward(_proc))
del _proc
