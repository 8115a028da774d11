"""The test driver's CPU baseline and compare calls, launch security, isEncrypted and the
starts that pass file descriptors, against libvirt 9.0's own: one walk, several runs,
compared step by step (and pyvirtd's answers with libvirtd 9.0's, where it can be started).

tests/data/testdriver/walk_host.py runs against libvirt 9.0's test driver through
/usr/bin/python3's libvirt (in process), against pyvirt in process, and with stock
python3-libvirt and pyvirt against pyvirtd's test driver: over its UNIX socket,
where the descriptors travel (CALL_WITH_FDS), and over TCP, where they cannot (the
walk then passes none, and its last step shows libvirt's refusal).  Every step must
give libvirt's value, except those in KNOWN, where the test asserts both what libvirt
answers and the value pyvirt gives instead, with the reason.

The daemon closes every descriptor a call brings when the call ends: the last tests
count its open descriptors around such calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Callable

import pytest

from daemons import Pyvirtd
from walkdiff import LIBVIRT_PYTHON, WALKS, compare, reference_walk, run_walk, unix_uri, walk_daemon

WALK = WALKS / "walk_host.py"


# step -> (reason, what libvirt must answer, the value pyvirt gives instead)
KNOWN: dict[str, tuple[str, Callable[[Any], bool], Any]] = {
}

# over RPC (libvirtd's as pyvirtd's) an empty array arrives as NULL, which libvirt's API refuses
# before its test driver sees the call
EMPTY_IS_NULL = ("the daemon decodes an empty array as NULL, which libvirt's API refuses",
                 lambda want: want == ["ERR", 8, 31, "invalid argument: no CPUs given"],
                 ["ERR", 8, 20, "xmlCPUs in virConnectBaselineCPU must not be NULL"])
RPC_KNOWN = {**KNOWN, "empty-list": EMPTY_IS_NULL}

# over TCP no descriptor can go: libvirt's client learns it once the call is written, fails
# it and drops the connection (pyvirt's refuses before writing); both say the same
TCP_REFUSAL = ["ERR", 1, 7, "internal error: Sending file descriptors is not supported on this socket"]


def _walk(python: str, module: str, uri: str, *extra: str) -> list:
    return run_walk(WALK, python, module, uri, *extra)


@pytest.fixture(scope="module")
def reference() -> list:
    return reference_walk(WALK)


@pytest.fixture(scope="module")
def test_daemon(tmp_path_factory):
    # the walk leaves the test host as it found it, so one daemon serves every remote run
    with walk_daemon(tmp_path_factory.mktemp("host") / "daemon") as daemon:
        yield daemon


def _compare(run: str, reference: list, got: list, known_steps: dict = KNOWN) -> None:
    compare(run, reference, got, known_steps)


def test_reference_walk_covers_every_known_step(reference):
    values = dict((k, v) for k, v in reference)
    assert set(KNOWN) <= set(values)
    # what libvirt's test driver does not answer at all
    for name in ("compare", "baseline-hypervisor", "compare-hypervisor"):
        assert values[name][:3] == ["ERR", 3, 20], (name, values[name])
    # libvirt computes the x86 baselines (pyvirt must match them, not refuse)
    assert "<model fallback='forbid'>Haswell</model>" in values["x86"]
    assert "<model fallback='allow'>Haswell</model>" in values["x86-two"]
    # the descriptors went, and only copies: the caller's pipe still works
    assert values["create-xml-files"][:2] == ["files-dom", True]
    assert values["pipe-still-open"] == [1, "x"]


def test_in_process_walk_matches_libvirt(reference):
    _compare("inproc", reference, _walk(sys.executable, "pyvirt", "test:///default"))


@pytest.mark.parametrize("module", ["libvirt", "pyvirt"])
def test_over_pyvirtd_unix_socket_matches_libvirt(reference, test_daemon, module):
    python = LIBVIRT_PYTHON if module == "libvirt" else sys.executable
    _compare(f"pyvirtd-unix-{module}", reference, _walk(python, module, unix_uri(test_daemon)), RPC_KNOWN)


@pytest.mark.parametrize("module", ["libvirt", "pyvirt"])
def test_over_pyvirtd_tcp_matches_libvirt_without_descriptors(reference, test_daemon, module):
    python = LIBVIRT_PYTHON if module == "libvirt" else sys.executable
    got = _walk(python, module, test_daemon.test_uri, "nofds")
    assert got[-1] == ["files-refused", TCP_REFUSAL]
    _compare(f"pyvirtd-tcp-{module}", reference, got[:-1], RPC_KNOWN)


# -- libvirtd 9.0's own answers over RPC: pyvirtd's must be the same, known differences apart ------------
@pytest.fixture(scope="module")
def libvirtd_walks(tmp_path_factory) -> dict[str, list]:
    from netns_daemon import libvirtd_test_driver
    base = tmp_path_factory.mktemp("hostlibvirtd")
    with libvirtd_test_driver(base) as tcp_uri:
        unix_uri = f"test+unix:///default?socket={base}/host/run/libvirt-sock"   # bench/libvirt_ref.py's layout
        yield {"unix": _walk(LIBVIRT_PYTHON, "libvirt", unix_uri),
               "tcp": _walk(LIBVIRT_PYTHON, "libvirt", tcp_uri, "nofds")}


@pytest.mark.libvirtd
def test_libvirtd_answers_as_the_walk_expects_of_rpc(reference, libvirtd_walks):
    """libvirtd's test driver over RPC answers as in process, but for what RPC itself changes."""
    only_rpc = {step: (reason, libvirt_answers, instead) for step, (reason, libvirt_answers, instead)
                in RPC_KNOWN.items() if step not in KNOWN}
    _compare("libvirtd-unix", reference, libvirtd_walks["unix"], only_rpc)
    assert libvirtd_walks["tcp"][-1] == ["files-refused", TCP_REFUSAL]
    _compare("libvirtd-tcp", reference, libvirtd_walks["tcp"][:-1], only_rpc)


