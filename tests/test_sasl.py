"""SASL against a real pyvirtd through cyrus-sasl: SCRAM-SHA-256 users from a sasldb made
by saslpasswd2, a libvirt.conf in SASL_CONF_PATH, and stock virsh (auth.conf through
LIBVIRT_AUTH_FILE), python3-libvirt (openAuth with a callback) and pyvirt's client on the
UNIX socket; plain TCP refused (SCRAM has no security layer); an unauthenticated client
refused everything but authentication; hostile input before authentication."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys

import pytest

import pyvirt
from pyvirt.errors import ErrorNumber, libvirtError
from pyvirt.rpc.client import RPCClient
from pyvirt.rpc.protocol import REMOTE
from pyvirt.rpc.wire import Program
from saslenv import USERS, SaslPyvirtd, SaslSetup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRAM = "SCRAM-SHA-256"
# (user, password, expected to get in): right password, wrong password, unknown user, outside the list
CASES = [("alice", USERS["alice"], True), ("alice", "not-her-password", False),
         ("mallory", "whatever", False), ("carol", USERS["carol"], False)]
CASE_IDS = ["right-password", "wrong-password", "unknown-user", "outside-allowed-list"]


@pytest.fixture(scope="module")
def sasl_setup(tmp_path_factory):
    return SaslSetup(tmp_path_factory.mktemp("sasl")).make()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, sasl_setup):
    d = SaslPyvirtd(tmp_path_factory.mktemp("sasld") / "host", sasl=sasl_setup)
    try:
        d.start()
        yield d
    finally:
        leaked = d.cleanup()
    assert not leaked


def virsh(uri: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))


# -- stock virsh, credentials from auth.conf ------------------------------------------
@pytest.mark.parametrize("user,password,admitted", CASES, ids=CASE_IDS)
def test_virsh_with_auth_conf(daemon, sasl_setup, user, password, admitted):
    run = virsh(daemon.unix("test"), "list", "--all",
                env={"LIBVIRT_AUTH_FILE": str(sasl_setup.auth_file(user, password))})
    if admitted:
        assert run.returncode == 0, run.stderr
        assert "test" in run.stdout            # the test driver's default domain
    else:
        assert run.returncode == 1
        assert "authentication failed: authentication failed" in run.stderr, run.stderr


def test_denied_user_is_named_in_the_daemon_log(daemon, sasl_setup):
    virsh(daemon.unix("test"), "list", env={"LIBVIRT_AUTH_FILE": str(sasl_setup.auth_file("carol", USERS["carol"]))})
    assert "SASL client identity 'carol' not allowed by sasl_allowed_username_list" in daemon.log_path.read_text()


# -- python3-libvirt, openAuth with a callback -------------------------------------------
LIBVIRT_SCRIPT = r"""
import json, sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
uri, user, password = sys.argv[1:4]
asked = []
def callback(creds, data):
    for cred in creds:
        asked.append(cred[0])
        cred[4] = {libvirt.VIR_CRED_AUTHNAME: user, libvirt.VIR_CRED_PASSPHRASE: password}.get(cred[0], "")
    return 0
try:
    conn = libvirt.openAuth(uri, [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], callback, None], 0)
    out = {"names": [d.name() for d in conn.listAllDomains()]}
    conn.close()
except libvirt.libvirtError as e:
    out = {"code": e.get_error_code(), "message": e.get_error_message()}
