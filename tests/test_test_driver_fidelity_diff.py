"""Test-driver details libvirt 9.0 settles outside the driver's own calls, against libvirt's
own test driver: the domain list's snapshot filter, the snapshot API's flag checks and
error domains (libvirt-domain-snapshot.c's entry points, the test driver's), snapshot
redefinition (snapshot-edit, snapshot-current NAME), a disk without a source, and the
drive addresses and disk controllers libvirt's generic domain post-parse adds to every
definition, and the parser's error for a malformed domain, network, pool, volume, interface
or node device document (and a wrong root element).

tests/data/testdriver/walk_fidelity.py runs against libvirt 9.0's test driver through
/usr/bin/python3's libvirt (in process), against pyvirt in process, and with stock
python3-libvirt and pyvirt against pyvirtd's test driver.  Every step must give libvirt's
value, except those in KNOWN, where the test asserts both what libvirt answers and the
value pyvirt gives instead, with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Callable

import pytest

from walkdiff import (LIBVIRT_PYTHON, WALKS, compare,
                      have_libvirt_test_driver, reference_walk, run_walk, walk_daemon)

WALK = WALKS / "walk_fidelity.py"

# step -> (reason, what libvirt must answer, the value pyvirt gives instead)
KNOWN: dict[str, tuple[str, Callable[[Any], bool], Any]] = {
    # the value is what libvirt's own device parser reports (its QEMU driver's attach)
    "bad-xml-device": ("libvirt 9.0's test driver has no device attach; pyvirt's parses the device",
                       lambda want: want == ["ERR", 3, 20, "this function is not supported by the connection "
                                                           "driver: virDomainAttachDevice"],
                       ["ERR", 35, 20, "(device_definition):2: Opening and ending tag mismatch: name line 2 "
                                       "and nam\n  <name>x</nam>\n---------------^"]),
}


@pytest.fixture(scope="module")
def reference() -> list:
    return reference_walk(WALK)


@pytest.fixture(scope="module")
def test_daemon(tmp_path_factory):
    # the walk leaves the test host as it found it, so one daemon serves every remote run
    with walk_daemon(tmp_path_factory.mktemp("fidelity") / "daemon") as daemon:
        yield daemon


def _walk(python: str, module: str, uri: str) -> list:
    return run_walk(WALK, python, module, uri)


def _compare(run: str, reference: list, got: list) -> None:
    compare(run, reference, got, KNOWN)


def test_reference_walk_did_its_work(reference):
    """The walk reached every part (a walk that fails early proves nothing)."""
    values = dict((k, v) for k, v in reference)
    assert set(KNOWN) <= set(values)
    assert values["has-snapshot"] == ["fid"] and values["no-snapshot"] == ["fid-other"]
    assert values["create-flag-DISK_ONLY"][:3] == ["ERR", 8, 12]
    assert values["create-read-only"][:3] == ["ERR", 29, 35]
    assert values["no-source-define-disk-file"] == ["ERR", 19, 20, "missing source information for device vdc"]
    assert "<controller type='ide' index='0'/>" in values["start-ide-xml"]
    assert values["redefine-dump-current-is"] == "ra" and values["redefine-after-errors"] == ["ra", "rb", "rd"]
    assert values["left-behind"] == []


def test_in_process_walk_matches_libvirt(reference):
    _compare("inproc", reference, _walk(sys.executable, "pyvirt", "test:///default"))


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_python3_libvirt_on_pyvirtd_matches_libvirt(reference, test_daemon, transport):
    uri = test_daemon.test_uri if transport == "tcp" else \
        f"test+unix:///default?socket={test_daemon.sock_dir}/libvirt-sock"
    _compare("pyvirtd-libvirt", reference, _walk(LIBVIRT_PYTHON, "libvirt", uri))


def test_pyvirt_on_pyvirtd_matches_libvirt(reference, test_daemon):
    _compare("pyvirtd-pyvirt", reference, _walk(sys.executable, "pyvirt", test_daemon.test_uri))


def test_qemu_driver_refuses_a_disk_without_source_through_pyvirtd(pyvirtd):
    """libvirt's generic disk validation (virDomainDiskDefValidate) holds for the QEMU
    driver too: a disk with no source, a LUN that is not a block device; a CD-ROM may be empty."""
    if not have_libvirt_test_driver():
        pytest.skip("python3-libvirt is not installed")
    code = f"""
import json, libvirt
libvirt.registerErrorHandler(lambda *args: None, None)
conn = libvirt.open({pyvirtd.uri!r})
out = []
for disk in ("<disk type='file' device='disk'><target dev='vdc' bus='virtio'/></disk>",
             "<disk type='file' device='lun'><source file='/x.img'/><target dev='sdc' bus='scsi'/></disk>",
             "<disk type='file' device='cdrom'><target dev='sdc' bus='scsi'/></disk>"):
    try:
        conn.defineXML("<domain type='qemu'><name>nosrc</name><memory>65536</memory><os><type>hvm</type></os>"
                       "<devices>" + disk + "</devices></domain>").undefine()
        out.append(None)
    except libvirt.libvirtError as exc:
        out.append([exc.get_error_code(), exc.get_error_domain(), exc.get_error_message()])
print(json.dumps(out))
"""
    run = subprocess.run([LIBVIRT_PYTHON, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout) == [
        [19, 20, "missing source information for device vdc"],
        [67, 20, "unsupported configuration: disk device='lun' is only valid for block type disk source"], None]
