"""cyrus-sasl (``libsasl2.so.2``) through ctypes: the library libvirt uses.

Going through cyrus-sasl itself, with the application name ``libvirt``,
means its configuration (``/etc/sasl2/libvirt.conf``, or the directory in
``SASL_CONF_PATH``), its mechanism plugins and its user database
(``saslpasswd2 -a libvirt USER``) work for pyvirtd exactly as for libvirtd.

:class:`ServerSession` and :class:`ClientSession` wrap one ``sasl_conn_t``
each, with the calls libvirt's virnetsaslcontext.c makes: start/step,
listmech, the SSF and user name properties, the security properties and
the external (TLS) SSF.  Nothing here does I/O: the daemon's auth module
and the remote driver carry the tokens in RPC calls.

``sasl_server_init`` may only run once per process, and only after it may
server sessions be made; :func:`server_init` and :func:`client_init` take
care of that.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass
from typing import Callable

# result codes (sasl.h)
OK, CONTINUE, INTERACT = 0, 1, 2
NOMECH, BADAUTH, NOUSER, TOOWEAK = -4, -13, -20, -15
# sasl_getprop / sasl_setprop
USERNAME, SSF, MAXOUTBUF = 0, 1, 2
SSF_EXTERNAL, SEC_PROPS = 100, 101
SUCCESS_DATA = 0x0004
SEC_NOPLAINTEXT, SEC_NOANONYMOUS = 0x0001, 0x0010
# callback ids
CB_LIST_END, CB_USER, CB_AUTHNAME, CB_PASS = 0, 0x4001, 0x4002, 0x4004
MAXBUFSIZE = 1 << 16     # libvirt's: the most data encoded in one block


class SASLError(Exception):
    """A cyrus-sasl call failed: ``code`` is its result, the text its details."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


class _SecProps(ctypes.Structure):
    _fields_ = [("min_ssf", ctypes.c_uint), ("max_ssf", ctypes.c_uint), ("maxbufsize", ctypes.c_uint),
                ("security_flags", ctypes.c_uint), ("property_names", ctypes.c_void_p),
                ("property_values", ctypes.c_void_p)]


_PROC = ctypes.CFUNCTYPE(ctypes.c_int)


class _Callback(ctypes.Structure):
    _fields_ = [("id", ctypes.c_ulong), ("proc", ctypes.c_void_p), ("context", ctypes.c_void_p)]


# int (*)(void *context, int id, const char **result, unsigned *len)
_GETSIMPLE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                              ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_uint))
# int (*)(sasl_conn_t *conn, void *context, int id, sasl_secret_t **psecret)
_GETSECRET = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                              ctypes.POINTER(ctypes.c_void_p))

_lib: ctypes.CDLL | None = None
_init_lock = threading.Lock()
_server_ready = False
_client_ready = False


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("sasl2") or "libsasl2.so.2"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise SASLError(-1, f"cannot load cyrus-sasl ({name}): {exc}") from None
        vp, cp, u, up = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint)
        pcp = ctypes.POINTER(ctypes.c_char_p)
        lib.sasl_server_init.argtypes = [vp, cp]
        lib.sasl_client_init.argtypes = [vp]
        lib.sasl_server_new.argtypes = [cp, cp, cp, cp, cp, vp, u, ctypes.POINTER(vp)]
        lib.sasl_client_new.argtypes = [cp, cp, cp, cp, vp, u, ctypes.POINTER(vp)]
        lib.sasl_listmech.argtypes = [vp, cp, cp, cp, cp, pcp, up, ctypes.POINTER(ctypes.c_int)]
        # token arguments are (pointer, length): c_void_p keeps NUL bytes and tells NULL from ""
        lib.sasl_server_start.argtypes = [vp, cp, vp, u, ctypes.POINTER(vp), up]
        lib.sasl_server_step.argtypes = [vp, vp, u, ctypes.POINTER(vp), up]
        lib.sasl_client_start.argtypes = [vp, cp, ctypes.POINTER(vp), ctypes.POINTER(vp), up, pcp]
        lib.sasl_client_step.argtypes = [vp, vp, u, ctypes.POINTER(vp), ctypes.POINTER(vp), up]
        lib.sasl_encode.argtypes = [vp, vp, u, ctypes.POINTER(vp), up]
        lib.sasl_decode.argtypes = [vp, vp, u, ctypes.POINTER(vp), up]
        lib.sasl_getprop.argtypes = [vp, ctypes.c_int, ctypes.POINTER(vp)]
        lib.sasl_setprop.argtypes = [vp, ctypes.c_int, vp]
        lib.sasl_errdetail.argtypes = [vp]
        lib.sasl_errdetail.restype = cp
        lib.sasl_errstring.argtypes = [ctypes.c_int, cp, vp]
        lib.sasl_errstring.restype = cp
        lib.sasl_dispose.argtypes = [ctypes.POINTER(vp)]
        _lib = lib
    return _lib


