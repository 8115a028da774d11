"""Who a client is, and whether it may call anything yet: pyvirtd's authentication.

Each listener has libvirt's auth type (``auth_unix_rw``, ``auth_unix_ro``,
``auth_tcp``, ``auth_tls``): ``"none"`` makes its clients authenticated at
once; ``"sasl"`` leaves them anonymous until a SASL negotiation
(AUTH_SASL_INIT, AUTH_SASL_START, AUTH_SASL_STEP, as libvirt's
remote_daemon_dispatch.c answers them) succeeds through cyrus-sasl
(:mod:`pyvirt.rpc.sasl`).  Until then every other procedure gets libvirt's
"authentication required" (VIR_ERR_RPC, checked before the arguments are
even decoded, as virNetServerProgramDispatchCall does), and any failure of
the negotiation is answered "authentication failed", its cause logged.

On TLS and UNIX sockets the channel is already safe (the TLS key size is
SASL's external SSF).  On plain TCP the mechanism must reach ``tcp_min_ssf``,
so only one with a security layer (DIGEST-MD5, GSSAPI) gets through, and
that layer then wraps the connection from the byte after the last reply
(:mod:`pyvirt.rpc.sasl_transport`), as libvirt does.

The identity of each client — its UNIX peer credentials (SO_PEERCRED), its
certificate's distinguished name (TLS), its SASL user name — is gathered
here, handed to the driver in :class:`~pyvirt.driver.ConnectionInfo`, and
logged with every call that changes something.
"""

from __future__ import annotations

import fnmatch
import logging
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..rpc import sasl as saslmod
from ..rpc.sasl_transport import SecurityLayer
from ..rpc.server import ServerClient

log = logging.getLogger(__name__)
audit = logging.getLogger("pyvirtd.audit")

AUTH_NONE, AUTH_SASL, AUTH_POLKIT = 0, 1, 2       # remote_auth_type
AUTH_TYPES = {"none": AUTH_NONE, "sasl": AUTH_SASL}
UNAUTHENTICATED = frozenset({"auth_list", "auth_sasl_init", "auth_sasl_start", "auth_sasl_step", "auth_polkit"})
"""The procedures libvirt serves to a client that has not authenticated yet."""
SASL_DATA_MAX = 65536                             # REMOTE_AUTH_SASL_DATA_MAX
_UCRED = struct.Struct("3i")                      # struct ucred: pid, uid, gid


@dataclass
class ClientAuth:
    """One client's identity and, while it negotiates, its SASL session."""

    auth: str = "none"                 # what its listener requires
    secure: bool = False               # TLS or a UNIX socket (libvirt's virNetServerClientIsSecure)
    tls_bits: int = 0                  # the TLS cipher's key size, the SASL external SSF
    identity: dict[str, Any] = field(default_factory=dict)   # ConnectionInfo's identity fields
    sasl: saslmod.ServerSession | None = None
    layer: saslmod.ServerSession | None = None   # a security layer to put on once the last reply is out

    def describe(self, peer: str) -> str:
        return describe_identity(self.identity, peer)


def describe_identity(identity: dict[str, Any], peer: str) -> str:
    """``peer`` plus who it is, as the log shows it: "uid=0 pid=42", "sasl=alice", "dn=CN=..."."""
    parts = [peer]
    for key, label in (("unix_uid", "uid"), ("unix_pid", "pid"), ("x509_dname", "dn"), ("sasl_user", "sasl")):
        if identity.get(key) is not None:
            parts.append(f"{label}={identity[key]}")
    return " ".join(parts)


def auth_required_error() -> libvirtError:
    # libvirt answers VIR_ERR_RPC, not AUTH_FAILED, for clients that predate that code
    return error(ErrorNumber.RPC, ErrorDomain.RPC, "authentication required")


def auth_failed_error() -> libvirtError:
    return error(ErrorNumber.AUTH_FAILED, ErrorDomain.RPC, "authentication failed")


