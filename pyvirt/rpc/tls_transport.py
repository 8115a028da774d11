"""The TLS transport (``qemu+tls://``): RPC inside TLS, as libvirt's client speaks it.

TLS starts at the first byte (no STARTTLS).  The client checks the server's
certificate (our CA, the URI's host against its names) during the
handshake, then waits for the server's verdict on *its* certificate: one
encrypted byte 1, after which RPC framing begins.  A close instead is
libvirt's "server verification (of our certificate or IP address) failed".

Every error names the transport (and, through :mod:`.tlsconfig`, the file),
so that ``qemu://host/system`` quietly meaning TLS is visible in the text.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Callable

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..uri import URI
from . import tlsconfig
from .client import RPCClient

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 60.0      # s for the handshake and for the server's verdict after it
VERIFY_FAILED = "server verification (of our certificate or IP address) failed"


def label(uri: URI) -> str:
    """How errors name the transport: "qemu+tls", and why when the URI did not say."""
    text = f"{uri.driver}+tls"
    if uri.transport is None:
        text += ": the default transport of a URI with a host name"
    return text


def _truthy(value: str | None) -> bool:
    try:
        return value is not None and int(value) != 0
    except ValueError:
        return False


def context_for(uri: URI) -> ssl.SSLContext:
    """The client's context from the URI's ``pkipath``, ``no_verify``, ``no_sanity``
    and ``tls_priority``, or libvirt's default files."""
    try:
        return tlsconfig.client_context(pkipath=uri.param("pkipath"), verify=not _truthy(uri.param("no_verify")),
                                        sanity=not _truthy(uri.param("no_sanity")),
                                        priority=uri.param("tls_priority"))
    except tlsconfig.TLSSetupError as exc:
        raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC, f"{exc} ({label(uri)})") from None


class _Confirmation(asyncio.Protocol):
    """The app protocol between the handshake and the server's verdict byte."""

    def __init__(self, client: RPCClient) -> None:
        self.client = client
        self.verdict: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport    # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.verdict.done():
            return
        if data[:1] != tlsconfig.CONFIRM:
            self.verdict.set_exception(error(ErrorNumber.RPC, ErrorDomain.RPC, VERIFY_FAILED))
            self.transport.abort()
            return
        # From now on the bytes are RPC: hand the transport to the client.
        self.transport.set_protocol(self.client)
        self.client.connection_made(self.transport)
        self.verdict.set_result(None)
        if len(data) > 1:
            self.client.data_received(data[1:])

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.verdict.done():
            return
        detail = VERIFY_FAILED
        if isinstance(exc, ssl.SSLError):        # TLS 1.3: the server's alert comes after our handshake
            detail += f": {exc.reason or exc}"
        self.verdict.set_exception(error(ErrorNumber.RPC, ErrorDomain.RPC, detail))


async def connect(uri: URI, *, timeout: float = HANDSHAKE_TIMEOUT,
                  client_factory: Callable[..., RPCClient] = RPCClient, **kw: Any) -> RPCClient:
    """Open a TLS connection to the daemon of ``uri`` and wait for its verdict."""
    where = label(uri)
    context = context_for(uri)
    host = uri.host or "localhost"
    port = uri.effective_port() or 16514
    loop = asyncio.get_running_loop()
    client = client_factory(**kw)
    confirmation = _Confirmation(client)

    def fail(code: int, detail: str) -> libvirtError:
        return error(code, ErrorDomain.RPC, f"{detail} ({where})")

    try:
        transport, _ = await loop.create_connection(
            lambda: confirmation, host, port, ssl=context, server_hostname=host,
            ssl_handshake_timeout=timeout)
    except ssl.SSLCertVerificationError as exc:
        raise fail(ErrorNumber.AUTH_FAILED, "Failed to verify peer's certificate: "
                   + tlsconfig.describe_verify_failure(exc, host)) from None
    except ssl.SSLError as exc:
        raise fail(ErrorNumber.AUTH_FAILED, f"TLS handshake failed {exc.reason or exc}") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise fail(ErrorNumber.AUTH_FAILED, f"TLS handshake failed: no answer within {timeout:g} s") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise fail(ErrorNumber.SYSTEM_ERROR, f"unable to connect to server at '{host}:{port}': {reason}") from None
    try:
        await asyncio.wait_for(asyncio.shield(confirmation.verdict), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        transport.abort()
        raise fail(ErrorNumber.RPC, f"Unable to read TLS confirmation: no answer within {timeout:g} s") from None
    except libvirtError as exc:
        transport.abort()
        detail = exc.get_str2() or exc.get_error_message()
        missing = tlsconfig.missing_client_certificate(uri.param("pkipath"))
        if missing:
            detail += f": we offered no client certificate ('{missing}' does not exist)"
        raise fail(ErrorNumber.RPC, detail) from None
    return client


__all__ = ["connect", "context_for", "label", "VERIFY_FAILED"]
