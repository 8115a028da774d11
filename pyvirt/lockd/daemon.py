"""pyvirtlockd's server: owners, their processes, and requests.

``pyvirtlockd --socket PATH --backend NAME [--options JSON] [--ready-fd N]``

It locks ``PATH.pid`` first (one lock daemon per socket: a second exits at
once, status 0, so two pyvirtd starts racing to spawn one are harmless),
listens on ``PATH`` (mode 0600), writes ``ready`` to the descriptor
``--ready-fd`` and closes it, then serves :mod:`.protocol` until SIGTERM.

Leases belong to QEMU processes, never to connections: a pyvirtd that dies
releases nothing, and the next one registers its adopted guests again.  A
QEMU that ends releases at once (its pidfd becomes readable).  Stopping the
lock daemon itself drops every lease it holds (the kernel does that for
fcntl locks), so it is left running when pyvirtd stops.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import os
import select
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from . import protocol
from .backend import Backend, Owner, Resource, backend_class

log = logging.getLogger("pyvirtlockd")
KILL_GRACE = 5.0     # seconds between SIGTERM and SIGKILL for a guest whose lease is lost, at most
KILL_SAFETY = 0.5    # SIGKILL this long before the lease can have expired elsewhere


@dataclass
class _Entry:
    owner: Owner
    pidfd: int
    on_lockfailure: str = "poweroff"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)   # one call per owner at a time
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)   # a release (or the end) happened


class LockDaemon:
    def __init__(self, backend_name: str, options: dict[str, Any]) -> None:
        self.backend: Backend = backend_class(backend_name)(options, self)
        self.owners: dict[str, _Entry] = {}          # uuid → entry
        self.watchers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- owners and their processes ---------------------------------------------
    def _register(self, owner: Owner, on_lockfailure: str | None = None) -> _Entry:
        entry = self.owners.get(owner.uuid)
        if entry is not None and entry.owner.pid == owner.pid:
            if on_lockfailure:
                entry.on_lockfailure = on_lockfailure
            return entry
        if entry is not None:
            # same guest, another process: the old one must be gone (one QEMU per guest per host)
            if _alive(entry.pidfd):
                raise error(ErrorNumber.OPERATION_INVALID, ErrorDomain.LOCKING,
                            f"domain '{owner.name}' is registered with pid {entry.owner.pid}, which still runs")
            self._spawn(self._gone(entry))
        try:
            pidfd = os.pidfd_open(owner.pid)
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.LOCKING,
                        f"cannot watch process {owner.pid} of domain '{owner.name}': {exc.strerror}") from exc
        entry = _Entry(owner, pidfd, on_lockfailure or "poweroff")
        self.owners[owner.uuid] = entry
        asyncio.get_running_loop().add_reader(pidfd, self._on_exit, entry)
        log.info("registered %s (pid %d)", owner.name, owner.pid)
        return entry

    def _on_exit(self, entry: _Entry) -> None:
        asyncio.get_running_loop().remove_reader(entry.pidfd)
        self._spawn(self._gone(entry))

    async def _gone(self, entry: _Entry) -> None:
        """The owner's process ended: everything it held goes."""
        if self.owners.get(entry.owner.uuid) is entry:
            del self.owners[entry.owner.uuid]
        if entry.pidfd >= 0:     # both the pidfd and a 'drop' may bring us here
            asyncio.get_running_loop().remove_reader(entry.pidfd)
            os.close(entry.pidfd)
            entry.pidfd = -1
        entry.ended.set()
        entry.changed.set()
        async with entry.lock:
            await self.backend.forget(entry.owner)
        log.info("%s (pid %d) ended: its leases are released", entry.owner.name, entry.owner.pid)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reap(self) -> None:
        """Forget owners whose process has ended but whose pidfd callback has not run
        yet, so an answer never shows (or is refused for) a lease of a dead QEMU."""
        entries = [e for e in self.owners.values() if e.pidfd >= 0]
        if not entries:
            return
        ended = set(select.select([e.pidfd for e in entries], [], [], 0)[0])
        for entry in entries:
            if entry.pidfd in ended:
                await self._gone(entry)

    # -- Hooks for the backend ----------------------------------------------------
    async def lease_lost(self, owner: Owner, resources: Sequence[Resource], why: str,
                         expires_at: float | None = None) -> None:
        """Fence ``owner``: tell pyvirtd (it pauses or powers off as <on_lockfailure> says),
        and whatever pyvirtd does, kill the QEMU ourselves unless its leases were released
        by the kill deadline, computed from ``expires_at`` (monotonic: when the lease can
        have expired elsewhere) so that SIGKILL comes before anyone else can take the
        disk — sanlock's rule; a stalled pyvirtd must not leave a guest writing."""
        what = ", ".join(r.what or r.name for r in resources)
        log.error("%s (pid %d) lost its lease on %s: %s", owner.name, owner.pid, what, why)
        entry = self.owners.get(owner.uuid)
        if entry is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        kill_by = (now + 2 * KILL_GRACE) if expires_at is None else expires_at - KILL_SAFETY
        event = {"event": "lease_lost", "owner": owner.to_json(),
                 "resources": [r.to_json() for r in resources], "why": why,
                 "on_lockfailure": entry.on_lockfailure}
        sent = False
        for writer in list(self.watchers):
            try:
                writer.write(protocol.encode(event))
                sent = True
            except (OSError, RuntimeError):
                self.watchers.discard(writer)
        if entry.on_lockfailure == "ignore":
            return
        if sent:
            # half of the time left is pyvirtd's to pause (and release) or power off the guest
            if await self._released(entry, now + max(0.0, kill_by - now) / 2):
                return
            log.error("pyvirtd did not fence %s in time: killing its QEMU (pid %d)", owner.name, owner.pid)
        else:
            log.error("no pyvirtd to fence %s: killing its QEMU (pid %d)", owner.name, owner.pid)
        await self._kill(entry, kill_by)

    async def _released(self, entry: _Entry, until: float) -> bool:
        """Wait until ``entry``'s process ended or holds no lease any more, at most until
        ``until`` (monotonic); True if it did."""
        loop = asyncio.get_running_loop()
        while entry.pidfd >= 0 and self.backend.held(entry.owner):
            left = until - loop.time()
            if left <= 0:
                return False
            entry.changed.clear()
            try:
                await asyncio.wait_for(entry.changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        return True

    async def _kill(self, entry: _Entry, kill_by: float) -> None:
        """SIGTERM, then SIGKILL at ``kill_by`` at the latest (at once if no time is left)."""
        if entry.pidfd < 0:
            return
        left = kill_by - asyncio.get_running_loop().time()
        sig = signal.SIGTERM if left > 0.2 else signal.SIGKILL
        try:
            signal.pidfd_send_signal(entry.pidfd, sig)
        except OSError:
            return
        if sig == signal.SIGKILL:
            return
        try:
            await asyncio.wait_for(asyncio.shield(entry.ended.wait()), min(left, KILL_GRACE))
        except asyncio.TimeoutError:
            if entry.pidfd < 0:
                return
            try:
                signal.pidfd_send_signal(entry.pidfd, signal.SIGKILL)
            except OSError:
                pass

    # -- requests --------------------------------------------------------------------
    async def handle(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> dict[str, Any]:
        op = request.get("op")
        if op not in protocol.OPS:
            raise error(ErrorNumber.OPERATION_UNSUPPORTED, ErrorDomain.LOCKING, f"unknown lock daemon operation {op!r}")
        if op == "hello":
            wanted = request.get("backend")
            if wanted and wanted != self.backend.name:
                raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.LOCKING,
                            f"the lock daemon runs the '{self.backend.name}' backend, not '{wanted}'")
            return {"backend": self.backend.name, "uses_state": self.backend.uses_state, "pid": os.getpid()}
        await self._reap()
        if op == "owners":
            return {"owners": [{"owner": e.owner.to_json(),
                                "resources": [r.to_json() for r in self.backend.held(e.owner)]}
                               for e in self.owners.values()]}
        if op == "watch":
            self.watchers.add(writer)
            return {}
        owner = _owner(request)
        if op == "drop":
            entry = self.owners.get(owner.uuid)
            if entry is not None and entry.owner.pid == owner.pid:
                await self._gone(entry)
            return {}
        entry = self._register(owner, request.get("on_lockfailure"))
        async with entry.lock:
            if op == "register":
                return {"resources": [r.to_json() for r in self.backend.held(owner)]}
            if op == "acquire":
                resources = _resources(request.get("resources", []))
                return {"state": await self.backend.acquire(owner, resources, request.get("state"))}
            if op == "release":
                raw = request.get("resources")
                state = await self.backend.release(owner, None if raw is None else _resources(raw))
                entry.changed.set()
                return {"state": state}
            return {"state": await self.backend.inquire(owner)}

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, ConnectionError):   # a line over the limit, or the peer reset
                    break
                if not line:
                    break
                call_id: Any = None
                try:
                    request = protocol.decode(line)
                    call_id = request.get("id")
                    reply = {"id": call_id, "result": await self.handle(request, writer)}
                except libvirtError as exc:
                    reply = protocol.error_reply(call_id, exc)
                except Exception as exc:   # never let one request end the daemon
                    log.exception("request failed")
                    reply = protocol.error_reply(call_id, error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.LOCKING,
                                                                f"lock daemon: {type(exc).__name__}: {exc}"))
                writer.write(protocol.encode(reply))
                await writer.drain()
        finally:
            self.watchers.discard(writer)
            writer.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.backend.close()


