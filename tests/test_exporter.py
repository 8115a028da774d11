"""Debian's prometheus-libvirt-exporter scraping pyvirtd: libvirt_up 1 and the block
metrics of a running guest that has read and written its disk, equal to what QEMU
reports for it (and not zero)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.request

import pytest

from daemons import free_port, monitor_command
from guests import wait_for
from test_stats_disk_io import BLOCK, READ_BLOCKS, WRITE_BLOCKS, start_io_guest

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(shutil.which("prometheus-libvirt-exporter") is None,
                                 reason="prometheus-libvirt-exporter is not installed"),
              pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")]

_SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or line.startswith("#"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


@pytest.fixture
def exporter(pyvirtd, tmp_path):
    port = free_port()
    log = open(tmp_path / "exporter.log", "wb")
    proc = subprocess.Popen(["prometheus-libvirt-exporter", f"--web.listen-address=127.0.0.1:{port}",
                             f"--libvirt.uri={pyvirtd.uri}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.read().decode()

    def listening() -> bool:
        try:
            scrape()
            return True
        except OSError:
            assert proc.poll() is None, (tmp_path / "exporter.log").read_text()
            return False
    try:
        wait_for(listening, 30, interval=0.05, what="the exporter to listen")
        yield scrape
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_exporter_reports_up_and_block_metrics(pyvirtd, guests_built, exporter):
    dom, _image, _log = start_io_guest(pyvirtd)       # its disk I/O done, the figures stay put
    try:
        check_metrics(pyvirtd, dom, parse_metrics(exporter()))
    finally:
        dom.destroy()


def check_metrics(pyvirtd, dom, samples) -> None:
    up = [v for name, _l, v in samples if name == "libvirt_up"]
    assert up == [1.0], [s for s in samples if s[0].startswith("libvirt")]
    block = {name: (labels, value) for name, labels, value in samples
             if name.startswith("libvirt_domain_block_stats_")}
    assert {"libvirt_domain_block_stats_read_bytes_total", "libvirt_domain_block_stats_read_requests_total",
            "libvirt_domain_block_stats_write_bytes_total",
            "libvirt_domain_block_stats_write_requests_total"} <= set(block)
    labels, _ = block["libvirt_domain_block_stats_read_bytes_total"]
    assert labels["domain"] == "st" and labels["target_device"] == "vda"
    assert labels["source_file"].endswith("st.qcow2") and labels["uuid"] == dom.UUIDString()
    stats = json.loads(monitor_command(pyvirtd, "st", '{"execute": "query-blockstats"}'))["return"][0]["stats"]
    assert block["libvirt_domain_block_stats_read_bytes_total"][1] == stats["rd_bytes"]
    assert block["libvirt_domain_block_stats_read_requests_total"][1] == stats["rd_operations"]
    assert block["libvirt_domain_block_stats_write_requests_total"][1] == stats["wr_operations"]
    assert block["libvirt_domain_block_stats_write_bytes_total"][1] == stats["wr_bytes"]
    assert stats["rd_bytes"] >= READ_BLOCKS * BLOCK and stats["wr_bytes"] >= WRITE_BLOCKS * BLOCK
    state = {name: value for name, _l, value in samples if name == "libvirt_domain_state_code"}
    assert state["libvirt_domain_state_code"] == 1.0
    vcpus = [v for name, _l, v in samples if name == "libvirt_domain_info_virtual_cpus"]
    assert vcpus == [1.0]
