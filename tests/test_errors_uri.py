"""pyvirt.errors and pyvirt.uri: libvirt's values, messages and URI rules."""

from __future__ import annotations

import pytest

import pyvirt
from pyvirt import uri as urimod
from pyvirt.errors import ErrorDomain, ErrorNumber, FirstError, error, libvirtError


def test_error_carries_code_domain_level_and_message():
    err = error(ErrorNumber.NO_DOMAIN, ErrorDomain.QEMU, "no domain with matching name 'x'")
    assert err.get_error_code() == 42 == pyvirt.VIR_ERR_NO_DOMAIN
    assert err.get_error_domain() == 10 == pyvirt.VIR_FROM_QEMU
    assert err.get_error_level() == pyvirt.VIR_ERR_ERROR
    assert err.get_error_message() == "Domain not found: no domain with matching name 'x'"
    assert err.get_str1() == "Domain not found: %s"
    assert err.get_str2() == "no domain with matching name 'x'"
    assert str(err) == err.get_error_message()
    assert len(err.err) == 9


def test_first_error_wins_and_later_ones_are_logged(caplog):
    first = FirstError()
    first.record(libvirtError("perform failed"))
    first.record(libvirtError("confirm failed too"))
    with pytest.raises(libvirtError, match="perform failed"):
        first.raise_if_any()
    assert "confirm failed too" in caplog.text


def test_public_constants_have_libvirt_values_and_no_clashes():
    from pyvirt import enums
    seen: dict[str, int] = {}
    for cls, prefix in enums.PUBLIC_PREFIXES:
        for member in cls:
            name = prefix + member.name
            assert seen.setdefault(name, member.value) == member.value, f"{name} defined twice"
    assert pyvirt.VIR_MIGRATE_TUNNELLED == 4
    assert pyvirt.VIR_DOMAIN_PAUSED_USER == 1
    assert pyvirt.VIR_DOMAIN_SHUTOFF_MIGRATED == 4
    assert pyvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED == 1
    assert pyvirt.VIR_ERR_OPERATION_DENIED == 29
    assert pyvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT == 5


@pytest.mark.parametrize("text,expect", [
    ("qemu:///system", dict(driver="qemu", transport=None, host=None, port=None, path="/system")),
    ("qemu+tcp://127.0.0.1:16509/system", dict(driver="qemu", transport="tcp", host="127.0.0.1", port=16509)),
    ("test:///default", dict(driver="test", path="/default")),
    ("qemu+ssh://root@h.example/system", dict(user="root", host="h.example", transport="ssh")),
    ("qemu+tcp://[::1]:16510/system", dict(host="::1", port=16510)),
    ("qemu:///embed?root=/srv/vm", dict(path="/embed", params=(("root", "/srv/vm"),))),
])
def test_uri_parse(text, expect):
    parsed = urimod.parse(text)
    for key, value in expect.items():
        assert getattr(parsed, key) == value, key
    assert str(parsed) == text


def test_uri_open_name_drops_transport_and_client_params():
    parsed = urimod.parse("qemu+tcp://h:16599/system?x=1&no_verify=1&socket=/s")
    assert parsed.open_name() == "qemu:///system?x=1"
    assert urimod.parse("remote://h/").open_name() == ""
    assert urimod.parse("qemu+tcp://h/system?name=qemu:///session").open_name() == "qemu:///session"
    assert urimod.parse("qemu+tcp://h/system").effective_port() == 16509
    assert urimod.parse("qemu://h/system").effective_transport == "tls"


@pytest.mark.parametrize("text,words", [
    ("", "empty"),
    ("qemu", "could not parse"),
    ("qemu:/system", "no '//'"),
    ("qemu+carrier://h/system", "transport 'carrier'"),
    ("qemu+tcp://h:notaport/system", "port 'notaport'"),
    ("qemu+tcp://h:70000/system", "port '70000'"),
    ("qemu+unix://host/system", "cannot be used with a host"),
])
def test_uri_errors_name_the_problem(text, words):
    with pytest.raises(libvirtError) as info:
        urimod.parse(text)
    assert info.value.get_error_code() == ErrorNumber.INVALID_ARG
    assert info.value.get_error_domain() == ErrorDomain.URI
    assert words in info.value.get_error_message()


def test_embed_root_must_be_absolute():
    with pytest.raises(libvirtError, match="absolute"):
        urimod.embed_root(urimod.parse("qemu:///embed?root=relative/dir"))
    with pytest.raises(libvirtError, match="root"):
        urimod.embed_root(urimod.parse("qemu:///embed"))
    assert urimod.embed_root(urimod.parse("qemu:///embed?root=/srv/vm")) == "/srv/vm"
