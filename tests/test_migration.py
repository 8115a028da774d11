"""Live migration between two real pyvirtd hosts with real QEMU guests.

Every test ends with the invariant checked: exactly one QEMU runs the
guest, on the host that should have it, and the daemons leave no QEMU
behind (the fixture kills and reports leftovers).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import uuid

import pytest

import pyvirt
from pyvirt import aio
from daemons import Pyvirtd, qemu_pid, running_copies, running_pair
from guests import READY, pid_alive, tiny_xml, wait_for, wait_for_text

pytestmark = pytest.mark.qemu


def make_hosts(tmp_path, extra: str = "", same_uuid: bool = False, verbose: bool = False):
    a = Pyvirtd(tmp_path / "a", extra_config=extra, verbose=verbose)
    b = Pyvirtd(tmp_path / "b", extra_config=extra, verbose=verbose,
                **({"host_uuid": a.host_uuid} if same_uuid else {}))
    return a, b


@pytest.fixture
def hosts(request, tmp_path, guests_built):
    marker = request.node.get_closest_marker("hosts")
    kwargs = marker.kwargs if marker else {}
    with running_pair(*make_hosts(tmp_path, **kwargs)) as pair:
        yield pair


def start_guest(a: Pyvirtd, name: str = "mig", cmdline: str = "dirty=8:4", persistent: bool = False,
                **kw) -> tuple[pyvirt.virConnect, pyvirt.virDomain, str]:
    conn = pyvirt.open(a.uri)
    uid = str(uuid.uuid4())
    log = a.workdir / f"{name}.log"
    xml = tiny_xml(name, log, cmdline=cmdline, uuid=uid, **kw)
    if persistent:
        dom = conn.defineXML(xml)
        dom.create()
    else:
        dom = conn.createXML(xml, 0)
    wait_for_text(log, "PYVIRT-HEARTBEAT 1" if "dirty" in (cmdline or "") else READY)
    return conn, dom, uid


def heartbeat(a: Pyvirtd, name: str = "mig") -> int:
    """The guest's last complete heartbeat (the line being written may be half there)."""
    beats = re.findall(r"PYVIRT-HEARTBEAT (\d+)\r?\n", (a.workdir / f"{name}.log").read_text(errors="replace"))
    return int(beats[-1]) if beats else 0


def assert_only_on(b: Pyvirtd, uid: str, name: str, hosts: tuple[Pyvirtd, Pyvirtd]) -> None:
    assert running_copies(list(hosts), uid) == 1
    pid = qemu_pid(b, name)
    assert pid is not None and pid_alive(pid)


def test_live_v3_params(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a)
    cb = pyvirt.open(b.uri)
    before = heartbeat(a)
    moved = dom.migrate(cb, pyvirt.VIR_MIGRATE_LIVE)
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_only_on(b, uid, "mig", hosts)
    with pytest.raises(pyvirt.libvirtError):          # transient source: gone
        ca.lookupByName("mig")
    wait_for(lambda: heartbeat(a) > before + 1, 10, what="the guest to keep running on B")
    moved.destroy()


@pytest.mark.hosts(extra="migration_params = 0")
def test_live_plain_v3(hosts):
    a, b = hosts
    _, dom, uid = start_guest(a)
    moved = dom.migrate(pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE)
    assert moved.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert_only_on(b, uid, "mig", hosts)


@pytest.mark.hosts(extra="migration_params = 0\nmigration_v3 = 0")
def test_live_v2(hosts):
    a, b = hosts
    _, dom, uid = start_guest(a)
    moved = dom.migrate(pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE)
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_only_on(b, uid, "mig", hosts)


def test_non_live_keeps_running_guest_running(hosts):
    a, b = hosts
    _, dom, uid = start_guest(a)
    moved = dom.migrate(pyvirt.open(b.uri), 0)
    assert moved.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert_only_on(b, uid, "mig", hosts)


def test_paused_guest_stays_paused(hosts):
    a, b = hosts
    _, dom, uid = start_guest(a)
    dom.suspend()
    moved = dom.migrate(pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE)
    assert moved.state()[0] == pyvirt.VIR_DOMAIN_PAUSED
    assert running_copies(list(hosts), uid) == 0          # no copy runs its CPUs
    moved.resume()
    assert moved.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert_only_on(b, uid, "mig", hosts)


