"""pyvirtd as a systemd service: the unit file as systemd reads it, and the
readiness protocol (READY=1 / STOPPING=1 on NOTIFY_SOCKET) from a real pyvirtd."""

from __future__ import annotations

import configparser
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from daemons import Pyvirtd
from guests import REPO

from pyvirt.daemon import sdnotify

UNIT_SOURCE = REPO / "share" / "systemd" / "pyvirtd.service.in"


def installed_unit(tmp_path: Path) -> Path:
    """The unit as `make install` writes it, pointing at this checkout's pyvirtd."""
    bindir = Path(sys.executable).parent
    assert (bindir / "pyvirtd").exists(), "pyvirtd entry point missing from the venv"
    text = UNIT_SOURCE.read_text().replace("@BINDIR@", str(bindir)).replace("@SYSCONFDIR@", "/etc")
    path = tmp_path / "pyvirtd.service"
    path.write_text(text)
    return path


def test_unit_declares_notify_readiness_and_leaves_guests_running(tmp_path):
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(installed_unit(tmp_path))
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["KillMode"] == "process"      # SIGTERM to pyvirtd only, not to its QEMUs
    assert service["ExecStart"].split()[1:] == ["-f", "/etc/pyvirt/pyvirtd.conf"]
    assert "--check-config" in service["ExecStartPre"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_passes_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    unit = installed_unit(tmp_path)
    out = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # systemd only warns (status 0) about a directive it cannot parse: none may mention the unit
    assert unit.name not in out.stderr and str(unit) not in out.stderr, out.stderr


def test_notify_socket_addresses():
    assert sdnotify.address("/run/systemd/notify") == "/run/systemd/notify"
    assert sdnotify.address("@sd-notify") == "\0sd-notify"
    assert sdnotify.address("vsock:2:1234") is None
    assert sdnotify.address("relative/path") is None
    assert sdnotify.notify("READY=1", environ={}) is False          # not under systemd: nothing


def test_notify_reaches_an_abstract_socket():
    name = f"pyvirt-test-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert sdnotify.notify("STATUS=hello", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"STATUS=hello"


def test_notify_failure_is_not_raised(tmp_path):
    assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}) is False


def test_pyvirtd_sends_ready_then_stopping(tmp_path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(60)        # a bound on a broken daemon, not a measurement
        daemon = Pyvirtd(tmp_path / "d", extra_env={"NOTIFY_SOCKET": str(path)})
        try:
            daemon.start()
            ready = sock.recv(4096).decode().split("\n")
            assert ready[0] == "READY=1"
            status = [line for line in ready if line.startswith("STATUS=")]
            assert status and f"tcp 127.0.0.1:{daemon.tcp_port}" in status[0]
            # the daemon that said READY=1 serves
            import pyvirt
            conn = pyvirt.open(daemon.uri)
            assert conn.getType() == "QEMU"
            conn.close()
            daemon.stop()
            stopping = sock.recv(4096).decode().split("\n")
            assert stopping[0] == "STOPPING=1"
        finally:
            daemon.cleanup()
