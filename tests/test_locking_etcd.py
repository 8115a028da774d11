"""Cluster-wide disk leases on etcd, end to end: two pyvirtd hosts sharing a disk
(tests/lease_hosts.py), a real etcd on loopback, real QEMU, the pyvirt client.

The issue's Done-when for etcd: a second host's start is refused naming the
disk and the lease; live migration hands the lease over (same token, the
source host cannot start the disk afterwards, the destination can after its
guest is gone); kill -9 of the holder's pyvirtd keeps the lease past the TTL
and the restarted pyvirtd adopts the guest; migration protocol v2 is refused
with libvirt's message; a host cut off from etcd (SIGSTOP) pauses or powers
off its guest before the lease can expire, and the other host takes the disk
only once it has; suspend/resume and save/restore release and re-acquire.
"""

from __future__ import annotations

import os
import signal
import queue
import time

import pytest

import pyvirt
from pyvirt.errors import ErrorDomain, ErrorNumber

from guests import qemu_available, wait_for
from lease_hosts import LeaseCluster, guest_xml, holders

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(not qemu_available(), reason="QEMU not available")]

TTL = 4
# each host's "shared" disk is a file on a local file system (seen through its own mount
# namespace), which libvirt's safety check cannot know to be shared: say it is on purpose
MIGRATE_FLAGS = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_UNSAFE


@pytest.fixture
def cluster(tmp_path, guests_built):
    c = LeaseCluster(tmp_path, ttl=TTL)
    try:
        c.start()
        yield c
    finally:
        leaked = c.stop()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def start(conn, name: str, cluster: LeaseCluster, on_lockfailure: str | None = None):
    xml = guest_xml(name, cluster.disk, cluster.root / f"{name}-{id(conn)}.log", on_lockfailure)
    dom = conn.defineXML(xml)
    dom.create()
    return dom


def state(dom) -> int:
    return dom.state()[0]


def test_second_host_refused_naming_disk_and_lease(cluster):
    a, b = pyvirt.open(cluster.host("hostA").uri), pyvirt.open(cluster.host("hostB").uri)
    try:
        start(a, "web", cluster)
        held = cluster.key()
        assert held["domain"] == "web" and held["state"] == "held"
        with pytest.raises(pyvirt.libvirtError) as ei:
            start(b, "web-b", cluster)
        err = ei.value
        assert err.get_error_code() == ErrorNumber.RESOURCE_BUSY
        assert err.get_error_domain() == ErrorDomain.LOCKSPACE
        msg = err.get_error_message()
        assert f"disk '{cluster.disk}'" in msg and "domain 'web'" in msg
        assert f"etcd lease {held['lease']:x}" in msg and f"token {held['token']}" in msg
        assert b.lookupByName("web-b").state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF
        assert len(holders(cluster.disk)) == 1
    finally:
        a.close()
        b.close()


def test_live_migration_hands_the_lease_over(cluster):
    a, b = pyvirt.open(cluster.host("hostA").uri), pyvirt.open(cluster.host("hostB").uri)
    try:
        dom = start(a, "mig", cluster)
        before = cluster.key()
        dom.migrate(b, MIGRATE_FLAGS)
        after = cluster.key()
        assert after["token"] == before["token"]          # exactly the lease A held
        assert after["lease"] != before["lease"] and after["state"] == "held"
        assert b.lookupByName("mig").state()[0] == pyvirt.VIR_DOMAIN_RUNNING
        assert len(holders(cluster.disk)) == 1
        with pytest.raises(pyvirt.libvirtError, match="is locked"):
            start(a, "again", cluster)
        b.lookupByName("mig").destroy()
        start(a, "again2", cluster)                       # free once B's guest is gone
        assert cluster.key()["token"] > after["token"]
    finally:
        a.close()
        b.close()


def test_kill9_of_the_holders_pyvirtd_keeps_the_lease_and_the_restart_adopts(cluster):
    host_a = cluster.host("hostA")
    a, b = pyvirt.open(host_a.uri), pyvirt.open(cluster.host("hostB").uri)
    try:
        start(a, "keep", cluster)
        before = cluster.key()
        a.close()
        host_a.daemon.stop(signal.SIGKILL)
        # the TTL must pass to show the lease outlives pyvirtd: time, not an event, is what is tested
        time.sleep(TTL + 1)
        with pytest.raises(pyvirt.libvirtError, match="is locked"):
            start(b, "steal", cluster)
        assert cluster.key()["token"] == before["token"]
        host_a.daemon.start()
        a = pyvirt.open(host_a.uri)
        dom = a.lookupByName("keep")
        assert state(dom) == pyvirt.VIR_DOMAIN_RUNNING
        assert cluster.key()["token"] == before["token"]
        dom.destroy()
        start(b, "steal2", cluster)
    finally:
        a.close()
        b.close()


