"""Statistics and jobs, one layer down (the embedded QEMU driver, a real QEMU):
bulk statistics wait for a synchronous job that holds the domain, unless asked
with NOWAIT, which reports at once what needs no monitor; no job is left held."""

from __future__ import annotations

import asyncio

import pyvirt
from pyvirt import aio
from pyvirt.drivers.qemu.jobs import JobKind
from guests import READY, tiny_xml, wait_for_text
from test_stats import BALLOON, disk_xml, make_image

NOWAIT = pyvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
MONITOR_FIELDS = ("block.0.rd.reqs", "vcpu.0.time", "balloon.rss")


def test_nowait_reports_what_needs_no_monitor_while_a_job_holds_the_domain(embed_uri, tmp_path):
    conn = pyvirt.open(embed_uri)
    image = make_image(tmp_path / "nw.qcow2")
    log = tmp_path / "nw.log"
    dom = conn.createXML(tiny_xml("nw", log, extra_devices=disk_xml(image) + BALLOON), 0)
    wait_for_text(log, READY)
    drv = conn._drv
    obj = drv.driver.domains.by_ref(dom._ref)

    async def scenario():
        async with obj.jobs.job(JobKind.MODIFY):
            (_ref, quick), = await drv.connect_get_all_domain_stats([], 0, NOWAIT)
            waiting = asyncio.ensure_future(drv.connect_get_all_domain_stats([], 0, 0))
            for _ in range(20):              # let it run as far as it can: to the job
                await asyncio.sleep(0)
            held_back = not waiting.done()
        (_ref, full), = await waiting
        return dict((k, v) for k, _t, v in quick), dict((k, v) for k, _t, v in full), held_back

    quick, full, held_back = aio.run(scenario())
    assert held_back, "getAllDomainStats without NOWAIT did not wait for the job"
    for key in MONITOR_FIELDS:
        assert key not in quick and key in full, key
    # what needs no monitor is there at once: state, /proc, the definition
    assert quick["state.state"] == pyvirt.VIR_DOMAIN_RUNNING and quick["cpu.time"] > 0
    assert quick["balloon.current"] == quick["balloon.maximum"] == 128 * 1024
    assert quick["vcpu.current"] == 1 and quick["block.0.name"] == "vda"
    assert obj.jobs.active is None
    dom.destroy()


def test_groups_without_monitor_figures_take_no_job(embed_uri, tmp_path):
    conn = pyvirt.open(embed_uri)
    log = tmp_path / "nj.log"
    dom = conn.createXML(tiny_xml("nj", log), 0)
    wait_for_text(log, READY)
    drv = conn._drv
    obj = drv.driver.domains.by_ref(dom._ref)
    groups = (pyvirt.VIR_DOMAIN_STATS_STATE | pyvirt.VIR_DOMAIN_STATS_CPU_TOTAL
              | pyvirt.VIR_DOMAIN_STATS_INTERFACE)

    async def scenario():
        async with obj.jobs.job(JobKind.MODIFY):
            return await drv.connect_get_all_domain_stats([], groups, 0)   # answered under the job

    (_ref, params), = aio.run(scenario())
    got = {k: v for k, _t, v in params}
    assert got["state.state"] == pyvirt.VIR_DOMAIN_RUNNING and got["cpu.time"] > 0 and got["net.count"] == 0
    dom.destroy()