@pytest.mark.libvirtd
@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_pyvirtd_answers_as_libvirtd(libvirtd_walks, test_daemon, transport):
    uri = unix_uri(test_daemon) if transport == "unix" else test_daemon.test_uri
    got = _walk(LIBVIRT_PYTHON, "libvirt", uri, *(["nofds"] if transport == "tcp" else []))
    _compare(f"pyvirtd-{transport}", libvirtd_walks[transport], got, KNOWN)


# -- the daemon's descriptors around calls that bring some ------------------------------------------
DESCRIPTOR_CALLS = r"""
import os, re, sys
import libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
uri, pid = sys.argv[1], int(sys.argv[2])
count = lambda: len(os.listdir(f"/proc/{pid}/fd"))
conn = libvirt.open(uri)
xml = "<domain type='test'><name>fd-count</name><memory>65536</memory><os><type>hvm</type></os></domain>"
pipes = [os.pipe() for _ in range(4)]
files = [fd for pair in pipes for fd in pair]
conn.createXMLWithFiles(xml, files).destroy()     # the first makes the connection read descriptors
before = count()
outcomes = []
for flags in (0, 1 << 6, 0, 1 << 6):              # accepted, and refused by the driver (bad flags)
    try:
        conn.createXMLWithFiles(xml, files, flags).destroy()
        outcomes.append("ok")
    except libvirt.libvirtError as exc:
        outcomes.append(exc.get_error_code())
test = conn.lookupByName("test")
for _ in range(2):
    try:
        test.createWithFiles(files)               # running: refused
    except libvirt.libvirtError as exc:
        outcomes.append(exc.get_error_code())
print(before, count(), outcomes)
"""


def _daemon_fds(daemon: Pyvirtd) -> int:
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def _settled_fds(daemon: Pyvirtd, want: int) -> int:
    """The daemon's count once a closed connection is cleaned up (a bounded wait, not a timing check)."""
    deadline = time.monotonic() + 10
    while (n := _daemon_fds(daemon)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def test_daemon_closes_the_descriptors_a_call_brings(test_daemon):
    idle = _daemon_fds(test_daemon)
    out = subprocess.run([LIBVIRT_PYTHON, "-c", DESCRIPTOR_CALLS, unix_uri(test_daemon), str(test_daemon.proc.pid)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    before, after, outcomes = out.stdout.strip().rsplit("\n", 1)[-1].split(" ", 2)
    assert outcomes == "['ok', 8, 'ok', 8, 1, 1]"
    assert int(after) == int(before)                       # 8 descriptors a call, 6 calls: none kept
    assert _settled_fds(test_daemon, idle) == idle         # and the connection's own reader is gone with it