def errstring(code: int) -> str:
    text = _load().sasl_errstring(code, None, None)
    return text.decode(errors="replace") if text else f"SASL error {code}"


def server_init() -> None:
    """``sasl_server_init(NULL, "libvirt")``, once: reads libvirt.conf from
    SASL_CONF_PATH or /etc/sasl2, as libvirtd does."""
    global _server_ready
    with _init_lock:
        if not _server_ready:
            rc = _load().sasl_server_init(None, b"libvirt")
            if rc != OK:
                raise SASLError(rc, f"failed to initialize SASL library: {rc} ({errstring(rc)})")
            _server_ready = True


def client_init() -> None:
    global _client_ready
    with _init_lock:
        if not _client_ready:
            rc = _load().sasl_client_init(None)
            if rc != OK:
                raise SASLError(rc, f"failed to initialize SASL library: {rc} ({errstring(rc)})")
            _client_ready = True


@dataclass
class Step:
    """One negotiation step's outcome: ``complete`` when SASL said OK, and the
    token for the peer (None: no data, which SASL tells apart from b"")."""

    complete: bool
    data: bytes | None


def _token(ptr: ctypes.c_void_p, length: int) -> bytes | None:
    return None if not ptr.value else ctypes.string_at(ptr.value, length)


def _in(data: bytes | None) -> tuple[bytes | None, int]:
    return (None, 0) if data is None else (data, len(data))


class _Session:
    def __init__(self) -> None:
        self.conn = ctypes.c_void_p()
        self.lib = _load()

    def _check(self, rc: int, what: str) -> int:
        if rc not in (OK, CONTINUE):
            raise SASLError(rc, f"{what}: {rc} ({self.detail()})")
        return rc

    def detail(self) -> str:
        if not self.conn.value:
            return ""
        text = self.lib.sasl_errdetail(self.conn)
        return text.decode(errors="replace") if text else ""

    def set_external_ssf(self, bits: int) -> None:
        """Tell SASL that the transport (TLS) already gives ``bits`` of security."""
        value = ctypes.c_uint(bits)
        self._check(self.lib.sasl_setprop(self.conn, SSF_EXTERNAL, ctypes.byref(value)),
                    f"cannot set external SSF {bits}")

    def set_security(self, min_ssf: int, max_ssf: int, allow_anonymous: bool) -> None:
        """libvirt's virNetSASLSessionSecProps."""
        props = _SecProps(min_ssf, max_ssf, MAXBUFSIZE,
                          0 if allow_anonymous else SEC_NOANONYMOUS | SEC_NOPLAINTEXT, None, None)
        self._check(self.lib.sasl_setprop(self.conn, SEC_PROPS, ctypes.byref(props)),
                    "cannot set security props")

    def ssf(self) -> int:
        val = ctypes.c_void_p()
        self._check(self.lib.sasl_getprop(self.conn, SSF, ctypes.byref(val)), "cannot query SASL ssf")
        return ctypes.cast(val, ctypes.POINTER(ctypes.c_int)).contents.value if val.value else 0

    def max_outbuf(self) -> int:
        val = ctypes.c_void_p()
        self._check(self.lib.sasl_getprop(self.conn, MAXOUTBUF, ctypes.byref(val)), "cannot get security props")
        return ctypes.cast(val, ctypes.POINTER(ctypes.c_uint)).contents.value if val.value else MAXBUFSIZE

    def username(self) -> str | None:
        val = ctypes.c_void_p()
        rc = self.lib.sasl_getprop(self.conn, USERNAME, ctypes.byref(val))
        if rc != OK or not val.value:
            return None
        return ctypes.string_at(val.value).decode(errors="replace")

    def encode(self, data: bytes) -> bytes:
        out, outlen = ctypes.c_void_p(), ctypes.c_uint()
        self._check(self.lib.sasl_encode(self.conn, data, len(data), ctypes.byref(out), ctypes.byref(outlen)),
                    "failed to encode SASL data")
        return ctypes.string_at(out.value, outlen.value) if out.value else b""

    def decode(self, data: bytes) -> bytes:
        out, outlen = ctypes.c_void_p(), ctypes.c_uint()
        self._check(self.lib.sasl_decode(self.conn, data, len(data), ctypes.byref(out), ctypes.byref(outlen)),
                    "failed to decode SASL data")
        return ctypes.string_at(out.value, outlen.value) if out.value else b""

    def close(self) -> None:
        if self.conn.value:
            self.lib.sasl_dispose(ctypes.byref(self.conn))
            self.conn = ctypes.c_void_p()

    def __del__(self) -> None:   # a session dropped without close() must not leak its context
        try:
            self.close()
        except Exception:
            pass


