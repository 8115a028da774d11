"""libvirtd.conf / qemu.conf syntax and pyvirtd's settings."""

from __future__ import annotations

import pytest

from pyvirt.daemon.conf_keys import LIBVIRTD_KEYS, PYVIRT_KEYS, QEMU_KEYS, ValueType
from pyvirt.daemon.config import DaemonConfig, load, load_file
from pyvirt.errors import ErrorNumber, libvirtError


def ignored_keys(cfg: DaemonConfig) -> dict[str, str]:
    return {item.key: item.why for item in cfg.ignored}


def test_libvirtd_syntax_and_keys():
    cfg = load('''
# a comment
listen_tcp = 1
listen_addr = "127.0.0.1"   # trailing comment with a "quote"
tcp_port = 16599
auth_tcp = "none"
host_uuid = "0F3D3A1E-7A58-4C1F-9D3E-6F6BD0A0B001"
access_drivers = [ "DN1",   # a comment inside a list
    "DN2", ]
state_dir = '/srv/pyvirt/a'
migration_port_min = 49300; migration_port_max = 49310
''')
    assert cfg.listen_tcp == 1 and cfg.tcp_port == 16599 and cfg.auth_tcp == "none"
    assert cfg.host_uuid == "0f3d3a1e-7a58-4c1f-9d3e-6f6bd0a0b001"
    assert (cfg.migration_port_min, cfg.migration_port_max) == (49300, 49310)
    assert ignored_keys(cfg) == {"access_drivers": "a libvirtd.conf setting pyvirtd does not implement"}
    assert [item.line for item in cfg.ignored] == [8]
    assert cfg.state_dir == "/srv/pyvirt/a"
    assert str(cfg.rw_socket).endswith("libvirt-sock")


def test_ports_are_strings_as_libvirt_writes_them():
    cfg = load('tcp_port = "16510"\ntls_port = "16515"\nlisten_tls = 0\n')
    assert (cfg.tcp_port, cfg.tls_port, cfg.listen_tls) == (16510, 16515, 0)
    assert not cfg.ignored


def test_tls_settings():
    cfg = load('tls_allowed_dn_list = ["C=GB,O=Example,CN=*"]\nca_file = "/p/ca.pem"\ntls_no_verify_certificate = 1\n'
               'tls_priority = "NORMAL:-VERS-TLS1.0"\n')
    assert cfg.tls_allowed_dn_list == ["C=GB,O=Example,CN=*"] and cfg.ca_file == "/p/ca.pem"
    assert cfg.tls_no_verify_certificate == 1 and not cfg.ignored
    assert load('tls_allowed_dn_list = []\n').tls_allowed_dn_list == []     # nobody, not "any"
    assert DaemonConfig().tls_allowed_dn_list is None and DaemonConfig().listen_tls is None
    with pytest.raises(libvirtError, match="tls_handshake_timeout must be at least 1"):
        load("tls_handshake_timeout = 0\n")


def test_strings_are_taken_verbatim_like_virconf():
    cfg = load('listen_addr = "a\\\\b"\nunix_sock_dir = """/srv/\nsock"""\nhost_uuid = ""\n'
               'migration_host = "h\u00e9te"\n')
    assert cfg.listen_addr == "a\\\\b"       # no escapes, as in libvirt
    assert cfg.unix_sock_dir == "/srv/\nsock"
    assert cfg.migration_host == "h\u00e9te"


def test_qemu_conf_keys_take_effect():
    cfg = load('user = "libvirt-qemu"\ngroup = "kvm"\nremote_display_port_min = 5910\n'
               'remote_display_port_max = 5920\nmigration_address = "0.0.0.0"\nsave_image_format = "zstd"\n'
               'security_default_confined = 1\nhugetlbfs_mount = "/dev/hugepages"\nmax_core = "unlimited"\n')
    assert (cfg.user, cfg.group) == ("libvirt-qemu", "kvm")
    assert (cfg.remote_display_port_min, cfg.remote_display_port_max) == (5910, 5920)
    assert cfg.migration_address == "0.0.0.0" and cfg.save_image_format == "zstd"
    why = ignored_keys(cfg)
    assert set(why) == {"security_default_confined", "hugetlbfs_mount", "max_core"}
    assert why["max_core"] == "a qemu.conf setting pyvirtd does not implement"


