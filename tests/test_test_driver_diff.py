"""The test driver against libvirt 9.0's own: one walk, three runs, compared field by field.

tests/data/testdriver/walk.py makes the calls a tool author's test suite
makes on ``test:///default`` (lists, lookups, the XML of every default
object, node info, define/start/destroy/undefine, networks, pools and
volumes, snapshots, events).  It runs against libvirt 9.0's test driver
through /usr/bin/python3's libvirt (in process), against pyvirt in process,
and with stock python3-libvirt and pyvirt against pyvirtd's test driver; every
step must give libvirt's value, except the differences listed in KNOWN with
their reason.  None of them is a value a tool shows its user.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemons import Pyvirtd

WALK = Path(__file__).parent / "data" / "testdriver" / "walk.py"
LIBVIRT_PYTHON = "/usr/bin/python3"

# step -> (runs it applies to, reason).  Runs: "inproc" (pyvirt in process),
# "pyvirtd-libvirt" (python3-libvirt on pyvirtd), "pyvirtd-pyvirt" (pyvirt on pyvirtd).
ALL = ("inproc", "pyvirtd-libvirt", "pyvirtd-pyvirt")
REMOTE = ("pyvirtd-libvirt", "pyvirtd-pyvirt")
KNOWN: dict[str, tuple] = {
    "save-image-define-not-image": (ALL, "a short read: libvirt appends whatever errno an earlier call left "
                                         "(here the failed open before it: a libvirt bug pyvirt does not copy), "
                                         "pyvirt the short read's own 'Success'"),
    # (runs, reason, pyvirt's exact value)
    "tune-freepages": (ALL, "libvirt's test driver fills in its made-up counts but returns 0 as their "
                            "number (a libvirt bug pyvirt does not copy): virsh freepages prints the counts, "
                            "libvirt-python in libvirt's process sees none (and libvirtd fails the call); "
                            "pyvirt returns the counts virsh shows",
                       {"0": {"4": 19, "2048": 45}, "1": {"4": 97, "2048": 201}}),
    "dom-jobinfo": (ALL, "libvirt 9.0's test driver has no virDomainGetJobInfo; pyvirt's answers 'no job', "
                         "as it does for QEMU, on purpose (issue #19: a tool's job code can be tested "
                         "there; tests/test_test_driver_ops_diff.py)", [0] * 12),
    "uri": (REMOTE, "through a daemon the client's remote driver answers with the URI it opened, "
                    "as libvirt's does against libvirtd"),
    "secure": (REMOTE, "plain TCP to the daemon is not a secure channel (libvirt's remote driver says 0 too)"),
}


def _walk(python: str, module: str, uri: str) -> list:
    out = subprocess.run([python, str(WALK), module, uri], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reference() -> list:
    if subprocess.run([LIBVIRT_PYTHON, "-c", "import libvirt; libvirt.open('test:///default')"],
                      capture_output=True).returncode:
        pytest.skip("python3-libvirt with libvirt's test driver is not installed")
    return _walk(LIBVIRT_PYTHON, "libvirt", "test:///default")


@pytest.fixture
def test_daemon(tmp_path):
    # one daemon per walk: its test host is shared by every connection, as libvirtd's is,
    # and a walk leaves the host changed (an undefined domain redefined, snapshots gone)
    daemon = Pyvirtd(tmp_path / "daemon")
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def _is_error(value: object) -> bool:
    return isinstance(value, list) and value[:1] == ["ERR"]


def _compare(run: str, reference: list, got: list) -> None:
    got_steps = dict((k, v) for k, v in got)
    assert [k for k, _ in got] == [k for k, _ in reference], "the walk's steps differ"
    unexpected = []
    for step, want in reference:
        have = got_steps[step]
        known = KNOWN.get(step)
        if known is not None and run in known[0] and len(known) == 3:
            assert have == known[2], (step, want, have)
            continue
        if known is not None and run in known[0]:
            # a known difference is still the same kind of answer: both errors (with libvirt's
            # code) or both values of the same type
            if _is_error(want) or _is_error(have):
                assert _is_error(want) and _is_error(have) and have[1] == want[1], (step, want, have)
            else:
                assert type(have) is type(want), (step, want, have)
            continue
        if have != want:
            unexpected.append((step, want, have))
    assert not unexpected, "\n".join(f"{s}:\n  libvirt: {w!r}\n  {run}: {h!r}" for s, w, h in unexpected)


def test_in_process_walk_matches_libvirt(reference):
    _compare("inproc", reference, _walk(sys.executable, "pyvirt", "test:///default"))


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_python3_libvirt_on_pyvirtd_matches_libvirt(reference, test_daemon, transport):
    uri = test_daemon.test_uri if transport == "tcp" else \
        f"test+unix:///default?socket={test_daemon.sock_dir}/libvirt-sock"
    _compare("pyvirtd-libvirt", reference, _walk(LIBVIRT_PYTHON, "libvirt", uri))


def test_pyvirt_on_pyvirtd_matches_libvirt(reference, test_daemon):
    _compare("pyvirtd-pyvirt", reference, _walk(sys.executable, "pyvirt", test_daemon.test_uri))
