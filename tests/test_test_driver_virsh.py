"""Stock virsh against pyvirtd's test driver prints what it prints against libvirt's own.

The read-only commands a user or a script runs on a test host (lists, info,
XML, statistics, node figures, interfaces, node devices) go to libvirt 9.0's
``test:///default`` (virsh's in-process test driver) and to pyvirtd's
(``test+tcp://`` and ``test+unix://``); stdout, stderr and exit status must be
the same, the running domain's CPU time (a clock reading) apart.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from daemons import Pyvirtd

COMMANDS = [
    "list --all", "dominfo test", "domstate --reason test", "dumpxml test", "dumpxml --inactive test",
    "domid test", "domuuid test", "dommemstat test", "vcpucount test", "schedinfo test",
    "domblkinfo test vda", "domblklist test", "domiflist test", "domstats", "domstats --state",
    "domblkerror test", "snapshot-list test", "net-list --all", "net-info default", "net-dumpxml default",
    "pool-list --all --details", "pool-info default-pool", "pool-dumpxml default-pool", "vol-list default-pool",
    "iface-list --all", "iface-dumpxml eth1", "iface-mac eth1", "nodedev-list", "nodedev-dumpxml scsi_host1",
    "nodeinfo", "capabilities", "freecell --all", "maxvcpus", "sysinfo", "nodecpustats", "cpu-models i686",
    "version", "dominfo nope", "net-info nope", "pool-info nope", "iface-dumpxml nope", "nodedev-dumpxml nope",
]
CPU_TIME = re.compile(r"^CPU time:.*$", re.M)


def _virsh(uri: str, command: str) -> tuple[str, str, int]:
    out = subprocess.run(["virsh", "-c", uri, *command.split()], capture_output=True, text=True, timeout=60)
    return CPU_TIME.sub("CPU time: T", out.stdout), out.stderr, out.returncode


@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[str, str, int]]:
    if shutil.which("virsh") is None:
        pytest.skip("stock virsh is not installed")
    return {c: _virsh("test:///default", c) for c in COMMANDS}


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_virsh_reads_the_test_host_as_from_libvirt(reference, tmp_path, transport):
    daemon = Pyvirtd(tmp_path / "daemon")
    daemon.start()
    try:
        uri = daemon.test_uri if transport == "tcp" else \
            f"test+unix:///default?socket={daemon.sock_dir}/libvirt-sock"
        differ = {c: (reference[c], got) for c in COMMANDS if (got := _virsh(uri, c)) != reference[c]}
    finally:
        daemon.stop()
    assert not differ, "\n".join(f"$ virsh {c}\n  libvirt: {w!r}\n  pyvirtd: {h!r}" for c, (w, h) in differ.items())
