"""Shared fixtures: an embedded QEMU driver on a private root, always cleaned up.

QEMU runs as an unprivileged user (libvirt-qemu) under the default
configuration, and, as in libvirt, only the files it is given are relabelled,
never the directories above them.  pytest makes its temporary directories
0700, so every directory a test creates is made traversable (o+x) here, with
its parents: the guest's files can then be reached the way they would be
under /var/lib/libvirt/images.  pytest's shared /tmp/pytest-of-USER is reset
to 0700 by every pytest session that starts, which would cut off the guests
of sessions running beside it; so unless --basetemp is given, each session
gets its own directory under /tmp/pyvirt-pytest-of-USER instead.
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from guests import ensure_guests, kill_qemus_under, make_traversable, qemu_available  # noqa: E402

_KEEP_RUNS_FOR = 6 * 3600      # s; older session directories are removed by later sessions


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    worker = getattr(config, "workerinput", {}).get("workerid", "")
    if config.option.basetemp:
        base = Path(config.option.basetemp)
        if worker and base.name == f"popen-{worker}":
            # pytest -n: a worker's directory beside the session's, not below it ("popen-gwN/"
            # would push the daemons' socket paths past AF_UNIX's 108 bytes)
            config.option.basetemp = f"{base.parent}-{worker.removeprefix('gw')}"
        return
    root = Path(tempfile.gettempdir()) / f"pyvirt-pytest-of-{getpass.getuser()}"
    root.mkdir(mode=0o711, exist_ok=True)
    st = os.lstat(root)
    if not os.path.isdir(root) or os.path.islink(root) or st.st_uid != os.geteuid():
        return                          # not ours: keep pytest's default
    os.chmod(root, 0o711)
    now = time.time()
    for old in [*root.glob("run-*"), *root.glob("r????????*")]:     # this scheme's and the earlier one's
        try:
            if now - old.lstat().st_mtime > _KEEP_RUNS_FOR:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    config.option.basetemp = tempfile.mkdtemp(prefix="r", dir=root)     # short: socket paths live below it


def pytest_collection_modifyitems(config, items):
    """pytest -n with --dist loadgroup: each file's tests on one worker (its module fixtures
    made once), and every test that runs a libvirtd 9.0 on one worker too, one after the
    other, as in a serial run (two libvirtd hosts side by side are not what these tests
    compare against)."""
    for item in items:
        group = "libvirtd" if item.get_closest_marker("libvirtd") else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session", autouse=True)
def traversable_tmp(tmp_path_factory):
    """Every directory tmp_path_factory hands out (so tmp_path too) and its
    parents get o+x."""
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