out["asked"] = asked
print(json.dumps(out))
"""


@pytest.mark.parametrize("user,password,admitted", CASES, ids=CASE_IDS)
def test_python3_libvirt_open_auth(daemon, sasl_setup, user, password, admitted):
    run = subprocess.run(["/usr/bin/python3", "-c", LIBVIRT_SCRIPT, daemon.unix("test"), user, password],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ, LIBVIRT_AUTH_FILE=str(sasl_setup.no_auth_file)))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert sorted(out["asked"]) == [2, 5], out      # VIR_CRED_AUTHNAME, VIR_CRED_PASSPHRASE
    if admitted:
        assert out.get("names") == ["test"], out
    else:
        assert out["code"] == ErrorNumber.AUTH_FAILED and out["message"] == "authentication failed: authentication failed"


# -- pyvirt's client: openAuth, auth.conf, ?authfile=, the CLI ------------------------------
def _callback(user: str, password: str):
    def fill(creds, _data):
        for cred in creds:
            cred[4] = {pyvirt.VIR_CRED_AUTHNAME: user, pyvirt.VIR_CRED_PASSPHRASE: password}[cred[0]]
        return 0
    return fill


@pytest.mark.parametrize("user,password,admitted", CASES, ids=CASE_IDS)
def test_pyvirt_open_auth(daemon, sasl_setup, monkeypatch, user, password, admitted):
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.no_auth_file))     # nothing from a file: the callback answers
    auth = [[pyvirt.VIR_CRED_AUTHNAME, pyvirt.VIR_CRED_PASSPHRASE], _callback(user, password), None]
    if admitted:
        conn = pyvirt.openAuth(daemon.unix("test"), auth, 0)
        try:
            assert [d.name() for d in conn.listAllDomains()] == ["test"]
        finally:
            conn.close()
    else:
        with pytest.raises(libvirtError) as exc:
            pyvirt.openAuth(daemon.unix("test"), auth, 0)
        assert exc.value.get_error_code() == ErrorNumber.AUTH_FAILED
        assert exc.value.get_error_message() == "authentication failed: authentication failed"


def test_pyvirt_reads_auth_conf_from_env_and_from_authfile_param(daemon, sasl_setup, monkeypatch):
    good = sasl_setup.auth_file("alice", USERS["alice"])
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(good))
    conn = pyvirt.open(daemon.unix("test"))
    assert conn.getType() == "TEST"
    conn.close()
    monkeypatch.delenv("LIBVIRT_AUTH_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(sasl_setup.root / "no-such-dir"))
    conn = pyvirt.open(daemon.unix("test") + f"&authfile={good}")
    assert conn.getType() == "TEST"
    conn.close()
    # the environment wins over ?authfile=, as in libvirt
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.auth_file("alice", "wrong")))
    with pytest.raises(libvirtError, match="authentication failed"):
        pyvirt.open(daemon.unix("test") + f"&authfile={good}")


def test_pyvirt_reads_xdg_config_home_auth_conf(daemon, sasl_setup, monkeypatch, tmp_path):
    (tmp_path / "libvirt").mkdir()
    (tmp_path / "libvirt" / "auth.conf").write_text(sasl_setup.auth_file("alfred", USERS["alfred"]).read_text())
    monkeypatch.delenv("LIBVIRT_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    conn = pyvirt.open(daemon.unix("test"))
    assert conn.listAllDomains()[0].name() == "test"
    conn.close()
    assert "authenticated with SASL as 'alfred'" in daemon.log_path.read_text()


def test_pyvirt_without_credentials_says_so(daemon, sasl_setup, monkeypatch):
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.no_auth_file))
    with pytest.raises(libvirtError, match="no credentials for SASL") as exc:
        pyvirt.open(daemon.unix("test"))
    assert exc.value.get_error_code() == ErrorNumber.AUTH_FAILED


def _cli(uri: str, *words: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyvirt.cli.main", "-c", uri, *words], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO, **env))


def test_pyvirt_cli_with_auth_conf(daemon, sasl_setup):
    empty = str(sasl_setup.no_auth_file)
    run = _cli(daemon.unix("test"), "list", "--all",
               env={"LIBVIRT_AUTH_FILE": str(sasl_setup.auth_file("alice", USERS["alice"]))})
    assert run.returncode == 0, run.stderr
    assert " test " in run.stdout
    run = _cli(daemon.unix("test"), "list", env={"LIBVIRT_AUTH_FILE": str(sasl_setup.auth_file("alice", "bad"))})
    assert run.returncode == 1 and "authentication failed" in run.stderr
    # no file and no terminal to ask on: refused as virsh refuses
    run = _cli(daemon.unix("test"), "list", env={"LIBVIRT_AUTH_FILE": empty})
    assert run.returncode == 1 and "Failed to collect auth credentials" in run.stderr


# -- plain TCP: SCRAM has no security layer, so it is refused (tcp_min_ssf) ----------------------
def test_plain_tcp_sasl_is_refused(daemon, sasl_setup, monkeypatch):
    good = str(sasl_setup.auth_file("alice", USERS["alice"], host="127.0.0.1"))
    run = virsh(daemon.uri, "list", env={"LIBVIRT_AUTH_FILE": good})
    assert run.returncode == 1 and "authentication failed" in run.stderr
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", good)
    with pytest.raises(libvirtError, match="protects plain TCP") as exc:
        pyvirt.open(daemon.uri)
    assert exc.value.get_error_code() == ErrorNumber.AUTH_FAILED

    async def raw() -> tuple[str, libvirtError]:
        client = await RPCClient.connect_tcp("127.0.0.1", daemon.tcp_port)
        try:
            mechs = await client.call(Program.REMOTE, REMOTE.by_name["AUTH_SASL_INIT"])
            with pytest.raises(libvirtError) as start:
                await client.call(Program.REMOTE, REMOTE.by_name["AUTH_SASL_START"], (SCRAM, 0, b"n,,n=alice,r=abc"))
            return mechs, start.value
        finally:
            client.close()
    mechs, err = asyncio.run(raw())
    assert SCRAM not in mechs          # not offered where it would leave the traffic unprotected
    assert err.get_error_code() == ErrorNumber.AUTH_FAILED


# -- before authentication: nothing but authentication ----------------------------------------------
def test_unauthenticated_client_gets_authentication_required(daemon):
    async def run() -> None:
        client = await RPCClient.connect_unix(str(daemon.rw_socket))
        try:
            assert await client.call(Program.REMOTE, REMOTE.by_name["AUTH_LIST"]) == [1]   # REMOTE_AUTH_SASL
            for name, args in (("CONNECT_LIST_ALL_DOMAINS", (1, 0)), ("CONNECT_OPEN", ("qemu:///system", 0)),
                               ("CONNECT_GET_TYPE", ())):
                with pytest.raises(libvirtError) as exc:
                    await client.call(Program.REMOTE, REMOTE.by_name[name], args)
                # libvirt answers VIR_ERR_RPC here (virNetServerProgramDispatchCall)
                assert exc.value.get_error_code() == ErrorNumber.RPC, name
                assert exc.value.get_error_message() == "authentication required"
            # undecodable arguments too: the check comes before decoding, as in libvirt
            status, payload = await client.call_raw(Program.REMOTE, 273, b"\xff" * 3)
            assert status == 1 and b"authentication required" in payload
            # a failed negotiation leaves the client where it was
            await client.call(Program.REMOTE, REMOTE.by_name["AUTH_SASL_INIT"])
            with pytest.raises(libvirtError, match="authentication failed"):
                await client.call(Program.REMOTE, REMOTE.by_name["AUTH_SASL_STEP"], (0, b"c=biws,r=x,p=y"))
            with pytest.raises(libvirtError, match="authentication required"):
                await client.call(Program.REMOTE, REMOTE.by_name["CONNECT_LIST_ALL_DOMAINS"], (1, 0))
        finally:
            client.close()
    asyncio.run(run())


def test_read_only_socket_without_auth_still_serves(daemon, sasl_setup):
    """auth_unix_ro stays "none" here: the read-only socket needs no credentials."""
    run = virsh(daemon.unix("test", read_only=True), "list", "--all", env={"LIBVIRT_AUTH_FILE": str(sasl_setup.no_auth_file)})
    assert run.returncode == 0, run.stderr


def test_hostile_input_before_authentication_leaves_others_served(daemon, sasl_setup, monkeypatch):
    path = str(daemon.rw_socket)
    garbage = socket.socket(socket.AF_UNIX)
    garbage.connect(path)
    garbage.sendall(b"\x00\x00\x00\x02" + os.urandom(64))          # a length word below the header size
    huge = socket.socket(socket.AF_UNIX)
    huge.connect(path)
    huge.sendall(struct.pack(">I", 0x7FFFFFFF) + b"\0" * 24)          # far beyond any message size
    half = []
    for _ in range(8):                                               # frames begun, never finished
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(struct.pack(">I", 1 << 20) + b"\0" * 100)
        half.append(s)
    try:
        for s in (garbage, huge):        # both dropped: the server closes them
            s.settimeout(30)
            assert s.recv(100) == b""
        monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.auth_file("alice", USERS["alice"])))
        conn = pyvirt.open(daemon.unix("test"))
        try:
            assert conn.listAllDomains()[0].name() == "test"
        finally:
            conn.close()
        assert daemon.alive
    finally:
        for s in [garbage, huge, *half]:
            s.close()


def test_sasl_init_and_step_on_a_listener_without_sasl_fail(daemon):
    """AUTH_SASL_INIT where no SASL is asked (the read-only socket, auth none) fails, as libvirt's."""
    async def run() -> None:
        client = await RPCClient.connect_unix(str(daemon.ro_socket))
        try:
            assert await client.call(Program.REMOTE, REMOTE.by_name["AUTH_LIST"]) == [0]
            with pytest.raises(libvirtError, match="authentication failed"):
                await client.call(Program.REMOTE, REMOTE.by_name["AUTH_SASL_INIT"])
            with pytest.raises(libvirtError, match="authentication failed"):
                await client.call(Program.REMOTE, REMOTE.by_name["AUTH_POLKIT"])
        finally:
            client.close()
    asyncio.run(run())


