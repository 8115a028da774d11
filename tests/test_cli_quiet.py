"""``pyvirt -q`` prints tables as ``virsh -q``: rows only, widths from the rows."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pyvirt.cli.output import table_lines

VIRSH = shutil.which("virsh")


def test_quiet_table_has_rows_only_and_their_own_widths():
    rows = [["1", "test", "running"], ["12", "longer-name", "paused"]]
    assert table_lines(["Id", "Name", "State"], rows, header=False) == [
        " 1    test          running", " 12   longer-name   paused"]
    assert table_lines(["Identifier", "N", "S"], [["1", "a", "b"]], header=False) == [" 1   a   b"]


@pytest.mark.skipif(VIRSH is None, reason="needs stock virsh")
@pytest.mark.parametrize("command", [["list", "--all"], ["domiflist", "test"], ["domblklist", "test"],
                                     ["net-list", "--all"], ["pool-list", "--all"]])
def test_quiet_tables_as_virsh_on_the_test_host(command):
    def run(argv):
        out = subprocess.run(argv + ["-q", "-c", "test:///default", *command], capture_output=True,
                             text=True, timeout=60)
        return out.returncode, out.stdout
    expected = run([VIRSH])
    assert expected[0] == 0 and expected[1].strip()
    assert run([sys.executable, "-m", "pyvirt.cli"]) == expected
