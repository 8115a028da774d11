"""SASL SCRAM-SHA-256 on top of TLS (auth_tls = "sasl"), the walk-through of issue 12: a
trusted client certificate plus the right password gets in; a wrong password, an unknown
user and a user outside sasl_allowed_username_list do not; an authenticated-by-certificate
but not-yet-SASL client gets "authentication required" for CONNECT_LIST_ALL_DOMAINS; with
stock virsh (auth.conf), python3-libvirt (openAuth) and pyvirt's client.  Hostile TLS input
before authentication leaves the daemon serving."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess

import pytest

import pyvirt
from daemons import free_port
from pki import ALLOWED_DN_LIST, TRUSTED_DN, pki  # noqa: F401 - the session fixture
from pyvirt.errors import ErrorNumber, libvirtError
from pyvirt.rpc.client import RPCClient
from pyvirt.rpc.protocol import REMOTE
from pyvirt.rpc.wire import Program
from pyvirt.uri import parse
from saslenv import USERS, SaslPyvirtd, SaslSetup
from test_sasl import CASE_IDS, CASES, LIBVIRT_SCRIPT, _callback, virsh


@pytest.fixture(scope="module")
def sasl_setup(tmp_path_factory):
    return SaslSetup(tmp_path_factory.mktemp("sasl")).make()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, sasl_setup, pki):  # noqa: F811
    port = free_port()
    d = SaslPyvirtd(tmp_path_factory.mktemp("sasltls") / "host", sasl=sasl_setup,
                    auth={"auth_tcp": "sasl", "auth_unix_rw": "sasl", "auth_tls": "sasl"},
                    extra_config=pki.daemon_config(port=port, allowed_dn_list=ALLOWED_DN_LIST))
    d.tls_port = port
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


def tls_uri(daemon, pki, driver: str = "test", client: str = "trusted") -> str:  # noqa: F811
    path = "/default" if driver == "test" else "/system"
    return f"{driver}+tls://127.0.0.1:{daemon.tls_port}{path}?pkipath={pki.pkipath(client)}"


@pytest.mark.parametrize("user,password,admitted", CASES, ids=CASE_IDS)
def test_virsh_sasl_over_tls(daemon, pki, sasl_setup, user, password, admitted):  # noqa: F811
    run = virsh(tls_uri(daemon, pki), "list", "--all",
                env={"LIBVIRT_AUTH_FILE": str(sasl_setup.auth_file(user, password, host="127.0.0.1"))})
    if admitted:
        assert run.returncode == 0, run.stderr
        assert "test" in run.stdout
    else:
        assert run.returncode == 1
        assert "authentication failed: authentication failed" in run.stderr, run.stderr


@pytest.mark.parametrize("user,password,admitted", CASES, ids=CASE_IDS)
def test_python3_libvirt_sasl_over_tls(daemon, pki, sasl_setup, user, password, admitted):  # noqa: F811
    run = subprocess.run(["/usr/bin/python3", "-c", LIBVIRT_SCRIPT, tls_uri(daemon, pki), user, password],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, LIBVIRT_AUTH_FILE=str(sasl_setup.no_auth_file)))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    if admitted:
        assert out.get("names") == ["test"], out
    else:
        assert out["code"] == ErrorNumber.AUTH_FAILED, out


@pytest.mark.parametrize("user,password,admitted", CASES, ids=CASE_IDS)
def test_pyvirt_sasl_over_tls(daemon, pki, sasl_setup, monkeypatch, user, password, admitted):  # noqa: F811
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.no_auth_file))
    auth = [[pyvirt.VIR_CRED_AUTHNAME, pyvirt.VIR_CRED_PASSPHRASE], _callback(user, password), None]
    if admitted:
        conn = pyvirt.openAuth(tls_uri(daemon, pki), auth, 0)
        try:
            assert [d.name() for d in conn.listAllDomains()] == ["test"]
            assert conn.isSecure() == 1
        finally:
            conn.close()
    else:
        with pytest.raises(libvirtError) as exc:
            pyvirt.openAuth(tls_uri(daemon, pki), auth, 0)
        assert exc.value.get_error_code() == ErrorNumber.AUTH_FAILED


def test_sasl_identity_and_certificate_dn_are_logged_with_mutating_calls(daemon, pki, sasl_setup,  # noqa: F811
                                                                          monkeypatch):
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.auth_file("alfred", USERS["alfred"], host="127.0.0.1")))
    conn = pyvirt.open(tls_uri(daemon, pki))
    try:
        conn.listAllDomains()
        dom = conn.lookupByName("test")
        dom.suspend()
        dom.resume()
    finally:
        conn.close()
    lines = [line for line in daemon.log_path.read_text().splitlines() if "pyvirtd.audit" in line]
    mine = [line for line in lines if "sasl=alfred" in line]
    assert any(line.endswith(": virDomainSuspend") for line in mine), lines
    assert any(line.endswith(": virDomainResume") for line in mine), lines
    assert all(f"dn={TRUSTED_DN}" in line for line in mine), mine
    assert not any("virConnectListAllDomains" in line for line in lines)     # queries are not logged


def test_certificate_alone_is_not_enough(daemon, pki):  # noqa: F811
    """Through TLS with a trusted certificate but before SASL: nothing but authentication."""
    async def run() -> None:
        client = await RPCClient.connect_tls(parse(tls_uri(daemon, pki)))
        try:
            assert await client.call(Program.REMOTE, REMOTE.by_name["AUTH_LIST"]) == [1]
            assert "SCRAM-SHA-256" in await client.call(Program.REMOTE, REMOTE.by_name["AUTH_SASL_INIT"])
            with pytest.raises(libvirtError) as exc:
                await client.call(Program.REMOTE, REMOTE.by_name["CONNECT_LIST_ALL_DOMAINS"], (1, 0))
            assert exc.value.get_error_code() == ErrorNumber.RPC
            assert exc.value.get_error_message() == "authentication required"
        finally:
            client.close()
    asyncio.run(run())


def test_hostile_tls_input_before_authentication(daemon, pki, sasl_setup, monkeypatch):  # noqa: F811
    """Garbage instead of a ClientHello, a handshake never finished, and garbage RPC inside
    a finished TLS session: the daemon goes on serving an authenticated client."""
    addr = ("127.0.0.1", daemon.tls_port)
    garbage = socket.create_connection(addr)
    garbage.sendall(os.urandom(4096))
    silent = [socket.create_connection(addr) for _ in range(5)]      # TCP open, no ClientHello
    ctx = ssl.create_default_context(cafile=str(pki.pkipath() / "cacert.pem"))
    ctx.load_cert_chain(str(pki.pkipath() / "clientcert.pem"), str(pki.pkipath() / "clientkey.pem"))
    inside = ctx.wrap_socket(socket.create_connection(addr), server_hostname="127.0.0.1")
    try:
        assert inside.recv(1) == b"\x01"          # the server's verdict on our certificate
        inside.sendall(b"\x00\x00\x00\x05" + os.urandom(1000))   # a length below the header: dropped
        inside.settimeout(30)
        try:
            assert inside.recv(100) == b""
        except (ssl.SSLError, ConnectionResetError):
            pass
        monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.auth_file("alice", USERS["alice"], host="127.0.0.1")))
        conn = pyvirt.open(tls_uri(daemon, pki))
        try:
            assert conn.listAllDomains()[0].name() == "test"
        finally:
            conn.close()
        assert daemon.alive
    finally:
        for s in (garbage, inside, *silent):
            s.close()
