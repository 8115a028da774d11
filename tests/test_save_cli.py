"""The save commands of stock virsh 9.0 and of the pyvirt command line, against pyvirtd:
the same output, the same progress line, the same errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from test_save import assert_continues, heartbeat, make_host, start_guest  # noqa: F401 - fixture

pytestmark = [pytest.mark.qemu, pytest.mark.virsh,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]


def _virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60)


def _pyvirt(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", uri, *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("tool", ["virsh", "pyvirt"])
def test_command_line(make_host, tool):
    run = _virsh if tool == "virsh" else _pyvirt
    host = make_host("gzip")
    conn, dom, log = start_guest(host, persistent=True)
    image = host.workdir / "g.save"

    def ok(*args: str) -> str:
        out = run(host.uri, *args)
        assert out.returncode == 0, f"{tool} {' '.join(args)}: {out.stderr}"
        return out.stdout
    out = run(host.uri, "save", "--verbose", "g", str(image))
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"\nDomain 'g' saved to {image}\n\n"
    assert "Save: [100 %]" in out.stderr
    assert ok("domstate", "--reason", "g").strip() == "shut off (saved)"
    assert "<name>g</name>" in ok("save-image-dumpxml", str(image))
    before = heartbeat(log)
    assert ok("restore", "--paused", str(image)) == f"Domain restored from {image}\n\n"
    assert ok("domstate", "--reason", "g").strip() == "paused (migrating)"
    ok("resume", "g")
    assert_continues(log, before)
    out = run(host.uri, "managedsave", "--verbose", "g")
    assert out.returncode == 0 and out.stdout == "\nDomain 'g' state saved by libvirt\n\n", out.stderr
    assert "Managedsave: [100 %]" in out.stderr
    assert "Managed save:   yes" in _virsh(host.uri, "dominfo", "g").stdout
    ok("start", "g")
    assert ok("domstate", "--reason", "g").strip() == "running (restored)"
    ok("managedsave", "g")
    assert ok("managedsave-remove", "g") == "Removed managedsave image for domain 'g'\n"
    assert ok("managedsave-remove", "g") == "Domain 'g' has no manage save image; removal skipped\n"
    out = run(host.uri, "restore", str(host.workdir / "nothing.save"))
    assert out.returncode == 1
    assert f"error: Failed to restore domain from {host.workdir / 'nothing.save'}" in out.stderr
    assert "No such file or directory" in out.stderr
