"""The public API behaves as libvirt-python's, proven by running the same
script under real python3-libvirt and under pyvirt and comparing output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyvirt
from pyvirt.drivers.test import driver as test_driver

SCRIPT = Path(__file__).parent / "scripts" / "walkthrough.py"
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(autouse=True)
def fresh_test_host():
    test_driver.reset_default_host()
    yield
    test_driver.reset_default_host()


def run_script(python: str, module: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run([python, str(SCRIPT), module, "test:///default"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_walkthrough_runs_under_pyvirt():
    out = run_script(sys.executable, "pyvirt")
    assert "suspended [3, 1]" in out
    assert "destroyed [5, 2] 0" in out
    assert "read-only True" in out
    assert "lookup error True" in out


def test_errors_name_their_cause():
    conn = pyvirt.open("test:///default")
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.lookupByName("nosuch")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_NO_DOMAIN
    assert info.value.get_error_message() == "Domain not found"    # libvirt's test driver's words
    dom = conn.lookupByName("test")
    with pytest.raises(pyvirt.libvirtError) as info:
        dom.resume()
    # libvirt's test driver: an internal error naming the domain
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INTERNAL_ERROR
    assert "domain 'test' not paused" in info.value.get_error_message()


def test_walkthrough_matches_python3_libvirt():
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("python3-libvirt is not installed")
    assert run_script(sys.executable, "pyvirt") == run_script(SYSTEM_PYTHON, "libvirt")


def test_default_host_has_running_test_domain():
    conn = pyvirt.open("test:///default")
    dom = conn.lookupByName("test")
    assert dom.UUIDString() == "6695eb01-f6a4-8304-79aa-97f2502e193f"
    assert dom.isActive() == 1
    assert dom.info()[1] == 8388608
    conn.close()


def test_test_driver_takes_any_domain_type_as_libvirts():
    # libvirt 9.0's test driver defines a type='kvm' domain (its parser checks no driver);
    # an unknown type is still refused
    conn = pyvirt.open("test:///default")
    dom = conn.defineXML("<domain type='kvm'><name>k</name><memory>1024</memory><os><type>hvm</type></os></domain>")
    assert "<domain type='kvm'>" in dom.XMLDesc(0)
    dom.undefine()
    with pytest.raises(pyvirt.libvirtError):
        conn.defineXML("<domain type='nonesuch'><name>k</name><memory>1024</memory><os><type>hvm</type></os></domain>")


def test_name_and_uuid_clashes_refused():
    conn = pyvirt.open("test:///default")
    base = "<domain type='test'><name>{}</name><uuid>{}</uuid><memory>1024</memory><os><type>hvm</type></os></domain>"
    conn.defineXML(base.format("a", "11111111-2222-3333-4444-555555555555"))
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.defineXML(base.format("b", "11111111-2222-3333-4444-555555555555"))
    assert info.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_FAILED
    assert "already defined with uuid" in info.value.get_error_message()
    with pytest.raises(pyvirt.libvirtError, match="already exists"):
        conn.defineXML(base.format("a", "99999999-2222-3333-4444-555555555555"))


def test_unknown_flags_refused():
    conn = pyvirt.open("test:///default")
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.listAllDomains(1 << 30)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    assert "unsupported flags" in info.value.get_error_message()


def test_start_flags_the_test_driver_lacks_reach_it():
    """The client passes PAUSED and AUTODESTROY through, and libvirt 9.0's test driver refuses
    both (autodestroy on close is proven against the QEMU driver, tests/test_qemu_driver.py)."""
    conn = pyvirt.open("test:///default")
    xml = "<domain type='test'><name>ad</name><memory>1024</memory><os><type>hvm</type></os></domain>"
    for flag in (pyvirt.VIR_DOMAIN_START_PAUSED, pyvirt.VIR_DOMAIN_START_AUTODESTROY):
        with pytest.raises(pyvirt.libvirtError) as info:
            conn.createXML(xml, flag)
        assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
        assert info.value.get_error_message() == (f"unsupported flags ({flag:#x}) in function "
                                                  "testDomainCreateXML")
    assert "ad" not in [d.name() for d in conn.listAllDomains()]


def test_lifecycle_events_reach_callbacks():
    conn = pyvirt.open("test:///default")
    seen = []
    cb = conn.domainEventRegisterAny(None, pyvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                     lambda c, d, ev, detail, opaque: seen.append((d.name(), ev, detail, opaque)),
                                     "op")
    dom = conn.lookupByName("test")
    dom.suspend()
    dom.resume()
    dom.destroy()
    conn.domainEventDeregisterAny(cb)
    assert seen == [("test", pyvirt.VIR_DOMAIN_EVENT_SUSPENDED, pyvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED, "op"),
                    ("test", pyvirt.VIR_DOMAIN_EVENT_RESUMED, pyvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED, "op"),
                    # libvirt's test driver sends no SHUTDOWN before a destroy's STOPPED
                    ("test", pyvirt.VIR_DOMAIN_EVENT_STOPPED, pyvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED, "op")]