def test_repeated_key_first_applies_as_in_libvirt():
    cfg = load("keepalive_interval = 7\nmax_clients = 3\nkeepalive_interval = 9\n")
    assert cfg.keepalive_interval == 7 and cfg.max_clients == 3
    assert cfg.ignored[0].key == "keepalive_interval" and cfg.ignored[0].line == 3
    assert "line 1 applies" in cfg.ignored[0].why


def test_sasl_auth_loads_and_polkit_is_refused():
    cfg = load('auth_unix_rw = "sasl"\nauth_unix_ro = "sasl"\nauth_tls = "sasl"\nsasl_allowed_username_list = []\n')
    assert (cfg.auth_unix_rw, cfg.auth_unix_ro, cfg.auth_tls) == ("sasl", "sasl", "sasl")
    assert cfg.sasl_allowed_username_list == [] and not ignored_keys(cfg)
    assert load("").sasl_allowed_username_list is None and load("").tcp_min_ssf == 56
    for key in ("auth_unix_rw", "auth_unix_ro", "auth_tcp", "auth_tls"):
        with pytest.raises(libvirtError, match=f'<config>:1: {key} = "polkit" is not supported by pyvirtd'):
            load(f'{key} = "polkit"\n')


def test_tcp_min_ssf_below_112_is_refused_as_libvirt_does():
    assert load("tcp_min_ssf = 112\n").tcp_min_ssf == 112
    with pytest.raises(libvirtError, match="minimum SSF levels lower than 112 are not supported") as exc:
        load("tcp_min_ssf = 56\n")
    assert exc.value.get_error_code() == ErrorNumber.CONFIG_UNSUPPORTED


def sample(kind: ValueType) -> str:
    return {ValueType.STRING: '"x"', ValueType.INT: "-1", ValueType.UINT: "7", ValueType.BOOL: "1",
            ValueType.STRING_LIST: '["a", "b"]', ValueType.STRINGS: '"a"', ValueType.PORT: '"16509"',
            ValueType.CORE_SIZE: "0"}[kind]


# Values that would fail pyvirt's own checks beyond the type (an auth name, a mode, a UUID...).
MEANINGFUL = {"auth_tcp": '"none"', "auth_unix_rw": '"none"', "auth_unix_ro": '"none"', "auth_tls": '"none"',
              "tcp_min_ssf": "112",
              "unix_sock_rw_perms": '"0700"', "unix_sock_ro_perms": '"0777"', "log_level": "2",
              "host_uuid": '"0f3d3a1e-7a58-4c1f-9d3e-6f6bd0a0b001"', "save_image_format": '"raw"',
              "save_image_compat": '"libvirt-9.0"',
              "remote_display_port_min": "5900", "remote_display_port_max": "5999",
              "migration_port_min": "100", "migration_port_max": "200", "keepalive_interval": "5",
              "lock_manager": '"lockd"', "lock_file_lockspace_dir": '"/var/lib/pyvirt/lockd/files"',
              "lock_etcd_endpoints": '["https://10.0.0.1:2379", "https://10.0.0.2:2379"]', "lock_etcd_ttl": "10",
              "lock_etcd_cert_file": '"/etc/pyvirt/etcd.pem"', "lock_etcd_key_file": '"/etc/pyvirt/etcd.key"',
              "migration_converge_order": '["downtime", "postcopy"]'}


