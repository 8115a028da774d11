"""A real etcd (Debian's etcd-server 3.4) for the lease tests: loopback ports,
a data directory of the test's own, stopped by PID, also on failure.

``pause()``/``resume()`` freeze and thaw it (SIGSTOP/SIGCONT) to cut a host
off from etcd without touching any interface; ``stop()`` always thaws first.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int, ctx: ssl.SSLContext | None = None) -> bool:
    """True when etcd's gateway answers a range request (etcd is ready)."""
    body = b'{"key":"AA=="}'
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
            s = ctx.wrap_socket(raw, server_hostname="127.0.0.1") if ctx else raw
            s.sendall(b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class EtcdServer:
    """``tls``: (ca, cert, key[, client_cert, client_key]) makes its client URL https with
    client certificates required (the last two are what the readiness check presents)."""

    def __init__(self, workdir: Path, tls: tuple | None = None) -> None:
        self.workdir = workdir
        self.tls = tls
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.paused = False

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> EtcdServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.log = open(self.workdir / "etcd.log", "wb")
        self.proc = subprocess.Popen(
            [ETCD, "--name", "t", "--data-dir", str(self.workdir / "data"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"t={peer}", "--initial-cluster-state", "new",
             "--log-level", "warn", *self._tls_args()],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        # readiness: poll the gateway (a condition, bounded), never a fixed sleep
        deadline = time.monotonic() + 30
        while not _answers(self.client_port, self._probe_context()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited at start: {(self.workdir / 'etcd.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("etcd did not answer within 30 s")
            time.sleep(0.05)
        return self

    def _tls_args(self) -> list[str]:
        if not self.tls:
            return []
        ca, cert, key = self.tls[:3]
        return ["--cert-file", str(cert), "--key-file", str(key), "--trusted-ca-file", str(ca),
                "--client-cert-auth"]

    def _probe_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.tls[0]))
        if len(self.tls) > 3:
            ctx.load_cert_chain(str(self.tls[3]), str(self.tls[4]))
        return ctx

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.proc = None