def _owner(request: dict[str, Any]) -> Owner:
    try:
        return Owner.from_json(request["owner"])
    except (KeyError, TypeError, ValueError):
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.LOCKING, "lock daemon request without a valid owner") from None


def _resources(raw: Any) -> list[Resource]:
    try:
        return [Resource.from_json(r) for r in raw]
    except (KeyError, TypeError, ValueError):
        raise error(ErrorNumber.INVALID_ARG, ErrorDomain.LOCKING, "lock daemon request with invalid resources") from None


def _alive(pidfd: int) -> bool:
    """A pidfd is readable once its process has ended."""
    return not select.select([pidfd], [], [], 0)[0]


def _lock_pidfile(path: str) -> int | None:
    """flock the pidfile (the kernel drops it whatever ends us); None if another daemon holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


async def run(args: argparse.Namespace) -> int:
    os.makedirs(os.path.dirname(args.socket) or ".", mode=0o700, exist_ok=True)
    pidfd_lock = _lock_pidfile(args.socket + ".pid")
    if pidfd_lock is None:
        log.info("another pyvirtlockd serves %s", args.socket)
        _ready(args.ready_fd, b"")
        return 0
    daemon = LockDaemon(args.backend, json.loads(args.options) if args.options else {})
    await daemon.backend.start()
    try:
        os.unlink(args.socket)      # a stale socket: we hold the pidfile, nobody serves it
    except FileNotFoundError:
        pass
    old = os.umask(0o077)
    try:
        server = await asyncio.start_unix_server(daemon.serve_client, args.socket, limit=protocol.MAX_LINE)
    finally:
        os.umask(old)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("pyvirtlockd (pid %d, backend %s) listening on %s", os.getpid(), args.backend, args.socket)
    _ready(args.ready_fd, b"ready\n")
    await stop.wait()
    server.close()
    await daemon.close()
    try:
        os.unlink(args.socket)
    except OSError:
        pass
    os.unlink(args.socket + ".pid")
    os.close(pidfd_lock)
    return 0


def _ready(fd: int | None, text: bytes) -> None:
    if fd is None:
        return
    try:
        if text:
            os.write(fd, text)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyvirtlockd", description="pyvirt's lock daemon: holds disk leases")
    parser.add_argument("--socket", required=True, help="the UNIX socket to serve")
    parser.add_argument("--backend", default="files", help="how leases are held: files or etcd")
    parser.add_argument("--options", default="", help="the backend's settings, as a JSON object")
    parser.add_argument("--ready-fd", type=int, default=None, help="write 'ready' here once listening")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        return asyncio.run(run(args))
    except libvirtError as exc:
        print(f"pyvirtlockd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
