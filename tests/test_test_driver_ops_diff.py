"""The test driver's device, job, migration, block-job, send-key, screenshot and balloon calls
against libvirt 9.0's own: one walk, three runs, compared step by step.

tests/data/testdriver/walk_ops.py runs against libvirt 9.0's test driver through
/usr/bin/python3's libvirt (in process), against pyvirt in process, and with stock
python3-libvirt and pyvirt against pyvirtd's test driver.  Every step must give
libvirt's value, except those in KNOWN, where the test asserts both what libvirt
answers and the value pyvirt gives instead, with the reason.

The known differences are of two kinds.  libvirt 9.0's test driver has no device
attach/detach/update and no job calls ("not supported"); pyvirt's test host serves
them (issue #19: every domain call pyvirt serves for QEMU, in memory), so a tool's
hot-plug and job code can be tested there.  And the screenshot is pyvirt's own
picture of the same size and format (libvirt's is a data file of libvirt's, not
copied).  Migration and block jobs answer exactly as libvirt's: not supported.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any, Callable

import pytest

from walkdiff import LIBVIRT_PYTHON, WALKS, compare, reference_walk, run_walk, walk_daemon
from pyvirt.drivers.test import screenimage

WALK = WALKS / "walk_ops.py"

NO_DEVICE_CALLS = "libvirt 9.0's test driver has no device calls (not supported); pyvirt's applies them in memory"
NO_JOB_CALLS = "libvirt 9.0's test driver has no job calls (not supported); pyvirt's answers that no job runs"
AFTER_DEVICE_CALL = "the definition after a device call libvirt 9.0's test driver does not have"
OWN_PICTURE = "pyvirt's screenshot is its own picture, with libvirt's size, depth and format"


def _unsupported(want: Any) -> bool:
    return isinstance(want, list) and want[:2] == ["ERR", 3]


def _same_but_picture(want: Any) -> Any:
    return dict(want, sha256=hashlib.sha256(screenimage.png()).hexdigest())


# step -> (reason, what libvirt must answer, the value pyvirt gives instead: a value, or one made from libvirt's)
KNOWN: dict[str, tuple[str, Callable[[Any], bool], Any]] = {
    "attach-live": (NO_DEVICE_CALLS, _unsupported, 0),
    "disks-live": (AFTER_DEVICE_CALL, lambda want: want == ["vda"], ["vda", "vdb"]),
    "attach-duplicate": (NO_DEVICE_CALLS, _unsupported,
                         ["ERR", 55, 20, "Requested operation is not valid: target vda already exists"]),
    "update-disk-source": (NO_DEVICE_CALLS, _unsupported,
                           ["ERR", 67, 12, "unsupported configuration: disk source can be changed only in "
                                           "removable media"]),
    "detach-alias": (NO_DEVICE_CALLS, _unsupported, 0),
    "detach-missing": (NO_DEVICE_CALLS, _unsupported, ["ERR", 99, 12, "device not found: disk vdb not found"]),
    "attach-config": (NO_DEVICE_CALLS, _unsupported, 0),
    "macs-config": (AFTER_DEVICE_CALL, lambda want: want == ["aa:bb:cc:dd:ee:ff"],
                    ["aa:bb:cc:dd:ee:ff", "52:54:00:11:22:33"]),
    "detach-config": (NO_DEVICE_CALLS, _unsupported, 0),
    "attach-cdrom-both": (NO_DEVICE_CALLS, _unsupported, 0),
    "eject-cdrom": (NO_DEVICE_CALLS, _unsupported, 0),
    "sources-after-eject": (AFTER_DEVICE_CALL, lambda want: want == [["vda", "/guest/diskimage1"]],
                            [["vda", "/guest/diskimage1"], ["hdc", None]]),
    "sources-config-after-eject": (AFTER_DEVICE_CALL, lambda want: want == [["vda", "/guest/diskimage1"]],
                                   [["vda", "/guest/diskimage1"], ["hdc", "/guest/a.iso"]]),
    "detach-cdrom-both": (NO_DEVICE_CALLS, _unsupported, 0),
    "attach-sound": (NO_DEVICE_CALLS, _unsupported,
                     ["ERR", 84, 12, "Operation not supported: live attach of device 'sound' is not supported"]),
    "attach-bad-flags": (NO_DEVICE_CALLS, _unsupported,
                         ["ERR", 8, 12, "unsupported flags (0x400) in function testDomainAttachDeviceFlags"]),
    "attach-offline-live": (NO_DEVICE_CALLS, _unsupported,
                            ["ERR", 55, 20, "Requested operation is not valid: domain is not running"]),
    "attach-offline": (NO_DEVICE_CALLS, _unsupported, 0),
    "off-disks": (AFTER_DEVICE_CALL, lambda want: want == [], ["vdb"]),
    "detach-offline": (NO_DEVICE_CALLS, _unsupported, 0),
    "screenshot": (OWN_PICTURE, lambda want: want["ihdr"] == [1120, 832, 8, 0], _same_but_picture),
    "screenshot-other-screen": (OWN_PICTURE, lambda want: want["mime"] == "image/png", _same_but_picture),
    "screenshot-offline": (OWN_PICTURE, lambda want: want["mime"] == "image/png", _same_but_picture),
    "jobinfo": (NO_JOB_CALLS, _unsupported, [0] * 12),
    "jobstats": (NO_JOB_CALLS, _unsupported, {"type": 0}),
    "jobstats-completed": (NO_JOB_CALLS, _unsupported, {"type": 0}),
    "abortjob": (NO_JOB_CALLS, _unsupported,
                 ["ERR", 55, 12, "Requested operation is not valid: no job is active on the domain"]),
    "jobinfo-offline": (NO_JOB_CALLS, _unsupported,
                        ["ERR", 55, 20, "Requested operation is not valid: domain is not running"]),
    "jobstats-completed-offline": (NO_JOB_CALLS, _unsupported, {"type": 0}),
    "abortjob-offline": (NO_JOB_CALLS, _unsupported,
                         ["ERR", 55, 20, "Requested operation is not valid: domain is not running"]),
    "events": ("the device calls above tell a device with an alias coming and going; libvirt 9.0 makes none",
               lambda want: want == [], [["added", "test", "ua-extra"], ["removed", "test", "ua-extra"]]),
}


@pytest.fixture(scope="module")
def reference() -> list:
    return reference_walk(WALK)


@pytest.fixture(scope="module")
def test_daemon(tmp_path_factory):
    # the walk leaves the test host as it found it, so one daemon serves every remote run
    with walk_daemon(tmp_path_factory.mktemp("ops") / "daemon") as daemon:
        yield daemon


def _walk(python: str, module: str, uri: str) -> list:
    return run_walk(WALK, python, module, uri)


def _compare(run: str, reference: list, got: list) -> None:
    compare(run, reference, got, KNOWN)


def test_reference_walk_covers_every_known_step(reference):
    steps = {k for k, _ in reference}
    assert set(KNOWN) <= steps
    # migration and block jobs are answered as libvirt's test driver answers them: not supported
    values = dict((k, v) for k, v in reference)
    for step in ("migrate", "migrate3", "blockjob-info", "blockcopy", "blockcommit"):
        assert _unsupported(values[step]), (step, values[step])


def test_in_process_walk_matches_libvirt(reference):
    _compare("inproc", reference, _walk(sys.executable, "pyvirt", "test:///default"))


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_python3_libvirt_on_pyvirtd_matches_libvirt(reference, test_daemon, transport):
    uri = test_daemon.test_uri if transport == "tcp" else \
        f"test+unix:///default?socket={test_daemon.sock_dir}/libvirt-sock"
    _compare("pyvirtd-libvirt", reference, _walk(LIBVIRT_PYTHON, "libvirt", uri))


def test_pyvirt_on_pyvirtd_matches_libvirt(reference, test_daemon):
    _compare("pyvirtd-pyvirt", reference, _walk(sys.executable, "pyvirt", test_daemon.test_uri))