def test_migration_v2_refused_with_libvirts_message(tmp_path, guests_built):
    c = LeaseCluster(tmp_path, ttl=TTL, extra_config="migration_v3 = 0\nmigration_params = 0\n")
    try:
        c.start()
        a, b = pyvirt.open(c.host("hostA").uri), pyvirt.open(c.host("hostB").uri)
        try:
            dom = start(a, "v2", c)
            with pytest.raises(pyvirt.libvirtError) as ei:
                dom.migrate(b, MIGRATE_FLAGS)
            assert ei.value.get_error_code() == ErrorNumber.INTERNAL_ERROR
            assert "Cannot use migrate v2 protocol with lock manager etcd" in ei.value.get_error_message()
            assert state(dom) == pyvirt.VIR_DOMAIN_RUNNING
            assert len(holders(c.disk)) == 1
        finally:
            a.close()
            b.close()
    finally:
        leaked = c.stop()
    assert not leaked


def test_host_cut_off_from_etcd_pauses_its_guest_and_the_disk_moves_only_after_expiry(cluster):
    host_a = cluster.host("hostA")
    a, b = pyvirt.open(host_a.uri), pyvirt.open(cluster.host("hostB").uri)
    try:
        dom = start(a, "cut", cluster, on_lockfailure="pause")
        lost: queue.Queue = queue.Queue()
        a.domainEventRegisterAny(dom, pyvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON,
                                 lambda _c, _d, path, alias, action, reason, _o: lost.put((path, alias, action, reason)),
                                 None)
        before = cluster.key()
        cluster.etcd.pause()
        frozen = time.monotonic()
        try:
            wait_for(lambda: state(dom) == pyvirt.VIR_DOMAIN_PAUSED, TTL * 3, what="the guest paused")
            paused_after = time.monotonic() - frozen
            # sure to be past the lease's TTL on etcd's clock before it runs again
            time.sleep(max(0.0, TTL + 1 - (time.monotonic() - frozen)))
        finally:
            cluster.etcd.resume()
        assert paused_after < TTL, f"paused {paused_after:.1f} s after etcd froze (TTL {TTL} s)"
        log = host_a.daemon.log_path.read_text(errors="replace")
        assert f"lost its lease on {cluster.disk}" in log
        # and clients are told which disk: IO_ERROR_REASON, reason lease_lost, action pause
        path, _alias, action, reason = lost.get(timeout=TTL * 3)
        assert (path, action, reason) == (str(cluster.disk), pyvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE, "lease_lost")
        # the lease expired: the other host may take the disk now, with a new token
        wait_for(lambda: _try_start(b, "taker", cluster), TTL * 3, what="host B starts the disk")
        assert cluster.key()["token"] > before["token"]
        # the fenced guest cannot resume without its own lease; it stays paused
        with pytest.raises(pyvirt.libvirtError, match="is locked|was lost"):
            dom.resume()
        assert state(dom) == pyvirt.VIR_DOMAIN_PAUSED
        assert len(holders(cluster.disk)) == 2      # A's QEMU is paused, not writing
    finally:
        a.close()
        b.close()


def _try_start(conn, name: str, cluster: LeaseCluster) -> bool:
    try:
        dom = conn.lookupByName(name)
    except pyvirt.libvirtError:
        dom = conn.defineXML(guest_xml(name, cluster.disk, cluster.root / f"{name}.log"))
    try:
        dom.create()
        return True
    except pyvirt.libvirtError as exc:
        assert "is locked" in exc.get_error_message()
        return False


def test_host_cut_off_from_etcd_powers_its_guest_off_by_default(cluster):
    a = pyvirt.open(cluster.host("hostA").uri)
    try:
        dom = start(a, "off", cluster)
        cluster.etcd.pause()
        try:
            wait_for(lambda: state(dom) == pyvirt.VIR_DOMAIN_SHUTOFF, TTL * 3, what="the guest powered off")
        finally:
            cluster.etcd.resume()
        assert holders(cluster.disk) == []
    finally:
        a.close()