def test_hostile_sasl_sequences_do_not_take_the_daemon_down(daemon, sasl_setup, monkeypatch):
    """Steps out of order, a second start, mechanisms not offered, random tokens: each is
    "authentication failed" (cyrus-sasl would crash on a step before its start)."""
    import random
    rng = random.Random(12)
    init, start, step = (REMOTE.by_name[n] for n in ("AUTH_SASL_INIT", "AUTH_SASL_START", "AUTH_SASL_STEP"))

    async def run() -> list[str]:
        outcomes = []
        client = await RPCClient.connect_unix(str(daemon.rw_socket))
        try:
            sequences = [[("step", None)], [("init",), ("step", b"x")], [("init",), ("start", "PLAIN", b"\0a\0b")],
                         [("init",), ("init",)], [("init",), ("start", SCRAM, b"n,,n=alice,r=1"), ("start", SCRAM, b"")]]
            sequences += [[("init",), ("start", SCRAM, rng.randbytes(rng.randrange(200))),
                           ("step", rng.randbytes(rng.randrange(200)))] for _ in range(30)]
            for seq in sequences:
                for op, *args in seq:
                    try:
                        if op == "init":
                            await client.call(Program.REMOTE, init)
                        elif op == "start":
                            await client.call(Program.REMOTE, start, (args[0], 0, args[1]))
                        else:
                            data = args[0]
                            await client.call(Program.REMOTE, step, (1 if data is None else 0, data or b""))
                        outcomes.append("ok")
                    except libvirtError as exc:
                        outcomes.append(exc.get_error_message())
        finally:
            client.close()
        return outcomes
    outcomes = asyncio.run(run())
    assert set(outcomes) <= {"ok", "authentication failed: authentication failed"}, set(outcomes)
    assert "authentication failed: authentication failed" in outcomes
    assert daemon.alive
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.auth_file("alice", USERS["alice"])))
    conn = pyvirt.open(daemon.unix("test"))
    assert conn.listAllDomains()[0].name() == "test"
    conn.close()


