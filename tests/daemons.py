"""Real pyvirtd processes on loopback for tests, always stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from guests import REPO, kill_qemus_under, pid_alive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _display_ports(extra_config: str) -> str:
    """Graphics ports of this test worker's own (pytest -n: each worker's daemons pick
    from a range of 2000), so two workers' guests never race for one port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or "remote_display_port_min" in extra_config:
        return ""
    low = 5900 + 2000 * int(worker[2:])
    return f"remote_display_port_min = {low}\nremote_display_port_max = {low + 1999}\n"


@dataclass
class Pyvirtd:
    """One pyvirtd 'host': its own state dir, sockets, TCP port and host UUID."""

    workdir: Path
    tcp_port: int = field(default_factory=free_port)
    host_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    extra_config: str = ""
    verbose: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)   # e.g. PYVIRT_TEST_HOOKS
    proc: subprocess.Popen | None = None
    # its own session, so its own scheduler autogroup, as bench/libvirt_ref.py starts
    # libvirtd: a benchmark beside libvirtd then gives both the same share of a busy CPU
    new_session: bool = False
    # run the daemon under a wrapper (e.g. unshare: a "host" with its own view of the storage)
    argv_prefix: list[str] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def sock_dir(self) -> Path:
        return self.workdir / "sock"

    @property
    def uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.tcp_port}/system"

    @property
    def test_uri(self) -> str:
        return f"test+tcp://127.0.0.1:{self.tcp_port}/default"

    @property
    def unix_uri(self) -> str:
        return f"qemu+unix:///system?socket={self.sock_dir}/libvirt-sock"

    @property
    def unix_ro_uri(self) -> str:
        return f"qemu+unix:///system?socket={self.sock_dir}/libvirt-sock-ro"

    @property
    def log_path(self) -> Path:
        return self.workdir / "pyvirtd.log"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "pyvirtd.conf"
        mig = self.tcp_port % 1000
        path.write_text(f"""listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = {self.tcp_port}
auth_tcp = "none"
unix_sock_dir = "{self.sock_dir}"
host_uuid = "{self.host_uuid}"
state_dir = "{self.state_dir}"
migration_address = "127.0.0.1"
migration_port_min = {50000 + mig * 10}
migration_port_max = {50000 + mig * 10 + 9}
{self.extra_config}
{_display_ports(self.extra_config)}""")
        return path

    def start(self, timeout: float = 30.0) -> "Pyvirtd":
        conf = self.write_config()
        env = dict(os.environ, PYTHONPATH=str(REPO), **self.extra_env)
        log = open(self.log_path, "ab")
        argv = self.argv_prefix + [sys.executable, "-m", "pyvirt.daemon.main", "-f", str(conf)] + (["--verbose"] if self.verbose else [])
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=REPO,
                                     start_new_session=self.new_session)
        log.close()
        # The daemon announces readiness only in its log, which must stay a plain
        # file (tests read it right after a call).  So poll for the observable
        # condition itself, the TCP listener accepting, every few ms until a deadline.
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pyvirtd exited with {self.proc.returncode} before listening:\n"
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pyvirtd did not listen on 127.0.0.1:{self.tcp_port} within "
                                       f"{timeout:.0f}s:\n{self.log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the daemon (by its PID); guests it started keep running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def destroy_all(self) -> None:
        """Destroy, through the daemon, every guest it runs (what a test left running on purpose)."""
        if not self.alive:
            return
        import pyvirt
        try:
            conn = pyvirt.open(self.uri)
        except pyvirt.libvirtError:
            return
        try:
            for dom in conn.listAllDomains(pyvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                try:
                    dom.destroy()
                except pyvirt.libvirtError:
                    pass
        finally:
            conn.close()

    def cleanup(self) -> list[int]:
        """Destroy the guests the daemon knows, stop it, then kill (and return) any QEMU
        still running under its directories: those were leaked.  The daemon is stopped and
        the scan done even when destroying fails (say the client library no longer imports),
        so a broken teardown never leaves a daemon or its QEMUs behind; the failure is
        raised afterwards."""
        failure: BaseException | None = None
        try:
            self.destroy_all()
        except Exception as exc:  # reported after the daemon and its QEMUs are gone
            failure = exc
        self.stop()
        left = []
        for status in (self.state_dir / "run" / "qemu").glob("*.xml"):
            pid = int(status.read_text().split("pid='", 1)[1].split("'", 1)[0])
            if pid > 0 and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                left.append(pid)
        left += kill_qemus_under(self.workdir)
        if failure is not None:
            raise failure
        return left

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and pid_alive(self.proc.pid)


def qemu_pid(daemon: Pyvirtd, name: str) -> int | None:
    """The pid of a guest's QEMU, from the daemon's status file."""
    path = daemon.state_dir / "run" / "qemu" / f"{name}.xml"
    try:
        return int(path.read_text().split("pid='", 1)[1].split("'", 1)[0])
    except (OSError, IndexError, ValueError):
        return None


QUERY_STATUS = '{"execute":"query-status"}'


def monitor_command(daemon: Pyvirtd, name_or_uuid: str, cmd: str = QUERY_STATUS) -> str | None:
    """``virsh qemu-monitor-command`` through the daemon's RPC (libvirt-qemu's QEMU
    program): the reply text, or None when the daemon has no such active guest."""
    import asyncio
    from pyvirt.errors import ErrorNumber, libvirtError
    from pyvirt.rpc.client import RPCClient
    from pyvirt.rpc.protocol import QEMU, REMOTE
    from pyvirt.rpc.wire import Program

    async def ask() -> str | None:
        client = await RPCClient.connect_tcp("127.0.0.1", daemon.tcp_port)
        try:
            await client.call(Program.REMOTE, REMOTE.by_name["CONNECT_OPEN"], ("qemu:///system", 0))
            try:
                ref = uuid.UUID(name_or_uuid).bytes
            except ValueError:
                lookup = client.call(Program.REMOTE, REMOTE.by_name["DOMAIN_LOOKUP_BY_NAME"], (name_or_uuid,))
            else:
                lookup = client.call(Program.REMOTE, REMOTE.by_name["DOMAIN_LOOKUP_BY_UUID"], (ref,))
            try:
                dom = await lookup
                return await client.call(Program.QEMU, QEMU.by_name["DOMAIN_MONITOR_COMMAND"], (dom, cmd, 0))
            except libvirtError as exc:
                if exc.get_error_code() in (ErrorNumber.NO_DOMAIN, ErrorNumber.OPERATION_INVALID):
                    return None          # not there, or not running
                raise
        finally:
            client.close()
    return asyncio.run(asyncio.wait_for(ask(), 30))


def _orphan_statuses(daemon: Pyvirtd, name_or_uuid: str) -> list[str]:
    """query-status of the guest's QEMU left behind by a daemon that is not running,
    asked on its monitor socket directly (nobody else holds it then)."""
    import json
    from pyvirt.conf.names import socket_address
    from pyvirt.conf.status import parse_status
    found = []
    for path in (daemon.state_dir / "run" / "qemu").glob("*.xml"):
        try:
            status = parse_status(path.read_text())
        except Exception:
            continue
        if name_or_uuid not in (status.domain.name, str(status.domain.uuid)):
            continue
        if status.pid <= 0 or not pid_alive(status.pid) or not status.monitor_path:
            continue
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            with socket_address(status.monitor_path) as address:    # may be longer than sun_path
                s.connect(address)
            f = s.makefile("rwb")
            f.readline()                                   # the greeting
            for cmd in ('{"execute":"qmp_capabilities"}', QUERY_STATUS):
                f.write(cmd.encode() + b"\n")
                f.flush()
                while "event" in (reply := json.loads(f.readline())):
                    pass
            found.append(json.dumps(reply))
    return found


def running_copies(daemons: list[Pyvirtd], name_or_uuid: str) -> int:
    """How many copies of the guest (by UUID or name) run their CPUs on these hosts.

    Each running daemon is asked through qemu-monitor-command for QMP
    ``query-status``; a copy counts when QEMU says ``running`` (an incoming
    migration target is ``inmigrate``, a migrated-away source ``postmigrate``,
    a paused guest ``paused``: none of them runs).  For a daemon that is down,
    its guests' QEMUs are asked on their monitor sockets directly, so a copy
    it left behind still counts.
    """
    import json
    count = 0
    for daemon in daemons:
        if daemon.alive:
            reply = monitor_command(daemon, name_or_uuid)
            replies = [] if reply is None else [reply]
        else:
            replies = _orphan_statuses(daemon, name_or_uuid)
        for text in replies:
            if json.loads(text).get("return", {}).get("running"):
                count += 1
    return count


@dataclass
class Bystander:
    """A running guest that attacks on its daemon must leave alone: same QEMU,
    same libvirt state (running, booted), CPUs running by QEMU's own account."""

    daemon: Pyvirtd
    name: str
    uuid: str
    pid: int = 0
    id: int = 0

    @classmethod
    def start(cls, daemon: Pyvirtd, name: str = "bystander") -> "Bystander":
        guest = cls(daemon, name, str(uuid.uuid4()))
        guest._boot()
        return guest

    def _boot(self) -> None:
        import pyvirt
        from guests import READY, tiny_xml, wait_for_text
        serial = self.daemon.workdir / f"{self.name}.log"
        serial.unlink(missing_ok=True)
        conn = pyvirt.open(self.daemon.uri)
        try:
            dom = conn.defineXML(tiny_xml(self.name, serial, uuid=self.uuid))
            dom.create()
            self.id = dom.ID()
        finally:
            conn.close()
        self.pid = qemu_pid(self.daemon, self.name) or 0
        wait_for_text(serial, READY)

    def ensure_running(self) -> None:
        """Boot the guest again if an earlier (failed) example changed it, so that each
        example is judged on its own (hypothesis replays examples while shrinking)."""
        try:
            self.assert_unchanged()
        except AssertionError:
            if not self.daemon.alive:
                raise
            self.daemon.destroy_all()
            self._boot()

    def assert_unchanged(self) -> None:
        """Fails unless the daemon is alive, answers a fresh connection and the guest is untouched."""
        import json
        assert self.daemon.alive, f"pyvirtd died:\n{self.daemon.log_path.read_text(errors='replace')[-3000:]}"
        assert qemu_pid(self.daemon, self.name) == self.pid, "the guest's QEMU changed"
        version, state, qmp = healthy_call(self.daemon, self.uuid)
        assert version > 0
        assert state == (1, 1), f"guest state changed to {state} (expected running, booted)"
        status = json.loads(qmp)["return"]
        assert status["running"] and status["status"] == "running", status


def healthy_call(daemon: Pyvirtd, uuid_str: str) -> tuple[int, tuple[int, int], str]:
    """What a well-behaved client sees on a fresh connection: (CONNECT_GET_VERSION,
    DOMAIN_GET_STATE of the guest, its QMP query-status through qemu-monitor-command)."""
    import asyncio
    from pyvirt.rpc.client import RPCClient
    from pyvirt.rpc.protocol import QEMU, REMOTE
    from pyvirt.rpc.wire import Program

    async def ask() -> tuple[int, tuple[int, int], str]:
        client = await RPCClient.connect_tcp("127.0.0.1", daemon.tcp_port)
        try:
            call = client.call
            await call(Program.REMOTE, REMOTE.by_name["CONNECT_OPEN"], ("qemu:///system", 0))
            version = await call(Program.REMOTE, REMOTE.by_name["CONNECT_GET_VERSION"])
            dom = await call(Program.REMOTE, REMOTE.by_name["DOMAIN_LOOKUP_BY_UUID"], (uuid.UUID(uuid_str).bytes,))
            state = await call(Program.REMOTE, REMOTE.by_name["DOMAIN_GET_STATE"], (dom, 0))
            qmp = await call(Program.QEMU, QEMU.by_name["DOMAIN_MONITOR_COMMAND"], (dom, QUERY_STATUS, 0))
            return version, tuple(state), qmp
        finally:
            client.close()
    return asyncio.run(asyncio.wait_for(ask(), 30))


@contextmanager
def running_pair(a: Pyvirtd, b: Pyvirtd, also_under: Path | None = None) -> Iterator[tuple[Pyvirtd, Pyvirtd]]:
    """Two hosts started, and afterwards every guest destroyed on both (a migrated
    guest may log into the other host's directory), both stopped, and no QEMU left:
    their own, and any started under ``also_under``."""
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        for host in (a, b):
            host.destroy_all()
        leaked = a.cleanup() + b.cleanup() + (kill_qemus_under(also_under) if also_under else [])
    assert not leaked, f"QEMU processes left behind: {leaked}"


@contextmanager
def running_libvirtd(base: Path) -> Iterator["object"]:
    """A libvirtd 9.0 host of bench/libvirt_ref.py under ``base`` (skips where libvirtd cannot
    run), stopped afterwards; a QEMU it leaves behind fails the caller."""
    sys.path.insert(0, str(REPO / "bench"))
    import libvirt_ref
    import pytest
    available, why = libvirt_ref.libvirt_available()
    if not available:
        pytest.skip(f"libvirtd not available: {why}")
    host = libvirt_ref.LibvirtHost(base / "host", libvirt_ref.pick_free_ports(1)[0], cache_dir=base / "cache")
    host.start()
    try:
        yield host
    finally:
        leaked = host.stop()
    assert not leaked, f"libvirtd left processes behind: {leaked}"
