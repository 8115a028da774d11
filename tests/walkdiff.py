"""The harness of the differential walks of the test driver (tests/data/testdriver/walk_*.py).

A walk is run as ``PYTHON WALK MODULE URI``: MODULE is ``libvirt`` (python3-libvirt) or
``pyvirt``; it prints one JSON list of ``[step, value]``, a failed call's value being
``["ERR", code, domain, message]``.  libvirt 9.0's own test driver, in process through
/usr/bin/python3's libvirt, gives the reference; each test module compares pyvirt's runs
(in process, and python3-libvirt or pyvirt on a pyvirtd) with it step by step.

A module's KNOWN maps a step to ``(reason, libvirt_answers, instead[, runs])``: the
comparison asserts that libvirt still answers as ``libvirt_answers`` says (else the entry
is stale) and expects ``instead`` from pyvirt (a value, or a function of libvirt's);
``runs``, when given, names the runs the entry applies to.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from daemons import Pyvirtd

LIBVIRT_PYTHON = "/usr/bin/python3"
WALKS = Path(__file__).parent / "data" / "testdriver"
Known = dict[str, tuple]          # step -> (reason, libvirt_answers, instead[, runs])


def run_walk(walk: Path, python: str, module: str, uri: str, *extra: str, timeout: float = 300) -> list:
    out = subprocess.run([python, str(walk), module, uri, *extra], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def have_libvirt_test_driver() -> bool:
    return subprocess.run([LIBVIRT_PYTHON, "-c", "import libvirt; libvirt.open('test:///default')"],
                          capture_output=True).returncode == 0


def reference_walk(walk: Path) -> list:
    """libvirt 9.0's answers: the walk on its test:///default (skips without python3-libvirt)."""
    if not have_libvirt_test_driver():
        pytest.skip("python3-libvirt with libvirt's test driver is not installed")
    return run_walk(walk, LIBVIRT_PYTHON, "libvirt", "test:///default")


@contextmanager
def walk_daemon(workdir: Path) -> Iterator[Pyvirtd]:
    """A pyvirtd whose test host serves the remote runs (stopped also when a test fails)."""
    daemon = Pyvirtd(workdir)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def unix_uri(daemon: Pyvirtd) -> str:
    return f"test+unix:///default?socket={daemon.sock_dir}/libvirt-sock"


def remote_uri(daemon: Pyvirtd, transport: str) -> str:
    return daemon.test_uri if transport == "tcp" else unix_uri(daemon)


def compare(run: str, reference: list, got: list, known: Known) -> None:
    """Every step of ``got`` must give ``reference``'s value, or the one KNOWN names."""
    assert [k for k, _ in got] == [k for k, _ in reference], "the walk's steps differ"
    got_steps = dict((k, v) for k, v in got)
    unexpected = []
    for step, want in reference:
        have = got_steps[step]
        entry = known.get(step)
        if entry is not None and (len(entry) < 4 or run in entry[3]):
            reason, libvirt_answers, instead = entry[:3]
            assert libvirt_answers(want), f"{step}: libvirt now answers {want!r}; KNOWN ({reason}) is stale"
            want = instead(want) if callable(instead) else instead
        if have != want:
            unexpected.append((step, want, have))
    assert not unexpected, "\n".join(f"{s}:\n  expected: {w!r}\n  {run}: {h!r}" for s, w, h in unexpected)


