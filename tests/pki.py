"""Test certificates made with certtool (GnuTLS), nothing downloaded.

One CA signs a server certificate for 127.0.0.1/localhost and the client
certificates; a second CA signs an "intruder" client certificate the first CA
does not know.  The files are laid out twice, as libvirt and QEMU expect them:

* libvirt's file set (``Pki.libvirt_dir``): cacert.pem, servercert.pem,
  serverkey.pem, clientcert.pem, clientkey.pem and crl.pem in one directory,
  usable as a daemon's ca_file/cert_file/key_file/crl_file and as a client's
  ``?pkipath=``;
* one ``?pkipath=`` directory per client identity (``Pki.client_dirs``):
  ``trusted``, ``other_ca`` (signed by the second CA; its cacert.pem holds
  both CAs, so that the client's own sanity check passes and it still
  trusts our server), ``outside_dn`` (a valid
  certificate whose DN is outside the allowed list the tests use),
  ``revoked`` (listed in crl.pem), ``expired`` (valid 2020 to 2021),
  ``server_as_client`` (the server's pair, whose purpose is TLS server only)
  and ``no_cert`` (only the CA);
* ``Pki.wrong_host_dir``: a server file set whose certificate names another
  host (otherhost.example), for the client's check of the server's name;
* QEMU's TLS directory (``Pki.qemu_dir``): ca-cert.pem, server-cert.pem,
  server-key.pem, client-cert.pem, client-key.pem, as migrate_tls_x509_cert_dir
  wants it.

Use the ``pki`` fixture (session scoped: RSA keys take a while to make) by
importing it into a test module: ``from pki import pki  # noqa: F401``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ORG = "pyvirt test"
# The DNs, in libvirt's form (RFC 4514 order as GnuTLS prints it).
TRUSTED_DN = f"C=GB,O={ORG},CN=client1"
OUTSIDE_DN = "C=GB,O=elsewhere,CN=client2"
REVOKED_DN = f"C=GB,O={ORG},CN=revoked"
OTHER_CA_DN = f"C=GB,O={ORG},CN=intruder"
EXPIRED_DN = f"C=GB,O={ORG},CN=expired"
# An allowed-DN list that admits TRUSTED_DN (and REVOKED_DN, so that it is the
# CRL, not the list, that refuses it) but not OUTSIDE_DN.
ALLOWED_DN_LIST = [f"C=GB,O={ORG},CN=*"]

_CA = """cn = "{cn}"
organization = "{org}"
serial = {serial}
expiration_days = 3650
ca
cert_signing_key
crl_signing_key
"""

_SERVER = """cn = "127.0.0.1"
organization = "{org}"
serial = {serial}
expiration_days = 3650
ip_address = "127.0.0.1"
dns_name = "localhost"
tls_www_server
encryption_key
signing_key
"""

_WRONG_HOST = """cn = "otherhost.example"
organization = "{org}"
serial = {serial}
expiration_days = 3650
dns_name = "otherhost.example"
tls_www_server
encryption_key
signing_key
"""

_CLIENT = """country = "{c}"
organization = "{org}"
cn = "{cn}"
serial = {serial}
expiration_days = 3650
tls_www_client
encryption_key
signing_key
"""

# A client certificate whose validity ended years ago (certtool takes dates in the past).
_EXPIRED = """country = "GB"
organization = "{org}"
cn = "expired"
serial = {serial}
activation_date = "2020-01-01 00:00:00"
expiration_date = "2021-01-01 00:00:00"
tls_www_client
encryption_key
signing_key
"""

_CRL = """crl_next_update = 3650
crl_number = 1
"""


def _certtool(*args: str) -> None:
    try:
        subprocess.run(["certtool", *args], check=True, capture_output=True, timeout=120)
    except FileNotFoundError:
        pytest.skip("certtool (Debian gnutls-bin) is not installed")
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"certtool {' '.join(args)} failed: {e.stderr.decode(errors='replace')}") from e


@dataclass
class Cert:
    cert: Path
    key: Path
    dn: str = ""


@dataclass
class Pki:
    root: Path
    ca: Cert = None
    other_ca: Cert = None
    server: Cert = None
    wrong_host: Cert = None
    clients: dict[str, Cert] = field(default_factory=dict)
    crl: Path = None

    @property
    def libvirt_dir(self) -> Path:
        return self.root / "libvirt"

    @property
    def wrong_host_dir(self) -> Path:
        return self.root / "wrong-host"

    @property
    def qemu_dir(self) -> Path:
        return self.root / "qemu"

    @property
    def client_dirs(self) -> dict[str, Path]:
        return {name: self.root / "clients" / name
                for name in (*self.clients, "no_cert")}

    def pkipath(self, client: str = "trusted") -> Path:
        """The ``?pkipath=`` directory for one client identity."""
        return self.client_dirs[client]

    def daemon_config(self, *, port: int | str, allowed_dn_list: list[str] | None = None,
                      crl: bool = True, extra: str = "", files: Path | None = None) -> str:
        """pyvirtd/libvirtd configuration lines for a TLS listener with these files
        (``files``: another server file set, such as ``wrong_host_dir``)."""
        d = files or self.libvirt_dir
        lines = [
            "listen_tls = 1",
            f'tls_port = "{port}"',
            f'ca_file = "{d / "cacert.pem"}"',
            f'cert_file = "{d / "servercert.pem"}"',
            f'key_file = "{d / "serverkey.pem"}"',
        ]
        if crl:
            lines.append(f'crl_file = "{self.libvirt_dir / "crl.pem"}"')
        if allowed_dn_list is not None:
            lines.append("tls_allowed_dn_list = [" + ", ".join(f'"{d}"' for d in allowed_dn_list) + "]")
        if extra:
            lines.append(extra)
        return "\n".join(lines) + "\n"


def _make_ca(d: Path, name: str, cn: str, serial: int) -> Cert:
    key, cert, tmpl = d / f"{name}-key.pem", d / f"{name}-cert.pem", d / f"{name}.tmpl"
    tmpl.write_text(_CA.format(cn=cn, org=ORG, serial=serial))
    _certtool("--generate-privkey", "--outfile", str(key))
    _certtool("--generate-self-signed", "--load-privkey", str(key),
              "--template", str(tmpl), "--outfile", str(cert))
    return Cert(cert, key)


def _make_signed(d: Path, name: str, template: str, ca: Cert, dn: str = "") -> Cert:
    key, cert, tmpl = d / f"{name}-key.pem", d / f"{name}-cert.pem", d / f"{name}.tmpl"
    tmpl.write_text(template)
    _certtool("--generate-privkey", "--outfile", str(key))
    _certtool("--generate-certificate", "--load-privkey", str(key),
              "--load-ca-certificate", str(ca.cert), "--load-ca-privkey", str(ca.key),
              "--template", str(tmpl), "--outfile", str(cert))
    return Cert(cert, key, dn)


def make_pki(root: Path) -> Pki:
    """Make every certificate under *root* (a fresh directory) and lay them out."""
    work = root / "work"
    work.mkdir(parents=True)
    pki = Pki(root)
    pki.ca = _make_ca(work, "ca", "pyvirt test CA", 1)
    pki.other_ca = _make_ca(work, "other-ca", "another CA", 2)
    pki.server = _make_signed(work, "server", _SERVER.format(org=ORG, serial=10), pki.ca)
    pki.wrong_host = _make_signed(work, "wrong-host", _WRONG_HOST.format(org=ORG, serial=11), pki.ca)
    clients = {
        "trusted": (pki.ca, "GB", ORG, "client1", TRUSTED_DN),
        "outside_dn": (pki.ca, "GB", "elsewhere", "client2", OUTSIDE_DN),
        "revoked": (pki.ca, "GB", ORG, "revoked", REVOKED_DN),
        "other_ca": (pki.other_ca, "GB", ORG, "intruder", OTHER_CA_DN),
    }
    for serial, (name, (ca, c, org, cn, dn)) in enumerate(clients.items(), start=20):
        pki.clients[name] = _make_signed(work, f"client-{name}",
                                         _CLIENT.format(c=c, org=org, cn=cn, serial=serial), ca, dn)
    pki.clients["expired"] = _make_signed(work, "client-expired", _EXPIRED.format(org=ORG, serial=30), pki.ca,
                                          EXPIRED_DN)
    # the server's own pair offered as a client's: its key purpose is TLS server only
    pki.clients["server_as_client"] = Cert(pki.server.cert, pki.server.key)

    crl_tmpl = work / "crl.tmpl"
    crl_tmpl.write_text(_CRL)
    pki.crl = work / "crl.pem"
    _certtool("--generate-crl", "--load-ca-privkey", str(pki.ca.key),
              "--load-ca-certificate", str(pki.ca.cert),
              "--load-certificate", str(pki.clients["revoked"].cert),
              "--template", str(crl_tmpl), "--outfile", str(pki.crl))

    lv = pki.libvirt_dir
    lv.mkdir()
    for src, dst in ((pki.ca.cert, "cacert.pem"), (pki.server.cert, "servercert.pem"),
                     (pki.server.key, "serverkey.pem"), (pki.clients["trusted"].cert, "clientcert.pem"),
                     (pki.clients["trusted"].key, "clientkey.pem"), (pki.crl, "crl.pem")):
        shutil.copy(src, lv / dst)

    wh = pki.wrong_host_dir
    wh.mkdir()
    for src, dst in ((pki.ca.cert, "cacert.pem"), (pki.wrong_host.cert, "servercert.pem"),
                     (pki.wrong_host.key, "serverkey.pem")):
        shutil.copy(src, wh / dst)

    for name, d in pki.client_dirs.items():
        d.mkdir(parents=True)
        shutil.copy(pki.ca.cert, d / "cacert.pem")
        if name == "other_ca":
            with open(d / "cacert.pem", "ab") as bundle:
                bundle.write(pki.other_ca.cert.read_bytes())
        if name in pki.clients:
            shutil.copy(pki.clients[name].cert, d / "clientcert.pem")
            shutil.copy(pki.clients[name].key, d / "clientkey.pem")

    q = pki.qemu_dir
    q.mkdir()
    for src, dst in ((pki.ca.cert, "ca-cert.pem"), (pki.server.cert, "server-cert.pem"),
                     (pki.server.key, "server-key.pem"), (pki.clients["trusted"].cert, "client-cert.pem"),
                     (pki.clients["trusted"].key, "client-key.pem")):
        shutil.copy(src, q / dst)
    # QEMU runs as an unprivileged user and must read its keys; the keys are
    # test-only, so world-readable is acceptable here.
    for p in (*root.rglob("*"), root):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))
