"""The same guest on pyvirtd and on a private libvirtd 9.0: the same statistics fields,
in the same order, with the same values where they do not move, through stock
python3-libvirt; and pyvirt's own client reads libvirtd's statistics over the wire."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import pyvirt
from guests import REPO, tiny_xml
from test_stats import BALLOON, SYSTEM_PYTHON, disk_xml, make_image

sys.path.insert(0, str(REPO / "bench"))

import libvirt_ref  # noqa: E402
from libvirt_ref import LibvirtHost, pick_free_ports  # noqa: E402

AVAILABLE, WHY = libvirt_ref.libvirt_available()
pytestmark = [pytest.mark.libvirtd, pytest.mark.qemu,
              pytest.mark.skipif(not AVAILABLE, reason=f"libvirtd not available: {WHY}")]

SCRIPT = r"""
import json, sys, libvirt
uri, xml = sys.argv[1:3]
conn = libvirt.open(uri)
dom = conn.createXML(xml, 0)
try:
    out = {"all": [[k, v] for k, v in conn.getAllDomainStats(0, 0)[0][1].items()],
           "memory": list(dom.memoryStats()), "blockflags": sorted(dom.blockStatsFlags("vda")),
           "blockinfo": dom.blockInfo("vda")[0], "blockstats": list(dom.blockStats("vda")),
           "vcpus": [v[:2] for v in dom.vcpus()[0]]}
    try:
        out["cputotal"] = sorted(dom.getCPUStats(True)[0])
    except libvirt.libvirtError as e:
        out["cputotal"] = e.get_error_message()
finally:
    dom.destroy()
print(json.dumps(out))
"""
# fields whose values move between two guests (times, RSS, the image file's own size)
MOVING = ("cpu.time", "cpu.user", "cpu.system", "balloon.rss", "vcpu.0.time", "vcpu.0.wait", "vcpu.0.delay",
          "block.0.path", "block.0.physical", "cpu.haltpoll.success.time", "cpu.haltpoll.fail.time")


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory):
    base = tmp_path_factory.mktemp("libvirtd")
    host = LibvirtHost(base / "host", pick_free_ports(1)[0], cache_dir=base / "cache")
    host.start()
    try:
        yield host
    finally:
        leaked = host.stop()
    assert not leaked


def guest_stats(uri: str, workdir, name: str) -> dict:
    image = make_image(workdir / f"{name}.qcow2")
    xml = tiny_xml(name, workdir / f"{name}.log", extra_devices=disk_xml(image) + BALLOON)
    out = subprocess.run([SYSTEM_PYTHON, "-c", SCRIPT, uri, xml], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_same_fields_in_the_same_order_as_libvirtd(libvirtd, pyvirtd, guests_built, tmp_path):
    theirs = guest_stats(libvirtd.uri, tmp_path, "lv")
    ours = guest_stats(pyvirtd.uri, pyvirtd.workdir, "pv")
    assert [k for k, _v in ours["all"]] == [k for k, _v in theirs["all"]]
    steady = lambda rec: {k: v for k, v in rec if k not in MOVING}     # noqa: E731
    assert steady(ours["all"]) == steady(theirs["all"])
    for key in ("memory", "blockflags", "blockinfo", "blockstats", "vcpus"):
        assert ours[key] == theirs[key], key
    # libvirtd takes CPU totals from its cgroup (none here: it says so); pyvirtd from /proc
    assert ours["cputotal"] == ["cpu_time", "system_time", "user_time"]
    assert theirs["cputotal"] in (ours["cputotal"],
                                  "Requested operation is not valid: cgroup CPUACCT controller is not mounted")


def test_pyvirt_client_reads_libvirtd_statistics(libvirtd, guests_built, tmp_path):
    image = make_image(tmp_path / "pc.qcow2")
    conn = pyvirt.open(libvirtd.uri)
    dom = conn.createXML(tiny_xml("pc", tmp_path / "pc.log", extra_devices=disk_xml(image) + BALLOON), 0)
    try:
        (d, rec), = conn.getAllDomainStats(pyvirt.VIR_DOMAIN_STATS_BLOCK | pyvirt.VIR_DOMAIN_STATS_STATE, 0)
        assert d.name() == "pc" and rec["state.state"] == pyvirt.VIR_DOMAIN_RUNNING
        assert rec["block.0.name"] == "vda" and rec["block.0.capacity"] == 64 << 20
        assert conn.domainListGetStats([dom], pyvirt.VIR_DOMAIN_STATS_VCPU, 0)[0][1]["vcpu.current"] == 1
        assert dom.blockStats("vda")[4] == -1 and dom.blockInfo("vda")[0] == 64 << 20
        assert dom.memoryStats()["actual"] == 128 * 1024
        info, maps = dom.vcpus()
        assert info[0][:2] == (0, pyvirt.VIR_VCPU_RUNNING) and all(maps[0])
        assert conn.getCPUMap()[0] == len(maps[0])
    finally:
        dom.destroy()
        conn.close()


BACKING_SCRIPT = r"""
import json, sys, libvirt
uri, xml = sys.argv[1:3]
conn = libvirt.open(uri)
dom = conn.createXML(xml, 0)
try:
    out = [[k, v] for k, v in conn.getAllDomainStats(
        libvirt.VIR_DOMAIN_STATS_BLOCK, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_BACKING)[0][1].items()]
finally:
    dom.destroy()
print(json.dumps(out))
"""


def chain_stats(uri: str, workdir, name: str) -> list:
    base = make_image(workdir / f"{name}-base.qcow2")
    top = workdir / f"{name}-top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top)],
                   check=True, timeout=30)
    xml = tiny_xml(name, workdir / f"{name}.log", extra_devices=disk_xml(top))
    out = subprocess.run([SYSTEM_PYTHON, "-c", BACKING_SCRIPT, uri, xml], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_backing_chain_reported_as_libvirtd_does(libvirtd, pyvirtd, guests_built, tmp_path):
    theirs = chain_stats(libvirtd.uri, tmp_path, "lvb")
    ours = chain_stats(pyvirtd.uri, pyvirtd.workdir, "pvb")
    assert [k for k, _v in ours] == [k for k, _v in theirs]
    ours_d, theirs_d = dict(ours), dict(theirs)
    assert ours_d["block.count"] == 2 and ours_d["block.1.backingIndex"] == 2
    assert ours_d["block.1.path"].endswith("pvb-base.qcow2") and ours_d["block.1.capacity"] == 64 << 20
    steady = lambda rec: {k: v for k, v in rec.items() if not k.endswith((".path", ".physical"))}  # noqa: E731
    assert steady(ours_d) == steady(theirs_d)
