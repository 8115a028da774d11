"""pyvirtd's configuration, in libvirtd.conf syntax and with its key names.

The syntax is libvirt's virConf: ``key = value`` lines where a value is an
integer, a double-quoted string or a ``[ ... ]`` list of them (lists may span
lines), and ``#`` starts a comment.  Keys libvirtd knows keep libvirtd's
names and defaults; pyvirt's own (``state_dir``, migration and save
settings, which libvirt keeps in qemu.conf) sit beside them.  An unknown key
or a value of the wrong type is an error naming the line, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..drivers.qemu.saveimage import FORMATS
from ..errors import ErrorDomain, ErrorNumber, error, libvirtError


@dataclass
class DaemonConfig:
    # libvirtd.conf keys
    listen_tcp: int = 0
    listen_tls: int = 0
    listen_addr: str = "127.0.0.1"
    tcp_port: int = 16509
    tls_port: int = 16514
    auth_tcp: str = "sasl"
    auth_unix_rw: str = "none"
    auth_unix_ro: str = "none"
    unix_sock_dir: str = "/run/libvirt"
    unix_sock_rw_perms: str = "0700"
    unix_sock_ro_perms: str = "0777"
    unix_sock_group: str = ""
    host_uuid: str = ""
    max_clients: int = 5000
    max_client_requests: int = 5     # calls in flight per client before we stop reading it
    max_workers: int = 20
    keepalive_interval: int = 5
    keepalive_count: int = 5
    log_level: int = 3
    # pyvirt's own keys (libvirt keeps the QEMU ones in qemu.conf)
    state_dir: str = "/var/lib/pyvirt"
    migration_address: str = "127.0.0.1"
    migration_host: str = ""
    migration_port_min: int = 49152
    migration_port_max: int = 49215
    migration_params: int = 1      # advertise the *_PARAMS migration procedures
    migration_v3: int = 1          # advertise migration protocol v3
    save_image_format: str = "raw"
    vnc_port_min: int = 5900
    vnc_port_max: int = 65535
    user: str = "root"
    group: str = "root"
    max_message_size: int = 33554432
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def rw_socket(self) -> Path:
        return Path(self.unix_sock_dir) / "libvirt-sock"

    @property
    def ro_socket(self) -> Path:
        return Path(self.unix_sock_dir) / "libvirt-sock-ro"


# Keys libvirtd accepts that pyvirtd reads but does not act on (yet); kept so
# that an existing libvirtd.conf loads.
_IGNORED = frozenset({
    "listen_tls", "tls_port", "auth_tls", "key_file", "cert_file", "ca_file", "crl_file",
    "tls_no_verify_certificate", "tls_allowed_dn_list", "sasl_allowed_username_list",
    "max_queued_clients", "max_anonymous_clients", "min_workers", "prio_workers",
"admin_max_workers", "admin_max_clients", "admin_keepalive_interval",
    "log_filters", "log_outputs", "audit_level", "audit_logging", "mdns_adv", "mdns_name",
    "unix_sock_admin_perms", "access_drivers", "host_uuid_source", "ovs_timeout", "tcp_min_ssf",
    "tls_priority",
})

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<int>-?\d+)|(?P<open>\[)|(?P<close>\])|(?P<comma>,))')


def _fail(path: str, line: int, detail: str) -> libvirtError:
    return error(ErrorNumber.CONF_SYNTAX, ErrorDomain.CONF, f"{path}:{line}: {detail}")


def parse_conf(text: str, path: str = "<config>") -> dict[str, tuple[Any, int]]:
    """virConf syntax → {key: (value, line)}."""
    out: dict[str, tuple[Any, int]] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = _strip_comment(lines[i]).strip()
        i += 1
        if not line:
            continue
        key, eq, rest = line.partition("=")
        key = key.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key):
            raise _fail(path, lineno, f"expected 'key = value', got '{line}'")
        rest = rest.strip()
        if rest.startswith("["):
            while rest.count("[") > rest.count("]") and i < len(lines):
                rest += " " + _strip_comment(lines[i]).strip()
                i += 1
        out[key] = (_value(rest, path, lineno), lineno)
    return out


def _strip_comment(line: str) -> str:
    in_str = False
    for pos, ch in enumerate(line):
        if ch == '"' and (pos == 0 or line[pos - 1] != "\\"):
            in_str = not in_str
        elif ch == "#" and not in_str:
            return line[:pos]
    return line


def _value(text: str, path: str, lineno: int) -> Any:
    pos = 0
    items: list[Any] = []
    in_list = False
    result: Any = None
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise _fail(path, lineno, f"cannot parse value '{text}'")
        pos = m.end()
        if m["str"] is not None:
            val: Any = bytes(m["str"][1:-1], "utf-8").decode("unicode_escape")
        elif m["int"] is not None:
            val = int(m["int"])
        elif m["open"]:
            in_list = True
            continue
        elif m["close"]:
            result = items
            in_list = False
            continue
        else:
            continue
        if in_list:
            items.append(val)
        else:
            result = val
        if pos < len(text) and not in_list and text[pos:].strip():
            raise _fail(path, lineno, f"unexpected text after value: '{text[pos:].strip()}'")
    if in_list:
        raise _fail(path, lineno, "unterminated list")
    if result is None:
        raise _fail(path, lineno, "missing value")
    return result


def load(text: str, path: str = "<config>") -> DaemonConfig:
    cfg = DaemonConfig()
    known = {f.name: f for f in fields(DaemonConfig) if f.name != "extra"}
    parsed = parse_conf(text, path)
    for key, (value, lineno) in parsed.items():
        spec = known.get(key)
        if spec is None:
            if key in _IGNORED:
                cfg.extra[key] = value
                continue
            raise _fail(path, lineno, f"unknown setting '{key}'")
        want = int if spec.type in ("int", int) else str
        if not isinstance(value, want):
            raise _fail(path, lineno, f"'{key}' must be {'an integer' if want is int else 'a string'}, "
                        f"got {value!r}")
        setattr(cfg, key, value)
    if not 0 < cfg.tcp_port < 65536:
        raise _fail(path, 0, f"tcp_port {cfg.tcp_port} is out of range")
    if cfg.migration_port_min > cfg.migration_port_max:
        raise _fail(path, 0, "migration_port_min is above migration_port_max")
    if cfg.save_image_format not in FORMATS:
        line = parsed.get("save_image_format", (None, 0))[1]
        raise _fail(path, line, f"save_image_format '{cfg.save_image_format}' is not one of: "
                    + ", ".join(FORMATS))
    if cfg.auth_tcp not in ("none", "sasl"):
        raise _fail(path, 0, f"auth_tcp '{cfg.auth_tcp}' is not supported (use \"none\")")
    return cfg


def load_file(path: str | Path) -> DaemonConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise error(ErrorNumber.CONF_SYNTAX, ErrorDomain.CONF, f"cannot read {path}: {exc.strerror}") from exc
    return load(text, str(path))
