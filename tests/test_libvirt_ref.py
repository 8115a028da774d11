"""The libvirt 9.0 reference hosts of bench/libvirt_ref.py.

Two libvirtd hosts side by side, a tiny guest on one of them, and nothing
left running once a host is stopped (through ``stop()`` or by SIGTERM to
its subreaper).  Needs root and Debian's libvirtd; skipped otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from guests import READY, REPO, TINY, pid_alive, tiny_xml, wait_for, wait_for_text

sys.path.insert(0, str(REPO / "bench"))

import libvirt_ref  # noqa: E402
from libvirt_ref import LibvirtHost, pick_free_ports  # noqa: E402

AVAILABLE, WHY = libvirt_ref.libvirt_available()

pytestmark = [
    pytest.mark.libvirtd,
    pytest.mark.qemu,
    pytest.mark.skipif(not AVAILABLE, reason=f"libvirtd not available: {WHY}"),
]


@pytest.fixture(scope="session")
def libvirt_cache(tmp_path_factory):
    """One QEMU capability cache for every host of the session: one ~8 s probe only."""
    return tmp_path_factory.mktemp("libvirt-cache")


@pytest.fixture(scope="session")
def tiny_kernel():
    if not TINY.exists():
        subprocess.run(["bash", str(REPO / "guests" / "build.sh"), "tiny"], check=True, cwd=REPO)
    return TINY


def assert_all_gone(pids):
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=5, what="processes to exit")


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory, libvirt_cache):
    base = tmp_path_factory.mktemp("libvirt-hosts")
    ports = pick_free_ports(2)
    hosts = [LibvirtHost(base / f"host{i}", port, 61000 + 32 * i, 61000 + 32 * i + 15,
                         cache_dir=libvirt_cache)
             for i, port in enumerate(ports)]
    seen: set[int] = set()
    try:
        for host in hosts:  # one at a time: the first one fills the cache
            host.start()
        yield hosts
    finally:
        for host in hosts:
            seen.update(host.processes())
        for host in hosts:
            host.stop()
    assert_all_gone(seen)
    assert not [p for host in hosts for p in host.processes()]


def create_tiny(host: LibvirtHost, tmp_path: Path, name: str, *, persistent: bool) -> tuple[int, Path]:
    serial = tmp_path / f"{name}.serial.log"
    xml = tmp_path / f"{name}.xml"
    xml.write_text(tiny_xml(name, serial))
    if persistent:
        host.virsh("define", str(xml))
        host.virsh("start", name)
    else:
        host.virsh("create", str(xml))
    qemu = host.domain_pid(name)
    assert qemu is not None and pid_alive(qemu)
    wait_for_text(serial, READY, timeout=30)
    return qemu, serial


def test_both_hosts_answer(two_hosts):
    a, b = two_hosts
    assert a.uri != b.uri and a.pid != b.pid
    for host in two_hosts:
        out = host.virsh("version").stdout
        assert "libvirt 9." in out and "Running hypervisor: QEMU" in out, out
        assert host.rss_kib() > 1024


def test_hosts_have_their_own_identity(two_hosts):
    uuids = set()
    for host in two_hosts:
        assert host.virsh("hostname").stdout.strip() == host.hostname
        caps = ET.fromstring(host.virsh("capabilities").stdout)
        uuids.add(caps.findtext("host/uuid"))
        assert caps.findtext("host/uuid") == host.host_uuid
    assert len(uuids) == 2


def test_tiny_guest_define_start_destroy(two_hosts, tmp_path, tiny_kernel):
    a, b = two_hosts
    name = "ref-tiny"
    try:
        qemu, _ = create_tiny(a, tmp_path, name, persistent=True)
        assert qemu in a.processes() and qemu not in b.processes()
        assert a.virsh("domstate", name).stdout.strip() == "running"
        assert b.virsh("domstate", name, check=False).returncode != 0  # the other host
        a.virsh("destroy", name)
        assert a.virsh("domstate", name).stdout.strip() == "shut off"
        assert_all_gone([qemu])
    finally:
        a.virsh("destroy", name, check=False)
        a.virsh("undefine", name, check=False)


@pytest.mark.parametrize("how", ["stop", "sigterm-subreaper"])
def test_nothing_survives_a_stopped_host(tmp_path, libvirt_cache, tiny_kernel, how):
    host = LibvirtHost(tmp_path / "host", pick_free_ports(1)[0], cache_dir=libvirt_cache)
    try:
        host.start()
        qemu, _ = create_tiny(host, tmp_path, "left-running", persistent=False)
        started = [host.wrapper_pid, host.pid, qemu]
        assert set(host.processes()) >= {host.pid, qemu}
        if how == "sigterm-subreaper":
            os.kill(host.wrapper_pid, signal.SIGTERM)
            wait_for(lambda: not pid_alive(started[0]), timeout=20, what="the subreaper to exit")
            assert_all_gone(started)
        t = time.monotonic()
        swept = host.stop()
        assert swept == []  # the subreaper stopped everything itself
        assert time.monotonic() - t < 10
    finally:
        host.stop()
    assert_all_gone(started)
    assert host.processes() == []