def test_suspend_resume_and_save_restore_release_and_reacquire(cluster, tmp_path):
    a, b = pyvirt.open(cluster.host("hostA").uri), pyvirt.open(cluster.host("hostB").uri)
    try:
        dom = start(a, "sr", cluster)
        first = cluster.key()
        dom.suspend()
        parked = cluster.key()
        assert parked["state"] == "released" and parked["token"] == first["token"]
        dom.resume()
        assert cluster.key()["state"] == "held" and cluster.key()["token"] == first["token"]
        image = tmp_path / "sr.save"
        dom.save(str(image))
        assert cluster.key() is None                       # QEMU gone: its lease revoked
        start(b, "between", cluster)                       # so another host may take the disk
        with pytest.raises(pyvirt.libvirtError, match="is locked"):
            a.restore(str(image))
        assert a.lookupByName("sr").state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF
        assert len(holders(cluster.disk)) == 1           # the refused restore's QEMU is gone
        b.lookupByName("between").destroy()
        a.restore(str(image))
        restored = cluster.key()
        assert restored["state"] == "held" and restored["token"] > first["token"]
        assert a.lookupByName("sr").state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    finally:
        a.close()
        b.close()


def test_kill9_of_the_lock_daemon_keeps_the_disk_with_its_token(cluster):
    """pyvirtd replaces a lock daemon that died; the new one carries the running guest's
    key over from the dead one's lease (same host, guest and QEMU), with its token."""
    host_a = cluster.host("hostA")
    a, b = pyvirt.open(host_a.uri), pyvirt.open(cluster.host("hostB").uri)
    try:
        dom = start(a, "steady", cluster)
        before = cluster.key()
        (old,) = host_a.lock_daemon_pids()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: (cluster.key() or {}).get("lease") not in (None, before["lease"]), TTL * 3,
                 what="the new lock daemon took the key over")
        after = cluster.key()
        assert after["token"] == before["token"] and after["state"] == "held"
        assert state(dom) == pyvirt.VIR_DOMAIN_RUNNING
        with pytest.raises(pyvirt.libvirtError, match="is locked"):
            start(b, "other", cluster)
    finally:
        a.close()
        b.close()


def test_stalled_pyvirtd_the_lock_daemon_kills_qemu_before_the_lease_expires(cluster):
    """sanlock's rule, whatever pyvirtd does: host A's pyvirtd is frozen (its lock daemon's
    event reaches a socket nobody reads) and A is cut off from etcd; A's lock daemon kills
    the QEMU itself while etcd is still frozen, so before the lease could expire, and host B
    takes the disk only after that, with no QEMU of A left on it."""
    host_a = cluster.host("hostA")
    a, b = pyvirt.open(host_a.uri), pyvirt.open(cluster.host("hostB").uri)
    pyvirtd_a = host_a.daemon.pid
    try:
        start(a, "stalled", cluster, on_lockfailure="pause")
        (qemu_a,) = holders(cluster.disk)
        os.kill(pyvirtd_a, signal.SIGSTOP)
        cluster.etcd.pause()
        try:
            # no QEMU of A on the disk any more, while etcd still cannot have expired the lease
            wait_for(lambda: qemu_a not in holders(cluster.disk), TTL * 3, what="A's QEMU killed")
        finally:
            cluster.etcd.resume()
            os.kill(pyvirtd_a, signal.SIGCONT)
        log = "".join(p.read_text(errors="replace") for p in host_a.daemon.workdir.rglob("pyvirtlockd.log"))
        assert "pyvirtd did not fence stalled in time: killing its QEMU" in log
        wait_for(lambda: _try_start(b, "taker", cluster), TTL * 3, what="host B starts the disk")
        running = holders(cluster.disk)
        assert qemu_a not in running and len(running) == 1
        assert cluster.key()["domain"] == "taker" and b.lookupByName("taker").state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    finally:
        os.kill(pyvirtd_a, signal.SIGCONT)
        a.close()
        b.close()


def test_lock_daemon_killed_while_etcd_is_down_pyvirtd_fences_and_keeps_retrying(cluster):
    """The holder's lock daemon dies (kill -9) while etcd does not answer: its replacement
    cannot start, so pyvirtd fences the guest itself (default <on_lockfailure>: poweroff)
    before the dead daemon's lease could expire, and once etcd answers again it has a lock
    daemon again (it kept trying); host B takes the disk only after A's QEMU is gone."""
    host_a = cluster.host("hostA")
    a, b = pyvirt.open(host_a.uri), pyvirt.open(cluster.host("hostB").uri)
    try:
        dom = start(a, "orphaned", cluster)
        (qemu_a,) = holders(cluster.disk)
        (old,) = host_a.lock_daemon_pids()
        cluster.etcd.pause()
        try:
            os.kill(old, signal.SIGKILL)
            wait_for(lambda: qemu_a not in holders(cluster.disk), TTL * 3, what="A's QEMU fenced")
            wait_for(lambda: state(dom) == pyvirt.VIR_DOMAIN_SHUTOFF, TTL * 3, what="A's guest shut off")
        finally:
            cluster.etcd.resume()
        log = host_a.daemon.log_path.read_text(errors="replace")
        assert "cannot reach a lock daemon again" in log or "no lock daemon took the leases again" in log
        wait_for(lambda: [p for p in host_a.lock_daemon_pids() if p != old], TTL * 6,
                 what="pyvirtd has a lock daemon again")
        wait_for(lambda: _try_start(b, "taker2", cluster), TTL * 3, what="host B starts the disk")
        running = holders(cluster.disk)
        assert qemu_a not in running and len(running) == 1
    finally:
        a.close()
        b.close()


