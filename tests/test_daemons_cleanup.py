"""The test harness itself: a pyvirtd whose teardown cannot talk to it is still stopped."""

from __future__ import annotations

import pytest

from daemons import Pyvirtd, pid_alive


def test_cleanup_stops_the_daemon_even_when_destroying_its_guests_fails(tmp_path, monkeypatch):
    daemon = Pyvirtd(tmp_path / "host").start()
    pid = daemon.pid

    def broken() -> None:
        raise ImportError("the client library is half-edited")
    monkeypatch.setattr(daemon, "destroy_all", broken)
    try:
        with pytest.raises(ImportError, match="half-edited"):
            daemon.cleanup()
        assert not pid_alive(pid), "cleanup left the daemon running"
    finally:
        if pid_alive(pid):
            monkeypatch.undo()
            daemon.cleanup()