def test_persistent_undefinesource_and_dname(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a, persistent=True)
    cb = pyvirt.open(b.uri)
    flags = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_PERSIST_DEST | pyvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    moved = dom.migrate(cb, flags, "renamed")
    assert moved.name() == "renamed" and moved.isPersistent() == 1
    assert (b.state_dir / "etc" / "qemu" / "renamed.xml").exists()
    assert not (a.state_dir / "etc" / "qemu" / "mig.xml").exists()
    with pytest.raises(pyvirt.libvirtError):
        ca.lookupByName("mig")
    assert running_copies([a, b], uid) == 1
    moved.destroy()
    assert cb.lookupByName("renamed").state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF   # persistent on B


def test_application_xml_allowed_and_abi_change_refused(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a)
    cb = pyvirt.open(b.uri)
    xml = dom.XMLDesc(pyvirt.VIR_DOMAIN_XML_MIGRATABLE | pyvirt.VIR_DOMAIN_XML_INACTIVE)
    bad = xml.replace("<vcpu placement='static'>1</vcpu>", "<vcpu placement='static'>2</vcpu>")
    assert bad != xml
    with pytest.raises(pyvirt.libvirtError) as info:
        dom.migrate2(cb, bad, pyvirt.VIR_MIGRATE_LIVE)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_CONFIG_UNSUPPORTED
    assert "vCPU" in info.value.get_error_message()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING           # refused before anything moved
    good = xml.replace("<name>mig</name>", "<name>mig</name>\n  <title>moved with new XML</title>")
    moved = dom.migrate2(cb, good, pyvirt.VIR_MIGRATE_LIVE)
    assert "<title>moved with new XML</title>" in moved.XMLDesc(0)
    assert_only_on(b, uid, "mig", hosts)


@pytest.mark.hosts(same_uuid=True)
def test_same_host_refused(hosts):
    a, b = hosts
    _, dom, uid = start_guest(a)
    with pytest.raises(pyvirt.libvirtError) as info:
        dom.migrate(pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE)
    assert "same host" in info.value.get_error_message()
    assert a.host_uuid in info.value.get_error_message()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert running_copies([a, b], uid) == 1


def test_unknown_mandatory_cookie_feature_refused(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a)
    cb = pyvirt.open(b.uri)
    src, dst = ca._drv, cb._drv
    cookie, xml = aio.run(src.domain_migrate_begin3(dom._ref, None, pyvirt.VIR_MIGRATE_LIVE, None, 0))
    bogus = re.sub(rb"(</hostuuid>)", rb"\1<feature name='teleport'/>", cookie)
    with pytest.raises(pyvirt.libvirtError) as info:
        aio.run(dst.domain_migrate_prepare3(bogus, None, pyvirt.VIR_MIGRATE_LIVE, None, 0, xml))
    assert "Unknown migration cookie feature teleport" in info.value.get_error_message()
    aio.run(src.domain_migrate_confirm3(dom._ref, b"", pyvirt.VIR_MIGRATE_LIVE, 1))
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert qemu_pid(b, "mig") is None


