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


# A session of changes, run in one virsh process (libvirt's in-process test host lives as long
# as the connection): tuning, pinning, the guest's clock and name, network updates, snapshot
# lists, free pages; each command's output must be libvirt's.
SESSION = [
    "memtune test", "memtune test --hard-limit 1048576 --soft-limit 524288", "memtune test",
    "memtune test --config", "blkiotune test", "blkiotune test --weight 500 --device-weights /dev/sda,200",
    "blkiotune test", "numatune test", "numatune test --nodeset 0-1", "numatune test",
    "numatune test --mode interleave", "domiftune test testnet0",
    "domiftune test testnet0 --inbound 1000,2000 --outbound 500", "domiftune test testnet0",
    "blkdeviotune test vda", "blkdeviotune test vda --total-bytes-sec 1000 --total-bytes-sec-max 2000 --group-name g1",
    "blkdeviotune test vda", "blkdeviotune test vda --read-bytes-sec 5", "perf test",
    "perf test --enable cmt,cpu_cycles", "perf test", "domtime test", "domtime test --time 1234567890",
    "domtime test", "domtime test --pretty", "domhostname test", "vcpupin test", "vcpupin test 0 0,2",
    "vcpupin test", "vcpupin test 1 3 --config", "vcpuinfo test", "emulatorpin test", "emulatorpin test 0-1",
    "emulatorpin test", "iothreadinfo test", "dumpxml test", "dumpxml test --inactive",
    "net-update default add ip-dhcp-host \"<host mac='52:54:00:00:00:11' ip='192.168.122.11'/>\"",
    "net-update default add ip-dhcp-host \"<host mac='52:54:00:00:00:11' ip='192.168.122.11'/>\"",
    "net-update default add ip-dhcp-range \"<range start='192.168.122.100' end='192.168.122.110'/>\"",
    "net-update default delete dns-host \"<host ip='1.2.3.4'><hostname>x</hostname></host>\"",
    "net-update default add portgroup \"<portgroup name='x'/>\" --config", "net-dumpxml default",
    "snapshot-create-as test s1", "snapshot-create-as test s2", "snapshot-list test --roots --name",
    "snapshot-list test --leaves --name", "snapshot-list test --no-leaves --name", "snapshot-list test --tree",
    "snapshot-list test --topological --name", "snapshot-list test --parent --name",
    "snapshot-list test --descendants --from s1 --name", "snapshot-list test --inactive --name",
    "freepages --all", "freepages --cellno 0 --pagesize 4", "domhostname nope", "domtime nope",
]


def _session(uri: str) -> tuple[str, str, int]:
    out = subprocess.run(["virsh", "-c", uri, "; ".join(SESSION)], capture_output=True, text=True, timeout=120)
    return CPU_TIME.sub("CPU time: T", out.stdout), out.stderr, out.returncode


def test_virsh_session_of_changes_as_on_libvirt(tmp_path):
    if shutil.which("virsh") is None:
        pytest.skip("stock virsh is not installed")
    want = _session("test:///default")
    assert "hard_limit     : 1048576" in want[0] and "4KiB: 19" in want[0]      # the session did its work
    daemon = Pyvirtd(tmp_path / "daemon")
    daemon.start()
    try:
        got = _session(daemon.test_uri)
    finally:
        daemon.stop()
    assert got == want
