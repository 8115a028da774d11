"""A pyvirtd with its network driver inside a network namespace the test makes.

The daemon runs through ``ip netns exec``, so the bridges, dnsmasq and firewall
tables its networks create stay in that namespace; clients (pyvirt, stock virsh,
python3-libvirt) reach it over its UNIX socket, which a network namespace does
not hide.  At the end every network still active is destroyed through the API,
the daemon is stopped, whatever process is still in the namespace (a dnsmasq of
a network the daemon kept) is killed by PID, and the namespace is deleted —
also when the test failed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from daemons import Pyvirtd
from guests import REPO

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2")


def ns_run(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=30)
    if check:
        assert out.returncode == 0, f"{' '.join(argv)} in {ns}: {out.stderr}"
    return out


@dataclass
class NetnsPyvirtd(Pyvirtd):
    """A pyvirtd inside network namespace ``netns``, reached through its UNIX socket."""

    netns: str = ""

    @property
    def uri(self) -> str:
        return self.unix_uri

    def start(self, timeout: float = 30.0) -> "NetnsPyvirtd":
        conf = self.write_config()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with open(self.log_path, "ab") as log:
            # ip netns exec execs the daemon in place: proc.pid is the daemon's pid
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, sys.executable, "-m", "pyvirt.daemon.main", "-f", str(conf)],
                stdout=log, stderr=log, env=env, cwd=REPO)
        sock = self.sock_dir / "libvirt-sock"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pyvirtd exited with {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(sock))
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pyvirtd did not listen on {sock} within {timeout:.0f}s")
                time.sleep(0.01)

    def destroy_networks(self) -> None:
        import pyvirt
        conn = pyvirt.open(self.uri)
        try:
            for net in conn.listAllNetworks(2):     # VIR_CONNECT_LIST_NETWORKS_ACTIVE
                try:
                    net.destroy()
                except pyvirt.libvirtError:
                    pass
        finally:
            conn.close()


def namespace_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30)
    return [int(word) for word in out.stdout.split()]


@contextmanager
def netns_pyvirtd(workdir: Path, extra_config: str = "") -> Iterator[NetnsPyvirtd]:
    name = f"pyvirt-net-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    daemon = NetnsPyvirtd(workdir, netns=name, extra_config=extra_config)
    try:
        ns_run(name, "ip", "link", "set", "dev", "lo", "up")
        daemon.start()
        yield daemon
    finally:
        try:
            if daemon.alive:
                daemon.destroy_networks()
        except Exception:       # the daemon's own failure is the test's to report
            pass
        try:
            daemon.cleanup()
        finally:
            for pid in namespace_pids(name):       # only processes inside our own namespace
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "delete", name], timeout=30)


def has_network_driver(daemon: NetnsPyvirtd) -> bool:
    """True once the daemon serves the network procedures (helper-built driver wired in)."""
    import pyvirt
    conn = pyvirt.open(daemon.uri)
    try:
        conn.listAllNetworks(0)
        return True
    except pyvirt.libvirtError:
        return False
    finally:
        conn.close()


@contextmanager
def libvirtd_test_driver(base: Path) -> Iterator[str]:
    """The URI of libvirtd 9.0's test driver over RPC (no host networking involved: its
    networks are bookkeeping), kept alive by one open connection, since its state lasts
    while a connection is open; skips where no libvirtd can be stood up."""
    sys.path.insert(0, str(REPO / "bench"))
    import libvirt_ref
    available, why = libvirt_ref.libvirt_available()
    if not available:
        pytest.skip(f"libvirtd not available: {why}")
    host = libvirt_ref.LibvirtHost(base / "host", libvirt_ref.pick_free_ports(1)[0], cache_dir=base / "cache")
    host.start()
    try:
        import pyvirt
        uri = host.uri.replace("qemu+tcp", "test+tcp").replace("/system", "/default")
        keeper = pyvirt.open(uri)
        try:
            yield uri
        finally:
            keeper.close()
    finally:
        leaked = host.stop()
    assert not leaked