def _migrate_in_thread(dom, dconn, flags, params=None):
    result: dict = {}

    def run():
        try:
            result["dom"] = dom.migrate3(dconn, params or {}, flags)
        except pyvirt.libvirtError as exc:
            result["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _wait_job_active(conn, name):
    def active():
        info = conn.lookupByName(name).jobInfo()
        return info[0] != pyvirt.VIR_DOMAIN_JOB_NONE and info[4] > 0
    wait_for(active, 20, interval=0.05, what="the migration job to be under way")


def test_abort_mid_migration_leaves_source_running(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    thread, result = _migrate_in_thread(dom, pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE, {"bandwidth": 4})
    watcher = pyvirt.open(a.uri)
    _wait_job_active(watcher, "mig")
    watcher.lookupByName("mig").abortJob()
    thread.join(30)
    assert not thread.is_alive()
    assert result["error"].get_error_code() == pyvirt.VIR_ERR_OPERATION_ABORTED
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    wait_for(lambda: qemu_pid(b, "mig") is None, 10, what="the destination QEMU to go")
    assert running_copies([a, b], uid) == 1
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before, 5, what="the source guest to keep running")


def test_speed_and_downtime_during_migration(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    thread, result = _migrate_in_thread(dom, pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE, {"bandwidth": 2})
    watcher = pyvirt.open(a.uri)
    _wait_job_active(watcher, "mig")
    wdom = watcher.lookupByName("mig")
    wdom.migrateSetMaxDowntime(777)
    wdom.migrateSetMaxSpeed(3)
    def params():
        import json
        out = subprocess.run(["virsh", "-c", a.uri, "qemu-monitor-command", "mig",
                              '{"execute":"query-migrate-parameters"}'], capture_output=True, text=True)
        return json.loads(out.stdout)["return"]
    wait_for(lambda: params()["max-bandwidth"] == 3 << 20 and params()["downtime-limit"] == 777, 10,
             what="QEMU to take the new speed and downtime")
    assert wdom.migrateGetMaxSpeed() == 3
    stats = wdom.jobStats()
    assert stats["operation"] == pyvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
    assert stats["data_total"] > 0 and "memory_processed" in stats
    wdom.abortJob()
    thread.join(30)
    assert running_copies([a, b], uid) == 1


@pytest.mark.hosts(verbose=True)
def test_spice_graphics_cookie_and_client_migrate_info(hosts):
    a, b = hosts
    graphics = "\n    <graphics type='spice' autoport='yes' listen='127.0.0.1'/>"
    ca, dom, uid = start_guest(a, extra_devices=graphics)
    cb = pyvirt.open(b.uri)
    src, dst = ca._drv, cb._drv
    cookie, xml = aio.run(src.domain_migrate_begin3(dom._ref, None, pyvirt.VIR_MIGRATE_LIVE, None, 0))
    cookie, uri = aio.run(dst.domain_migrate_prepare3(cookie, None, pyvirt.VIR_MIGRATE_LIVE, None, 0, xml))
    text = cookie.rstrip(b"\0").decode()
    assert "<graphics type='spice'" in text and "listen='127.0.0.1'" in text
    port = int(text.split("port='", 1)[1].split("'", 1)[0])
    cookie = aio.run(src.domain_migrate_perform3(dom._ref, None, cookie, None, uri, pyvirt.VIR_MIGRATE_LIVE, None, 0))
    ddom, cookie = aio.run(dst.domain_migrate_finish3("mig", cookie, None, uri, pyvirt.VIR_MIGRATE_LIVE, 0))
    aio.run(src.domain_migrate_confirm3(dom._ref, cookie, pyvirt.VIR_MIGRATE_LIVE, 0))
    log = a.log_path.read_text()
    assert "client_migrate_info" in log, "no client_migrate_info on the source's monitor"
    sent = re.sub(r"\s+", "", log[log.index("client_migrate_info"):][:400])   # the QMP command as logged
    assert f'"port":{port}' in sent and '"hostname":"127.0.0.1"' in sent and '"protocol":"spice"' in sent
    assert running_copies([a, b], uid) == 1


# --- faults: exactly one running copy, no leftover QEMU, the first error reported ---------

def test_client_gone_between_prepare_and_finish(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a)
    cb = pyvirt.open(b.uri)
    src, dst = ca._drv, cb._drv
    cookie, xml = aio.run(src.domain_migrate_begin3(dom._ref, None, pyvirt.VIR_MIGRATE_LIVE, None, 0))
    aio.run(dst.domain_migrate_prepare3(cookie, None, pyvirt.VIR_MIGRATE_LIVE, None, 0, xml))
    dst_pid = qemu_pid(b, "mig")
    assert dst_pid and pid_alive(dst_pid)
    cb.close()                                      # the client vanishes before Finish
    wait_for(lambda: not pid_alive(dst_pid), 10, what="autodestroy of the incoming guest")
    ca.close()                                      # and from the source too: its job is cleaned up
    assert pyvirt.open(a.uri).lookupByName("mig").state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert running_copies([a, b], uid) == 1


def test_destination_qemu_killed_during_perform(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a, cmdline="dirty=64:20", memory_mib=256)
    thread, result = _migrate_in_thread(dom, pyvirt.open(b.uri), pyvirt.VIR_MIGRATE_LIVE, {"bandwidth": 4})
    _wait_job_active(pyvirt.open(a.uri), "mig")
    import os, signal
    os.kill(qemu_pid(b, "mig"), signal.SIGKILL)
    thread.join(30)
    err = result["error"]
    assert err.get_error_code() == pyvirt.VIR_ERR_OPERATION_FAILED
    assert "migration out job" in err.get_error_message()          # Perform's error, not Finish's
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert running_copies([a, b], uid) == 1
    wait_for(lambda: qemu_pid(b, "mig") is None, 10, what="the destination to forget the guest")


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) not installed")
def test_finish_fails_to_resume(hosts):
    """The shared disk image is damaged between Perform and Finish: the destination
    cannot activate it when resuming, is killed, Finish's error is the one reported,
    and (the image repaired) Confirm resumes the source: one running copy."""
    a, b = hosts
    disk = a.workdir / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    extra = f"""
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"""
    ca, dom, uid = start_guest(a, extra_devices=extra)
    cb = pyvirt.open(b.uri)
    src, dst = ca._drv, cb._drv
    flags = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_UNSAFE     # one local image, on purpose
    cookie, xml = aio.run(src.domain_migrate_begin3(dom._ref, None, flags, None, 0))
    cookie, uri = aio.run(dst.domain_migrate_prepare3(cookie, None, flags, None, 0, xml))
    cookie = aio.run(src.domain_migrate_perform3(dom._ref, None, cookie, None, uri, flags, None, 0))
    with open(disk, "r+b") as f:
        magic = f.read(4)
        f.seek(0)
        f.write(b"JUNK")
    try:
        with pytest.raises(pyvirt.libvirtError) as info:
            aio.run(dst.domain_migrate_finish3("mig", cookie, None, uri, flags, 0))
    finally:
        with open(disk, "r+b") as f:
            f.write(magic)
    assert "cont" in info.value.get_error_message()
    assert qemu_pid(b, "mig") is None                     # the destination was killed
    aio.run(src.domain_migrate_confirm3(dom._ref, b"", flags, 1))
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED]
    assert running_copies([a, b], uid) == 1


