"""Test-driver details libvirt 9.0 settles outside the driver's own calls, against libvirt's
own test driver: the domain list's snapshot filter, the snapshot API's flag checks and
error domains (libvirt-domain-snapshot.c's entry points, the test driver's), snapshot
redefinition (snapshot-edit, snapshot-current NAME), a disk without a source, and the
drive addresses and disk controllers libvirt's generic domain post-parse adds to every
definition.

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
from pathlib import Path
from typing import Any, Callable

import pytest

from daemons import Pyvirtd

WALK = Path(__file__).parent / "data" / "testdriver" / "walk_fidelity.py"
LIBVIRT_PYTHON = "/usr/bin/python3"

# step -> (reason, what libvirt must answer, the value pyvirt gives instead)
KNOWN: dict[str, tuple[str, Callable[[Any], bool], Any]] = {}


def _walk(python: str, module: str, uri: str) -> list:
    out = subprocess.run([python, str(WALK), module, uri], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _have_libvirt() -> bool:
    return subprocess.run([LIBVIRT_PYTHON, "-c", "import libvirt; libvirt.open('test:///default')"],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def reference() -> list:
    if not _have_libvirt():
        pytest.skip("python3-libvirt with libvirt's test driver is not installed")
    return _walk(LIBVIRT_PYTHON, "libvirt", "test:///default")


@pytest.fixture(scope="module")
def test_daemon(tmp_path_factory):
    # the walk removes the domains it made, so one daemon serves every remote run
    daemon = Pyvirtd(tmp_path_factory.mktemp("fidelity") / "daemon")
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def _compare(run: str, reference: list, got: list) -> None:
    assert [k for k, _ in got] == [k for k, _ in reference], "the walk's steps differ"
    got_steps = dict((k, v) for k, v in got)
    unexpected = []
    for step, want in reference:
        have = got_steps[step]
        known = KNOWN.get(step)
        if known is not None:
            reason, libvirt_answers, instead = known
            assert libvirt_answers(want), f"{step}: libvirt now answers {want!r}; KNOWN ({reason}) is stale"
            want = instead(want) if callable(instead) else instead
        if have != want:
            unexpected.append((step, want, have))
    assert not unexpected, "\n".join(f"{s}:\n  expected: {w!r}\n  {run}: {h!r}" for s, w, h in unexpected)


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
    if not _have_libvirt():
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
