"""Who made each call: the daemon keeps the client's identity on its connection (UNIX peer
uid/gid/pid from SO_PEERCRED, the certificate's DN, the SASL user: ConnectionInfo) and logs
it with every call that changes something, never with queries."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess

import pytest

from daemons import Pyvirtd
from pyvirt.daemon.auth import Authenticator, describe_identity
from pyvirt.driver import ConnectionInfo

SCRIPT = r"""
import json, os, sys, libvirt
conn = libvirt.open(sys.argv[1])
conn.listAllDomains()
conn.defineXML("<domain type='test'><name>%s</name><memory>1024</memory><os><type>hvm</type></os></domain>"
               % sys.argv[2])
conn.close()
print(json.dumps({"pid": os.getpid(), "uid": os.getuid()}))
"""


def audit_lines(daemon: Pyvirtd) -> list[str]:
    return [line for line in daemon.log_path.read_text().splitlines() if " pyvirtd.audit: " in line]


@pytest.fixture
def group_daemon(tmp_path):
    daemon = Pyvirtd(tmp_path / "id", extra_config='unix_sock_group = "kvm"\nunix_sock_rw_perms = "0770"\n')
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.cleanup()


@pytest.mark.parametrize("user", ["root", "libvirt-qemu"])
def test_unix_peer_uid_and_pid_logged_with_mutating_calls(group_daemon, user):
    if user != "root" and shutil.which("setpriv") is None:
        pytest.skip("needs util-linux's setpriv")
    uri = f"test+unix:///default?socket={group_daemon.sock_dir}/libvirt-sock"
    prefix = [] if user == "root" else ["setpriv", f"--reuid={user}", "--regid=kvm", "--init-groups"]
    run = subprocess.run([*prefix, "/usr/bin/python3", "-c", SCRIPT, uri, f"by-{user}"], capture_output=True,
                         text=True, timeout=60, env={"PATH": os.environ["PATH"], "HOME": "/"})
    assert run.returncode == 0, run.stderr
    who = json.loads(run.stdout)
    assert who["uid"] == pwd.getpwnam(user).pw_uid
    lines = audit_lines(group_daemon)
    assert any(f" uid={who['uid']} pid={who['pid']}: virDomainDefineXML" in line for line in lines), lines
    assert not any("virConnectListAllDomains" in line for line in lines)


def test_tcp_client_is_logged_by_its_address(pyvirtd):
    import pyvirt
    conn = pyvirt.open(pyvirtd.test_uri)
    try:
        conn.defineXML("<domain type='test'><name>over-tcp</name><memory>1024</memory>"
                       "<os><type>hvm</type></os></domain>")
    finally:
        conn.close()
    lines = audit_lines(pyvirtd)
    assert any(line.split(" pyvirtd.audit: ")[1].startswith("127.0.0.1:") and line.endswith(": virDomainDefineXML")
               and "uid=" not in line for line in lines), lines


def test_identity_reaches_the_connection_info():
    """The dispatcher hands the identity to the driver as ConnectionInfo fields (a unit check on a
    real socket pair, no daemon): SO_PEERCRED of the peer, here this very process."""
    class FakeClient:       # what Authenticator reads of an RPC ServerClient
        listener = "unit"
        peer = "unit"
        x509_dname = None

        def __init__(self, sock: socket.socket) -> None:
            self.transport = type("T", (), {"get_extra_info": lambda _s, key, default=None:
                                            sock if key == "socket" else default})()

    a, b = socket.socketpair()
    try:
        state = Authenticator().client_connected(FakeClient(a))   # type: ignore[arg-type]
    finally:
        a.close()
        b.close()
    assert state.secure and state.identity == {"unix_uid": os.getuid(), "unix_gid": os.getgid(),
                                                "unix_pid": os.getpid()}
    info = ConnectionInfo(uri="test:///default", client_id="unit", **state.identity, sasl_user="alice")
    assert describe_identity(vars(info), info.client_id) == f"unit uid={os.getuid()} pid={os.getpid()} sasl=alice"
