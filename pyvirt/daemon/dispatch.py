"""From RPC calls to driver methods: the daemon's dispatcher.

Every CALL is looked up in the program tables; procedures of kind DRIVER
are forwarded by name to the client's :class:`~pyvirt.driver.HypervisorConnection`
(``getattr(conn, proc.method)(*args)``), those of kind DAEMON are answered
here (open/close, auth, features, event registration).  An unknown
procedure gets exactly libvirt's "unknown procedure" error, so clients fall
back as they do with libvirtd.

Calls run *eagerly*: the driver coroutine is stepped once inline, and most
calls (queries that never wait on QEMU) finish right there and are answered
without creating a task; a call that has to wait becomes a task, so it
never holds back the calls behind it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine, Generator

from ..driver import (QEMU_MONITOR_EVENT, ConnectionInfo, DomainEvent, FdReply, HypervisorConnection,
                      StreamSink, api_error_domain, api_name, check_access)
from ..enums import DriverFeature, EventID
from ..errors import ErrorDomain, ErrorNumber, bare_invalid_arg, error, libvirtError
from ..rpc import wire
from ..rpc.protocol import KEEPALIVE, PROGRAMS, QEMU, Kind, Procedure
from ..rpc.protocol.remote_cpu_files import FDS_IN, NULL_WHEN_EMPTY
from ..rpc.server import ServerClient
from ..rpc.stream import Direction
from ..rpc.stream.incoming import FdStream, IncomingStream, VolumeStream
from ..rpc.wire import Header, Message, MessageType, Program, Status
from ..rpc.xdr import XDRError
from . import events as event_forms
from . import auth as authmod
from .unexpected import as_libvirt_error

# procedures whose stream is a volume's content (length, holes: pyvirt.driver.StreamSink)
_VOLUME_STREAMS = ("STORAGE_VOL_UPLOAD", "STORAGE_VOL_DOWNLOAD")

log = logging.getLogger(__name__)

OpenDriver = Callable[[str, ConnectionInfo], Awaitable[HypervisorConnection]]

# Features the RPC layer itself answers (before and after OPEN), as libvirtd does.
RPC_FEATURES = {DriverFeature.PROGRAM_KEEPALIVE: 1, DriverFeature.REMOTE_EVENT_CALLBACK: 1,
                DriverFeature.REMOTE_CLOSE_CALLBACK: 1}
# Before CONNECT_OPEN only these are allowed (libvirtd answers others "connection not open").
PRE_OPEN = {"auth_list", "auth_sasl_init", "auth_sasl_start", "auth_sasl_step", "auth_polkit",
            "connect_open", "connect_supports_feature", "connect_close"}

QEMU_EVENT = QEMU.by_name["DOMAIN_MONITOR_EVENT"]
_callback_ids = itertools.count(1)   # unique across the daemon, as libvirtd's
# a pool or network registration's object is looked up first (a missing one is refused)
_LOOKUPS = {"storage": "storage_pool_lookup_by_uuid", "network": "network_lookup_by_uuid"}
EAGER_TASKS = sys.version_info >= (3, 12)


@dataclass
class Session:
    """What the daemon knows about one client."""

    conn: HypervisorConnection | None = None
    auth: "authmod.ClientAuth" = field(default_factory=authmod.ClientAuth)   # identity, SASL state
    legacy_events: set[int] = field(default_factory=set)            # event ids (REGISTER_ANY)
    callbacks: dict[int, tuple[int, bytes | None]] = field(default_factory=dict)  # id -> (event id, uuid)
    qemu_callbacks: dict[int, tuple[bytes | None, Callable[[str], bool]]] = field(default_factory=dict)
    subscription: int | None = None
    # pool / network / node-device event registrations: id -> (kind, event id, uuid or name filter),
    # and the subscription to each kind's host-wide bus: kind -> (bus, token)
    object_callbacks: dict[int, tuple[str, int, Any]] = field(default_factory=dict)
    object_subscriptions: dict[str, tuple[Any, int]] = field(default_factory=dict)
    close_callback: bool = False
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    streams: dict[tuple[int, int], IncomingStream | FdStream] = field(default_factory=dict)


class _Resume:
    """Await a coroutine that has already been stepped once (eager start)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.first
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:   # cancellation and the like go to the coroutine
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = coro.send(sent)
            except StopIteration as stop:
                return stop.value