class Authenticator:
    """Auth types by listener, the SASL policy, and the per-client negotiation."""

    def __init__(self, *, sasl_allowed_username_list: list[str] | None = None, tcp_min_ssf: int = 56) -> None:
        self.by_listener: dict[str, str] = {}
        self.allowed_users = sasl_allowed_username_list     # None: every authenticated user
        self.tcp_min_ssf = tcp_min_ssf

    def set_listener_auth(self, listener: str, auth: str) -> None:
        if auth not in AUTH_TYPES:
            raise error(ErrorNumber.CONF_SYNTAX, ErrorDomain.CONF, f"unsupported auth {auth} for {listener}")
        if auth == "sasl":      # as libvirtd: at start, so a broken SASL setup stops it at once
            try:
                saslmod.server_init()
            except saslmod.SASLError as exc:
                raise error(ErrorNumber.AUTH_FAILED, ErrorDomain.RPC, str(exc)) from None
        self.by_listener[listener] = auth

    # -- the client's lifetime ---------------------------------------------------------
    def client_connected(self, client: ServerClient) -> ClientAuth:
        state = ClientAuth(auth=self.by_listener.get(client.listener, "none"))
        transport = client.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None and sock.family == socket.AF_UNIX:
            state.secure = True
            try:
                pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
                state.identity.update(unix_uid=uid, unix_gid=gid, unix_pid=pid)
            except OSError as exc:
                log.debug("client %s: no peer credentials: %s", client.peer, exc)
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is not None:
            state.secure = True
            cipher = ssl_object.cipher()
            state.tls_bits = int(cipher[2]) if cipher else 0
            dname = getattr(client, "x509_dname", None)     # set by the server's certificate checks
            if dname:
                state.identity["x509_dname"] = dname
        return state

    def client_gone(self, state: ClientAuth | None) -> None:
        if state is None:
            return
        for session in (state.sasl, state.layer):
            if session is not None:
                session.close()
        state.sasl = state.layer = None

    def after_reply(self, client: ServerClient, state: ClientAuth) -> None:
        """The reply that completed the negotiation has gone out in the clear: from
        the next byte on, a negotiated security layer wraps the connection (libvirt
        switches its socket to SASL at the same point)."""
        session, state.layer = state.layer, None
        if session is not None and client.transport is not None and not client.closed:
            client.transport = SecurityLayer(client.transport, session, client)
            log.debug("client %s: SASL security layer on (SSF %d)", client.peer, client.transport.ssf)

    # -- AUTH_LIST, AUTH_SASL_*, AUTH_POLKIT -------------------------------------------
    def auth_list(self, client: ServerClient, state: ClientAuth) -> list[int]:
        if client.authenticated:
            return [AUTH_NONE]
        return [AUTH_TYPES[state.auth]]

    def sasl_init(self, client: ServerClient, state: ClientAuth) -> str:
        if client.authenticated or state.auth != "sasl" or state.sasl is not None:
            log.error("client %s tried invalid SASL init request", client.peer)
            raise auth_failed_error()
        transport = client.transport
        local = transport.get_extra_info("sockname") if transport is not None else None
        try:
            session = saslmod.ServerSession(saslmod.address(local), saslmod.address(
                transport.get_extra_info("peername") if transport is not None else None))
            if state.tls_bits:
                session.set_external_ssf(state.tls_bits)
            if state.secure:      # TLS or a UNIX socket: the channel is safe already
                session.set_security(0, 0, True)
            else:                 # plain TCP: the mechanism itself must protect the traffic
                session.set_security(self.tcp_min_ssf, 100000, False)
            mechs = session.mechanisms()
        except saslmod.SASLError as exc:
            log.error("client %s: SASL init failed: %s", client.peer, exc)
            raise auth_failed_error() from None
        state.sasl = session
        log.debug("client %s: SASL mechanisms offered: %s", client.peer, mechs)
        return mechs

    def sasl_start(self, client: ServerClient, state: ClientAuth, mech: str, nil: int,
                   data: bytes) -> tuple[int, int, bytes]:
        return self._sasl_step(client, state, mech, None if nil else data)

    def sasl_step(self, client: ServerClient, state: ClientAuth, nil: int, data: bytes) -> tuple[int, int, bytes]:
        return self._sasl_step(client, state, None, None if nil else data)

    def _sasl_step(self, client: ServerClient, state: ClientAuth, mech: str | None,
                   data: bytes | None) -> tuple[int, int, bytes]:
        session = state.sasl
        if client.authenticated or state.auth != "sasl" or session is None:
            log.error("client %s tried invalid SASL %s request", client.peer, "start" if mech else "step")
            raise auth_failed_error()
        try:
            step = session.start(mech, data) if mech is not None else session.step(data)
            if step.data is not None and len(step.data) > SASL_DATA_MAX:
                raise saslmod.SASLError(-1, f"sasl reply data too long {len(step.data)}")
            if step.complete:
                self._finish(client, state, session)
        except (saslmod.SASLError, _Denied) as exc:
            log.warning("client %s: SASL authentication %s: %s", state.describe(client.peer),
                        "denied" if isinstance(exc, _Denied) else "failed", exc)
            self.client_gone(state)
            raise auth_failed_error() from None
        out = step.data
        return (1 if step.complete else 0, 1 if out is None else 0, out or b"")

    def _finish(self, client: ServerClient, state: ClientAuth, session: saslmod.ServerSession) -> None:
        """libvirt's remoteSASLFinish: SSF on plain TCP, then the user name list."""
        ssf = session.ssf()
        if not state.secure and ssf < self.tcp_min_ssf:
            raise _Denied(f"negotiated SSF {ssf} was not strong enough (tcp_min_ssf {self.tcp_min_ssf})")
        user = session.username()
        if not user:
            raise _Denied("no client username was found")
        if not self.user_allowed(user):
            raise _Denied(f"SASL client identity '{user}' not allowed by sasl_allowed_username_list")
        state.identity["sasl_user"] = user
        state.sasl = None
        if not state.secure and ssf > 0:
            state.layer = session      # the traffic is the mechanism's to protect from now on
        else:
            session.close()
        client.mark_authenticated()
        log.info("client %s authenticated with SASL as '%s'", state.describe(client.peer), user)

    def user_allowed(self, user: str) -> bool:
        if self.allowed_users is None:
            return True
        return any(fnmatch.fnmatchcase(user, pattern) for pattern in self.allowed_users)

    def polkit(self, client: ServerClient, state: ClientAuth) -> int:
        log.error("client %s tried unsupported polkit auth", client.peer)
        raise auth_failed_error()


class _Denied(Exception):
    """The negotiation succeeded but the policy refuses the client."""


def log_mutating_call(info: Any, api: str) -> None:
    """One line per call that changes something, naming who made it (``info``: the
    connection's :class:`~pyvirt.driver.ConnectionInfo`)."""
    audit.info("%s: %s", describe_identity(vars(info), info.client_id), api)
