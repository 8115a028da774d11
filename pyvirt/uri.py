"""libvirt connection URIs: ``driver[+transport]://[user@][host][:port]/path[?params]``.

Parsing is strict about what libvirt rejects (``unix`` with a host, a port
that is not a number, an unknown transport) and keeps the query parameters
in order, because the remote driver must pass the server-side ones on in
the name it sends with CONNECT_OPEN while dropping the client-side ones.
"""

from __future__ import annotations

import re

from .errors import ErrorDomain, ErrorNumber, error, libvirtError
from .refs import FrozenRecord

TRANSPORTS = ("unix", "tls", "tcp", "ssh", "libssh2", "libssh", "ext")
DEFAULT_PORTS = {"tcp": 16509, "tls": 16514, "ssh": 22}

# Parameters the client consumes itself; never sent to the server in OPEN.
CLIENT_PARAMS = frozenset({
    "name", "command", "socket", "auth", "authfile", "netcat", "keyfile", "sshauth",
    "no_verify", "no_tty", "no_sanity", "pkipath", "known_hosts", "known_hosts_verify",
    "tls_priority", "mode", "proxy",
})

# RFC 3986's unreserved characters: never percent-encoded
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_HEX_DIGITS = "0123456789abcdefABCDEF"


def quote(text: str, safe: str = "/") -> str:
    """urllib.parse.quote's result (UTF-8, %XX in capitals), without importing
    urllib.parse (and ipaddress), which costs every command-line call."""
    keep = _UNRESERVED | frozenset(safe.encode("ascii"))
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode("utf-8"))


def unquote(text: str) -> str:
    """urllib.parse.unquote's result: each run of %XX decoded as UTF-8 (invalid
    bytes replaced), a % not followed by two hex digits kept as it is."""
    if "%" not in text:
        return text
    first, *rest = text.split("%")
    out, run = [first], bytearray()
    for part in rest:
        if len(part) >= 2 and part[0] in _HEX_DIGITS and part[1] in _HEX_DIGITS:
            run.append(int(part[:2], 16))
            tail = part[2:]
        else:
            tail = "%" + part
        if tail:
            out += (run.decode("utf-8", "replace"), tail)
            run.clear()
    out.append(run.decode("utf-8", "replace"))
    return "".join(out)


_URI_RE = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):"
    r"(?://(?P<authority>[^/?#]*))?"
    r"(?P<path>[^?#]*)"
    r"(?:\?(?P<query>[^#]*))?"
    r"(?:#.*)?$"
)


def _invalid(detail: str) -> libvirtError:
    return error(ErrorNumber.INVALID_ARG, ErrorDomain.URI, detail)


class URI(FrozenRecord):
    __slots__ = ("driver", "transport", "user", "host", "port", "path", "params")
    _fields = __match_args__ = __slots__
    driver: str
    transport: str | None
    user: str | None
    host: str | None
    port: int | None
    path: str
    params: tuple[tuple[str, str], ...]

    def __init__(self, driver: str, transport: str | None = None, user: str | None = None,
                 host: str | None = None, port: int | None = None, path: str = "",
                 params: tuple[tuple[str, str], ...] = ()) -> None:
        self._set(driver=driver, transport=transport, user=user, host=host, port=port, path=path,
                  params=params)

    @property
    def scheme(self) -> str:
        return f"{self.driver}+{self.transport}" if self.transport else self.driver

    def param(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return default

    @property
    def is_remote(self) -> bool:
        """True when the client must reach a daemon (a host or an explicit transport)."""
        return bool(self.host) or self.transport is not None

    @property
    def effective_transport(self) -> str:
        if self.transport:
            return self.transport
        return "tls" if self.host else "unix"

    def effective_port(self) -> int | None:
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.effective_transport)

    def flag(self, name: str) -> bool:
        """A client-side switch such as ``no_verify=1``, read as libvirt does: an
        integer, set when not 0; anything else is refused."""
        value = self.param(name)
        if value is None:
            return False
        try:
            return int(value, 10) != 0
        except ValueError:
            raise _invalid(f"Failed to parse value of URI component {name}") from None

    def open_name(self, keep: frozenset[str] = frozenset()) -> str:
        """The name the remote driver sends with CONNECT_OPEN (libvirt's rules).

        Transport, user, host, port and client-side parameters are dropped
        (except those in ``keep``: the ssh transport hands ``mode`` and
        ``socket`` on to virt-ssh-helper); ``?name=`` overrides the whole
        thing; ``remote://`` sends "".
        """
        override = self.param("name")
        if override is not None:
            return override
        if self.driver == "remote":
            return ""
        kept = tuple((k, v) for k, v in self.params if k not in CLIENT_PARAMS or k in keep)
        return str(URI(self.driver, path=self.path, params=kept))

    def __str__(self) -> str:
        authority = ""
        if self.user:
            authority += quote(self.user, safe="") + "@"
        if self.host:
            authority += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            authority += f":{self.port}"
        text = f"{self.scheme}://{authority}{self.path}"
        if self.params:
            text += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='/:,')}" for k, v in self.params)
        return text

    def with_params(self, **params: str) -> "URI":
        kept = tuple((k, v) for k, v in self.params if k not in params)
        return URI(self.driver, self.transport, self.user, self.host, self.port, self.path,
                   kept + tuple(params.items()))


def parse(text: str) -> URI:
    """Parse a libvirt URI, raising VIR_ERR_INVALID_ARG naming what is wrong."""
    if not isinstance(text, str) or not text:
        raise _invalid("empty connection URI")
    match = _URI_RE.match(text)
    if not match:
        raise _invalid(f"could not parse connection URI '{text}': expected driver[+transport]://[user@][host][:port]/path")
    scheme = match["scheme"]
    if match["authority"] is None:
        raise _invalid(f"connection URI '{text}' has no '//' after the scheme")
    driver, _, transport = scheme.partition("+")
    if not driver:
        raise _invalid(f"connection URI '{text}' has no driver name")
    if transport and transport not in TRANSPORTS:
        raise _invalid(f"transport '{transport}' in URI '{text}' is not one of {', '.join(TRANSPORTS)}")

    user = host = None
    port = None
    authority = match["authority"]
    if "@" in authority:
        user_part, authority = authority.rsplit("@", 1)
        user = unquote(user_part) or None
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise _invalid(f"unterminated IPv6 address in URI '{text}'")
        host = authority[1:close]
        rest = authority[close + 1:]
        if rest and not rest.startswith(":"):
            raise _invalid(f"unexpected '{rest}' after the IPv6 address in URI '{text}'")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = authority.partition(":")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise _invalid(f"port '{port_text}' in URI '{text}' is not a number between 1 and 65535")
        port = int(port_text)
    host = host or None
    if transport == "unix" and host:
        raise _invalid(f"transport 'unix' cannot be used with a host name in URI '{text}'")

    params: list[tuple[str, str]] = []
    if match["query"]:
        for item in match["query"].split("&"):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not key:
                raise _invalid(f"empty parameter name in URI '{text}'")
            params.append((unquote(key), unquote(value) if sep else ""))
    return URI(driver.lower(), transport or None,
               user, host, port, match["path"], tuple(params))


def embed_root(uri: URI) -> str:
    """The ``root`` of ``qemu:///embed?root=DIR``, which must be absolute."""
    root = uri.param("root")
    if not root:
        raise _invalid(f"URI '{uri}' needs a 'root' parameter for the embedded driver")
    if not root.startswith("/"):
        raise _invalid(f"root '{root}' of URI '{uri}' must be an absolute path")
    return root
