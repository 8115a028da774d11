"""The test's end of pyvirt.testhooks: one UNIX socket per daemon, one point armed at a time.

A daemon started with ``PYVIRT_TEST_HOOKS=PATH`` connects to PATH at every
hook point and waits for a line.  Points that are not armed are answered at
once; the armed one (the first time it is reached) is held until the test
calls :meth:`HookServer.release`, so the test can inject its fault while the
daemon stands exactly there.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path


class HookServer:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self._sock.listen(64)
        self._lock = threading.Lock()
        self._armed: str | None = None
        self._held: socket.socket | None = None
        self._reached = threading.Event()
        self.seen: list[str] = []              # every point reached since the last arm()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"hooks-{self.path.name}", daemon=True)
        self._thread.start()

    def arm(self, point: str) -> None:
        """Hold the daemon the next time it reaches ``point``."""
        with self._lock:
            self._release_locked()
            self._armed, self._reached = point, threading.Event()
            self.seen = []

    def disarm(self) -> None:
        with self._lock:
            self._armed = None
            self._release_locked()

    def wait_reached(self, timeout: float) -> bool:
        """Whether the armed point was reached (the daemon now waits there) within ``timeout``."""
        return self._reached.wait(timeout)

    def release(self) -> None:
        """Let a held daemon go on (harmless when it is not held, or was killed meanwhile)."""
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            try:
                held.sendall(b"go\n")
            except OSError:
                pass
            held.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            line = conn.makefile("rb").readline().decode(errors="replace").strip()
        except OSError:
            conn.close()
            return
        point = line.split(" ", 1)[0]
        with self._lock:
            self.seen.append(line)
            if not self._closed and point == self._armed and not self._reached.is_set():
                self._held = conn
                self._armed = None
                self._reached.set()
                return
        try:
            conn.sendall(b"go\n")
        except OSError:
            pass
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._armed = None
            self._release_locked()
        self._sock.close()
        self.path.unlink(missing_ok=True)
