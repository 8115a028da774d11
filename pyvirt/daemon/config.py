"""pyvirtd's configuration: libvirtd.conf and qemu.conf keys in one file.

The syntax is libvirt's virConf: ``key = value`` statements, one a line (or
separated by ``;``), where a value is an integer, a string in double or
single quotes (or ``\"\"\"`` triple quotes, which may span lines; no escapes,
as in libvirt) or a ``[ ... ]`` list of values that may span lines; ``#``
starts a comment.

Every key libvirt 9.0 documents (:mod:`.conf_keys`) parses with libvirt's
value type.  The keys pyvirtd implements are the fields of
:class:`DaemonConfig` and take effect; the others are kept in
:attr:`DaemonConfig.ignored` and logged once at start.  A key that neither
libvirt nor pyvirt knows, or a value of the wrong type, is an error naming
the line, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from ..drivers.qemu.saveimage import FORMATS, check_compat
from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..locking import NAMES as LOCK_MANAGERS
from .conf_keys import ValueType, source_of, value_type

AUTH_VALUES = ("none", "sasl", "polkit")   # libvirt's remoteConfigGetAuth
AUTH_KEYS = ("auth_tcp", "auth_tls", "auth_unix_rw", "auth_unix_ro")
SSF_WARNING_LEVEL = 112                    # libvirt refuses an explicit tcp_min_ssf below this
LOG_LEVELS = range(1, 5)                   # 1 debug, 2 info, 3 warning, 4 error
DISPLAY_PORT_MIN = 5900                    # libvirt: the VNC display number is port - 5900


class Ignored(NamedTuple):
    """A setting that loaded but that pyvirtd does not act on."""

    key: str
    line: int
    why: str


@dataclass
class DaemonConfig:
    # libvirtd.conf keys
    listen_tcp: int = 0
    listen_addr: str = "127.0.0.1"
    tcp_port: int = 16509
    # TLS (libvirt's defaults).  listen_tls unset: on with --listen only, as libvirtd
    # (which listens on neither TCP port without --listen); set: as it says.
    listen_tls: int | None = None
    tls_port: int = 16514
    ca_file: str = ""                # "": none of ca/cert/key set, libvirt's default paths
    cert_file: str = ""
    key_file: str = ""
    crl_file: str = ""
    tls_no_verify_certificate: int = 0
    tls_no_sanity_certificate: int = 0
    tls_allowed_dn_list: list[str] | None = None   # globs; None (absent): every valid certificate
    tls_priority: str = ""           # GnuTLS syntax: its protocol versions are applied
    auth_tcp: str = "sasl"
    auth_unix_rw: str = "none"
    auth_unix_ro: str = "none"
    auth_tls: str = "none"           # the client certificate authenticates; "sasl" adds SASL on top
    sasl_allowed_username_list: list[str] | None = None   # globs; None (absent): every SASL user
    tcp_min_ssf: int = 56            # SASL security strength a plain TCP client must negotiate
    unix_sock_dir: str = "/run/libvirt"
    unix_sock_rw_perms: str = "0700"
    unix_sock_ro_perms: str = "0777"
    unix_sock_group: str = ""        # group owning both sockets; "": the daemon's
    host_uuid: str = ""
    max_clients: int = 5000
    max_queued_clients: int = 1000   # the listen backlog: connections waiting while at a limit
    max_anonymous_clients: int = 20  # clients not authenticated yet (auth "none": authenticated at once)
    max_client_requests: int = 5     # calls in flight per client before we stop reading it
    keepalive_interval: int = 5
    keepalive_count: int = 5
    log_level: int = 2               # pyvirtd logs lifecycle at info (libvirt's default is 3)
    # qemu.conf keys
    migration_address: str = "127.0.0.1"
    migration_host: str = ""
    migration_port_min: int = 49152
    migration_port_max: int = 49215
    save_image_format: str = "raw"
    remote_display_port_min: int = 5900
    remote_display_port_max: int = 65535
    user: str = "libvirt-qemu"       # who QEMU runs as (libvirt's Debian default); root only when set
    group: str = "kvm"
    security_driver: list[str] = field(default_factory=lambda: ["dac"])   # DAC first, others on top
    dynamic_ownership: int = 1
    remember_owner: int = 1
    migrate_tls_x509_cert_dir: str = ""   # "": libvirt's defaults (drivers/qemu/migration/tls.py)
    migrate_tls_x509_verify: int = -1     # -1: not set (default_tls_x509_verify, else on)
    default_tls_x509_cert_dir: str = ""
    default_tls_x509_verify: int = -1
    migrate_tls_force: int = 0
    lock_manager: str = "nop"        # pyvirt.locking.NAMES: nop, lockd, etcd
    # pyvirt's own keys
    state_dir: str = "/var/lib/pyvirt"
    migration_params: int = 1
    migration_v3: int = 1
    remote_event_callback: int = 1   # 0: clients register events in the legacy form (old daemons)
    max_message_size: int = 33554432
    frame_timeout: int = 30          # seconds an incomplete frame may take (0: none); see rpc.server
    max_large_frame_bytes: int = 33554432   # frames over 256 KiB read at once, by announced length
    max_client_output_bytes: int = 67108864  # unread output before a client is dropped
    tls_handshake_timeout: int = 60  # seconds a TLS client may take to finish its handshake
    default_network: int = 1         # define libvirt's 'default' network on first start (not started)
    save_image_compat: str = ""      # "libvirt-9.0": refuse save image formats libvirt 9.0 cannot restore
    # lockd (libvirt's lockd.conf): a lease per read/write disk; leases required (-1: not auto);
    # the shared directory of lease files ("": each disk image itself is locked)
    auto_disk_leases: int = 1
    require_lease_for_disks: int = -1
    lock_file_lockspace_dir: str = ""
    # etcd (cluster-wide leases): client URLs, lease TTL (s), key prefix, TLS files for etcd
    lock_etcd_endpoints: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    lock_etcd_ttl: int = 10
    lock_etcd_prefix: str = "/pyvirt/leases/"
    lock_etcd_ca_file: str = ""
    lock_etcd_cert_file: str = ""
    lock_etcd_key_file: str = ""
    # the convergence policy (drivers/qemu/migration/converge.py; defaults there, Nova's scaled)
    migration_converge: int = 0
    migration_converge_timeout_per_gib: int = 120
    migration_converge_timeout_min: int = 30
    migration_converge_downtime_max: int = 500
    migration_converge_downtime_steps: int = 5
    migration_converge_stall_passes: int = 2
    migration_converge_throttle_initial: int = 40
    migration_converge_throttle_increment: int = 20
    migration_converge_order: list[str] = field(default_factory=lambda: ["downtime", "auto-converge", "postcopy"])
    ignored: list[Ignored] = field(default_factory=list, repr=False)

    @property
    def rw_socket(self) -> Path:
        return Path(self.unix_sock_dir) / "libvirt-sock"

    @property
    def ro_socket(self) -> Path:
        return Path(self.unix_sock_dir) / "libvirt-sock-ro"


def _fail(path: str, line: int, detail: str) -> libvirtError:
    return error(ErrorNumber.CONF_SYNTAX, ErrorDomain.CONF, f"{path}:{line}: {detail}")


# -- virConf syntax --------------------------------------------------------------
_TOKENS = re.compile(r'''
    (?P<nl>\n) | (?P<blank>[ \t\r]+) | (?P<comment>\#[^\n]*)
  | """(?P<triple>.*?)""" | "(?P<dq>[^"\n]*)" | '(?P<sq>[^'\n]*)'
  | (?P<num>[+-]?\d+) | (?P<name>[A-Za-z][A-Za-z0-9_]*) | (?P<punct>[=\[\],;])
''', re.X | re.S)


class _Lexer:
    def __init__(self, text: str, path: str) -> None:
        self.text, self.path = text, path
        self.pos, self.line = 0, 1

    def fail(self, detail: str) -> libvirtError:
        return _fail(self.path, self.line, detail)

    def peek(self, skip_newlines: bool) -> tuple[str, Any] | None:
        """The next token as (kind, value) without consuming it; None at the end."""
        while self.pos < len(self.text):
            m = _TOKENS.match(self.text, self.pos)
            if m is None:
                ch = self.text[self.pos]
                raise self.fail("unterminated string" if ch in "\"'" else f"unexpected character '{ch}'")
            kind = m.lastgroup
            if kind in ("blank", "comment") or (kind == "nl" and skip_newlines):
                self.pos = m.end()
                self.line += kind == "nl"
                continue
            if kind in ("triple", "dq", "sq"):
                return "str", m.group(kind)
            return kind, m.group(kind)
        return None

    def take(self, skip_newlines: bool) -> tuple[str, Any] | None:
        tok = self.peek(skip_newlines)
        if tok is not None:
            m = _TOKENS.match(self.text, self.pos)
            self.line += m.group(0).count("\n")
            self.pos = m.end()
        return tok


def _value(lex: _Lexer) -> Any:
    tok = lex.take(skip_newlines=False)
    if tok is None or tok[0] == "nl":
        raise lex.fail("expecting a value")
    kind, text = tok
    if kind == "str":
        return text
    if kind == "num":
        return int(text)
    if tok == ("punct", "["):
        items: list[Any] = []
        while True:
            nxt = lex.peek(skip_newlines=True)
            if nxt is None:
                raise lex.fail("list is not closed with ]")
            if nxt == ("punct", "]"):
                lex.take(skip_newlines=True)
                return items
            if items:
                if nxt != ("punct", ","):
                    raise lex.fail("expecting a separator in list")
                lex.take(skip_newlines=True)
                if lex.peek(skip_newlines=True) == ("punct", "]"):
                    continue          # a trailing comma, as libvirt allows
            lex.peek(skip_newlines=True)
            items.append(_value(lex))
    raise lex.fail(f"expecting a value, got '{text}'")


def parse_conf(text: str, path: str = "<config>") -> list[tuple[str, Any, int]]:
    """virConf syntax → [(key, value, line)] in file order."""
    lex = _Lexer(text, path)
    out: list[tuple[str, Any, int]] = []
    while True:
        tok = lex.take(skip_newlines=True)
        while tok == ("punct", ";"):
            tok = lex.take(skip_newlines=True)
        if tok is None:
            return out
        line = lex.line
        if tok[0] != "name":
            raise lex.fail(f"expecting a name, got '{tok[1]}'")
        if lex.take(skip_newlines=False) != ("punct", "="):
            raise lex.fail(f"expecting an assignment after '{tok[1]}'")
        out.append((tok[1], _value(lex), line))
        end = lex.take(skip_newlines=False)
        if end is not None and end[0] != "nl" and end != ("punct", ";"):
            raise lex.fail(f"unexpected text after the value of '{tok[1]}': '{end[1]}'")


# -- libvirt's value types ---------------------------------------------------------
def _typed(key: str, kind: ValueType, value: Any, where: tuple[str, int]) -> Any:
    """Check a value against libvirt's type for its key; return it normalised."""
    def wrong() -> libvirtError:
        return _fail(*where, f"expected {kind.value} for '{key}' parameter, got {_show(value)}")

    def in_range(low: int, high: int) -> int:
        if not isinstance(value, int):
            raise wrong()
        if not low <= value <= high:
            raise _fail(*where, f"value for '{key}' parameter must be in range {low}:{high}")
        return value

    if kind is ValueType.STRING:
        if not isinstance(value, str):
            raise wrong()
        return value
    if kind is ValueType.INT:
        return in_range(-2**31, 2**31 - 1)
    if kind is ValueType.UINT:
        if isinstance(value, int) and value < 0:
            raise wrong()
        return in_range(0, 2**32 - 1)
    if kind is ValueType.BOOL:
        if not isinstance(value, int) or value < 0:
            raise wrong()
        if value > 1:
            raise _fail(*where, f"value for '{key}' parameter must be 0 or 1")
        return value
    if kind in (ValueType.STRING_LIST, ValueType.STRINGS):
        if kind is ValueType.STRINGS and isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong()
        return value
    if kind is ValueType.PORT:
        port = int(value) if isinstance(value, str) and value.isdigit() else value
        if not isinstance(port, int):
            raise wrong()
        if not 0 < port < 65536:
            raise _fail(*where, f"{key} {value} is out of range (1-65535)")
        return port
    if kind is ValueType.CORE_SIZE:
        if value == "unlimited":
            return value
        if isinstance(value, int) and value >= 0:
            return value
        raise wrong()
    raise AssertionError(kind)


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _field_type(annotation: Any) -> ValueType:
    """The value type of a field no table lists (a pyvirt key added later)."""
    text = str(annotation)
    if text.startswith("list"):
        return ValueType.STRINGS
    return ValueType.UINT if text == "int" else ValueType.STRING