class ServerSession(_Session):
    """``sasl_server_new("libvirt", ...)``: one client's authentication."""

    def __init__(self, local_addr: str | None, remote_addr: str | None) -> None:
        super().__init__()
        server_init()
        self.started = False
        rc = self.lib.sasl_server_new(b"libvirt", None, None, _addr(local_addr), _addr(remote_addr), None,
                                      SUCCESS_DATA, ctypes.byref(self.conn))
        if rc != OK:
            raise SASLError(rc, f"Failed to create SASL server context: {rc} ({errstring(rc)})")

    def mechanisms(self) -> str:
        result, length, count = ctypes.c_char_p(), ctypes.c_uint(), ctypes.c_int()
        self._check(self.lib.sasl_listmech(self.conn, None, b"", b",", b"", ctypes.byref(result),
                                           ctypes.byref(length), ctypes.byref(count)),
                    "cannot list SASL mechanisms")
        return (result.value or b"").decode()

    def start(self, mech: str, data: bytes | None) -> Step:
        if self.started:
            raise SASLError(-1, "SASL negotiation already started")
        self.started = True
        out, outlen = ctypes.c_void_p(), ctypes.c_uint()
        buf, n = _in(data)
        rc = self._check(self.lib.sasl_server_start(self.conn, mech.encode(), buf, n, ctypes.byref(out),
                                                    ctypes.byref(outlen)), "Failed to start SASL negotiation")
        return Step(rc == OK, _token(out, outlen.value))

    def step(self, data: bytes | None) -> Step:
        # cyrus-sasl dereferences the mechanism's state: a step before start would crash it
        if not self.started:
            raise SASLError(-1, "SASL step before the negotiation started")
        out, outlen = ctypes.c_void_p(), ctypes.c_uint()
        buf, n = _in(data)
        rc = self._check(self.lib.sasl_server_step(self.conn, buf, n, ctypes.byref(out), ctypes.byref(outlen)),
                         "Failed to step SASL negotiation")
        return Step(rc == OK, _token(out, outlen.value))


Credentials = Callable[[int], "str | None"]
"""Asked for one credential (CB_AUTHNAME, CB_USER or CB_PASS): its value, or None."""


