"""Shared fixtures: an embedded QEMU driver on a private root, always cleaned up.

QEMU runs as an unprivileged user (libvirt-qemu) under the default
configuration, and, as in libvirt, only the files it is given are relabelled,
never the directories above them.  pytest makes its temporary directories
0700, so every directory a test creates is made traversable (o+x) here, with
its parents: the guest's files can then be reached the way they would be
under /var/lib/libvirt/images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from guests import ensure_guests, kill_qemus_under, make_traversable, qemu_available  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def traversable_tmp(tmp_path_factory):
    """Every directory tmp_path_factory hands out (so tmp_path too) and its
    parents get o+x.  Checked again for each new directory, since another
    pytest session starting on this host resets its common root to 0700."""
    make_traversable(tmp_path_factory.getbasetemp())
    mktemp = tmp_path_factory.mktemp

    def traversable_mktemp(basename: str, numbered: bool = True) -> Path:
        path = mktemp(basename, numbered=numbered)
        make_traversable(path)
        return path

    tmp_path_factory.mktemp = traversable_mktemp
    yield
    tmp_path_factory.mktemp = mktemp


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