def test_clients_that_never_authenticate_cannot_stall_an_authenticated_one(daemon, sasl_setup, monkeypatch):
    """More idle unauthenticated connections than max_anonymous_clients (20): the daemon stops
    accepting new ones, as libvirtd does, but the authenticated client keeps being served, and
    new clients get in again once the idle ones are gone."""
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.auth_file("alice", USERS["alice"])))
    conn = pyvirt.open(daemon.unix("test"))
    idle = []
    try:
        for _ in range(25):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(daemon.rw_socket))     # the kernel's listen queue takes those not accepted
            idle.append(s)
        for _ in range(20):
            assert conn.listAllDomains()[0].name() == "test"
    finally:
        for s in idle:
            s.close()
    conn.close()
    again = pyvirt.open(daemon.unix("test"))
    assert again.listAllDomains()[0].name() == "test"
    again.close()


def test_read_only_socket_with_sasl(tmp_path, sasl_setup):
    """auth_unix_ro = "sasl": the read-only socket asks for SASL too, and stays read-only after it."""
    d = SaslPyvirtd(tmp_path / "ro", sasl=sasl_setup, auth={"auth_tcp": "sasl", "auth_unix_ro": "sasl"})
    try:
        d.start()
        good = {"LIBVIRT_AUTH_FILE": str(sasl_setup.auth_file("alice", USERS["alice"]))}
        run = virsh(d.unix("test", read_only=True), "-r", "list", "--all", env={"LIBVIRT_AUTH_FILE": str(
            sasl_setup.no_auth_file)})
        assert run.returncode == 1, run.stdout
        run = virsh(d.unix("test", read_only=True), "list --all; suspend test", env=good)
        assert " test " in run.stdout
        assert "read only access prevents virDomainSuspend" in run.stderr, run.stderr
        run = virsh(d.unix("test"), "list", env={"LIBVIRT_AUTH_FILE": str(sasl_setup.no_auth_file)})
        assert run.returncode == 0, run.stderr     # auth_unix_rw stays "none" here
    finally:
        d.cleanup()


