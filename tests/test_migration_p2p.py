"""Peer-to-peer and tunnelled migration between two real pyvirtd hosts."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest

import pyvirt
from daemons import Pyvirtd, qemu_pid, running_copies, running_pair
from guests import pid_alive, wait_for
from test_migration import _wait_job_active, assert_only_on, heartbeat, start_guest

pytestmark = pytest.mark.qemu

P2P = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_PEER2PEER
TUNNELLED = P2P | pyvirt.VIR_MIGRATE_TUNNELLED


@pytest.fixture
def hosts(request, tmp_path, guests_built):
    marker = request.node.get_closest_marker("hosts")
    extra_b = marker.kwargs.get("extra_b", "") if marker else ""
    with running_pair(Pyvirtd(tmp_path / "a"), Pyvirtd(tmp_path / "b", extra_config=extra_b)) as pair:
        yield pair


def to_uri_in_thread(dom, dconnuri, flags, params=None):
    result: dict = {}

    def run():
        try:
            dom.migrateToURI3(dconnuri, params or {}, flags)
            result["ok"] = True
        except pyvirt.libvirtError as exc:
            result["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_p2p_v3(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a)
    before = heartbeat(a)
    dom.migrateToURI3(b.uri, {}, P2P)
    moved = pyvirt.open(b.uri).lookupByName("mig")
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_only_on(b, uid, "mig", hosts)
    wait_for(lambda: heartbeat(a) > before + 1, 10, what="the guest to keep running on B")


@pytest.mark.hosts(extra_b="migration_v3 = 0\nmigration_params = 0")
def test_p2p_to_a_v2_only_destination_stops_the_source(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a, persistent=True)
    dom.migrateToURI3(b.uri, {}, P2P)
    assert pyvirt.open(b.uri).lookupByName("mig").state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert ca.lookupByName("mig").state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_MIGRATED]
    assert_only_on(b, uid, "mig", hosts)


def test_p2p_non_live_paused_guest_stays_paused(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a)
    dom.suspend()
    dom.migrateToURI3(b.uri, {}, pyvirt.VIR_MIGRATE_PEER2PEER)
    moved = pyvirt.open(b.uri).lookupByName("mig")
    assert moved.state()[0] == pyvirt.VIR_DOMAIN_PAUSED
    assert running_copies(list(hosts), uid) == 0          # no copy runs its CPUs
    moved.resume()
    assert_only_on(b, uid, "mig", hosts)


def test_tunnelled_live_migration_of_a_dirtying_guest(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    dom.migrateToURI3(b.uri, {}, TUNNELLED)
    moved = pyvirt.open(b.uri).lookupByName("mig")
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_only_on(b, uid, "mig", hosts)
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before + 1, 10, what="the serial log to keep advancing on B")


def test_abort_during_tunnelled_migration(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    thread, result = to_uri_in_thread(dom, b.uri, TUNNELLED, {"bandwidth": 4})
    watcher = pyvirt.open(a.uri)
    _wait_job_active(watcher, "mig")
    t0 = time.monotonic()
    watcher.lookupByName("mig").abortJob()
    thread.join(15)
    assert not thread.is_alive(), "the migration call did not return after the abort"
    assert time.monotonic() - t0 < 10
    assert result["error"].get_error_code() == pyvirt.VIR_ERR_OPERATION_ABORTED
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    wait_for(lambda: qemu_pid(b, "mig") is None, 10, what="no QEMU left on the destination")
    assert running_copies([a, b], uid) == 1
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before, 5, what="the source to keep running")


@pytest.mark.parametrize("flags", [P2P, TUNNELLED], ids=["p2p", "tunnelled"])
def test_destination_daemon_killed_during_migration(hosts, flags):
    a, b = hosts
    ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    thread, result = to_uri_in_thread(dom, b.uri, flags, {"bandwidth": 4})
    _wait_job_active(pyvirt.open(a.uri), "mig")
    dst_qemu = qemu_pid(b, "mig")
    b.stop(signal.SIGKILL)
    thread.join(30)
    assert "error" in result, "the migration should have failed"
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING          # the source was resumed
    assert running_copies([a], uid) >= 1
    if dst_qemu:   # the orphaned destination QEMU ends when its stream is cancelled, or at restart
        b.start()
        wait_for(lambda: not pid_alive(dst_qemu), 15, what="the orphaned destination QEMU to go")
    assert running_copies([a, b], uid) == 1


class CuttableProxy:
    """A TCP proxy the test can cut, to break the source daemon's link to the destination."""

    def __init__(self, target_port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = target_port
        self.socks: list[socket.socket] = []
        self.alive = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.alive:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.socks += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.alive = False
        for s in self.socks + [self.listener]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.mark.parametrize("flags", [P2P, TUNNELLED], ids=["p2p", "tunnelled"])
def test_connection_to_destination_cut(hosts, flags):
    a, b = hosts
    proxy = CuttableProxy(b.tcp_port)
    ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    thread, result = to_uri_in_thread(dom, f"qemu+tcp://127.0.0.1:{proxy.port}/system", flags, {"bandwidth": 4})
    try:
        _wait_job_active(pyvirt.open(a.uri), "mig")
    finally:
        proxy.cut()
    thread.join(30)
    assert "error" in result
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    wait_for(lambda: qemu_pid(b, "mig") is None, 15, what="the destination to autodestroy its half")
    assert running_copies([a, b], uid) == 1


@pytest.mark.parametrize("extra", [[], ["--tunnelled"]], ids=["p2p", "tunnelled"])
def test_virsh_p2p(hosts, extra):
    a, b = hosts
    _, dom, uid = start_guest(a)
    out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--p2p", *extra, "--verbose", "mig", b.uri],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Migration: [100 %]" in out.stderr
    assert_only_on(b, uid, "mig", hosts)


def test_virsh_tunnelled_domjobabort(hosts):
    a, b = hosts
    _, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    mig = subprocess.Popen(["virsh", "-c", a.uri, "migrate", "--live", "--p2p", "--tunnelled", "--bandwidth", "4",
                            "mig", b.uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_job_active(pyvirt.open(a.uri), "mig")
        abort = subprocess.run(["virsh", "-c", a.uri, "domjobabort", "mig"], capture_output=True, text=True)
        assert abort.returncode == 0, abort.stderr
    finally:
        _, err = mig.communicate(timeout=60)
    assert mig.returncode == 1 and "canceled by client" in err
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    wait_for(lambda: qemu_pid(b, "mig") is None, 10, what="the destination QEMU to go")
    assert running_copies([a, b], uid) == 1
