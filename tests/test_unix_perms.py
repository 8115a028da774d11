"""UNIX socket permissions: unix_sock_group, unix_sock_rw_perms, unix_sock_ro_perms applied as
configured (libvirt's defaults 0700 / 0777, the daemon's group, when absent), checked with
os.stat and by stock python3-libvirt clients running as other users (setpriv): a member of
the group reaches the read-write socket, anyone else only the read-only one, and the
read-only socket stays read-only whatever its mode."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess

import pytest

from daemons import Pyvirtd

CLIENT = r"""
import json, sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
uri, read_only = sys.argv[1], sys.argv[2] == "1"
out = {}
try:
    conn = libvirt.openReadOnly(uri) if read_only else libvirt.open(uri)
except libvirt.libvirtError as e:
    print(json.dumps({"connect": e.get_error_message()}))
    sys.exit(0)
out["names"] = sorted(d.name() for d in conn.listAllDomains())
try:
    conn.defineXML("<domain type='test'><name>%s</name><memory>1024</memory>"
                   "<os><type>hvm</type></os></domain>" % sys.argv[3])
    out["define"] = "ok"
except libvirt.libvirtError as e:
    out["define"] = e.get_error_message()
conn.close()
print(json.dumps(out))
"""

QEMU_USER, QEMU_GROUP = "libvirt-qemu", "kvm"


def as_user(user: str, group: str, uri: str, name: str, read_only: bool = False,
            supplementary: bool = True) -> dict:
    """python3-libvirt as ``user`` (with its groups, or none): what it could do."""
    argv = ["setpriv", f"--reuid={user}", f"--regid={group}",
            "--init-groups" if supplementary else "--clear-groups",
            "/usr/bin/python3", "-c", CLIENT, uri, "1" if read_only else "0", name]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"],
                                                                                 "HOME": "/"})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_default_modes_are_libvirts(pyvirtd):
    rw = os.stat(pyvirtd.sock_dir / "libvirt-sock")
    ro = os.stat(pyvirtd.sock_dir / "libvirt-sock-ro")
    assert stat.S_ISSOCK(rw.st_mode) and stat.S_ISSOCK(ro.st_mode)
    assert stat.S_IMODE(rw.st_mode) == 0o700 and stat.S_IMODE(ro.st_mode) == 0o777
    assert rw.st_gid == ro.st_gid == os.getegid()


@pytest.fixture
def group_daemon(tmp_path):
    if shutil.which("setpriv") is None:
        pytest.skip("needs util-linux's setpriv")
    pwd.getpwnam(QEMU_USER)   # made by make deps
    daemon = Pyvirtd(tmp_path / "perm", extra_config=f'unix_sock_group = "{QEMU_GROUP}"\n'
                     'unix_sock_rw_perms = "0770"\nunix_sock_ro_perms = "0777"\n')
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.cleanup()


def test_configured_group_and_modes_are_applied(group_daemon):
    gid = grp.getgrnam(QEMU_GROUP).gr_gid
    rw = os.stat(group_daemon.sock_dir / "libvirt-sock")
    ro = os.stat(group_daemon.sock_dir / "libvirt-sock-ro")
    assert (stat.S_IMODE(rw.st_mode), rw.st_gid) == (0o770, gid)
    assert (stat.S_IMODE(ro.st_mode), ro.st_gid) == (0o777, gid)


def _uris(daemon: Pyvirtd) -> tuple[str, str]:
    return (f"test+unix:///default?socket={daemon.sock_dir}/libvirt-sock",
            f"test+unix:///default?socket={daemon.sock_dir}/libvirt-sock-ro")


def test_group_member_reaches_the_read_write_socket(group_daemon):
    rw, _ = _uris(group_daemon)
    out = as_user(QEMU_USER, QEMU_GROUP, rw, "by-group-member")
    assert out == {"names": ["test"], "define": "ok"}, out


def test_other_user_only_reaches_the_read_only_socket(group_daemon):
    rw, ro = _uris(group_daemon)
    out = as_user("nobody", "nogroup", rw, "by-nobody", supplementary=False)
    assert "Permission denied" in out["connect"], out
    out = as_user("nobody", "nogroup", ro, "by-nobody-ro", read_only=True, supplementary=False)
    assert out["names"] == ["test"]
    assert out["define"] == "operation forbidden: read only access prevents virDomainDefineXML", out


def test_read_only_socket_stays_read_only_whatever_its_mode(group_daemon):
    """Even root, even when asking for a read-write connection on the 0777 read-only socket."""
    _, ro = _uris(group_daemon)
    out = as_user("root", "root", ro, "by-root-on-ro")
    assert out["names"] == ["test"]
    assert out["define"] == "operation forbidden: read only access prevents virDomainDefineXML", out
