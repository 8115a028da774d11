"""A reader that goes away (``pyvirt ... | head -1``) ends pyvirt as it ends virsh: silently, by SIGPIPE."""

from __future__ import annotations

import signal
import subprocess
import sys


def test_closed_stdout_ends_silently_by_sigpipe():
    proc = subprocess.Popen([sys.executable, "-m", "pyvirt.cli", "-c", "test:///default", "capabilities"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()                 # the reader is gone before the first byte
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == -signal.SIGPIPE
    assert err == b"", err.decode(errors="replace")   # no BrokenPipeError traceback
