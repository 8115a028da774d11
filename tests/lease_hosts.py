"""Hosts that share a disk under the etcd lock manager, on one machine.

Each "host" is a pyvirtd in a mount namespace of its own where the shared
disk's path is a bind mount of that host's own file: every host opens "the
same disk" by path (so the same lease key), while QEMU's own image locks,
which would make a second QEMU on one machine fail before any lease is
asked for, see different files.  That is what leases exist for: on shared
storage between real hosts QEMU's locks do not reach the other host.

Everything started here is stopped by PID, also on failure: the guests
(through their daemon, then any QEMU left), the daemons, their lock daemons,
and etcd (thawed first).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from daemons import Pyvirtd
from etcd_server import EtcdServer
from guests import kill_qemus_under, pid_alive, tiny_xml

from pyvirt.lockd.etcd_client import EtcdClient

PREFIX = "/pyvirt-test/leases/"


def disk_xml(path: Path) -> str:
    return f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{path}'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""


def guest_xml(name: str, disk: Path, serial_log: Path, on_lockfailure: str | None = None) -> str:
    xml = tiny_xml(name, serial_log, extra_devices=disk_xml(disk))
    if on_lockfailure:
        xml = xml.replace("  <devices>", f"  <on_lockfailure>{on_lockfailure}</on_lockfailure>\n  <devices>", 1)
    return xml


def holders(path: Path) -> list[int]:
    """PIDs of QEMU processes with ``path`` open (as each sees it), from /proc/*/fd."""
    found = []
    target = str(path)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                if not f.read().startswith("qemu-system"):
                    continue
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                try:
                    if os.readlink(fd.path) == target:
                        found.append(int(entry.name))
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return found


def lease_key(path: Path) -> bytes:
    return (PREFIX + hashlib.sha256(str(path).encode()).hexdigest()).encode()


@dataclass
class LeaseHost:
    name: str
    daemon: Pyvirtd
    view: Path                  # this host's own file behind the shared path

    @property
    def uri(self) -> str:
        return self.daemon.uri

    def lock_daemon_pids(self) -> list[int]:
        pids = []
        for pidfile in self.daemon.workdir.rglob("pyvirtlockd.sock.pid"):
            try:
                pids.append(int(pidfile.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                continue
        return [p for p in pids if pid_alive(p)]


@dataclass
class LeaseCluster:
    root: Path
    ttl: int = 4
    extra_config: str = ""
    lock_manager: str = "etcd"       # or "lockd" (a shared lockspace directory), "nop"
    etcd: EtcdServer | None = None
    hosts: list[LeaseHost] = field(default_factory=list)

    @property
    def disk(self) -> Path:
        return self.root / "shared" / "disk.img"

    def start(self, names: tuple[str, ...] = ("hostA", "hostB")) -> LeaseCluster:
        self.disk.parent.mkdir(parents=True, exist_ok=True)
        self.disk.write_bytes(b"\0" * (1 << 20))
        os.chmod(self.disk, 0o666)
        if self.lock_manager == "etcd":
            self.etcd = EtcdServer(self.root / "etcd").start()
        for name in names:
            self.add_host(name)
        return self

    def add_host(self, name: str) -> LeaseHost:
        workdir = self.root / name
        workdir.mkdir(parents=True, exist_ok=True)
        view = workdir / "disk-view.img"
        view.write_bytes(b"\0" * (1 << 20))
        os.chmod(view, 0o666)
        config = self.extra_config
        if self.lock_manager == "etcd":
            assert self.etcd is not None
            config = (f'lock_manager = "etcd"\nlock_etcd_endpoints = ["{self.etcd.endpoint}"]\n'
                      f'lock_etcd_ttl = {self.ttl}\nlock_etcd_prefix = "{PREFIX}"\n{config}')
        elif self.lock_manager == "lockd":
            config = (f'lock_manager = "lockd"\nlock_file_lockspace_dir = "{self.root / "lockspace"}"\n'
                      f'{config}')
        prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                  'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh", str(view), str(self.disk)]
        daemon = Pyvirtd(workdir, extra_config=config, argv_prefix=prefix)
        host = LeaseHost(name, daemon, view)
        self.hosts.append(host)
        daemon.start()
        return host

    def host(self, name: str) -> LeaseHost:
        return next(h for h in self.hosts if h.name == name)

    # -- etcd, seen from the test ---------------------------------------------------
    def key(self) -> dict | None:
        """The shared disk's key: its holder (the value), lease and token (create revision)."""
        async def get():
            c = EtcdClient([self.etcd.endpoint])
            try:
                kvs = await c.range(lease_key(self.disk))
            finally:
                await c.close()
            if not kvs:
                return None
            kv = kvs[0]
            return {**json.loads(kv.value), "token": kv.create_revision, "lease": kv.lease}
        return asyncio.run(get())

    def stop(self) -> list[int]:
        """Everything down, by PID; returns QEMUs that were left running (leaks)."""
        leaked: list[int] = []
        failures: list[BaseException] = []
        if self.etcd is not None:
            self.etcd.resume()
        for host in self.hosts:
            lock_pids = host.lock_daemon_pids()
            try:
                leaked += host.daemon.cleanup()
            except Exception as exc:
                failures.append(exc)
            for pid in lock_pids + host.lock_daemon_pids():
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            leaked += kill_qemus_under(host.daemon.workdir)
        if self.etcd is not None:
            self.etcd.stop()
        if failures:
            raise failures[0]
        return leaked