# -- loading -------------------------------------------------------------------------
def load(text: str, path: str = "<config>") -> DaemonConfig:
    cfg = DaemonConfig()
    implemented = {f.name: f for f in fields(DaemonConfig) if f.name != "ignored"}
    first: dict[str, int] = {}
    lines: dict[str, int] = {}
    for key, value, line in parse_conf(text, path):
        kind = value_type(key)
        if kind is None and key in implemented:
            kind = _field_type(implemented[key].type)
        if kind is None:
            raise _fail(path, line, f"unknown setting '{key}' (neither libvirtd.conf, qemu.conf "
                        "nor pyvirtd document it)")
        value = _typed(key, kind, value, (path, line))
        if key in first:
            # libvirt reads the first of repeated keys; say so rather than guess
            cfg.ignored.append(Ignored(key, line, f"repeated: the setting at line {first[key]} applies"))
            continue
        first[key] = line
        if key in implemented:
            setattr(cfg, key, value)
            lines[key] = line
        else:
            cfg.ignored.append(Ignored(key, line, f"a {source_of(key)} setting pyvirtd does not implement"))
    _check(cfg, path, lines)
    return cfg


def _check(cfg: DaemonConfig, path: str, lines: dict[str, int]) -> None:
    """What libvirt checks beyond the types, each error naming the line."""
    def fail(key: str, detail: str) -> libvirtError:
        return _fail(path, lines.get(key, 0), detail)

    for key in AUTH_KEYS:
        value = getattr(cfg, key)
        if value not in AUTH_VALUES:
            raise fail(key, f"{key}: unsupported auth {value}")
        if value == "polkit":
            raise fail(key, f"{key} = \"polkit\" is not supported by pyvirtd (it has no polkit): use \"sasl\", "
                       "or \"none\" with unix_sock_group and unix_sock_rw_perms deciding who connects")
    if "tcp_min_ssf" in lines and cfg.tcp_min_ssf < SSF_WARNING_LEVEL:
        raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.CONF, f"{path}:{lines['tcp_min_ssf']}: "
                    f"minimum SSF levels lower than {SSF_WARNING_LEVEL} are not supported")
    for key in ("unix_sock_rw_perms", "unix_sock_ro_perms"):
        if not re.fullmatch(r"[0-7]{1,4}", getattr(cfg, key)):
            raise fail(key, f"{key}: failed to parse mode '{getattr(cfg, key)}' (octal digits)")
    if cfg.host_uuid:
        try:
            cfg.host_uuid = str(uuidlib.UUID(cfg.host_uuid))
        except ValueError:
            raise fail("host_uuid", f"invalid host UUID: {cfg.host_uuid}") from None
    if cfg.log_level not in LOG_LEVELS:
        raise fail("log_level", f"log_level {cfg.log_level} is not 1 (debug) to 4 (error)")
    if cfg.tls_handshake_timeout < 1:
        raise fail("tls_handshake_timeout", "tls_handshake_timeout must be at least 1 (seconds)")
    if cfg.max_client_requests < 1:
        raise fail("max_client_requests", "max_client_requests must be at least 1")
    if cfg.max_anonymous_clients > cfg.max_clients:
        if "max_anonymous_clients" in lines:   # libvirt's virNetServerNew refuses the same
            raise fail("max_anonymous_clients", "The overall maximum number of clients must not be less "
                       "than the number of clients waiting for authentication")
        # libvirtd would refuse to start with a small max_clients and the default 20;
        # a default is not a contradiction the user wrote, so it gives way
        cfg.max_anonymous_clients = cfg.max_clients
    if cfg.migration_port_min <= 0:
        raise fail("migration_port_min", "migration_port_min: port must be greater than 0")
    if not cfg.migration_port_min <= cfg.migration_port_max <= 65535:
        raise fail("migration_port_max", "migration_port_max: port must be between the minimal port "
                   f"{cfg.migration_port_min} and 65535")
    if cfg.remote_display_port_min < DISPLAY_PORT_MIN:
        raise fail("remote_display_port_min", "remote_display_port_min: port must be greater than "
                   f"or equal to {DISPLAY_PORT_MIN}")
    if not cfg.remote_display_port_min <= cfg.remote_display_port_max <= 65535:
        raise fail("remote_display_port_max", "remote_display_port_max: port must be between the "
                   "minimal port and 65535")
    if cfg.lock_manager not in LOCK_MANAGERS:
        raise fail("lock_manager", f"lock_manager '{cfg.lock_manager}' is not one of: " + ", ".join(LOCK_MANAGERS))
    if cfg.lock_file_lockspace_dir and not cfg.lock_file_lockspace_dir.startswith("/"):
        raise fail("lock_file_lockspace_dir", "lock_file_lockspace_dir must be an absolute path")
    _check_etcd(cfg, fail)
    try:
        converge_settings(cfg).check()
    except ValueError as exc:
        raise fail("migration_converge_order", str(exc)) from None
    if cfg.save_image_format not in FORMATS:
        raise fail("save_image_format", f"save_image_format '{cfg.save_image_format}' is not one of: "
                   + ", ".join(FORMATS))
    if cfg.save_image_compat:
        try:
            check_compat(FORMATS[cfg.save_image_format], cfg.save_image_compat,
                         f'save_image_compat = "{cfg.save_image_compat}"')
        except libvirtError as exc:
            raise fail("save_image_compat", exc.get_str2() or str(exc)) from None


