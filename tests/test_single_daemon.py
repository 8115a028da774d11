"""One manager per state directory: a second pyvirtd (or an embedded driver) on a
directory another one manages is refused before it touches anything.

Without the lock, a second pyvirtd on the same configuration adopted every
guest while the first still held their monitors, timed out, and killed every
running QEMU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from daemons import Bystander, Pyvirtd
from guests import REPO

import pyvirt
from pyvirt.drivers.qemu import rootlock

SECOND_DAEMON_TIMEOUT = 60.0   # s; it should exit at once, this only bounds a hang


def start_second(daemon: Pyvirtd) -> subprocess.CompletedProcess:
    """Another pyvirtd on exactly the configuration ``daemon`` runs with; it must exit."""
    conf = daemon.workdir / "pyvirtd.conf"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        return subprocess.run([sys.executable, "-m", "pyvirt.daemon.main", "-f", str(conf)], env=env,
                              cwd=REPO, capture_output=True, text=True, timeout=SECOND_DAEMON_TIMEOUT)
    except subprocess.TimeoutExpired as exc:   # run() killed it (by its pid) before raising
        pytest.fail(f"a second pyvirtd on {daemon.state_dir} did not exit within "
                    f"{SECOND_DAEMON_TIMEOUT:.0f} s:\n{exc.stderr}")


def test_second_daemon_exits_touching_no_guest_and_the_lock_dies_with_its_holder(tmp_path, guests_built):
    daemon = Pyvirtd(tmp_path / "host")
    try:
        daemon.start()
        guests = [Bystander.start(daemon, f"single{i}") for i in range(2)]
        first_pid = daemon.pid

        second = start_second(daemon)
        assert second.returncode == 1, second.stderr
        # its only words: nothing of its start-up ran (no adoption, no driver, no listener)
        assert second.stderr.splitlines() == [
            f"pyvirtd: error: pyvirtd is already running with pid {first_pid} on state directory "
            f"{daemon.state_dir}"]
        for guest in guests:
            guest.assert_unchanged()     # same QEMU, running (booted), QMP "running", through A

        # The lock goes with its holder: after SIGTERM the next daemon adopts both guests ...
        daemon.stop(signal.SIGTERM)
        daemon.start()
        assert daemon.pid != first_pid
        for guest in guests:
            guest.assert_unchanged()
        # ... and after SIGKILL too (the kernel drops it; no QEMU inherited it).
        daemon.stop(signal.SIGKILL)
        daemon.start()
        for guest in guests:
            guest.assert_unchanged()
        assert (daemon.state_dir / "run" / "pyvirtd.pid").read_text().split("\n")[:2] == [
            str(daemon.pid), "pyvirtd"]
    finally:
        leaked = daemon.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def test_embedded_driver_refused_on_a_daemons_state_dir(pyvirtd):
    with pytest.raises(pyvirt.libvirtError) as info:
        pyvirt.open(f"qemu:///embed?root={pyvirtd.state_dir}")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_SYSTEM_ERROR
    assert (f"pyvirtd is already running with pid {pyvirtd.pid} on state directory "
            f"{pyvirtd.state_dir}") in info.value.get_error_message()
    assert pyvirtd.alive


def test_daemon_refused_on_an_embedded_drivers_root(embed_uri, embed_root, tmp_path):
    conn = pyvirt.open(embed_uri)
    try:
        daemon = Pyvirtd(tmp_path / "d")
        daemon.workdir.mkdir()
        daemon.write_config()
        conf = daemon.workdir / "pyvirtd.conf"
        conf.write_text(conf.read_text().replace(f'state_dir = "{daemon.state_dir}"',
                                                 f'state_dir = "{embed_root}"'))
        second = start_second(daemon)
        assert second.returncode == 1
        assert (f"an embedded qemu driver (qemu:///embed) is already running with pid {os.getpid()} "
                f"on state directory {embed_root}") in second.stderr
        assert not daemon.sock_dir.exists()          # it never got as far as listening
        assert conn.listAllDomains() == []           # the embedded driver carries on
    finally:
        conn.close()


def test_lock_excludes_within_one_process_and_is_released(tmp_path):
    lock = rootlock.acquire(tmp_path, "first")
    with pytest.raises(pyvirt.libvirtError, match=rf"first is already running with pid {os.getpid()} "):
        rootlock.acquire(tmp_path, "second")
    lock.release()
    assert not (tmp_path / "run" / "pyvirtd.pid").exists()
    again = rootlock.acquire(tmp_path, "second")
    assert again.held
    again.release()
    assert not again.held