@pytest.mark.parametrize("table", [LIBVIRTD_KEYS, QEMU_KEYS, PYVIRT_KEYS], ids=["libvirtd", "qemu", "pyvirt"])
def test_every_documented_key_loads_with_its_type(table):
    text = "".join(f"{key} = {MEANINGFUL.get(key, sample(kind))}\n" for key, kind in table.items())
    cfg = load(text)
    implemented = {f for f in DaemonConfig.__dataclass_fields__ if f != "ignored"}
    assert set(table) <= implemented | set(ignored_keys(cfg))


@pytest.mark.parametrize("text,words", [
    ("tcp_prot = 1", "unknown setting 'tcp_prot'"),
    ("listen_addr = 127", "expected a string for 'listen_addr' parameter, got 127"),
    ("tcp_port = [1]", "expected a port string for 'tcp_port' parameter"),
    ('tcp_port = "http"', "expected a port string for 'tcp_port' parameter"),
    ("listen_tcp = 2", "value for 'listen_tcp' parameter must be 0 or 1"),
    ('listen_tls = "yes"', "expected a bool for 'listen_tls' parameter"),
    ("max_clients = -1", "expected an unsigned integer for 'max_clients' parameter"),
    ("max_workers = 4294967296", "value for 'max_workers' parameter must be in range 0:4294967295"),
    ('keepalive_interval = "5"', "expected a signed integer for 'keepalive_interval' parameter"),
    ('access_drivers = "polkit"', "expected a string list for 'access_drivers' parameter"),
    ('tls_allowed_dn_list = ["a", 1]', "expected a string list for 'tls_allowed_dn_list' parameter"),
    ("security_driver = 1", "expected a string or string list for 'security_driver' parameter"),
    ("just words", "expecting an assignment after 'just'"),
    ("tcp_port = 1 2", "unexpected text"),
    ('x = [ "a", "b"', "list is not closed with ]"),
    ('x = [ "a" "b" ]', "expecting a separator in list"),
    ('listen_addr = "open', "unterminated string"),
    ("= 1", "expecting a name"),
    ("tcp_port = 70000", "out of range"),
    ('auth_tcp = "kerberos"', "auth_tcp: unsupported auth kerberos"),
    ('unix_sock_rw_perms = "rw"', "failed to parse mode 'rw'"),
    ('host_uuid = "not-a-uuid"', "invalid host UUID: not-a-uuid"),
    ("log_level = 5", "log_level 5 is not 1 (debug) to 4 (error)"),
    ('lock_manager = "sanlock"', "lock_manager 'sanlock' is not one of: nop, lockd, etcd"),
    ('lock_file_lockspace_dir = "leases"', "lock_file_lockspace_dir must be an absolute path"),
    ("lock_etcd_ttl = 2", "lock_etcd_ttl must be at least 3 seconds, not 2"),
    ('lock_etcd_endpoints = ["127.0.0.1:2379"]', "'127.0.0.1:2379' is not an http:// or https:// URL"),
    ("lock_etcd_endpoints = []", "lock_etcd_endpoints names no etcd endpoint"),
    ('lock_etcd_cert_file = "/c.pem"', "lock_etcd_cert_file and lock_etcd_key_file go together"),
    ("max_client_requests = 0", "max_client_requests must be at least 1"),
    ("migration_port_min = 2000\nmigration_port_max = 1000", "between the minimal port 2000 and 65535"),
    ("remote_display_port_min = 80", "must be greater than or equal to 5900"),
])
def test_errors_name_the_line_and_problem(text, words):
    with pytest.raises(libvirtError) as info:
        load("\n" + text, "pyvirtd.conf")
    assert info.value.get_error_code() == ErrorNumber.CONF_SYNTAX
    msg = info.value.get_error_message()
    assert words in msg
    assert "pyvirtd.conf:2:" in msg or "pyvirtd.conf:3:" in msg, msg


def test_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "pyvirtd.conf"
    path.write_bytes(b'listen_tcp = 0\nlisten_addr = "\xff"\n')
    with pytest.raises(libvirtError) as info:
        load_file(path)
    assert f"{path}:2: the file is not UTF-8 text" in info.value.get_error_message()
