"""x509 facts and checks for TLS, sans-I/O: certificate bytes in, verdicts out.

The TLS library (OpenSSL, through :mod:`ssl`, in :mod:`.tlsconfig`) does the
cryptography: the chain up to the CA, signatures, the CRL, the validity
dates.  What libvirt checks on top, and reports in its own words, is here:

* the distinguished name in libvirt's form, the one ``virt-pki-query-dn``
  prints and ``tls_allowed_dn_list`` is matched against: the relative names
  in the order the certificate encodes them, ``C=GB,O=Example,CN=host``
  (GnuTLS's ``gnutls_x509_crt_get_dn``), and libvirt's glob matching
  (``*`` any run of characters, ``?`` one; nothing else is special);
* the sanity checks libvirt runs on its own certificates at start
  (``tls_no_sanity_certificate`` turns them off) and on the peer's after
  the handshake: validity dates, basic constraints (a CA certificate where
  a leaf is wanted, and the reverse), key usage and key purpose, with
  libvirt's tolerance (a missing extension allows; a non-critical one only
  warns);
* GnuTLS priority strings (``tls_priority``) mapped to protocol versions.

Only the DER structures those checks need are decoded (X.509's
tbsCertificate: issuer, validity, subject, extensions); nothing is verified
here, and nothing here is cryptography.
"""

from __future__ import annotations

import base64
import calendar
import re
from dataclasses import dataclass, field
from typing import Iterable

# -- the few OIDs the checks name --------------------------------------------
OID_BASIC_CONSTRAINTS = "2.5.29.19"
OID_KEY_USAGE = "2.5.29.15"
OID_EXT_KEY_USAGE = "2.5.29.37"
KP_TLS_WWW_SERVER = "1.3.6.1.5.5.7.3.1"
KP_TLS_WWW_CLIENT = "1.3.6.1.5.5.7.3.2"
KP_ANY = "2.5.29.37.0"

# keyUsage bits as GnuTLS numbers them (the BIT STRING's first octet)
KEY_DIGITAL_SIGNATURE = 0x80
KEY_KEY_ENCIPHERMENT = 0x20
KEY_KEY_CERT_SIGN = 0x04

# Attribute names GnuTLS prints in a DN; any other type is printed as its OID.
DN_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET",
    "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.12": "title", "2.5.4.4": "SN", "2.5.4.42": "GN",
    "2.5.4.43": "initials", "2.5.4.44": "generationQualifier", "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym", "2.5.4.5": "serialNumber", "2.5.4.17": "postalCode", "2.5.4.41": "name",
    "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
    "1.2.840.113549.1.9.1": "EMAIL",
}


class CertificateError(Exception):
    """A check failed; the text is libvirt's message for it."""


class DERError(CertificateError):
    pass


# -- DER ----------------------------------------------------------------------
def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The element at ``pos``: (tag, content start, content end)."""
    if pos + 2 > end:
        raise DERError("truncated DER element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DERError("high tag numbers are not used in certificates")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or pos + count > end:
            raise DERError("bad DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > end:
        raise DERError("DER element runs past its container")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements of a constructed value: (tag, element start, content start, content end)."""
    out = []
    pos = start
    while pos < end:
        tag, cstart, cend = _tlv(data, pos, end)
        out.append((tag, pos, cstart, cend))
        pos = cend
    return out


