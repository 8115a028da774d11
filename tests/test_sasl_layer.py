"""SASL with a security layer on plain TCP (DIGEST-MD5, SSF 128, as libvirt deployments without
TLS use it): after the negotiation every byte goes through sasl_encode/sasl_decode on both
ends, so stock virsh, python3-libvirt and pyvirt's client talk to pyvirtd over it, and what
crosses the wire (recorded by a relay the test puts in between) never shows the calls."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading

import pytest

import pyvirt
from pyvirt.errors import ErrorNumber, libvirtError
from saslenv import USERS, SaslPyvirtd, SaslSetup
from test_sasl import LIBVIRT_SCRIPT, _callback, virsh

MARKER = "a-description-nobody-on-the-wire-should-read"


@pytest.fixture(scope="module")
def sasl_setup(tmp_path_factory):
    return SaslSetup(tmp_path_factory.mktemp("sasl"), mechs="digest-md5").make()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, sasl_setup):
    d = SaslPyvirtd(tmp_path_factory.mktemp("sasllayer") / "host", sasl=sasl_setup,
                    extra_config="tcp_min_ssf = 112\n")
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


class Relay:
    """A loopback TCP relay to the daemon that keeps every byte it forwards."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.recorded = bytearray()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._spawn(self._pump, conn, upstream)
            self._spawn(self._pump, upstream, conn)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self.lock:
                    self.recorded += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_virsh_over_the_security_layer(daemon, sasl_setup):
    good = str(sasl_setup.auth_file("alice", USERS["alice"], host="127.0.0.1"))
    run = virsh(daemon.test_uri, "list --all; dominfo test; dumpxml test", env={"LIBVIRT_AUTH_FILE": good})
    assert run.returncode == 0, run.stderr
    assert "State:          running" in run.stdout and "<name>test</name>" in run.stdout
    bad = str(sasl_setup.auth_file("alice", "wrong", host="127.0.0.1"))
    run = virsh(daemon.test_uri, "list", env={"LIBVIRT_AUTH_FILE": bad})
    assert run.returncode == 1 and "authentication failed" in run.stderr


def test_python3_libvirt_over_the_security_layer(daemon, sasl_setup):
    for password, admitted in ((USERS["alice"], True), ("wrong", False)):
        run = subprocess.run(["/usr/bin/python3", "-c", LIBVIRT_SCRIPT, daemon.test_uri, "alice", password],
                             capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, LIBVIRT_AUTH_FILE=str(sasl_setup.no_auth_file)))
        out = json.loads(run.stdout)
        assert (out.get("names") == ["test"]) if admitted else (out["code"] == ErrorNumber.AUTH_FAILED), out


def test_pyvirt_traffic_is_encoded_on_the_wire(daemon, sasl_setup, monkeypatch):
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.no_auth_file))
    relay = Relay(daemon.tcp_port)
    auth = [[pyvirt.VIR_CRED_AUTHNAME, pyvirt.VIR_CRED_PASSPHRASE], _callback("alfred", USERS["alfred"]), None]
    try:
        conn = pyvirt.openAuth(f"test+tcp://127.0.0.1:{relay.port}/default", auth, 0)
        try:
            assert conn.isSecure() == 1          # as libvirt's client: the SSF makes it secure
            # a large document: many encoded blocks each way
            xml = (f"<domain type='test'><name>layered</name><memory>1024</memory><os><type>hvm</type></os>"
                   f"<description>{MARKER * 5000}</description></domain>")
            dom = conn.defineXML(xml)
            assert dom.XMLDesc(0).count(MARKER) == 5000
            assert sorted(d.name() for d in conn.listAllDomains()) == ["layered", "test"]
        finally:
            conn.close()
    finally:
        relay.close()
    with relay.lock:
        wire = bytes(relay.recorded)
    assert len(wire) > 5000 * len(MARKER)       # it all went through the relay...
    assert MARKER.encode() not in wire and b"layered" not in wire     # ...encoded
    assert b"DIGEST-MD5" in wire                 # the negotiation itself is in the clear, as in libvirt
    assert "sasl=alfred: virDomainDefineXML" in daemon.log_path.read_text()


def test_pyvirt_wrong_password_over_tcp_is_refused(daemon, sasl_setup, monkeypatch):
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.auth_file("alfred", "nope", host="127.0.0.1")))
    with pytest.raises(libvirtError) as exc:
        pyvirt.open(daemon.test_uri)
    assert exc.value.get_error_code() == ErrorNumber.AUTH_FAILED


def test_garbage_after_the_negotiation_drops_only_that_client(daemon, sasl_setup, monkeypatch):
    """Bytes that do not decode under the layer: that client is dropped, the daemon serves on."""
    monkeypatch.setenv("LIBVIRT_AUTH_FILE", str(sasl_setup.auth_file("alice", USERS["alice"], host="127.0.0.1")))
    conn = pyvirt.open(daemon.test_uri)
    try:
        raw = conn._drv.client.transport._transport       # the TCP transport under the client's layer
        raw.write(b"\x00\x00\x00\x10" + os.urandom(16))                    # a block with a bad MAC
        with pytest.raises(libvirtError):
            for _ in range(100):
                conn.listAllDomains()
    finally:
        conn.close()
    other = pyvirt.open(daemon.test_uri)
    assert other.listAllDomains()
    other.close()
    assert daemon.alive
    assert "SASL security layer: dropping the connection" in daemon.log_path.read_text()


SCREENSHOT = r"""
import base64, json, sys, libvirt
def fill(creds, _):
    for cred in creds:
        cred[4] = sys.argv[3] if cred[0] == libvirt.VIR_CRED_AUTHNAME else sys.argv[4]
    return 0
conn = libvirt.openAuth(sys.argv[1], [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], fill, None], 0)
dom = conn.createXML(open(sys.argv[2]).read(), 0)
try:
    st = conn.newStream(0)
    mime = dom.screenshot(st, 0, 0)
    parts = []
    st.recvAll(lambda s, data, o: parts.append(data), None)
    st.finish()
finally:
    dom.destroy()
print(json.dumps({"mime": mime, "data": base64.b64encode(b"".join(parts)).decode()}))
"""


def test_stream_through_the_security_layer(daemon, sasl_setup, guests_built):
    """A download stream (a real QEMU guest's screenshot, stock python3-libvirt) through the
    DIGEST-MD5 security layer: every packet encoded, the image whole."""
    import base64
    from test_console import TEXT_MODE, console_xml, image_size
    xml = daemon.workdir / "shot.xml"
    xml.write_text(console_xml("layered-shot", daemon.workdir))
    run = subprocess.run(["/usr/bin/python3", "-c", SCREENSHOT, daemon.uri, str(xml), "alice", USERS["alice"]],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, LIBVIRT_AUTH_FILE=str(sasl_setup.no_auth_file)))
    assert run.returncode == 0, run.stderr
    shot = json.loads(run.stdout.strip().splitlines()[-1])
    # decoded whole (signature, every chunk's CRC, all rows): nothing lost or garbled on the way;
    # the mode depends on how far the firmware got (640x480 graphics, then 720x400 text)
    width, height = image_size(shot["mime"], base64.b64decode(shot["data"]))
    assert (width, height) in ((640, 480), TEXT_MODE)
