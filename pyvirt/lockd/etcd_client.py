"""A small asyncio client for etcd's v3 JSON gateway (``/v3/kv/txn``, ``/v3/lease/*``).

Why our own: the lock daemon is asyncio and must bound every request by its
own clock (a keep-alive that hangs is a lease about to be lost), and it needs
four endpoints.  etcd3gw is synchronous (requests and threads), aetcd pulls in
grpcio and protobuf; the gateway is etcd's documented HTTP/JSON face of the
same gRPC API (etcd 3.4: ``/v3/...``), so plain HTTP/1.1 on asyncio streams
is enough.  Keys and values travel base64-encoded, 64-bit numbers as decimal
strings, exactly as the gateway's JSON mapping of the protobuf messages.

Connections are kept open and reused (one request at a time each); a request
that fails on one endpoint is retried once on the next, so a cluster of
several members is used as etcd's own clients do.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# etcd's gRPC status code for "requested lease not found" and friends
GRPC_NOT_FOUND = 5


class EtcdError(Exception):
    """etcd answered with an error (``code`` is the gRPC status code)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint answered in time (refused, reset, timed out, TLS failure)."""


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(key: bytes) -> bytes:
    """The range end that covers every key starting with ``key`` (etcd's GetPrefixRangeEnd)."""
    k = bytearray(key)
    for i in range(len(k) - 1, -1, -1):
        if k[i] < 0xFF:
            k[i] += 1
            return bytes(k[: i + 1])
    return b"\0"


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    @classmethod
    def from_json(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(key=unb64(kv.get("key")), value=unb64(kv.get("value")),
                   create_revision=int(kv.get("create_revision", 0)),
                   mod_revision=int(kv.get("mod_revision", 0)), lease=int(kv.get("lease", 0)))


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int                      # the store's revision after the transaction
    ranges: list[list[KeyValue]]       # one list per range operation that ran, in order


def make_ssl_context(ca_file: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file or None)
    return ctx


class _Connection:
    """One HTTP/1.1 keep-alive connection to one endpoint."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, host: str, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError(f"bad HTTP status line {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("connection closed in the response headers")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers (grpc-gateway sends Grpc-Trailer-*) up to the empty line
                    while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
            payload = bytes(data)
        else:
            payload = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class EtcdClient:
    """Calls of etcd's v3 API through the JSON gateway of one of ``endpoints``."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 2.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint")
        self.endpoints = [self._parse(e) for e in endpoints]
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._idle: dict[int, list[_Connection]] = {i: [] for i in range(len(self.endpoints))}
        self._preferred = 0

    @staticmethod
    def _parse(endpoint: str) -> tuple[str, str, int]:
        if "://" not in endpoint:
            endpoint = "http://" + endpoint
        u = urlsplit(endpoint)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"bad etcd endpoint '{endpoint}' (expected http[s]://HOST:PORT)")
        return u.scheme, u.hostname, u.port or 2379

    async def _connect(self, index: int) -> _Connection:
        scheme, host, port = self.endpoints[index]
        ctx = None
        if scheme == "https":
            ctx = self.ssl_context or make_ssl_context(None, None, None)
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx,
                                                       server_hostname=host if ctx else None)
        return _Connection(reader, writer)

    async def _post_once(self, index: int, path: str, body: bytes, timeout: float) -> dict[str, Any]:
        scheme, host, port = self.endpoints[index]
        idle = self._idle[index]
        conn = None
        while idle and conn is None:
            conn = idle.pop()
            if conn.closed:
                conn = None
        try:
            async with asyncio.timeout(timeout):
                if conn is None:
                    conn = await self._connect(index)
                status, payload = await conn.post(f"{host}:{port}", path, body)
        except BaseException:
            if conn is not None:
                conn.close()      # a half-read response must never be reused
            raise
        if not conn.closed:
            idle.append(conn)
        try:
            answer = json.loads(payload) if payload else {}
        except ValueError:
            raise EtcdError(f"etcd answered {path} with HTTP {status} and no JSON") from None
        if "error" in answer and isinstance(answer.get("code"), int):
            raise EtcdError(f"etcd: {answer.get('message') or answer['error']}", answer["code"])
        if status != 200:
            raise EtcdError(f"etcd answered {path} with HTTP {status}")
        # streaming endpoints (lease keep-alive) wrap their one answer in "result"
        if "result" in answer and isinstance(answer["result"], dict):
            answer = answer["result"]
        return answer

    async def post(self, path: str, request: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """POST ``request`` to ``/v3/<path>``; the first endpoint failure moves on to the next
        endpoint, all within ``timeout`` seconds in total."""
        timeout = self.timeout if timeout is None else timeout
        body = json.dumps(request, separators=(",", ":")).encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        causes = []
        for attempt in range(len(self.endpoints)):
            index = (self._preferred + attempt) % len(self.endpoints)
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                answer = await self._post_once(index, "/v3/" + path, body, left)
            except (OSError, EOFError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError,
                    TimeoutError, ValueError) as exc:
                scheme, host, port = self.endpoints[index]
                causes.append(f"{scheme}://{host}:{port}: {type(exc).__name__}: {exc}".rstrip(": "))
                continue
            self._preferred = index
            return answer
        raise EtcdUnavailable("etcd unreachable (" + "; ".join(causes or ["timed out"]) + ")")

    # --- the calls the lease engine makes -------------------------------------------------------

    async def grant(self, ttl: int, *, timeout: float | None = None) -> tuple[int, int]:
        """A new lease: (id, granted TTL in seconds)."""
        a = await self.post("lease/grant", {"TTL": ttl}, timeout=timeout)
        return int(a["ID"]), int(a.get("TTL", ttl))

    async def keepalive(self, lease: int, *, timeout: float | None = None) -> int:
        """Renew ``lease``; its remaining TTL, 0 when etcd no longer knows it (expired)."""
        a = await self.post("lease/keepalive", {"ID": str(lease)}, timeout=timeout)
        return int(a.get("TTL", 0))

    async def revoke(self, lease: int, *, timeout: float | None = None) -> None:
        try:
            await self.post("lease/revoke", {"ID": str(lease)}, timeout=timeout)
        except EtcdError as exc:
            if exc.code != GRPC_NOT_FOUND:
                raise

    async def txn(self, compare: list[dict], success: list[dict], failure: list[dict] | None = None,
                  *, timeout: float | None = None) -> TxnResult:
        req: dict[str, Any] = {"compare": compare, "success": success}
        if failure:
            req["failure"] = failure
        a = await self.post("kv/txn", req, timeout=timeout)
        ranges = []
        for r in a.get("responses", []):
            rr = r.get("response_range")
            if rr is not None:
                ranges.append([KeyValue.from_json(kv) for kv in rr.get("kvs", [])])
        return TxnResult(bool(a.get("succeeded", False)), int(a.get("header", {}).get("revision", 0)), ranges)

    async def range(self, key: bytes, range_end: bytes | None = None, *,
                    timeout: float | None = None) -> list[KeyValue]:
        req = {"key": b64(key)}
        if range_end is not None:
            req["range_end"] = b64(range_end)
        a = await self.post("kv/range", req, timeout=timeout)
        return [KeyValue.from_json(kv) for kv in a.get("kvs", [])]

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
            conns.clear()


# --- request pieces (the gateway's JSON names) --------------------------------------------------

def cmp_create(key: bytes, revision: int, range_end: bytes | None = None) -> dict:
    c = {"target": "CREATE", "key": b64(key), "create_revision": str(revision), "result": "EQUAL"}
    if range_end is not None:
        c["range_end"] = b64(range_end)
    return c


def cmp_mod(key: bytes, revision: int) -> dict:
    return {"target": "MOD", "key": b64(key), "mod_revision": str(revision), "result": "EQUAL"}


def cmp_lease(key: bytes, lease: int) -> dict:
    return {"target": "LEASE", "key": b64(key), "lease": str(lease), "result": "EQUAL"}


def op_put(key: bytes, value: bytes, lease: int) -> dict:
    return {"requestPut": {"key": b64(key), "value": b64(value), "lease": str(lease)}}


def op_delete(key: bytes) -> dict:
    return {"requestDeleteRange": {"key": b64(key)}}


def op_range(key: bytes, range_end: bytes | None = None) -> dict:
    r = {"key": b64(key)}
    if range_end is not None:
        r["range_end"] = b64(range_end)
    return {"requestRange": r}
