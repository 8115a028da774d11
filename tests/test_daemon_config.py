"""libvirtd.conf syntax and pyvirtd's settings."""

from __future__ import annotations

import pytest

from pyvirt.daemon.config import load
from pyvirt.errors import ErrorNumber, libvirtError


def test_libvirtd_syntax_and_keys():
    cfg = load('''
# a comment
listen_tcp = 1
listen_addr = "127.0.0.1"   # trailing comment with a "quote"
tcp_port = 16599
auth_tcp = "none"
host_uuid = "0f3d3a1e-7a58-4c1f-9d3e-6f6bd0a0b001"
tls_allowed_dn_list = [ "DN1",
    "DN2" ]
state_dir = "/srv/pyvirt/a"
migration_port_min = 49300
migration_port_max = 49310
''')
    assert cfg.listen_tcp == 1 and cfg.tcp_port == 16599 and cfg.auth_tcp == "none"
    assert cfg.extra["tls_allowed_dn_list"] == ["DN1", "DN2"]
    assert cfg.state_dir == "/srv/pyvirt/a"
    assert str(cfg.rw_socket).endswith("libvirt-sock")


@pytest.mark.parametrize("text,words", [
    ("tcp_prot = 1", "unknown setting 'tcp_prot'"),
    ('tcp_port = "16509"', "'tcp_port' must be an integer"),
    ("listen_addr = 127", "'listen_addr' must be a string"),
    ("just words", "expected 'key = value'"),
    ("tcp_port = 1 2", "unexpected text"),
    ('x = [ "a", "b"', "unterminated list"),
    ("tcp_port = 70000", "out of range"),
])
def test_errors_name_the_line_and_problem(text, words):
    with pytest.raises(libvirtError) as info:
        load(text, "pyvirtd.conf")
    assert info.value.get_error_code() == ErrorNumber.CONF_SYNTAX
    assert words in info.value.get_error_message()
