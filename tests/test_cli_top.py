"""``pyvirt top --once`` on a host with running, paused, migrating and
inactive guests: each row's figures checked against domstats and domjobinfo
taken around the frame, sorting, and the same view of a libvirtd 9.0 host."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pyvirt
from guests import REPO, tiny_xml, wait_for
from test_migration import _migrate_in_thread, _wait_job_active, hosts  # noqa: F401 - the fixture
from test_stats import start_stats_guest

from pyvirt.cli import top

pytestmark = pytest.mark.qemu
PYVIRT = str(Path(sys.executable).parent / "pyvirt")
HEADERS = top.HEADERS


def frame(uri: str, *extra: str) -> tuple[str, list[dict[str, str]]]:
    out = subprocess.run([PYVIRT, "-c", uri, "top", "--once", "--delay", "0.5", *extra], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1] == "" and lines[2].split() == HEADERS and set(lines[3]) == {"-"}
    rows = []
    for line in lines[4:]:
        if not line.strip():
            continue
        cells = line[1:].split("   ")          # virsh's table: columns three spaces apart
        cells = [c.strip() for c in cells if c.strip()] 
        job = ""
        if len(cells) > len(HEADERS) - 1:
            cells, job = cells[:len(HEADERS) - 1], "   ".join(cells[len(HEADERS) - 1:])
        rows.append(dict(zip(HEADERS, cells + [job])))
    return lines[0], rows


def stats(uri: str) -> dict[str, dict]:
    out = subprocess.run([PYVIRT, "-c", uri, "domstats", "--json"], capture_output=True, text=True, check=True)
    return {d["name"]: d["stats"] for d in json.loads(out.stdout)}


def percent(conn: pyvirt.virConnect, name: str) -> float:
    job = conn.lookupByName(name).jobStats(0)
    return 100.0 * job["data_processed"] / job["data_total"]


def test_running_paused_migrating_and_inactive(hosts):  # noqa: F811
    a, b = hosts
    start_stats_guest(a, "run")
    start_stats_guest(a, "pause").suspend()
    mig = start_stats_guest(a, "mig", cmdline="dirty=64:20", memory_mib=256, persistent=False)
    conn = pyvirt.open(a.uri)
    conn.defineXML(tiny_xml("off", a.workdir / "off.log"))
    # its disk is a local file both hosts see (one machine): 'unsafe' to libvirt
    thread, result = _migrate_in_thread(mig, pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_UNSAFE, {"bandwidth": 2})
    try:
        _wait_job_active(conn, "mig")
        before = percent(conn, "mig")
        header, rows = frame(a.uri)
        after = percent(conn, "mig")
        assert conn.lookupByName("mig").jobInfo()[0] == pyvirt.VIR_DOMAIN_JOB_UNBOUNDED, \
            "the migration ended before the frame was taken"
        figures = stats(a.uri)
        by_name = {r["NAME"]: r for r in rows}
        assert set(by_name) == {"run", "pause", "mig", "off"}
        assert header == f"pyvirt top - {conn.getURI()} - 4 domains: 2 running, 1 paused, 1 shut off"
        # the default order is virsh list's: running by id, then inactive
        assert [r["NAME"] for r in rows][-1] == "off"
        for name, row in by_name.items():
            s = figures[name]
            assert row["STATE"] == {1: "running", 3: "paused", 5: "shut off"}[s["state.state"]]
            dom = conn.lookupByName(name)
            assert row["ID"] == (str(dom.ID()) if dom.ID() >= 0 else "-")
            if name == "off":
                assert row["MEM(MiB)"] == f"{dom.info()[2] / 1024:.0f}" and row["%CPU"] == "0.0"
                continue
            assert row["VCPU"] == str(s["vcpu.current"])
            assert row["MEM(MiB)"] == f"{s['balloon.current'] / 1024:.0f}"
            for column in ("%CPU", "RD(KiB/s)", "WR(KiB/s)", "RX(KiB/s)", "TX(KiB/s)"):
                assert float(row[column]) >= 0
        assert by_name["run"]["JOB"] == "" and by_name["pause"]["JOB"] == ""
        job = re.fullmatch(r"migration \[(#*)(\.*)\]\s+(\d+)%", by_name["mig"]["JOB"])
        assert job, by_name["mig"]["JOB"]
        assert len(job.group(1)) + len(job.group(2)) == top.BAR_WIDTH
        # progress only grows: the frame's figure lies between the two taken around it
        assert before - 1 <= int(job.group(3)) <= after + 1
        # sorted by memory: the 256 MiB guest first
        _, rows = frame(a.uri, "--sort", "mem")
        assert rows[0]["NAME"] == "mig"
        _, rows = frame(a.uri, "--sort", "name")
        assert [r["NAME"] for r in rows] == ["mig", "off", "pause", "run"]
        conn.lookupByName("mig").abortJob()
    finally:
        thread.join(60)
    assert not thread.is_alive()
    assert result["error"].get_error_code() == pyvirt.VIR_ERR_OPERATION_ABORTED
    wait_for(lambda: mig.state()[0] == pyvirt.VIR_DOMAIN_RUNNING, 10, what="the source to run on")


def test_rates_from_two_samples():
    """The arithmetic on two samples one second apart, without a host."""
    s0 = top.Sample("g", 1, 1, 1, 2, 1_000_000_000, 1024, 0, 0, 0, 0)
    s1 = top.Sample("g", 1, 1, 1, 2, 2_000_000_000, 1024, 4096, 2048, 1024 * 10, 512)
    (row,) = top.rows((0.0, {"u": (None, s0)}), (1.0, {"u": (_NoJob(), s1)}))
    assert row.cpu_pct == 50.0                          # one second of CPU over two vCPUs
    assert (row.rd_rate, row.wr_rate, row.rx_rate, row.tx_rate) == (4096, 2048, 10240, 512)
    # a guest restarted between samples (new id) shows no rate rather than a negative one
    s2 = top.Sample("g", 2, 1, 1, 2, 10, 1024, 0, 0, 0, 0)
    (row,) = top.rows((0.0, {"u": (None, s1)}), (1.0, {"u": (_NoJob(), s2)}))
    assert row.cpu_pct == 0.0 and row.rd_rate == 0
    assert top.bar(0.5) == "[" + "#" * 10 + "." * 10 + "]  50%"


class _NoJob:
    def jobStats(self, flags):
        return {"type": 0}


def test_bad_delay_is_refused(tmp_path):
    out = subprocess.run([PYVIRT, "-c", "test:///default", "top", "--once", "--delay", "0"], capture_output=True,
                         text=True)
    assert out.returncode == 1 and "error: Invalid value for delay" in out.stderr


@pytest.mark.libvirtd
def test_against_libvirtd(tmp_path_factory):
    sys.path.insert(0, str(REPO / "bench"))
    import libvirt_ref
    available, why = libvirt_ref.libvirt_available()
    if not available:
        pytest.skip(f"libvirtd not available: {why}")
    base = tmp_path_factory.mktemp("top-libvirtd")
    host = libvirt_ref.LibvirtHost(base / "host", libvirt_ref.pick_free_port(), 61400, 61415)
    try:
        host.start()
        xml = base / "lv.xml"
        xml.write_text(tiny_xml("lv", base / "lv.log"))
        host.virsh("create", str(xml))
        _, rows = frame(host.uri)
        (row,) = rows
        assert row["NAME"] == "lv" and row["STATE"] == "running" and row["VCPU"] == "1"
        figures = stats(host.uri)["lv"]
        assert row["MEM(MiB)"] == f"{figures['balloon.current'] / 1024:.0f}"
    finally:
        host.stop()


def test_live_view_refreshes_sorts_and_quits(pyvirtd, guests_built, tmp_path):
    """The rich view on a terminal: a frame, a refresh, a key that changes the sort, q."""
    import os
    from test_cli_shell import Terminal
    start_stats_guest(pyvirtd, "live")
    env = dict(os.environ, HOME=str(tmp_path), TERM="xterm", COLUMNS="200", LINES="40")
    term = Terminal([PYVIRT, "-c", pyvirtd.uri, "top", "--delay", "0.2"], env)
    try:
        # the header names the connection as the operator opened it (getURI, as virsh uri prints it)
        term.expect(rf"pyvirt top - {re.escape(pyvirtd.uri)} - 1 domains: 1 running")
        term.expect(r"sorted by id")
        term.expect(rf"pyvirt top - {re.escape(pyvirtd.uri)}")          # refreshed
        term.send("n")
        term.expect(r"sorted by name")
        term.send("q")
        assert term.wait() == 0
    finally:
        term.close()