class Dispatcher:
    """The daemon's CallHandler: sessions, calls, events."""

    def __init__(self, open_driver: OpenDriver, features: Callable[[int], int | None] | None = None,
                 shutting_down: Callable[[], bool] = lambda: False, max_requests: int = 5,
                 authenticator: authmod.Authenticator | None = None) -> None:
        self.open_driver = open_driver
        self.auth = authenticator or authmod.Authenticator()
        self.max_requests = max_requests
        self.feature_override = features
        self.shutting_down = shutting_down
        self._daemon_procs: dict[str, Callable[..., Any]] = {
            "connect_open": self._open, "connect_close": self._close,
            "connect_supports_feature": self._supports_feature, "auth_list": self._auth_list,
            "connect_register_close_callback": self._register_close_callback,
            "connect_unregister_close_callback": self._unregister_close_callback,
            "connect_domain_event_register": self._legacy_register,
            "connect_domain_event_deregister": self._legacy_deregister,
            "connect_domain_event_register_any": self._register_any,
            "connect_domain_event_deregister_any": self._deregister_any,
            "connect_domain_event_callback_register_any": self._callback_register,
            "connect_domain_event_callback_deregister_any": self._callback_deregister,
            "connect_domain_qemu_monitor_event_register": self._qemu_event_register,
            "connect_domain_qemu_monitor_event_deregister": self._qemu_event_deregister,
            "connect_storage_pool_event_register_any":
                lambda c, event_id, pool: self._object_register(c, "storage", event_id, pool),
            "connect_storage_pool_event_deregister_any":
                lambda c, cb: self._object_deregister(c, "storage", cb),
            "connect_network_event_register_any":
                lambda c, event_id, net: self._object_register(c, "network", event_id, net),
            "connect_network_event_deregister_any":
                lambda c, cb: self._object_deregister(c, "network", cb),
            "connect_node_device_event_register_any":
                lambda c, event_id, dev: self._object_register(c, "nodedev", event_id, dev),
            "connect_node_device_event_deregister_any":
                lambda c, cb: self._object_deregister(c, "nodedev", cb),
            "auth_sasl_init": lambda c: self.auth.sasl_init(c, c.session.auth),
            "auth_sasl_start": lambda c, *a: self.auth.sasl_start(c, c.session.auth, *a),
            "auth_sasl_step": lambda c, *a: self.auth.sasl_step(c, c.session.auth, *a),
            "auth_polkit": lambda c: self.auth.polkit(c, c.session.auth),
        }

    # -- CallHandler ------------------------------------------------------------
    def client_connected(self, client: ServerClient) -> None:
        client.session = Session(auth=self.auth.client_connected(client))

    async def client_disconnected(self, client: ServerClient) -> None:
        session: Session = client.session
        self.auth.client_gone(session.auth)
        if session.conn is not None:
            session.conn.client_gone = True      # at once: calls still running may look
        for stream in list(session.streams.values()):
            stream.abort(error(ErrorNumber.RPC, ErrorDomain.RPC, "client disconnected during the stream"))
        # Calls still running finish (their replies go nowhere), as in libvirtd:
        # cancelling a start or a migration half-way would leave a guest in an
        # unknown state.  Close hooks (autodestroy) run after them.
        if session.tasks:
            await asyncio.wait(list(session.tasks))
        conn, session.conn = session.conn, None
        if conn is None:
            return
        if session.subscription is not None:
            conn.unsubscribe_events(session.subscription)
        _drop_object_subscriptions(session)
        if self.shutting_down():
            return   # a daemon that stops leaves guests running: no close hooks
        try:
            await conn.connect_close()   # runs autodestroy and the like
        except Exception:
            log.exception("closing the driver connection of %s failed", client.peer)

    def handle_message(self, client: ServerClient, msg: Message) -> None:
        """One message from a client, as libvirtd's virNetServerProgramDispatch takes it."""
        h = msg.header
        try:
            if h.type == MessageType.CALL:
                return self._call(client, msg)
            if h.type == MessageType.CALL_WITH_FDS:
                # the call's descriptors are ours until a driver call takes them; whatever is
                # left when the call is over (refused, or a procedure that takes none) is closed
                owned = client.take_fds(msg.nfds)
                try:
                    return self._call(client, msg, owned)
                finally:
                    _close_all(owned)
        except wire.ProtocolError:
            raise
        except Exception as exc:   # a bug of ours: the call still gets an answer
            log.error("call %s of %s failed before reaching a driver", h, client.peer, exc_info=exc)
            return self._reply_error(client, h, as_libvirt_error(exc, "RPC dispatch"))
        if h.type in (MessageType.STREAM, MessageType.STREAM_HOLE):
            stream = client.session.streams.get((h.proc, h.serial))
            if stream is None:
                log.debug("client %s: stream packet for unknown stream %s", client.peer, h)
            else:
                stream.receive(msg)
            return
        # REPLY, MESSAGE, unknown types: nobody waits for an answer; libvirtd
        # ignores them and keeps the client
        log.debug("client %s: ignoring a message of type %d (prog 0x%x proc %d)", client.peer, h.type,
                  h.prog, h.proc)

    def _call(self, client: ServerClient, msg: Message, fds: list[int] | None = None) -> None:
        h = msg.header
        table = PROGRAMS.get(h.prog)
        if table is None or h.vers != table.version or table is KEEPALIVE:   # keepalive takes no calls
            return self._reply_error(client, h, wire.unknown_program_error(h.prog, h.vers))
        if h.status != Status.OK:
            return self._reply_error(client, h, error(ErrorNumber.RPC, ErrorDomain.RPC,
                                                      f"Unexpected message status {h.status & 0xFFFFFFFF}"))
        proc = table.get(h.proc)
        if proc is None or proc.kind is Kind.MESSAGE:
            return self._reply_error(client, h, wire.unknown_procedure_error(h.proc))
        if not client.authenticated and proc.method not in authmod.UNAUTHENTICATED:
            return self._reply_error(client, h, authmod.auth_required_error())   # before decoding, as libvirt
        try:
            args = proc.decode_args(msg.payload)
        except XDRError as exc:
            if isinstance(exc.__cause__, UnicodeDecodeError):   # well-formed XDR, but not our text
                return self._reply_error(client, h, error(
                    ErrorNumber.INVALID_ARG, ErrorDomain.RPC,
                    f"{_api(proc)}: a string argument is not valid UTF-8 ({exc.__cause__.reason})"))
            log.debug("client %s: cannot decode the arguments of %s: %s", client.peer, proc.name, exc)
            return self._reply_error(client, h, error(ErrorNumber.RPC, ErrorDomain.RPC,
                                                      "Unable to decode message payload"))
        null_arg = NULL_WHEN_EMPTY.get(proc.method or "")
        if null_arg is not None and not args[null_arg[0]]:
            return self._reply_error(client, h, bare_invalid_arg(f"{null_arg[1]} in {_api(proc)} must not be NULL",
                                                                 ErrorDomain.DOMAIN))
        session: Session = client.session
        if proc.kind is Kind.DAEMON:
            handler = self._daemon_procs.get(proc.method or "")
            if handler is None:
                return self._reply_error(client, h, wire.unknown_procedure_error(h.proc))
            if session.conn is None and proc.method not in PRE_OPEN:
                return self._reply_error(client, h, wire.connection_not_open_error())
            try:
                result = handler(client, *args)
            except Exception as exc:
                return self._fail(client, h, proc, exc)
            return self._run(client, h, proc, result)
        conn = session.conn
        if conn is None:
            return self._reply_error(client, h, wire.connection_not_open_error())
        if client.read_only or conn.read_only:
            if proc.refused_read_only(args):
                return self._reply_error(client, h, _read_only_error(proc))
        if proc.mutates:
            authmod.log_mutating_call(conn.info, _api(proc))
        try:
            check_access(conn, proc.method or "")
            method = getattr(conn, proc.method or "", None)
            if method is None:
                return self._reply_error(client, h, wire.unknown_procedure_error(h.proc))
            if proc.method in FDS_IN:    # the driver gets the descriptors; closed when its call ends
                taken = list(fds or ())
                if fds:
                    fds.clear()
                coro = _closing(method(*args, taken), taken)
            else:
                coro = method(*args)
        except Exception as exc:
            return self._fail(client, h, proc, exc)
        self._run(client, h, proc, coro)

    # -- running a call -------------------------------------------------------
    def _run(self, client: ServerClient, h: Header, proc: Procedure, coro: Any) -> None:
        """Run a call eagerly: most finish at once and are answered without a task."""
        if not asyncio.iscoroutine(coro):
            return self._reply(client, h, proc, coro)
        if EAGER_TASKS:
            # Python 3.12+: a real task started eagerly, so code that needs a
            # current task (asyncio.wait_for, timeouts) works even on the fast path.
            task = asyncio.Task(self._finish(client, h, proc, coro), loop=asyncio.get_running_loop(),
                                eager_start=True)
            if not task.done():
                self._track(client, task)
            return
        try:
            first = coro.send(None)
        except StopIteration as stop:
            return self._reply(client, h, proc, stop.value)
        except BaseException as exc:
            return self._fail(client, h, proc, exc)
        task = asyncio.get_running_loop().create_task(self._finish(client, h, proc, _Resume(coro, first)),
                                                      name=f"{proc.name}-{client.peer}")
        self._track(client, task)

    async def _finish(self, client: ServerClient, h: Header, proc: Procedure, awaitable: Any) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(client, h, proc, exc)
        else:
            self._reply(client, h, proc, result)

    def _fail(self, client: ServerClient, h: Header, proc: Procedure, exc: BaseException) -> None:
        """The one boundary: whatever a call raised, its client gets a libvirt error."""
        if isinstance(exc, libvirtError):
            return self._reply_error(client, h, exc)
        if not isinstance(exc, Exception):
            raise exc
        # a path that raised something else must not take the daemon down, nor show
        # the client Python's insides: the traceback is for the log, once
        log.error("%s (%s) failed with an unexpected exception", _api(proc), proc.name, exc_info=exc)
        self._reply_error(client, h, as_libvirt_error(exc, _api(proc)))

    def _track(self, client: ServerClient, task: asyncio.Task[None]) -> None:
        """Keep a call that has to wait; past max_client_requests, stop reading its client."""
        session: Session = client.session
        session.tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            session.tasks.discard(t)
            if len(session.tasks) < self.max_requests:
                client.resume("requests")
        task.add_done_callback(done)
        if len(session.tasks) >= self.max_requests:
            client.pause("requests")   # libvirtd's max_client_requests: the rest wait in the socket

    def _reply(self, client: ServerClient, h: Header, proc: Procedure, result: Any) -> None:
        stream = None
        if proc.stream is not None:   # the driver returned (reply, sink): data follows on this serial
            try:
                result, sink = result
                stream = self._open_stream(client, h, proc, sink)
            except Exception as exc:
                return self._fail(client, h, proc, exc)
        if isinstance(result, FdReply):
            return self._reply_with_fds(client, h, proc, result)
        try:
            packet = wire.encode_reply(h, proc.encode_ret(result))
        except Exception as exc:   # (a reply over the 32 MiB packet limit too): answered, never dropped
            log.error("%s: cannot encode the reply: %s", proc.name, _short(exc))
            if stream is not None:
                stream.abort(error(ErrorNumber.RPC, ErrorDomain.RPC, "the reply opening the stream failed"))
            return self._reply_error(client, h, error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC,
                                                      f"{_api(proc)}: the reply cannot be sent (see the daemon log)"))
        client.send(packet)
        if proc.method in ("auth_sasl_start", "auth_sasl_step"):
            self.auth.after_reply(client, client.session.auth)   # a SASL security layer starts here
        if stream is not None:
            stream.start()
        if proc.method == "connect_close":
            client.close()

    def _reply_with_fds(self, client: ServerClient, h: Header, proc: Procedure, result: FdReply) -> None:
        """REPLY_WITH_FDS: the reply, then each descriptor by SCM_RIGHTS (UNIX sockets only)."""
        try:
            if not client.can_pass_fds():
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.RPC,
                            "Connection does not support file descriptor passing")
            header = Header(h.prog, h.vers, h.proc, MessageType.REPLY_WITH_FDS, h.serial, Status.OK)
            packet = wire.encode_message(header, proc.encode_ret(result.value), nfds=len(result.fds))
            client.send_with_fds(packet, result.fds)
        except Exception as exc:
            self._fail(client, h, proc, exc)
        finally:
            for fd in result.fds:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _reply_error(self, client: ServerClient, h: Header, err: libvirtError) -> None:
        try:
            packet = wire.encode_error_reply(h, err)
        except Exception as exc:   # error_to_wire makes any libvirtError encode; not a libvirtError?
            log.error("cannot encode the error %r answering %s: %s", err, h, _short(exc))
            packet = wire.encode_error_reply(h, error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC,
                                                      "the error of this call cannot be sent (see the daemon log)"))
        client.send(packet)

    def _open_stream(self, client: ServerClient, h: Header, proc: Procedure,
                     sink: StreamSink) -> IncomingStream | FdStream:
        """Wire the driver's pipe to the stream the reply opens; the stream does the I/O."""
        streams = client.session.streams
        key = (h.proc, h.serial)
        if proc.name in _VOLUME_STREAMS:      # the volume itself, with the call's length and sparseness
            stream: IncomingStream | FdStream = VolumeStream(
                client, sink.fd, sink.done, h, proc.stream, on_closed=lambda: streams.pop(key, None),
                length=sink.length, sparse=sink.sparse)
        else:
            kind = IncomingStream if proc.stream == Direction.UPLOAD else FdStream   # console, screenshot
            stream = kind(client, sink.fd, sink.done, h, proc.stream, on_closed=lambda: streams.pop(key, None))
        sink.cancel = stream.fail
        streams[key] = stream
        return stream

    # -- daemon procedures -------------------------------------------------------
    def _auth_list(self, client: ServerClient) -> list[int]:
        return self.auth.auth_list(client, client.session.auth)

    async def _open(self, client: ServerClient, name: str | None, flags: int) -> None:
        session: Session = client.session
        if session.conn is not None:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC, "connection already open")
        info = ConnectionInfo(uri=name or "", read_only=client.read_only or bool(flags & 1),
                              client_id=client.peer, **session.auth.identity)
        session.conn = await self.open_driver(name or "", info)

    async def _close(self, client: ServerClient) -> None:
        session: Session = client.session
        conn, session.conn = session.conn, None
        if conn is not None:
            if session.subscription is not None:
                conn.unsubscribe_events(session.subscription)
                session.subscription = None
            _drop_object_subscriptions(session)
            await conn.connect_close()

    def _supports_feature(self, client: ServerClient, feature: int) -> Any:
        if feature == DriverFeature.REMOTE_EVENT_CALLBACK and self.feature_override is not None:
            value = self.feature_override(feature)   # configured off: clients use the legacy form
            if value is not None:
                return value
        if feature in RPC_FEATURES:
            if feature == DriverFeature.PROGRAM_KEEPALIVE:
                client.start_keepalive()
            return RPC_FEATURES[feature]
        if self.feature_override is not None:
            value = self.feature_override(feature)
            if value is not None:
                return value
        conn = client.session.conn
        if conn is None:
            raise wire.connection_not_open_error()
        if feature == DriverFeature.FD_PASSING:
            # a call passing descriptors may follow the answer; asked only once the connection
            # is open, so after any SASL layer started (none carries descriptors)
            client.enable_fd_passing()
        return conn.connect_supports_feature(feature)

    def _register_close_callback(self, client: ServerClient) -> None:
        client.session.close_callback = True

    def _unregister_close_callback(self, client: ServerClient) -> None:
        client.session.close_callback = False

    # -- events --------------------------------------------------------------------
    def _subscribe(self, client: ServerClient) -> None:
        session: Session = client.session
        if session.subscription is None and session.conn is not None:
            session.subscription = session.conn.subscribe_events(lambda ev: self._deliver(client, ev))

    # REGISTER/DEREGISTER are REGISTER_ANY/DEREGISTER_ANY of LIFECYCLE (libvirtd answers 0)
    def _legacy_register(self, client: ServerClient) -> int:
        self._register_any(client, EventID.LIFECYCLE)
        return 0

    def _legacy_deregister(self, client: ServerClient) -> int:
        self._deregister_any(client, EventID.LIFECYCLE)
        return 0

    def _register_any(self, client: ServerClient, event_id: int) -> None:
        event_forms.check_legacy_id(event_id, client.session.legacy_events)
        client.session.legacy_events.add(event_id)
        self._subscribe(client)

    def _deregister_any(self, client: ServerClient, event_id: int) -> None:
        if event_id not in client.session.legacy_events:
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.RPC, f"domain event {event_id} not registered")
        client.session.legacy_events.discard(event_id)

    def _callback_register(self, client: ServerClient, event_id: int, dom: Any) -> int:
        event_forms.check_callback_id(event_id)
        cb = next(_callback_ids)
        client.session.callbacks[cb] = (event_id, dom.uuid if dom is not None else None)
        self._subscribe(client)
        return cb

    def _callback_deregister(self, client: ServerClient, callback_id: int) -> None:
        if client.session.callbacks.pop(callback_id, None) is None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC,
                        f"domain event callback {callback_id} not registered")

    def _qemu_event_register(self, client: ServerClient, dom: Any, event: str | None, flags: int) -> int:
        """virsh qemu-monitor-event: raw QMP events, by name, regex (flag 1), any case (flag 2)."""
        if flags & ~3:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, f"unsupported flags (0x{flags & ~3:x})")
        if event is None:
            match: Callable[[str], bool] = lambda name: True
        elif flags & 1:
            try:
                pattern = re.compile(event, re.IGNORECASE if flags & 2 else 0)
            except re.error as exc:
                raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC, f"bad event regex '{event}': {exc}")
            match = lambda name: pattern.search(name) is not None
        elif flags & 2:
            match = lambda name: name.lower() == event.lower()
        else:
            match = lambda name: name == event
        cb = next(_callback_ids)
        client.session.qemu_callbacks[cb] = (dom.uuid if dom is not None else None, match)
        self._subscribe(client)
        return cb

    def _qemu_event_deregister(self, client: ServerClient, callback_id: int) -> None:
        if client.session.qemu_callbacks.pop(callback_id, None) is None:
            raise error(ErrorNumber.INVALID_ARG, ErrorDomain.RPC,
                        f"qemu monitor event callback {callback_id} not registered")

    async def _object_register(self, client: ServerClient, kind: str, event_id: int, obj: Any) -> int:
        """CONNECT_STORAGE_POOL/NETWORK/NODE_DEVICE_EVENT_REGISTER_ANY, checked in libvirtd's
        order: the driver, the object (a pool or network looked up by UUID; a node device is
        taken by name, as libvirtd takes it), then the event id."""
        session: Session = client.session
        bus = event_forms.object_bus(session.conn, kind)
        if obj is not None and kind in _LOOKUPS:
            await getattr(session.conn, _LOOKUPS[kind])(obj.uuid)
        event_forms.check_object_event_id(kind, event_id)
        cb = next(_callback_ids)
        session.object_callbacks[cb] = (kind, event_id,
                                        event_forms.object_key(kind, obj) if obj is not None else None)
        if kind not in session.object_subscriptions:
            token = bus.subscribe(lambda ev: self._deliver_object(client, kind, ev))
            session.object_subscriptions[kind] = (bus, token)
        return cb

    def _object_deregister(self, client: ServerClient, kind: str, callback_id: int) -> None:
        session: Session = client.session
        entry = session.object_callbacks.get(callback_id)
        if entry is None or entry[0] != kind:
            raise event_forms.object_event_not_registered(kind, callback_id)
        del session.object_callbacks[callback_id]

    def _deliver_object(self, client: ServerClient, kind: str, event: Any) -> None:
        if not client.closed:
            event_forms.deliver_object_event(client, kind, client.session.object_callbacks, event)

    def _deliver_qemu(self, client: ServerClient, event: DomainEvent) -> None:
        name, stamp, details = event.detail
        seconds, micros = int(stamp), int((stamp - int(stamp)) * 1e6)
        for cb, (uuid, match) in client.session.qemu_callbacks.items():
            if (uuid is None or uuid == event.dom.uuid) and match(name):
                payload = QEMU_EVENT.encode_args((cb, event.dom, name, seconds, micros, details))
                client.send(wire.encode_event(Program.QEMU, QEMU_EVENT.number, payload))

    def _deliver(self, client: ServerClient, event: DomainEvent) -> None:
        """Send one driver event to a client, in each form it registered for."""
        if client.closed:
            return
        if event.event_id == QEMU_MONITOR_EVENT:
            return self._deliver_qemu(client, event)
        session: Session = client.session
        event_forms.deliver(client, session.legacy_events, session.callbacks, event)


def _close_all(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


async def _closing(call: Awaitable[Any], fds: list[int]) -> Any:
    """A driver call that was handed descriptors: they are closed when it ends, however
    it ends (libvirtd frees them with the call's message), never left to the driver."""
    try:
        return await call
    finally:
        _close_all(fds)


def _drop_object_subscriptions(session: Session) -> None:
    for bus, token in session.object_subscriptions.values():
        bus.unsubscribe(token)
    session.object_subscriptions.clear()
    session.object_callbacks.clear()


def _short(exc: BaseException, limit: int = 500) -> str:
    """An exception's text for the log, cut: it may quote a 4 MiB argument."""
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def _api(proc: Procedure) -> str:
    return api_name(proc.method or proc.name.lower())


def _read_only_error(proc: Procedure) -> libvirtError:
    api = api_name(proc.method or proc.name.lower())
    domain = api_error_domain(proc.method or proc.name.lower(), ErrorDomain.DOMAIN)
    return error(ErrorNumber.OPERATION_DENIED, domain, f"read only access prevents {api}")

