"""TLS with client certificates: pyvirtd's listener driven by stock virsh, python3-libvirt
and pyvirt's client, with certificates made by certtool (tests/pki.py)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import pyvirt
from daemons import Pyvirtd, free_port
from guests import wait_for
from pki import ALLOWED_DN_LIST, OUTSIDE_DN, pki  # noqa: F401

VERIFY_FAILED = "server verification (of our certificate or IP address) failed"
# A certificate OpenSSL refuses in the handshake (unknown CA, revoked): under TLS 1.3
# libvirt's client has finished its side and reads the alert as an I/O error
# (libvirtd, whose GnuTLS checks after the handshake, closes instead: VERIFY_FAILED).
HANDSHAKE_REFUSED = ("Unable to read TLS confirmation", "TLS handshake failed", VERIFY_FAILED)
LIBVIRT_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory, pki):  # noqa: F811
    """One pyvirtd with a TLS listener admitting DNs of ALLOWED_DN_LIST."""
    port = free_port()
    daemon = Pyvirtd(tmp_path_factory.mktemp("tls") / "host",
                     extra_config=pki.daemon_config(port=port, allowed_dn_list=ALLOWED_DN_LIST,
                                                    extra="tls_handshake_timeout = 20"))
    daemon.tls_port = port
    try:
        daemon.start()
        yield daemon
    finally:
        leaked = daemon.cleanup()
    assert not leaked


def tls_uri(daemon: Pyvirtd, pki, client: str = "trusted", host: str = "127.0.0.1",  # noqa: F811
            extra: str = "") -> str:
    return f"qemu+tls://{host}:{daemon.tls_port}/system?pkipath={pki.pkipath(client)}{extra}"


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    # libvirt's client may write on a connection the server already reset after a
    # refused handshake; SIGPIPE would then kill virsh before it prints its error.
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGPIPE, signal.SIG_IGN))


def libvirt_python(uri: str) -> dict:
    """Open ``uri`` with python3-libvirt; what it saw, as a dict."""
    code = """
import json, sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
try:
    c = libvirt.open(sys.argv[1])
    print(json.dumps({"ok": True, "secure": c.isSecure(), "encrypted": c.isEncrypted(),
                      "domains": len(c.listAllDomains())}))
except libvirt.libvirtError as e:
    print(json.dumps({"ok": False, "code": e.get_error_code(), "message": e.get_error_message()}))
