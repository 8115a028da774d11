"""Shared fixtures: an embedded QEMU driver on a private root, always cleaned up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from guests import ensure_guests, kill_qemus_under, qemu_available  # noqa: E402


@pytest.fixture(scope="session")
def guests_built():
    if not qemu_available():
        pytest.skip("qemu-system-x86_64 is not installed")
    ensure_guests()


@pytest.fixture
def embed_root(tmp_path, guests_built):
    """A root for ``qemu:///embed``; every QEMU started under it is gone afterwards."""
    from pyvirt import aio
    from pyvirt.drivers.qemu import embed
    from pyvirt.enums import EventStoppedDetail, ShutoffReason

    root = tmp_path / "host"
    root.mkdir()
    yield root
    # Destroy what the test left running through the driver, then make sure.
    drv = embed._DRIVERS.get(str(root))
    if drv is not None:
        async def destroy_all():
            for obj in list(drv.domains):
                if getattr(obj, "process", None) is not None:
                    await drv.kill(obj, ShutoffReason.DESTROYED, EventStoppedDetail.DESTROYED, grace=1.0)
        aio.run(destroy_all())
        aio.run(embed.close_all())
    leaked = kill_qemus_under(tmp_path)
    assert not leaked, f"QEMU processes left behind: {leaked}"


@pytest.fixture
def embed_uri(embed_root):
    return f"qemu:///embed?root={embed_root}"


@pytest.fixture
def pyvirtd(tmp_path):
    """A running pyvirtd on loopback TCP and a private UNIX socket."""
    from daemons import Pyvirtd

    daemon = Pyvirtd(tmp_path / "hostA")
    try:
        daemon.start()
        yield daemon
    finally:
        leaked = daemon.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


@pytest.fixture(scope="module")
def pyvirtd_module(tmp_path_factory):
    """One pyvirtd shared by a module's tests (for fuzzing many cases quickly)."""
    from daemons import Pyvirtd

    daemon = Pyvirtd(tmp_path_factory.mktemp("fuzz") / "host")
    try:
        daemon.start()
        yield daemon
    finally:
        leaked = daemon.cleanup()
    assert not leaked
