"""The SASL security layer on a connection, as libvirt's virNetSocket puts it on.

When a mechanism with a security layer (DIGEST-MD5, GSSAPI: SSF > 0) is
negotiated on a channel that is not already protected (plain TCP), every
byte after the negotiation's last reply goes through ``sasl_encode`` /
``sasl_decode``: what travels is the concatenation of the encoded blocks
(each carries its own length), the RPC framing is inside.

:class:`SecurityLayer` is an asyncio transport over the real one: the RPC
server's client or the RPC client keep using it as *their* transport and
never see the encoded bytes.  The real transport's protocol becomes a shim
that decodes and hands the plain bytes on.  The layer has no socket to
offer (``get_extra_info("socket")`` is None), so nothing splices payloads
onto the wire past it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .sasl import SASLError, _Session

log = logging.getLogger(__name__)


class SecurityLayer(asyncio.Transport):
    """``transport`` with SASL's encoding, for ``protocol`` (which keeps receiving plain bytes)."""

    def __init__(self, transport: asyncio.Transport, session: _Session, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._transport = transport
        self._session = session
        self._protocol = protocol
        self._max = max(1024, session.max_outbuf())
        self.ssf = session.ssf()
        transport.set_protocol(_Decoder(self))

    # -- writing -------------------------------------------------------------------
    def write(self, data: Any) -> None:
        data = bytes(data)
        encode, step = self._session.encode, self._max
        try:
            for start in range(0, len(data), step):
                self._transport.write(encode(data[start:start + step]))
        except SASLError as exc:
            log.error("SASL security layer: cannot encode: %s", exc)
            self.abort()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(bytes(part) for part in list_of_data))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return False

    # -- reading, closing, the rest ------------------------------------------------------
    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return default      # its bytes are not the RPC stream
        if name == "sasl_ssf":
            return self.ssf
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol     # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol


class _Decoder(asyncio.Protocol):
    """The real transport's protocol under a SecurityLayer: decode, then pass on."""

    def __init__(self, layer: SecurityLayer) -> None:
        self.layer = layer

    def data_received(self, data: bytes) -> None:
        layer = self.layer
        try:
            plain = layer._session.decode(data)      # keeps a partial block until it is whole
        except SASLError as exc:
            log.warning("SASL security layer: dropping the connection: %s", exc)
            layer.abort()
            return
        if plain:
            layer._protocol.data_received(plain)     # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        handler = getattr(self.layer._protocol, "eof_received", None)
        return handler() if handler is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        layer = self.layer
        try:
            layer._protocol.connection_lost(exc)
        finally:
            layer._session.close()

    def pause_writing(self) -> None:
        self.layer._protocol.pause_writing()

    def resume_writing(self) -> None:
        self.layer._protocol.resume_writing()
