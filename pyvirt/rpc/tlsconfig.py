"""TLS contexts for the daemon's listener and the client, from libvirt's files.

The files and their defaults are libvirt's (``virnettlscontext.c``): a
server uses ``ca_file``, ``cert_file``, ``key_file`` and ``crl_file`` when
any of the first three is set, else ``/etc/pki/CA/cacert.pem``,
``/etc/pki/CA/cacrl.pem`` (optional), ``/etc/pki/libvirt/servercert.pem``
and ``/etc/pki/libvirt/private/serverkey.pem`` (an unprivileged daemon
looks in ``~/.pki/libvirt/`` first); a client takes ``cacert.pem``,
``cacrl.pem``, ``clientcert.pem`` and ``clientkey.pem`` from ``?pkipath=``,
else the same way from ``~/.pki/libvirt/`` (not root) and
``/etc/pki/CA/`` + ``/etc/pki/libvirt/``.  A client without a certificate
of its own connects without one (the server decides).

OpenSSL (:mod:`ssl`) does the handshake and the chain, signature, CRL and
date checks; :mod:`.tls` adds libvirt's checks and words.  The server
requests a client certificate but lets the handshake finish without one:
like libvirtd, it then checks the certificate (present, DN on the list,
sane) and sends the one encrypted byte 1, or closes.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import tls

log = logging.getLogger(__name__)

PKI_DIR = "/etc/pki"
CACERT = f"{PKI_DIR}/CA/cacert.pem"
CACRL = f"{PKI_DIR}/CA/cacrl.pem"
SERVERCERT = f"{PKI_DIR}/libvirt/servercert.pem"
SERVERKEY = f"{PKI_DIR}/libvirt/private/serverkey.pem"
CLIENTCERT = f"{PKI_DIR}/libvirt/clientcert.pem"
CLIENTKEY = f"{PKI_DIR}/libvirt/private/clientkey.pem"

CONFIRM = b"\x01"
"""The one byte a libvirt server sends once it accepted the client's certificate."""

_OPENSSL_VERSIONS = {"TLS1.0": ssl.TLSVersion.TLSv1, "TLS1.1": ssl.TLSVersion.TLSv1_1,
                     "TLS1.2": ssl.TLSVersion.TLSv1_2, "TLS1.3": ssl.TLSVersion.TLSv1_3}


class TLSSetupError(Exception):
    """Credentials that cannot be used; the text is libvirt's, naming the file."""


@dataclass
class Credentials:
    cacert: str
    cacrl: str | None
    cert: str | None
    key: str | None


def locate(pkipath: str | None, is_server: bool, try_user_dir: bool) -> Credentials:
    """Where libvirt looks for its files (virNetTLSContextLocateCredentials)."""
    role = "server" if is_server else "client"
    if pkipath:
        d = pkipath.rstrip("/") or "/"
        return Credentials(f"{d}/cacert.pem", f"{d}/cacrl.pem", f"{d}/{role}cert.pem", f"{d}/{role}key.pem")
    creds = Credentials(CACERT, CACRL, SERVERCERT if is_server else CLIENTCERT,
                        SERVERKEY if is_server else CLIENTKEY)
    if try_user_dir:
        user = Path.home() / ".pki" / "libvirt"
        if (user / "cacert.pem").exists():
            creds.cacert = str(user / "cacert.pem")
        if (user / "cacrl.pem").exists():
            creds.cacrl = str(user / "cacrl.pem")
        if (user / f"{role}cert.pem").exists() and (user / f"{role}key.pem").exists():
            creds.cert, creds.key = str(user / f"{role}cert.pem"), str(user / f"{role}key.pem")
    return creds


def missing_client_certificate(pkipath: str | None) -> str | None:
    """The file of its certificate or key without which a client offers none (it goes
    on without, as libvirt's), or None: the likeliest reason a server refuses it,
    which the server's refusal does not say."""
    creds = locate(pkipath, False, os.geteuid() != 0 and not pkipath)
    return next((path for path in (creds.cert, creds.key) if path and not os.path.exists(path)), None)