def _oid(raw: bytes) -> str:
    if not raw:
        raise DERError("empty OID")
    first = raw[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _string(tag: int, raw: bytes) -> str | None:
    """A directory string's text, or None for a type printed as hex."""
    try:
        if tag in (0x0C,):                 # UTF8String
            return raw.decode("utf-8")
        if tag in (0x13, 0x16, 0x12, 0x1A):  # Printable, IA5, Numeric, Visible
            return raw.decode("ascii")
        if tag == 0x14:                    # T61String: as GnuTLS, bytes taken as Latin-1
            return raw.decode("latin-1")
        if tag == 0x1E:                    # BMPString
            return raw.decode("utf-16-be")
        if tag == 0x1C:                    # UniversalString
            return raw.decode("utf-32-be")
    except UnicodeDecodeError:
        return None
    return None


def _time(tag: int, raw: bytes) -> int:
    text = raw.decode("ascii", "replace")
    m = (re.fullmatch(r"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z", text) if tag == 0x17
         else re.fullmatch(r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z", text))
    if not m:
        raise DERError(f"bad certificate time '{text}'")
    year, *rest = (int(g) for g in m.groups())
    if tag == 0x17:
        year += 1900 if year >= 50 else 2000
    return calendar.timegm((year, *rest))


_DN_SPECIAL = re.compile(r'([,+"\\<>;])')


def _escape(value: str) -> str:
    value = _DN_SPECIAL.sub(r"\\\1", value)
    if value.startswith(("#", " ")):
        value = "\\" + value
    if value.endswith(" ") and not value.endswith("\\ "):
        value = value[:-1] + "\\ "
    return value


def _format_name(data: bytes, start: int, end: int) -> str:
    """A Name as GnuTLS's gnutls_x509_crt_get_dn writes it (libvirt's form)."""
    rdns = []
    for tag, _, rstart, rend in _children(data, start, end):
        if tag != 0x31:
            raise DERError("a relative distinguished name is not a SET")
        parts = []
        for atag, _, astart, aend in _children(data, rstart, rend):
            if atag != 0x30:
                raise DERError("an attribute is not a SEQUENCE")
            items = _children(data, astart, aend)
            if len(items) != 2 or items[0][0] != 0x06:
                raise DERError("bad attribute in a name")
            oid = _oid(data[items[0][2]:items[0][3]])
            vtag, vpos, vstart, vend = items[1]
            text = _string(vtag, data[vstart:vend])
            name = DN_NAMES.get(oid, oid)
            parts.append(f"{name}={_escape(text)}" if text is not None
                         else f"{name}=#{data[vpos:vend].hex()}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


@dataclass
class Certificate:
    """What the checks need to know of one X.509 certificate."""

    subject: str
    issuer: str
    not_before: int                       # seconds since the epoch
    not_after: int
    is_ca: bool | None = None             # None: no basicConstraints extension
    key_usage: int | None = None          # None: no keyUsage extension
    key_usage_critical: bool = False
    key_purposes: list[str] | None = None  # None: no extKeyUsage extension
    key_purpose_critical: bool = False
    der: bytes = field(default=b"", repr=False)


def parse_der(der: bytes) -> Certificate:
    """Decode the parts of a DER certificate libvirt's checks read; DERError if it is not one."""
    try:
        return _parse_der(bytes(der))
    except (IndexError, ValueError, OverflowError) as exc:     # bounds are checked; this is the backstop
        raise DERError(f"Unable to load certificate: {exc}") from None


def _parse_der(der: bytes) -> Certificate:
    tag, start, end = _tlv(der, 0, len(der))
    if tag != 0x30:
        raise DERError("not a certificate")
    top = _children(der, start, end)
    if not top or top[0][0] != 0x30:
        raise DERError("no tbsCertificate")
    fields_ = _children(der, top[0][2], top[0][3])
    if fields_ and fields_[0][0] == 0xA0:    # [0] version
        fields_ = fields_[1:]
    if len(fields_) < 6:
        raise DERError("tbsCertificate is too short")
    _serial, _sig, issuer, validity, subject, _spki, *rest = fields_
    times = _children(der, validity[2], validity[3])
    if len(times) != 2:
        raise DERError("bad validity")
    cert = Certificate(
        subject=_format_name(der, subject[2], subject[3]),
        issuer=_format_name(der, issuer[2], issuer[3]),
        not_before=_time(times[0][0], der[times[0][2]:times[0][3]]),
        not_after=_time(times[1][0], der[times[1][2]:times[1][3]]),
        der=der)
    for tag, _, estart, eend in rest:
        if tag != 0xA3:                      # [3] extensions; [1]/[2] unique ids are skipped
            continue
        seq = _children(der, estart, eend)
        if len(seq) != 1:
            raise DERError("bad extensions")
        for _, _, xstart, xend in _children(der, seq[0][2], seq[0][3]):
            _extension(cert, der, _children(der, xstart, xend))
    return cert


def _extension(cert: Certificate, der: bytes, parts: list[tuple[int, int, int, int]]) -> None:
    if len(parts) < 2 or parts[0][0] != 0x06:
        raise DERError("bad extension")
    oid = _oid(der[parts[0][2]:parts[0][3]])
    critical = len(parts) == 3 and parts[1][0] == 0x01 and der[parts[1][2]:parts[1][3]] != b"\x00"
    value = parts[-1]
    if value[0] != 0x04:
        raise DERError("extension value is not an OCTET STRING")
    vstart, vend = value[2], value[3]
    if oid == OID_BASIC_CONSTRAINTS:
        _, cstart, cend = _tlv(der, vstart, vend)
        items = _children(der, cstart, cend)
        cert.is_ca = bool(items and items[0][0] == 0x01 and der[items[0][2]:items[0][3]] != b"\x00")
    elif oid == OID_KEY_USAGE:
        tag, bstart, bend = _tlv(der, vstart, vend)
        bits = der[bstart + 1:bend] if tag == 0x03 and bend > bstart else b""
        cert.key_usage = bits[0] if bits else 0
        cert.key_usage_critical = critical
    elif oid == OID_EXT_KEY_USAGE:
        _, sstart, send = _tlv(der, vstart, vend)
        cert.key_purposes = [_oid(der[s:e]) for t, _, s, e in _children(der, sstart, send) if t == 0x06]
        cert.key_purpose_critical = critical


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def parse_pem(text: bytes) -> list[Certificate]:
    """Every certificate of a PEM file (a CA file may hold several)."""
    out = []
    for m in _PEM_CERT.finditer(text):
        try:
            der = base64.b64decode(b"".join(m.group(1).split()), validate=True)
        except ValueError as exc:
            raise DERError(f"bad base64: {exc}") from None
        out.append(parse_der(der))
    return out


# -- distinguished names -------------------------------------------------------
def glob_match(pattern: str, text: str) -> bool:
    """libvirt's matching of tls_allowed_dn_list and sasl_allowed_username_list
    (GLib's g_pattern_match_simple): ``*`` any run, ``?`` one character, all
    else literal; the whole text must match."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, text, re.S) is not None


DN_NOT_ALLOWED = ("Client's Distinguished Name is not on the list of allowed clients (tls_allowed_dn_list).  "
                  "Use 'virt-pki-query-dn clientcert.pem' to view the Distinguished Name field in the client "
                  "certificate, or run this daemon with --verbose option.")


def dn_allowed(dname: str, allowed: Iterable[str] | None) -> bool:
    """``allowed`` None (the key absent) admits every DN; an empty list admits none."""
    if allowed is None:
        return True
    return any(glob_match(pattern, dname) for pattern in allowed)


# -- libvirt's sanity checks -----------------------------------------------------
def _who(is_server: bool, is_ca: bool) -> str:
    return "CA" if is_ca else ("server" if is_server else "client")


def check_times(cert: Certificate, name: str, is_server: bool, is_ca: bool, now: float) -> None:
    if cert.not_after < now:
        raise CertificateError(f"The {_who(is_server, is_ca)} certificate {name} has expired")
    if cert.not_before > now:
        raise CertificateError(f"The {_who(is_server, is_ca)} certificate {name} is not yet active")


def check_basic_constraints(cert: Certificate, name: str, is_server: bool, is_ca: bool) -> None:
    if cert.is_ca and not is_ca:
        raise CertificateError(f"The certificate {name} basic constraints show a CA, but we need one for a "
                               f"{'server' if is_server else 'client'}")
    if cert.is_ca is False and is_ca:
        raise CertificateError(f"The certificate {name} basic constraints do not show a CA")
    if cert.is_ca is None and is_ca:
        raise CertificateError(f"The certificate {name} is missing basic constraints for a CA")


def check_key_usage(cert: Certificate, name: str, is_ca: bool, warnings: list[str]) -> None:
    usage = cert.key_usage
    if usage is None:                       # absent: everything a certificate of its kind needs
        return
    wanted = ([(KEY_KEY_CERT_SIGN, "certificate signing")] if is_ca else
              [(KEY_DIGITAL_SIGNATURE, "digital signature"), (KEY_KEY_ENCIPHERMENT, "key encipherment")])
    for bit, what in wanted:
        if not usage & bit:
            text = f"Certificate {name} usage does not permit {what}"
            if cert.key_usage_critical:
                raise CertificateError(text)
            warnings.append(text)


def check_key_purpose(cert: Certificate, name: str, is_server: bool, warnings: list[str]) -> None:
    purposes = cert.key_purposes
    if not purposes:                        # no extension: any use
        return
    allow_server = allow_client = False
    for oid in purposes:
        if oid == KP_TLS_WWW_SERVER:
            allow_server = True
        elif oid == KP_TLS_WWW_CLIENT:
            allow_client = True
        elif oid != KP_ANY:                 # as libvirt: another named purpose does not restrict
            allow_server = allow_client = True
    if not (allow_server if is_server else allow_client):
        text = f"Certificate {name} purpose does not allow use for with a TLS {'server' if is_server else 'client'}"
        if cert.key_purpose_critical:
            raise CertificateError(text)
        warnings.append(text)


def check_certificate(cert: Certificate, name: str, is_server: bool, is_ca: bool, now: float) -> list[str]:
    """libvirt's checks of one of its own certificates (virNetTLSContextCheckCert);
    returns the warnings, raises CertificateError."""
    warnings: list[str] = []
    check_times(cert, name, is_server, is_ca, now)
    check_basic_constraints(cert, name, is_server, is_ca)
    check_key_usage(cert, name, is_ca, warnings)
    if not is_ca:
        check_key_purpose(cert, name, is_server, warnings)
    return warnings


def check_peer(cert: Certificate, we_are_server: bool, allowed_dns: Iterable[str] | None,
               now: float) -> list[str]:
    """The checks after the handshake on the peer's certificate (the chain,
    signature and CRL were the TLS library's): dates, the DN list (a server
    checking its client), basic constraints, key usage and purpose."""
    warnings: list[str] = []
    name = "[session]"
    check_times(cert, name, not we_are_server, False, now)
    if we_are_server and not dn_allowed(cert.subject, allowed_dns):
        raise CertificateError(DN_NOT_ALLOWED)
    check_basic_constraints(cert, name, not we_are_server, False)
    check_key_usage(cert, name, False, warnings)
    check_key_purpose(cert, name, not we_are_server, warnings)
    return warnings


# -- GnuTLS priority strings ------------------------------------------------------
TLS_VERSIONS = ("TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3")
_LEVELS = {"NORMAL", "PERFORMANCE", "SECURE", "SECURE128", "SECURE192", "SECURE256", "PFS", "SYSTEM",
           "LEGACY", "SUITEB128", "SUITEB192"}


@dataclass
class Priority:
    """What of a GnuTLS priority string OpenSSL can honour: the versions allowed."""

    versions: list[str]                     # in TLS_VERSIONS' order; empty: none left
    not_applied: list[str]                  # items with no OpenSSL counterpart (the defaults stand)


def parse_priority(text: str) -> Priority:
    """``NORMAL:-VERS-TLS1.0:+VERS-TLS1.3`` → the versions.  Keywords (NORMAL,
    SECURE256, @SYSTEM...) keep OpenSSL's defaults; cipher, MAC, curve and
    signature items are listed as not applied."""
    versions = set(TLS_VERSIONS[2:])        # OpenSSL's (and GnuTLS NORMAL's in Debian 12) defaults
    not_applied = []
    for item in filter(None, text.split(":")):
        if item.startswith("@") or item.upper() in _LEVELS or item.startswith("%"):
            continue
        m = re.fullmatch(r"([+-])VERS-(ALL|TLS-ALL|TLS1\.[0-3])", item)
        if m:
            which = set(TLS_VERSIONS) if m[2] in ("ALL", "TLS-ALL") else {m[2]}
            versions = versions | which if m[1] == "+" else versions - which
            continue
        not_applied.append(item)
    return Priority([v for v in TLS_VERSIONS if v in versions], not_applied)
