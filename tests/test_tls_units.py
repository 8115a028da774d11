"""The sans-I/O x509 layer (pyvirt.rpc.tls), the contexts built from libvirt's files
(pyvirt.rpc.tlsconfig) and the RPC server's TLS admission, one layer at a time."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from pki import OTHER_CA_DN, OUTSIDE_DN, REVOKED_DN, TRUSTED_DN, pki  # noqa: F401
from pyvirt.rpc import tls, tlsconfig
from pyvirt.rpc.server import RPCServer
from pyvirt.uri import parse

NOW = 2_000_000_000


def cert(**kw) -> tls.Certificate:
    base = dict(subject="C=GB,CN=x", issuer="CN=ca", not_before=NOW - 10, not_after=NOW + 10)
    base.update(kw)
    return tls.Certificate(**base)


# -- distinguished names ----------------------------------------------------------------
def test_dn_is_libvirts_form(pki):  # noqa: F811
    expected = {"trusted": TRUSTED_DN, "outside_dn": OUTSIDE_DN, "revoked": REVOKED_DN, "other_ca": OTHER_CA_DN}
    for name, dn in expected.items():
        parsed = tls.parse_pem(pki.clients[name].cert.read_bytes())
        assert [c.subject for c in parsed] == [dn]
    ca = tls.parse_pem(pki.ca.cert.read_bytes())[0]
    assert ca.is_ca and ca.key_usage & tls.KEY_KEY_CERT_SIGN and ca.subject == ca.issuer


@pytest.mark.skipif(shutil.which("virt-pki-query-dn") is None, reason="libvirt's virt-pki-query-dn not installed")
def test_dn_matches_virt_pki_query_dn_with_special_characters(tmp_path, pki):  # noqa: F811
    (tmp_path / "t.tmpl").write_text('cn = "a,b+c\\\\d \\"q\\" <x>;"\norganization = "#hash"\n'
                                     'unit = "trailing "\ncountry = "GB"\ntls_www_client\n')
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["certtool", "--generate-privkey", "--key-type=ecdsa", "--outfile", key],
                   check=True, capture_output=True)
    subprocess.run(["certtool", "--generate-certificate", "--load-privkey", key, "--load-ca-certificate",
                    pki.ca.cert, "--load-ca-privkey", pki.ca.key, "--template", tmp_path / "t.tmpl",
                    "--outfile", crt], check=True, capture_output=True)
    theirs = subprocess.run(["virt-pki-query-dn", crt], check=True, capture_output=True, text=True).stdout.strip()
    assert tls.parse_pem(crt.read_bytes())[0].subject == theirs


def test_glob_matching_is_libvirts():
    assert tls.glob_match("C=GB,O=*,CN=*", "C=GB,O=Example Co,CN=host1")
    assert tls.glob_match("C=GB,CN=host?", "C=GB,CN=host7")
    assert not tls.glob_match("C=GB,CN=host?", "C=GB,CN=host10")
    assert tls.glob_match("CN=[a]", "CN=[a]") and not tls.glob_match("CN=[ab]", "CN=a")   # no classes
    assert not tls.glob_match("C=GB,O=x", "C=GB,O=x,CN=y")                               # whole text
    assert tls.dn_allowed("anything", None)              # key absent: every valid certificate
    assert not tls.dn_allowed("anything", [])            # empty list: nobody


def test_broken_der_is_a_certificate_error():
    for junk in (b"", b"\x30\x82\xff\xff", b"\x04\x01a", b"\x30\x03\x02\x01\x01"):
        with pytest.raises(tls.CertificateError):
            tls.parse_der(junk)


# -- libvirt's checks ----------------------------------------------------------------------
def test_times():
    with pytest.raises(tls.CertificateError, match="The client certificate f has expired"):
        tls.check_times(cert(not_after=NOW - 1), "f", False, False, NOW)
    with pytest.raises(tls.CertificateError, match="The CA certificate f is not yet active"):
        tls.check_times(cert(not_before=NOW + 1), "f", True, True, NOW)


def test_basic_constraints():
    with pytest.raises(tls.CertificateError, match="show a CA, but we need one for a server"):
        tls.check_basic_constraints(cert(is_ca=True), "f", True, False)
    with pytest.raises(tls.CertificateError, match="basic constraints do not show a CA"):
        tls.check_basic_constraints(cert(is_ca=False), "f", False, True)
    with pytest.raises(tls.CertificateError, match="missing basic constraints for a CA"):
        tls.check_basic_constraints(cert(), "f", False, True)
    tls.check_basic_constraints(cert(), "f", False, False)      # a leaf may omit them


def test_key_usage_critical_refuses_non_critical_warns():
    warnings: list[str] = []
    tls.check_key_usage(cert(key_usage=tls.KEY_DIGITAL_SIGNATURE), "f", False, warnings)
    assert warnings == ["Certificate f usage does not permit key encipherment"]
    with pytest.raises(tls.CertificateError, match="does not permit certificate signing"):
        tls.check_key_usage(cert(key_usage=0, key_usage_critical=True), "f", True, [])
    tls.check_key_usage(cert(), "f", False, [])                 # absent: allowed


def test_key_purpose_as_libvirt():
    server_only = cert(key_purposes=[tls.KP_TLS_WWW_SERVER], key_purpose_critical=True)
    with pytest.raises(tls.CertificateError, match="does not allow use for with a TLS client"):
        tls.check_key_purpose(server_only, "f", False, [])
    tls.check_key_purpose(server_only, "f", True, [])
    warnings: list[str] = []
    tls.check_key_purpose(cert(key_purposes=[tls.KP_TLS_WWW_SERVER]), "f", False, warnings)
    assert warnings and "TLS client" in warnings[0]
    tls.check_key_purpose(cert(key_purposes=["1.3.6.1.5.5.7.3.4"], key_purpose_critical=True), "f", False, [])


def test_peer_check_applies_the_dn_list():
    peer = cert(subject=OUTSIDE_DN, key_purposes=[tls.KP_TLS_WWW_CLIENT])
    with pytest.raises(tls.CertificateError, match="tls_allowed_dn_list"):
        tls.check_peer(peer, True, ["C=GB,O=pyvirt test,CN=*"], NOW)
    assert tls.check_peer(peer, True, None, NOW) == []


def test_priority_strings():
    assert tls.parse_priority("NORMAL").versions == ["TLS1.2", "TLS1.3"]
    assert tls.parse_priority("NORMAL:-VERS-TLS1.3").versions == ["TLS1.2"]
    assert tls.parse_priority("@LIBVIRT,SYSTEM:+VERS-TLS1.1").versions == ["TLS1.1", "TLS1.2", "TLS1.3"]
    p = tls.parse_priority("SECURE256:-CIPHER-ALL:+AES-256-GCM")
    assert p.versions == ["TLS1.2", "TLS1.3"] and p.not_applied == ["-CIPHER-ALL", "+AES-256-GCM"]
    assert tls.parse_priority("NORMAL:-VERS-ALL").versions == []


# -- files and contexts ----------------------------------------------------------------------
def test_locate_follows_libvirt():
    c = tlsconfig.locate("/srv/pki/", False, False)
    assert (c.cacert, c.cacrl, c.cert, c.key) == ("/srv/pki/cacert.pem", "/srv/pki/cacrl.pem",
                                                  "/srv/pki/clientcert.pem", "/srv/pki/clientkey.pem")
    s = tlsconfig.locate(None, True, False)
    assert (s.cacert, s.cacrl, s.cert, s.key) == ("/etc/pki/CA/cacert.pem", "/etc/pki/CA/cacrl.pem",
                                                  "/etc/pki/libvirt/servercert.pem",
                                                  "/etc/pki/libvirt/private/serverkey.pem")


def test_server_context_errors_name_the_file(tmp_path, pki):  # noqa: F811
    lv = pki.libvirt_dir
    with pytest.raises(tlsconfig.TLSSetupError, match="No server certificate path set to match server key"):
        tlsconfig.server_context(ca_file=str(lv / "cacert.pem"), key_file=str(lv / "serverkey.pem"))
    with pytest.raises(tlsconfig.TLSSetupError) as err:
        tlsconfig.server_context(ca_file=str(tmp_path / "ca.pem"), cert_file=str(lv / "servercert.pem"),
                                 key_file=str(lv / "serverkey.pem"))
    assert str(err.value) == f"Cannot read CA certificate '{tmp_path / 'ca.pem'}': No such file or directory"
    # the CA's own certificate as the server's: libvirt's sanity check refuses it ...
    with pytest.raises(tlsconfig.TLSSetupError, match="basic constraints show a CA, but we need one for a server"):
        tlsconfig.server_context(ca_file=str(lv / "cacert.pem"), cert_file=str(pki.ca.cert),
                                 key_file=str(pki.ca.key))
    # ... unless tls_no_sanity_certificate
    tlsconfig.server_context(ca_file=str(lv / "cacert.pem"), cert_file=str(pki.ca.cert),
                             key_file=str(pki.ca.key), sanity=False)
    # a server certificate another CA signed
    with pytest.raises(tlsconfig.TLSSetupError, match="failed validation against"):
        tlsconfig.server_context(ca_file=str(pki.other_ca.cert), cert_file=str(lv / "servercert.pem"),
                                 key_file=str(lv / "serverkey.pem"))
    with pytest.raises(tlsconfig.TLSSetupError, match="Failed to set TLS session priority"):
        tlsconfig.server_context(ca_file=str(lv / "cacert.pem"), cert_file=str(lv / "servercert.pem"),
                                 key_file=str(lv / "serverkey.pem"), priority="NORMAL:-VERS-ALL")


# -- the server's admission, in process --------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.connected: list = []

    def client_connected(self, client) -> None:
        self.connected.append(client.x509_dname)

    def handle_message(self, client, msg) -> None:
        pass

    async def client_disconnected(self, client) -> None:
        pass


def _admission(pki, client: str, **server_kw):  # noqa: F811
    """(DNs the server admitted, the client's error or None) for one connection."""
    from pyvirt.errors import libvirtError
    from pyvirt.rpc import tls_transport
    lv = pki.libvirt_dir

    async def run():
        handler = Recorder()
        server = RPCServer(handler)
        ctx = tlsconfig.server_context(ca_file=str(lv / "cacert.pem"), cert_file=str(lv / "servercert.pem"),
                                       key_file=str(lv / "serverkey.pem"), crl_file=str(lv / "crl.pem"),
                                       **server_kw)
        port = await server.listen_tcp("127.0.0.1", 0, tls=ctx)
        failure = None
        try:
            conn = await tls_transport.connect(parse(f"qemu+tls://127.0.0.1:{port}/system?"
                                                     f"pkipath={pki.pkipath(client)}"))
            conn.close()
        except libvirtError as exc:
            failure = str(exc)
        await server.close()
        await asyncio.sleep(0)
        return handler.connected, failure
    return asyncio.run(run())


def test_the_dn_is_kept_on_the_server_client(pki):  # noqa: F811
    assert _admission(pki, "trusted", allowed_dns=["C=GB,O=pyvirt test,CN=*"]) == ([TRUSTED_DN], None)


def test_no_verify_admits_a_client_without_certificate(pki):  # noqa: F811
    assert _admission(pki, "no_cert", verify=False) == ([None], None)
    admitted, failure = _admission(pki, "no_cert")
    assert admitted == [] and failure.startswith("server verification (of our certificate or IP address) failed")


def test_any_bytes_parse_or_raise_a_certificate_error(pki):  # noqa: F811
    from hypothesis import given, settings, strategies as st

    good = tls.parse_pem(pki.clients["trusted"].cert.read_bytes())[0].der

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=64), st.integers(0, len(good)), st.binary(max_size=8))
    def check(junk, cut, splice):
        for data in (junk, good[:cut], good[:cut] + splice + good[cut + len(splice):]):
            try:
                tls.parse_der(data)
            except tls.CertificateError:
                pass
    check()


def test_client_default_files_and_the_users_own(tmp_path, monkeypatch):
    c = tlsconfig.locate(None, False, False)          # root: the system files
    assert (c.cacert, c.cert, c.key) == ("/etc/pki/CA/cacert.pem", "/etc/pki/libvirt/clientcert.pem",
                                         "/etc/pki/libvirt/private/clientkey.pem")
    monkeypatch.setenv("HOME", str(tmp_path))
    user = tmp_path / ".pki" / "libvirt"
    user.mkdir(parents=True)
    (user / "cacert.pem").write_text("x")
    (user / "clientcert.pem").write_text("x")
    c = tlsconfig.locate(None, False, True)           # not root: ~/.pki/libvirt first, file by file
    assert c.cacert == str(user / "cacert.pem")
    assert c.cert == "/etc/pki/libvirt/clientcert.pem"   # the pair needs both files to be taken
    (user / "clientkey.pem").write_text("x")
    c = tlsconfig.locate(None, False, True)
    assert (c.cert, c.key) == (str(user / "clientcert.pem"), str(user / "clientkey.pem"))