def converge_settings(cfg: DaemonConfig) -> Any:
    """The QEMU driver's convergence policy settings from the migration_converge_* keys."""
    from ..drivers.qemu.migration.converge import ConvergeSettings
    return ConvergeSettings(
        enabled=bool(cfg.migration_converge), timeout_per_gib=cfg.migration_converge_timeout_per_gib,
        timeout_min=cfg.migration_converge_timeout_min, downtime_max=cfg.migration_converge_downtime_max,
        downtime_steps=cfg.migration_converge_downtime_steps, stall_passes=cfg.migration_converge_stall_passes,
        throttle_initial=cfg.migration_converge_throttle_initial,
        throttle_increment=cfg.migration_converge_throttle_increment,
        order=list(cfg.migration_converge_order))


def _check_etcd(cfg: DaemonConfig, fail: Any) -> None:
    if cfg.lock_etcd_ttl < 3:     # a renewal period and a fencing margin must fit in the TTL
        raise fail("lock_etcd_ttl", f"lock_etcd_ttl must be at least 3 seconds, not {cfg.lock_etcd_ttl}")
    if not cfg.lock_etcd_endpoints:
        raise fail("lock_etcd_endpoints", "lock_etcd_endpoints names no etcd endpoint")
    for url in cfg.lock_etcd_endpoints:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https") or not rest.strip("/"):
            raise fail("lock_etcd_endpoints", f"lock_etcd_endpoints: '{url}' is not an http:// or https:// URL")
    if not cfg.lock_etcd_prefix:
        raise fail("lock_etcd_prefix", "lock_etcd_prefix must not be empty")
    if bool(cfg.lock_etcd_cert_file) != bool(cfg.lock_etcd_key_file):
        raise fail("lock_etcd_cert_file", "lock_etcd_cert_file and lock_etcd_key_file go together")


def load_file(path: str | Path) -> DaemonConfig:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise error(ErrorNumber.CONF_SYNTAX, ErrorDomain.CONF, f"cannot read {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise _fail(str(path), line, "the file is not UTF-8 text") from None
    return load(text, str(path))
