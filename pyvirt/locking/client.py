"""pyvirtd's connection to the host's lock daemon (:mod:`pyvirt.lockd.protocol`).

The daemon is started when nobody answers on its socket: in a session of its
own (a pyvirtd killed with its process group leaves it running, and the
leases with it), its output in the log directory, ready once it has written
``ready`` to a pipe we read to its end (no polling for the socket).  A
connection that breaks is opened again on the next call; every operation is
idempotent, so a call cut off by a lost connection is simply sent again.  When
the lock daemon itself ends (its connection reaches EOF while we still use it),
a new one is started at once and ``on_restart`` told: the leases died with the
old one, so the guests that run must take theirs again.  If no lock daemon
can be had again and the leases taken again by ``fence_after`` seconds after
the old one ended (before the dead daemon's leases can expire elsewhere; a
replacement that cannot reach etcd fails), ``on_unreachable`` is told once
so that pyvirtd fences its guests, and the client keeps trying.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..lockd import protocol

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
RETRY_MIN, RETRY_MAX = 1.0, 10.0      # seconds between attempts to get a lock daemon again
FENCE_AFTER = 2.0     # lockd: fcntl locks die with their daemon; this long to take them again


class LockDaemonClient:
    def __init__(self, socket_path: Path, backend: str, options: dict[str, Any] | None = None,
                 log_path: Path | None = None) -> None:
        self.socket_path = Path(socket_path)
        self.backend = backend
        self.options = options or {}
        self.log_path = log_path
        self.daemon_pid: int | None = None
        self.on_event: EventHandler | None = None
        self.on_restart: Callable[[], Awaitable[None]] | None = None
        self.on_unreachable: Callable[[str], Awaitable[None]] | None = None
        self.fence_after: float | None = None     # None: fence only once an attempt failed
        self._closing = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self._connecting = asyncio.Lock()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._reconnecting: asyncio.Task[None] | None = None

    # -- connection ---------------------------------------------------------------
    async def _connect(self, notify: bool = True) -> bool:
        """Connect (starting a lock daemon if none answers); True if it is another
        lock daemon than the last one (its leases are gone), after telling
        ``on_restart`` in the background when ``notify``."""
        async with self._connecting:
            if self._writer is not None:
                return False
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.socket_path), limit=protocol.MAX_LINE)
            except (FileNotFoundError, ConnectionRefusedError):
                await self._spawn()
                try:
                    reader, writer = await asyncio.open_unix_connection(str(self.socket_path),
                                                                        limit=protocol.MAX_LINE)
                except OSError as exc:
                    raise self._unreachable(exc) from exc
            except OSError as exc:
                raise self._unreachable(exc) from exc
            self._reader, self._writer = reader, writer
            self._pump = asyncio.get_running_loop().create_task(self._read_replies(reader, writer))
        hello = await self._send({"op": "hello", "backend": self.backend})
        previous, self.daemon_pid = self.daemon_pid, hello.get("pid")
        restarted = previous is not None and previous != self.daemon_pid
        if restarted:
            log.error("the lock daemon (pid %s) was replaced by pid %s: its leases are gone; "
                      "taking the running guests' again", previous, self.daemon_pid)
            if notify and self.on_restart is not None:
                self._background(self.on_restart())
        if self.on_event is not None:
            await self._send({"op": "watch"})
        return restarted

    def _unreachable(self, exc: OSError) -> libvirtError:
        return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.LOCKING,
                     f"cannot reach the lock daemon at {self.socket_path}: {exc.strerror or exc}")

    async def _spawn(self) -> None:
        """Start pyvirtlockd and wait until it listens (or another one does)."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        log_fd = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        argv = [sys.executable, "-m", "pyvirt.lockd", "--socket", str(self.socket_path),
                "--backend", self.backend, "--ready-fd", str(write_fd)]
        if self.options:
            argv += ["--options", json.dumps(self.options)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=log_fd if log_fd is not None else asyncio.subprocess.DEVNULL,
                pass_fds=(write_fd,), start_new_session=True)
        finally:
            os.close(write_fd)
            if log_fd is not None:
                os.close(log_fd)
        log.info("started pyvirtlockd (pid %d, backend %s) on %s", proc.pid, self.backend, self.socket_path)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(read_fd, "rb", 0))
        try:
            said = await reader.read()        # "ready", or nothing: it failed, or another one serves
        finally:
            transport.close()
        if not said and await proc.wait() != 0:
            # it ended without listening (status 0: another one serves): say why, in its words
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.LOCKING,
                        f"pyvirtlockd failed to start: {self._last_log_line() or f'status {proc.returncode}'}"
                        + (f" (see {self.log_path})" if self.log_path is not None else ""))

    def _last_log_line(self) -> str:
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        last = lines[-1] if lines else ""
        return last[len("pyvirtlockd: "):] if last.startswith("pyvirtlockd: ") else last

    async def _read_replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                message = protocol.decode(line)
                if "event" in message:
                    if self.on_event is not None:
                        self._background(self.on_event(message))
                    continue
                future = self._pending.pop(message.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        except (OSError, ValueError, libvirtError) as exc:
            log.warning("lock daemon connection: %s", exc)
        finally:
            if self._writer is writer:
                self._reader = self._writer = None
            writer.close()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionResetError("the lock daemon closed the connection"))
            self._pending.clear()
            if not self._closing and self.on_restart is not None and (
                    self._reconnecting is None or self._reconnecting.done()):
                # one at a time: a connection an attempt opens may break too
                self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """The lock daemon went away under us: start (or find) another one now and take
        the leases again, retrying until ``fence_after``; then fence the guests (once)
        and keep trying."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (FENCE_AFTER if self.fence_after is None else self.fence_after)
        fenced = False
        delay = 0.1
        while not self._closing:
            attempt = loop.create_task(self._restore())
            try:
                if fenced:
                    await attempt
                else:
                    await asyncio.wait_for(asyncio.shield(attempt), max(0.0, deadline - loop.time()))
                if fenced:
                    log.warning("a lock daemon answers again (pid %s)", self.daemon_pid)
                return
            except asyncio.TimeoutError:
                log.error("no lock daemon took the leases again in time")
                fenced = True
                await self._unreachable_now("no lock daemon took the leases again in time")
                try:
                    await attempt
                    return
                except Exception as exc:
                    log.error("cannot reach a lock daemon again: %s", exc)
            except Exception as exc:
                log.error("cannot reach a lock daemon again: %s", exc)
                if not fenced and loop.time() >= deadline:
                    fenced = True
                    await self._unreachable_now(f"cannot reach a lock daemon again: {exc}")
            if fenced:
                await asyncio.sleep(delay)
                delay = min(max(delay * 2, RETRY_MIN), RETRY_MAX)
            else:      # retry at once-ish until the deadline: a replacement may just be starting
                await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))

    async def _restore(self) -> None:
        if await self._connect(notify=False) and self.on_restart is not None:
            await self.on_restart()

    async def _unreachable_now(self, why: str) -> None:
        if self.on_unreachable is not None:
            try:
                await self.on_unreachable(why)
            except Exception:
                log.exception("fencing the guests failed")

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _send(self, request: dict[str, Any]) -> dict[str, Any]:
        writer = self._writer
        if writer is None:
            raise ConnectionResetError("not connected to the lock daemon")
        call_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        writer.write(protocol.encode({"id": call_id, **request}))
        await writer.drain()
        reply = await future
        if "error" in reply:
            protocol.raise_error(reply["error"])
        return reply.get("result") or {}

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        """One operation; sent once more on a fresh connection if the old one broke."""
        for attempt in (1, 2):
            try:
                if self._writer is None:
                    await self._connect()
                return await self._send({"op": op, **args})
            except (ConnectionError, BrokenPipeError) as exc:
                self._drop()
                if attempt == 2:
                    raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.LOCKING,
                                f"lost the lock daemon at {self.socket_path}: {exc}") from exc
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def close(self) -> None:
        self._closing = True
        self._drop()
        if self._pump is not None:
            self._pump.cancel()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