def _readable(kind: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TLSSetupError(f"Cannot read {kind} '{path}': {exc.strerror}") from None


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()[:1 << 16]          # libvirt reads at most 64 KiB
    except OSError as exc:
        raise TLSSetupError(f"Cannot read certificate '{path}': {exc.strerror}") from None


def sanity_check(creds: Credentials, is_server: bool, now: float | None = None) -> list[str]:
    """libvirt's checks of its own certificate and CA at start
    (virNetTLSContextSanityCheckCredentials); returns warnings."""
    try:
        return _sanity_check(creds, is_server, time.time() if now is None else now)
    except tls.CertificateError as exc:
        raise TLSSetupError(str(exc)) from None


def _sanity_check(creds: Credentials, is_server: bool, now: float) -> list[str]:
    role = "server" if is_server else "client"
    warnings: list[str] = []
    cert = None
    if creds.cert and os.access(creds.cert, os.R_OK):
        try:
            certs = tls.parse_pem(_read(creds.cert))
        except tls.DERError:
            certs = []
        if not certs:
            raise TLSSetupError(f"Unable to import {role} certificate {creds.cert}")
        cert = certs[0]
        warnings += tls.check_certificate(cert, creds.cert, is_server, False, now)
    if os.access(creds.cacert, os.R_OK):
        try:
            cas = tls.parse_pem(_read(creds.cacert))
        except tls.DERError:
            cas = []
        if not cas:
            raise TLSSetupError(f"Unable to import CA certificate list {creds.cacert}")
        for ca in cas:
            warnings += tls.check_certificate(ca, creds.cacert, is_server, True, now)
        if cert is not None and creds.key and os.access(creds.key, os.R_OK):
            _check_pair(creds, is_server)
    return warnings


def _check_pair(creds: Credentials, is_server: bool) -> None:
    """Our certificate against our CA, judged by OpenSSL: a handshake in memory
    whose other side trusts only that CA (no crypto of ours)."""
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client_ctx.check_hostname = False
    try:
        server_ctx.load_cert_chain(creds.cert, creds.key)
        if is_server:                       # a client that trusts the CA judges us
            client_ctx.load_verify_locations(creds.cacert)
        else:                               # a server that trusts the CA judges us
            client_ctx.verify_mode = ssl.CERT_NONE
            client_ctx.load_cert_chain(creds.cert, creds.key)
            server_ctx.load_verify_locations(creds.cacert)
            server_ctx.verify_mode = ssl.CERT_REQUIRED
    except (ssl.SSLError, OSError):
        return                              # loading reports these, in libvirt's words
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    judge = client if is_server else server
    ends = [(client, c_out, s_in), (server, s_out, c_in)]
    done = set()
    for _ in range(10):
        for obj, out, peer_in in ends:
            if obj not in done:
                try:
                    obj.do_handshake()
                    done.add(obj)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except ssl.SSLCertVerificationError as exc:
                    if obj is judge:
                        raise TLSSetupError(f"Our own certificate {creds.cert} failed validation against "
                                            f"{creds.cacert}: {exc.verify_message}") from None
                    return
                except ssl.SSLError:
                    return                  # not a verdict on the pair
            if out.pending:
                peer_in.write(out.read())
        if len(done) == 2:
            return


def priority_versions(ctx: ssl.SSLContext, priority: str | None) -> list[str]:
    """Apply a GnuTLS priority string's versions to ``ctx``; the items not applied."""
    if not priority:
        return []
    parsed = tls.parse_priority(priority)
    if not parsed.versions:
        raise TLSSetupError(f"Failed to set TLS session priority to {priority}: No or insufficient "
                            "priorities were set.")
    ctx.minimum_version = _OPENSSL_VERSIONS[parsed.versions[0]]
    ctx.maximum_version = _OPENSSL_VERSIONS[parsed.versions[-1]]
    return parsed.not_applied


def _load(ctx: ssl.SSLContext, creds: Credentials, is_server: bool) -> None:
    """Load the CA, the CRL (when present) and our key pair, with libvirt's checks and words."""
    _readable("CA certificate", creds.cacert)
    try:
        ctx.load_verify_locations(creds.cacert)
    except ssl.SSLError as exc:
        raise TLSSetupError(f"Unable to set x509 CA certificate: {creds.cacert}: {exc.reason or exc}") from None
    if creds.cacrl and os.path.exists(creds.cacrl):
        _readable("CA revocation list", creds.cacrl)
        try:
            ctx.load_verify_locations(creds.cacrl)
        except ssl.SSLError as exc:
            raise TLSSetupError(f"Unable to set x509 certificate revocation list: {creds.cacrl}: "
                                f"{exc.reason or exc}") from None
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    if creds.cert and creds.key:
        present = True
        for kind, path in (("certificate", creds.cert), ("private key", creds.key)):
            if not is_server and not os.path.exists(path):
                present = False                 # a client may go without a certificate
                break
            _readable(kind, path)
        if present:
            try:
                ctx.load_cert_chain(creds.cert, creds.key)
            except ssl.SSLError as exc:
                raise TLSSetupError(f"Unable to set x509 key and certificate: {creds.key}, {creds.cert}: "
                                    f"{exc.reason or exc}") from None


# -- the server ------------------------------------------------------------------
@dataclass
class ServerTLS:
    """A TLS listener's context and libvirt's checks of each client."""

    context: ssl.SSLContext
    allowed_dns: list[str] | None = None       # None: tls_allowed_dn_list absent, any DN
    verify: bool = True                        # not tls_no_verify_certificate
    handshake_timeout: float = 60.0
    warnings: list[str] = field(default_factory=list)

    def check_client(self, ssl_object: ssl.SSLObject | None) -> tuple[str | None, str | None]:
        """After the handshake: (the client's DN or None, why it is refused or None)."""
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None and not self.verify:
            return None, None                   # tls_no_verify_certificate: none was asked for
        dname = None
        try:
            if der is None:
                raise tls.CertificateError("Unable to verify TLS peer: No certificate was found.")
            cert = tls.parse_der(der)
            dname = cert.subject
            for text in tls.check_peer(cert, True, self.allowed_dns, time.time()):
                log.warning("%s", text)
        except tls.CertificateError as exc:
            if self.verify:
                return dname, f"{exc}"
            log.info("Ignoring bad certificate at user request (%s)", exc)
        return dname, None


def server_context(*, ca_file: str = "", cert_file: str = "", key_file: str = "", crl_file: str = "",
                   allowed_dns: list[str] | None = None, priority: str | None = None,
                   sanity: bool = True, verify: bool = True, privileged: bool | None = None,
                   handshake_timeout: float = 60.0) -> ServerTLS:
    """The daemon's TLS context, as libvirtd builds it from libvirtd.conf."""
    if ca_file or cert_file or key_file:
        if not ca_file:
            raise TLSSetupError("No CA certificate path set to match server key/cert")
        if not cert_file:
            raise TLSSetupError("No server certificate path set to match server key")
        if not key_file:
            raise TLSSetupError("No server key path set to match server cert")
        creds = Credentials(ca_file, crl_file or None, cert_file, key_file)
    else:
        privileged = os.geteuid() == 0 if privileged is None else privileged
        creds = locate(None, True, not privileged)
    warnings = sanity_check(creds, True) if sanity else []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load(ctx, creds, True)
    # Ask for the client's certificate without requiring it: with none, the
    # handshake completes and libvirt's check refuses it (the client then reads
    # "server verification failed", as from libvirtd).  With no_verify the
    # certificate is not asked for at all: OpenSSL would check one it receives.
    ctx.verify_mode = ssl.CERT_OPTIONAL if verify else ssl.CERT_NONE
    # No TLS 1.3 session tickets: libvirt's client reads exactly one record after
    # the handshake, the confirmation byte, and a ticket arriving on its own
    # would fail it ("Unable to read TLS confirmation: Resource temporarily
    # unavailable").  libvirt resumes no sessions anyway.
    ctx.num_tickets = 0
    warnings += [f"tls_priority: '{item}' has no OpenSSL equivalent; OpenSSL's default applies"
                 for item in priority_versions(ctx, priority)]
    return ServerTLS(ctx, allowed_dns, verify, handshake_timeout, warnings)


# -- the client -------------------------------------------------------------------
def client_context(*, pkipath: str | None = None, verify: bool = True, sanity: bool = True,
                   priority: str | None = None) -> ssl.SSLContext:
    """A client's TLS context, as libvirt's remote driver builds it from the URI."""
    creds = locate(pkipath, False, os.geteuid() != 0 and not pkipath)
    if sanity:
        for text in sanity_check(creds, False):
            log.warning("%s", text)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _load(ctx, creds, False)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for item in priority_versions(ctx, priority):
        log.info("tls_priority: '%s' has no OpenSSL equivalent; OpenSSL's default applies", item)
    return ctx


def describe_verify_failure(exc: ssl.SSLCertVerificationError, hostname: str) -> str:
    """libvirt's words for a server certificate the client refused."""
    if exc.verify_code in (62, 64):          # X509_V_ERR_HOSTNAME_MISMATCH / IP_ADDRESS_MISMATCH
        return f"Certificate [session] owner does not match the hostname {hostname}"
    return f"Certificate failed validation: {exc.verify_message}"