"""
    out = subprocess.run([LIBVIRT_PYTHON, "-c", code, uri], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


needs_virsh = pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")


# -- stock virsh ---------------------------------------------------------------------
@needs_virsh
def test_virsh_lists_with_a_trusted_certificate(tls_daemon, pki):  # noqa: F811
    out = virsh(tls_uri(tls_daemon, pki), "list", "--all")
    assert out.returncode == 0, out.stderr
    assert "Id" in out.stdout and "Name" in out.stdout
    assert virsh(tls_uri(tls_daemon, pki, host="localhost"), "hostname").returncode == 0


@needs_virsh
@pytest.mark.parametrize("client, expected", [
    ("no_cert", (VERIFY_FAILED,)),
    ("outside_dn", (VERIFY_FAILED,)),
    ("other_ca", HANDSHAKE_REFUSED),
    ("revoked", HANDSHAKE_REFUSED),
])
def test_virsh_refused(tls_daemon, pki, client, expected):  # noqa: F811
    out = virsh(tls_uri(tls_daemon, pki, client), "list", "--all")
    assert out.returncode != 0
    assert "failed to connect to the hypervisor" in out.stderr
    assert any(text in out.stderr for text in expected), out.stderr


@needs_virsh
@pytest.mark.parametrize("client, why", [
    ("expired", "certificate has expired"),
    ("server_as_client", "unsuitable certificate purpose"),
])
def test_expired_or_misused_client_certificate_refused(tls_daemon, pki, client, why):  # noqa: F811
    """The server checks the client certificate's dates and purpose itself: the client's own
    sanity check (which would stop an expired one before connecting) is off here."""
    for run in (lambda uri: virsh(uri, "list"), _pyvirt_open_error):
        out = run(tls_uri(tls_daemon, pki, client, extra="&no_sanity=1"))
        text = out.stderr if isinstance(out, subprocess.CompletedProcess) else out
        assert any(expected in text for expected in HANDSHAKE_REFUSED), text
    log = tls_daemon.log_path.read_text()
    assert re.search(rf"TLS handshake with client 127\.0\.0\.1:\d+ on tls:\S+ failed: .*{why}", log), log[-2000:]


def _pyvirt_open_error(uri: str) -> str:
    with pytest.raises(pyvirt.libvirtError) as err:
        pyvirt.open(uri)
    return str(err.value)


@needs_virsh
def test_empty_allowed_dn_list_admits_nobody(tmp_path, pki):  # noqa: F811
    port = free_port()
    daemon = Pyvirtd(tmp_path / "host", extra_config=pki.daemon_config(port=port, allowed_dn_list=[]))
    daemon.tls_port = port
    try:
        daemon.start()
        out = virsh(tls_uri(daemon, pki), "list")
        assert out.returncode != 0 and VERIFY_FAILED in out.stderr, out.stderr
        assert "Client's Distinguished Name is not on the list of allowed clients" in daemon.log_path.read_text()
    finally:
        assert not daemon.cleanup()


@needs_virsh
def test_no_verify_certificate_admits_a_client_without_one(tmp_path, pki):  # noqa: F811
    """tls_no_verify_certificate = 1: the certificate is not asked for; TLS still encrypts."""
    port = free_port()
    daemon = Pyvirtd(tmp_path / "host",
                     extra_config=pki.daemon_config(port=port, extra="tls_no_verify_certificate = 1"))
    daemon.tls_port = port
    try:
        daemon.start()
        out = virsh(tls_uri(daemon, pki, "no_cert"), "list")
        assert out.returncode == 0, out.stderr
        assert libvirt_python(tls_uri(daemon, pki, "other_ca"))["ok"]
        assert "tls_no_verify_certificate = 1: any TLS client is admitted" in daemon.log_path.read_text()
    finally:
        assert not daemon.cleanup()


@needs_virsh
def test_refusals_are_logged_with_the_dn(tls_daemon, pki):  # noqa: F811
    virsh(tls_uri(tls_daemon, pki, "outside_dn"), "list")
    log = tls_daemon.log_path.read_text()
    assert f"({OUTSIDE_DN}): Client's Distinguished Name is not on the list of allowed clients" in log


@needs_virsh
def test_virsh_checks_the_server_name(tmp_path, pki):  # noqa: F811
    port = free_port()
    daemon = Pyvirtd(tmp_path / "wrong", extra_config=pki.daemon_config(port=port, files=pki.wrong_host_dir))
    daemon.tls_port = port
    try:
        daemon.start()
        out = virsh(tls_uri(daemon, pki), "list")
        assert out.returncode != 0 and "authentication failed: Failed to verify peer's certificate" in out.stderr
        # no_verify=1 skips the client's checks of the server, as in libvirt
        assert virsh(tls_uri(daemon, pki, extra="&no_verify=1"), "list").returncode == 0
        with pytest.raises(pyvirt.libvirtError) as err:
            pyvirt.open(tls_uri(daemon, pki))
        assert "Certificate [session] owner does not match the hostname 127.0.0.1 (qemu+tls)" in str(err.value)
        conn = pyvirt.open(tls_uri(daemon, pki, extra="&no_verify=1"))
        assert conn.listAllDomains() == []
        conn.close()
    finally:
        assert not daemon.cleanup()


# -- python3-libvirt -------------------------------------------------------------------
def test_libvirt_python_trusted_and_secure(tls_daemon, pki):  # noqa: F811
    seen = libvirt_python(tls_uri(tls_daemon, pki))
    assert seen == {"ok": True, "secure": 1, "encrypted": 1, "domains": 0}


@pytest.mark.parametrize("client", ["no_cert", "outside_dn", "other_ca"])
def test_libvirt_python_refused(tls_daemon, pki, client):  # noqa: F811
    seen = libvirt_python(tls_uri(tls_daemon, pki, client))
    assert not seen["ok"]
    expected = (VERIFY_FAILED,) if client != "other_ca" else HANDSHAKE_REFUSED
    assert any(text in seen["message"] for text in expected), seen


def test_libvirt_python_plain_tcp_is_not_secure(tls_daemon):
    assert libvirt_python(tls_daemon.uri)["secure"] == 0


# -- pyvirt's client -----------------------------------------------------------------------
def test_pyvirt_client_trusted_and_secure(tls_daemon, pki):  # noqa: F811
    conn = pyvirt.open(tls_uri(tls_daemon, pki))
    try:
        assert conn.isSecure() == 1
        assert conn.listAllDomains() == []
        assert conn.getHostname()
    finally:
        conn.close()
    plain = pyvirt.open(tls_daemon.uri)
    try:
        assert plain.isSecure() == 0          # libvirt's remote driver: plain TCP is not secure
    finally:
        plain.close()


@pytest.mark.parametrize("client, expected", [
    ("no_cert", (VERIFY_FAILED,)),
    ("outside_dn", (VERIFY_FAILED,)),
    ("other_ca", (VERIFY_FAILED, "TLS handshake failed")),
    ("revoked", (VERIFY_FAILED, "TLS handshake failed")),
])
def test_pyvirt_client_refused(tls_daemon, pki, client, expected):  # noqa: F811
    with pytest.raises(pyvirt.libvirtError) as err:
        pyvirt.open(tls_uri(tls_daemon, pki, client))
    text = str(err.value)
    assert any(e in text for e in expected) and text.endswith("(qemu+tls)"), text
    # the likeliest cause, which the server's refusal does not tell, is named
    no_cert = f"we offered no client certificate ('{pki.pkipath(client)}/clientcert.pem' does not exist)"
    assert (no_cert in text) == (client == "no_cert"), text


def test_pyvirt_client_names_the_missing_file_and_transport(tls_daemon, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(pyvirt.libvirtError) as err:
        pyvirt.open(f"qemu+tls://127.0.0.1:{tls_daemon.tls_port}/system?pkipath={empty}")
    assert str(err.value) == (f"Cannot read CA certificate '{empty}/cacert.pem': No such file or directory "
                              "(qemu+tls)")
    with pytest.raises(pyvirt.libvirtError) as err:
        pyvirt.open(f"qemu://127.0.0.1:{tls_daemon.tls_port}/system?pkipath={empty}")
    assert "(qemu+tls: the default transport of a URI with a host name)" in str(err.value)


def test_keepalive_and_calls_share_the_tls_session(tls_daemon, pki):  # noqa: F811
    from pyvirt import aio
    from pyvirt.driver import ConnectionInfo
    from pyvirt.drivers.remote import driver as remote
    from pyvirt.uri import parse

    async def run() -> set:
        conn = await remote.open_connection(parse(tls_uri(tls_daemon, pki)), ConnectionInfo(uri="x"))
        try:
            assert conn.client.encrypted
            conn.client.start_keepalive(interval=0.05)    # pings interleave with the calls
            return set(await asyncio.gather(*(conn.connect_get_hostname() for _ in range(50))))
        finally:
            await conn.connect_close()
    assert len(aio.run(run())) == 1


# -- hostile input before authentication ------------------------------------------------------
def _served(daemon: Pyvirtd, pki) -> bool:  # noqa: F811
    conn = pyvirt.open(tls_uri(daemon, pki))
    try:
        return conn.listAllDomains() == [] and conn.isSecure() == 1
    finally:
        conn.close()


def _closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes (EOF or reset); True when it did."""
    sock.settimeout(120)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_garbage_and_huge_frames_are_dropped(tls_daemon, pki):  # noqa: F811
    with socket.create_connection(("127.0.0.1", tls_daemon.tls_port)) as raw:
        raw.sendall(b"\x00\x00\x00\x1c" + b"this is not a TLS client hello" * 10)
        assert _closed_by_server(raw)
    # A client with a trusted certificate that then sends a frame announcing 4 GiB
    ctx = ssl.create_default_context(cafile=str(pki.pkipath() / "cacert.pem"))
    ctx.load_cert_chain(pki.pkipath() / "clientcert.pem", pki.pkipath() / "clientkey.pem")
    with socket.create_connection(("127.0.0.1", tls_daemon.tls_port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.recv(1) == b"\x01"
            tls.sendall(struct.pack(">I", 0xFFFFFFF0) + b"\x20\x00\x80\x86" * 16)
            assert _closed_by_server(tls)
    assert _served(tls_daemon, pki)


def test_stalled_handshake_is_dropped_after_the_timeout(tls_daemon, pki):  # noqa: F811
    with socket.create_connection(("127.0.0.1", tls_daemon.tls_port)) as stalled:
        stalled.sendall(b"\x16\x03\x01\x02\x00")     # a record header, then nothing
        assert _served(tls_daemon, pki)               # others are served meanwhile
        assert _closed_by_server(stalled)             # tls_handshake_timeout = 20 in the fixture
    # the server may close before its log line is out: wait for the line itself
    wait_for(lambda: re.search(r"TLS handshake with client 127\.0\.0\.1:\d+ on tls:\S+ failed: timed out",
                               tls_daemon.log_path.read_text()), 30, what="the timed-out handshake's log line")


def test_a_thousand_half_open_tls_connections(tls_daemon, pki):  # noqa: F811
    established = pyvirt.open(tls_uri(tls_daemon, pki))
    half_open: list[socket.socket] = []
    try:
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", tls_daemon.tls_port))
            if i % 2:
                s.sendall(b"\x16\x03\x01\x02\x00\x01")   # a ClientHello that never completes
            half_open.append(s)
        assert established.listAllDomains() == []      # the authenticated client is served
        assert _served(tls_daemon, pki)                 # and a new one is admitted
    finally:
        for s in half_open:
            s.close()
        established.close()
    assert _served(tls_daemon, pki)


def test_daemon_refuses_to_start_without_its_files(tmp_path):
    port = free_port()
    missing = tmp_path / "nowhere"
    daemon = Pyvirtd(tmp_path / "host", extra_config=f'listen_tls = 1\ntls_port = "{port}"\n'
                     f'ca_file = "{missing}/cacert.pem"\ncert_file = "{missing}/servercert.pem"\n'
                     f'key_file = "{missing}/serverkey.pem"\n')
    with pytest.raises(RuntimeError) as err:
        daemon.start()
    daemon.cleanup()
    assert f"Cannot read CA certificate '{missing}/cacert.pem': No such file or directory (listen_tls)" \
        in str(err.value)


def test_check_config_knows_the_tls_keys(tmp_path, pki):  # noqa: F811
    conf = tmp_path / "tls.conf"
    conf.write_text(pki.daemon_config(port=16514, allowed_dn_list=ALLOWED_DN_LIST,
                                      extra='tls_no_verify_certificate = 0\ntls_no_sanity_certificate = 0\n'
                                            'tls_priority = "NORMAL"\ntls_handshake_timeout = 30'))
    out = subprocess.run([sys.executable, "-m", "pyvirt.daemon.main", "--check-config", str(conf)],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert "no settings ignored" in out.stdout, out.stdout


def test_pyvirt_cli_over_tls(tls_daemon, pki):  # noqa: F811
    def cli(uri: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", uri, "list", "--all"], capture_output=True,
                              text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    ok = cli(tls_uri(tls_daemon, pki))
    assert ok.returncode == 0 and "Name" in ok.stdout, ok.stderr
    refused = cli(tls_uri(tls_daemon, pki, "outside_dn"))
    assert refused.returncode != 0 and VERIFY_FAILED in refused.stderr, refused.stderr


@pytest.mark.parametrize("listen", [True, False], ids=["--listen", "no --listen"])
def test_listen_tls_defaults_on_with_listen_only(tmp_path, pki, listen):  # noqa: F811
    """libvirtd's rule: listen_tls is 1 by default but applies only with --listen."""
    import os
    import time

    from guests import REPO
    port = free_port()
    daemon = Pyvirtd(tmp_path / "host", extra_config=pki.daemon_config(port=port).replace("listen_tls = 1\n", ""))
    conf = daemon.write_config()
    with open(daemon.log_path, "ab") as log:
        daemon.proc = subprocess.Popen([sys.executable, "-m", "pyvirt.daemon.main", "-f", str(conf)]
                                       + (["--listen"] if listen else []), stdout=log, stderr=log, cwd=REPO,
                                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 60
        while "pyvirtd: ready" not in daemon.log_path.read_text(errors="replace"):
            assert daemon.proc.poll() is None and time.monotonic() < deadline, daemon.log_path.read_text()
            time.sleep(0.01)
        if listen:
            daemon.tls_port = port
            assert _served(daemon, pki)
        else:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port)).close()
    finally:
        assert not daemon.cleanup()


def test_stalled_handshakes_do_not_fill_max_anonymous_clients(tmp_path, pki):  # noqa: F811
    """With SASL on top of TLS, clients are anonymous until SASL succeeds; one that has not
    even finished its TLS handshake does not take one of the max_anonymous_clients slots."""
    from pyvirt import aio
    from pyvirt.rpc import tls_transport
    from pyvirt.rpc.protocol import REMOTE
    from pyvirt.rpc.wire import Program
    from pyvirt.uri import parse

    port = free_port()
    daemon = Pyvirtd(tmp_path / "host", extra_config=pki.daemon_config(
        port=port, extra='auth_tls = "sasl"\nmax_anonymous_clients = 3\nmax_clients = 200\n'
                         'tls_handshake_timeout = 600'))
    daemon.tls_port = port
    stalled = []
    try:
        daemon.start()
        for _ in range(30):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"\x16\x03\x01\x02\x00")
            stalled.append(s)

        async def auth_list() -> list:
            # were the stalled ones counted, this client would wait in the listen queue
            # for their 600 s handshake timeout and give up after its own 60 s
            client = await tls_transport.connect(parse(tls_uri(daemon, pki)), timeout=60)
            try:
                return await client.call(Program.REMOTE, REMOTE.by_name["AUTH_LIST"])
            finally:
                client.close()
        assert aio.run(auth_list()) == [1]          # admitted and answered: SASL is wanted
    finally:
        for s in stalled:
            s.close()
        assert not daemon.cleanup()