def test_auth_param_picks_the_type_and_mechanism(daemon, sasl_setup, monkeypatch):
    """?auth=sasl.MECH as libvirt's client takes it: that mechanism, or a clear refusal."""
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.auth_file("alice", USERS["alice"])))
    conn = pyvirt.open(daemon.unix("test") + "&auth=sasl.scram-sha-256")
    assert conn.listAllDomains()[0].name() == "test"
    conn.close()
    with pytest.raises(libvirtError, match="SASL mechanism DIGEST-MD5 not supported by server"):
        pyvirt.open(daemon.unix("test") + "&auth=sasl.DIGEST-MD5")
    with pytest.raises(libvirtError, match="requested authentication type polkit rejected"):
        pyvirt.open(daemon.unix("test") + "&auth=polkit")
    with pytest.raises(libvirtError, match="unknown authentication type kerberos"):
        pyvirt.open(daemon.unix("test") + "&auth=kerberos")
    # virsh says the same for a mechanism the server does not offer
    run = virsh(daemon.unix("test") + "&auth=sasl.DIGEST-MD5", "list",
                env={"LIBVIRT_AUTH_FILE": str(sasl_setup.auth_file("alice", USERS["alice"]))})
    assert run.returncode == 1 and "SASL mechanism DIGEST-MD5 not supported by server" in run.stderr, run.stderr


@pytest.mark.parametrize("allowed,admitted", [([], set()), (None, {"alice", "carol"})],
                         ids=["empty-list-admits-nobody", "absent-list-admits-every-user"])
def test_allowed_username_list_empty_and_absent(tmp_path, sasl_setup, allowed, admitted):
    d = SaslPyvirtd(tmp_path / "acl", sasl=sasl_setup, allowed=allowed)
    try:
        d.start()
        got = set()
        for user in ("alice", "carol"):
            run = virsh(d.unix("test"), "list", env={"LIBVIRT_AUTH_FILE": str(sasl_setup.auth_file(user, USERS[user]))})
            if run.returncode == 0:
                got.add(user)
            else:
                assert "authentication failed" in run.stderr, run.stderr
        assert got == admitted
    finally:
        d.cleanup()