class ClientSession(_Session):
    """``sasl_client_new("libvirt", host, ...)`` with AUTHNAME/USER/PASS callbacks.

    The callbacks answer from ``answers`` (callback id → text), which the
    caller fills before starting, from auth.conf or the application's
    credential callback; a credential nobody gave is refused (SASL then
    fails the mechanism) rather than prompted for here.
    """

    def __init__(self, host: str, local_addr: str | None, remote_addr: str | None,
                 answers: dict[int, str]) -> None:
        super().__init__()
        client_init()
        self.answers = answers
        self._keep: list[object] = []        # C-visible buffers and thunks live as long as the session
        simple = _GETSIMPLE(self._simple)
        secret = _GETSECRET(self._secret)
        self._keep += [simple, secret]
        cbs = (_Callback * 4)(
            _Callback(CB_AUTHNAME, ctypes.cast(simple, ctypes.c_void_p), None),
            _Callback(CB_USER, ctypes.cast(simple, ctypes.c_void_p), None),
            _Callback(CB_PASS, ctypes.cast(secret, ctypes.c_void_p), None),
            _Callback(CB_LIST_END, None, None))
        self._keep.append(cbs)
        rc = self.lib.sasl_client_new(b"libvirt", host.encode(), _addr(local_addr), _addr(remote_addr),
                                      ctypes.cast(cbs, ctypes.c_void_p), SUCCESS_DATA, ctypes.byref(self.conn))
        if rc != OK:
            raise SASLError(rc, f"Failed to create SASL client context: {rc} ({errstring(rc)})")

    def _simple(self, _ctx: int, cb_id: int, result, length) -> int:
        # no authorization id: the authentication name acts for itself
        value = self.answers.get(cb_id, "" if cb_id == CB_USER else None)
        if value is None:
            return -1          # SASL_FAIL: the mechanism cannot go on without it
        buf = ctypes.create_string_buffer(value.encode())
        self._keep.append(buf)
        result[0] = ctypes.cast(buf, ctypes.c_char_p)
        if length:
            length[0] = len(value.encode())
        return OK

    def _secret(self, _conn: int, _ctx: int, cb_id: int, psecret) -> int:
        value = self.answers.get(cb_id)
        if value is None:
            return -1
        raw = value.encode()
        # sasl_secret_t: unsigned long len; unsigned char data[]
        size = ctypes.sizeof(ctypes.c_ulong)
        buf = ctypes.create_string_buffer(size + len(raw) + 1)
        ctypes.c_ulong.from_buffer(buf).value = len(raw)
        ctypes.memmove(ctypes.addressof(buf) + size, raw, len(raw))
        self._keep.append(buf)
        psecret[0] = ctypes.addressof(buf)
        return OK

    def start(self, mechlist: str) -> tuple[str, Step]:
        """Pick the first of the server's mechanisms SASL can do: (mechanism, first step)."""
        out, outlen = ctypes.c_void_p(), ctypes.c_uint()
        prompt, mech = ctypes.c_void_p(), ctypes.c_char_p()
        rc = self.lib.sasl_client_start(self.conn, mechlist.encode(), ctypes.byref(prompt), ctypes.byref(out),
                                        ctypes.byref(outlen), ctypes.byref(mech))
        if rc == INTERACT:
            raise SASLError(rc, "the SASL mechanism asked for a credential pyvirt cannot give")
        self._check(rc, "Failed to start SASL negotiation")
        return (mech.value or b"").decode(), Step(rc == OK, _token(out, outlen.value))

    def step(self, data: bytes | None) -> Step:
        out, outlen = ctypes.c_void_p(), ctypes.c_uint()
        prompt = ctypes.c_void_p()
        buf, n = _in(data)
        rc = self.lib.sasl_client_step(self.conn, buf, n, ctypes.byref(prompt), ctypes.byref(out),
                                       ctypes.byref(outlen))
        if rc == INTERACT:
            raise SASLError(rc, "the SASL mechanism asked for a credential pyvirt cannot give")
        self._check(rc, "Failed to step SASL negotiation")
        return Step(rc == OK, _token(out, outlen.value))


def _addr(text: str | None) -> bytes | None:
    return text.encode() if text else None


def address(peer: object) -> str | None:
    """A socket address as SASL wants it: "IP;port" (UNIX sockets: libvirt's "127.0.0.1;0")."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]};{peer[1]}"
    return "127.0.0.1;0"