def test_io_error_pause_releases_the_lease_and_keeps_its_state(tmp_path, guests_built):
    """A pause QEMU makes itself on an I/O error (<driver error_policy='stop'>: the guest
    reads a corrupt qcow2 cluster) releases the lease as libvirt's
    virDomainLockProcessPause does, and the released state is kept in the status XML."""
    from test_events_guest_io import corrupt_image
    from test_stats_disk_io import io_initrd
    from guests import LINUX_INITRD, linux_xml

    c = LeaseCluster(tmp_path, ttl=TTL)
    try:
        c.start(("hostA",))
        host = c.host("hostA")
        image = tmp_path / "bad.qcow2"
        corrupt_image(image)
        log = tmp_path / "ioerr.log"
        xml = linux_xml("ioerr", log)
        xml = xml.replace(f"<initrd>{log.parent / LINUX_INITRD.name}</initrd>",
                          f"<initrd>{io_initrd(tmp_path)}</initrd>")
        xml = xml.replace("  </devices>", f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' error_policy='stop'/>
      <source file='{image}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>""")
        conn = pyvirt.open(host.uri)
        try:
            dom = conn.createXML(xml, 0)
            assert "error_policy='stop'" in dom.XMLDesc(0)
            held = _key_of(c, image)
            assert held["state"] == "held"
            wait_for(lambda: dom.state() == [pyvirt.VIR_DOMAIN_PAUSED, pyvirt.VIR_DOMAIN_PAUSED_IOERROR], 120,
                     what="the guest paused on its I/O error")
            wait_for(lambda: (_key_of(c, image) or {}).get("state") == "released", TTL * 3,
                     what="the lease released")
            assert _key_of(c, image)["token"] == held["token"]
            status = host.daemon.state_dir / "run" / "qemu" / "ioerr.xml"
            wait_for(lambda: f":{held['token']}</lockstate>" in status.read_text(), TTL * 3,
                     what="<lockstate> in the status XML")
            dom.destroy()
        finally:
            conn.close()
    finally:
        leaked = c.stop()
    assert not leaked


def _key_of(cluster: LeaseCluster, path) -> dict | None:
    import asyncio
    import hashlib
    import json as _json

    from lease_hosts import PREFIX
    from pyvirt.lockd.etcd_client import EtcdClient

    async def get():
        client = EtcdClient([cluster.etcd.endpoint])
        try:
            kvs = await client.range((PREFIX + hashlib.sha256(str(path).encode()).hexdigest()).encode())
        finally:
            await client.close()
        return {**_json.loads(kvs[0].value), "token": kvs[0].create_revision} if kvs else None
    return asyncio.run(get())


def test_on_lockfailure_restart_is_refused_at_start(cluster):
    a = pyvirt.open(cluster.host("hostA").uri)
    try:
        with pytest.raises(pyvirt.libvirtError) as info:
            start(a, "restarter", cluster, on_lockfailure="restart")
        assert info.value.get_error_code() == ErrorNumber.CONFIG_UNSUPPORTED
        assert info.value.get_error_message().endswith("Failure action restart is not supported by etcd")
        assert a.lookupByName("restarter").state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF
        assert holders(cluster.disk) == [] and cluster.key() is None
    finally:
        a.close()


def test_on_lockfailure_ignore_keeps_the_guest_running(cluster):
    host_a = cluster.host("hostA")
    a = pyvirt.open(host_a.uri)
    try:
        dom = start(a, "stubborn", cluster, on_lockfailure="ignore")
        (qemu_a,) = holders(cluster.disk)
        cluster.etcd.pause()
        try:
            wait_for(lambda: "stubborn lost its lease on" in host_a.daemon.log_path.read_text(errors="replace"),
                     TTL * 3, what="pyvirtd told of the lost lease")
        finally:
            cluster.etcd.resume()
        line = next(ln for ln in host_a.daemon.log_path.read_text(errors="replace").splitlines()
                    if "stubborn lost its lease on" in ln)
        assert line.endswith(": ignore")
        assert state(dom) == pyvirt.VIR_DOMAIN_RUNNING and holders(cluster.disk) == [qemu_a]
    finally:
        a.close()
