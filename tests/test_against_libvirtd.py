"""Wire compatibility the other way round: pyvirt's client against a real
libvirtd 9.0 (started privately on a loopback port), on its test driver and
its qemu driver."""

from __future__ import annotations

import sys

import pytest

import pyvirt
from guests import REPO, tiny_xml

sys.path.insert(0, str(REPO / "bench"))

import libvirt_ref  # noqa: E402
from libvirt_ref import LibvirtHost, pick_free_ports  # noqa: E402

AVAILABLE, WHY = libvirt_ref.libvirt_available()
pytestmark = [pytest.mark.libvirtd,
              pytest.mark.skipif(not AVAILABLE, reason=f"libvirtd not available: {WHY}")]


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory):
    base = tmp_path_factory.mktemp("libvirtd")
    host = LibvirtHost(base / "host", pick_free_ports(1)[0], cache_dir=base / "cache")
    host.start()
    try:
        yield host
    finally:
        leaked = host.stop()
    assert not leaked


def test_pyvirt_client_on_libvirtd_test_driver(libvirtd):
    uri = libvirtd.uri.replace("qemu+tcp", "test+tcp").replace("/system", "/default")
    conn = pyvirt.open(uri)
    assert conn.getType() == "TEST"
    assert [d.name() for d in conn.listAllDomains(0)] == ["test"]
    dom = conn.defineXML("<domain type='test'><name>fromPyvirt</name><memory>1024</memory>"
                         "<os><type>hvm</type></os></domain>")
    dom.create()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and dom.ID() > 0
    dom.suspend()
    assert dom.state() == [pyvirt.VIR_DOMAIN_PAUSED, pyvirt.VIR_DOMAIN_PAUSED_USER]
    dom.destroy()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF
    dom.undefine()
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.lookupByName("fromPyvirt")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_NO_DOMAIN
    conn.close()


def test_pyvirt_client_on_libvirtd_qemu_driver(libvirtd, tmp_path, guests_built):
    conn = pyvirt.open(libvirtd.uri)
    assert conn.getType() == "QEMU"
    dom = conn.createXML(tiny_xml("pyvirt-on-libvirtd", tmp_path / "s.log"), 0)
    try:
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
        assert "<name>pyvirt-on-libvirtd</name>" in dom.XMLDesc(0)
    finally:
        dom.destroy()
    conn.close()


def test_libvirtd_errors_arrive_intact(libvirtd):
    conn = pyvirt.open(libvirtd.uri)
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.lookupByName("no-such-domain")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_NO_DOMAIN
    assert "no-such-domain" in info.value.get_error_message()
    conn.close()
