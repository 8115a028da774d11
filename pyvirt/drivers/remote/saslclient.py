"""The client's half of SASL, as libvirt's remote driver (remoteAuthSASL) runs it.

AUTH_SASL_INIT gives the server's mechanisms; cyrus-sasl picks the first it
can do; START and STEP carry the tokens until both sides are complete (the
client always checks the server's last token: mutual authentication).
Credentials come from auth.conf and the application's openAuth callback
(:mod:`pyvirt.authconf`), gathered before the negotiation starts, off the
event loop since a callback may prompt.  On a channel that is not secure
(plain TCP) the mechanism must give an SSF of at least 56, as libvirt asks,
and its security layer then wraps the connection (:mod:`pyvirt.rpc.sasl_transport`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ... import authconf
from ...driver import ConnectionInfo
from ...errors import ErrorDomain, ErrorNumber, error
from ...rpc import sasl
from ...rpc.client import RPCClient
from ...rpc.protocol import REMOTE
from ...rpc.sasl_transport import SecurityLayer
from ...rpc.wire import Program
from ...uri import URI

AUTH_SASL = 1       # remote_auth_type
MIN_SSF = 56        # libvirt's client: "good enough for Kerberos"
_CALLBACKS = {sasl.CB_AUTHNAME: authconf.CRED_AUTHNAME, sasl.CB_PASS: authconf.CRED_PASSPHRASE}


def pick_auth_type(types: list[int], wanted: str | None) -> int:
    """The server's auth type to use: its first, or the URI's ``?auth=sasl[.MECH]|polkit``
    when that is among those it offers (libvirt's remoteAuthenticate)."""
    if not wanted:
        return types[0] if types else 0
    low = wanted.lower()
    if low == "sasl" or low.startswith("sasl."):
        want = AUTH_SASL
    elif low == "polkit":
        want = 2
    else:
        raise _failed(f"unknown authentication type {wanted}")
    if want not in types:
        raise _failed(f"requested authentication type {wanted} rejected")
    return want


def _failed(detail: str) -> Exception:
    return error(ErrorNumber.AUTH_FAILED, ErrorDomain.REMOTE, detail)


async def authenticate(client: RPCClient, uri: URI, info: ConnectionInfo, secure: bool, tls_bits: int) -> str:
    """Run the negotiation; returns the mechanism used.  Raises AUTH_FAILED."""
    mechlist = await client.call(Program.REMOTE, REMOTE.by_name["AUTH_SASL_INIT"])
    wanted = uri.param("auth") or ""
    if wanted.lower().startswith("sasl."):      # ?auth=sasl.MECH: that mechanism or none
        mech = wanted[5:]
        if mech.upper() not in mechlist.upper().replace(" ", ",").split(","):
            raise _failed(f"SASL mechanism {mech} not supported by server")
        mechlist = mech
    host = uri.host or "localhost"
    loop = asyncio.get_running_loop()
    found = await loop.run_in_executor(None, lambda: authconf.collect(
        list(_CALLBACKS.values()), host, authfile_param=uri.param("authfile"), auth=info.credentials))
    answers = {cb: found[kind] for cb, kind in _CALLBACKS.items() if kind in found}
    transport = client.transport
    local = transport.get_extra_info("sockname") if transport is not None else None
    remote = transport.get_extra_info("peername") if transport is not None else None
    try:
        session = sasl.ClientSession(host, sasl.address(local), sasl.address(remote), answers)
    except sasl.SASLError as exc:
        raise _failed(str(exc)) from None
    try:
        mech = await _negotiate(client, session, mechlist, secure, tls_bits, answers)
    except BaseException:
        session.close()
        raise
    if secure:
        session.close()
    else:
        # plain TCP: the mechanism's security layer wraps every byte from now on (the
        # server switched right after its last reply); the layer owns the session
        client.transport = SecurityLayer(client.transport, session, client)   # now client.encrypted
    return mech


async def _negotiate(client: RPCClient, session: sasl.ClientSession, mechlist: str, secure: bool,
                     tls_bits: int, answers: dict[int, str]) -> str:
    try:
        if tls_bits:
            session.set_external_ssf(tls_bits)
        # a secure channel needs no security layer; plain TCP needs one
        session.set_security(0 if secure else MIN_SSF, 0 if secure else 100000, secure)
        mech, step = session.start(mechlist)
    except sasl.SASLError as exc:
        raise _failed(_why(exc, mechlist, secure, answers)) from None
    client_done = step.complete
    complete, nil, data = await client.call(Program.REMOTE, REMOTE.by_name["AUTH_SASL_START"],
                                            (mech, *_token(step.data)))
    while not (complete and client_done):
        try:
            step = session.step(None if nil else data)
        except sasl.SASLError as exc:
            raise _failed(str(exc)) from None
        client_done = step.complete
        if complete:
            if not client_done:
                raise _failed("the server finished the SASL negotiation before the client did")
            break
        complete, nil, data = await client.call(Program.REMOTE, REMOTE.by_name["AUTH_SASL_STEP"],
                                                _token(step.data))
    if not secure:
        ssf = session.ssf()
        if ssf < MIN_SSF:
            raise _failed(f"negotiation SSF {ssf} was not strong enough")
    return mech


def _token(data: bytes | None) -> tuple[int, bytes]:
    return (1, b"") if data is None else (0, data)


def _why(exc: sasl.SASLError, mechlist: str, secure: bool, answers: dict[int, Any]) -> str:
    if exc.code == sasl.NOMECH and not secure:
        return (f"no SASL mechanism offered by the server ({mechlist or 'none'}) protects plain TCP "
                f"(SSF >= {MIN_SSF}): use qemu+tls:// (auth_tls = \"sasl\") or a UNIX socket")
    if sasl.CB_AUTHNAME not in answers or sasl.CB_PASS not in answers:
        return f"{exc}: no credentials for SASL (give them in auth.conf or through openAuth's callback)"
    return str(exc)