def test_virsh_migrate_live_verbose(hosts):
    a, b = hosts
    _, dom, uid = start_guest(a)
    out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--verbose", "mig", b.uri],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Migration: [100 %]" in out.stderr
    assert_only_on(b, uid, "mig", hosts)


@pytest.mark.hosts(extra="migration_params = 0")
def test_virsh_migrate_plain_v3_and_domjobinfo(hosts):
    a, b = hosts
    _, dom, uid = start_guest(a, cmdline="dirty=32:10", memory_mib=128)
    mig = subprocess.Popen(["virsh", "-c", a.uri, "migrate", "--live", "--bandwidth", "8", "mig", b.uri],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_job_active(pyvirt.open(a.uri), "mig")
        info = subprocess.run(["virsh", "-c", a.uri, "domjobinfo", "mig"], capture_output=True, text=True)
        assert "Job type:         Unbounded" in info.stdout, info
        assert "Operation:        Outgoing migration" in info.stdout
        abort = subprocess.run(["virsh", "-c", a.uri, "domjobabort", "mig"], capture_output=True, text=True)
        assert abort.returncode == 0, abort.stderr
    finally:
        out, err = mig.communicate(timeout=60)
    assert mig.returncode == 1 and "canceled by client" in err
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert running_copies([a, b], uid) == 1


def test_cli_migration_tuning_and_job_commands(hosts):
    import sys
    a, b = hosts
    start_guest(a)
    out = subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", a.uri,
                          "migrate-setspeed mig 7; migrate-getspeed mig; migrate-setmaxdowntime mig 400; "
                          "migrate-getmaxdowntime mig; domjobinfo mig"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["7", "400", "Job", "type:", "None"]
    out = subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", a.uri, "migrate", "--live", "--timing",
                          "mig", b.uri], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Migration took" in out.stdout
    out = subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", a.uri, "domjobabort", "nosuch"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "failed to get domain 'nosuch'" in out.stderr
