"""The QEMU driver with real QEMU processes (TCG), through the public API."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

import pyvirt
from pyvirt.conf import parse_status

from guests import (READY, linux_xml, pid_alive, qemu_pids_under, tiny_xml, wait_for,
                    wait_for_text)


def status_file(root: Path, name: str) -> Path:
    return root / "run" / "qemu" / f"{name}.xml"


def qemu_pid(root: Path, name: str) -> int:
    return parse_status(status_file(root, name).read_text()).pid


def test_lifecycle_states_reasons_and_status_file(embed_uri, embed_root, tmp_path):
    conn = pyvirt.open(embed_uri)
    log = tmp_path / "serial.log"
    dom = conn.defineXML(tiny_xml("life", log))
    assert dom.state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN]
    assert (embed_root / "etc" / "qemu" / "life.xml").exists()

    dom.create()
    assert dom.ID() > 0
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_BOOTED]
    wait_for_text(log, READY)
    status = parse_status(status_file(embed_root, "life").read_text())
    assert (status.state, status.reason) == (pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_BOOTED)
    assert pid_alive(status.pid)
    assert "alias name='serial0'" in dom.XMLDesc(0)
    assert "alias" not in dom.XMLDesc(pyvirt.VIR_DOMAIN_XML_INACTIVE)

    dom.suspend()
    assert dom.state() == [pyvirt.VIR_DOMAIN_PAUSED, pyvirt.VIR_DOMAIN_PAUSED_USER]
    assert parse_status(status_file(embed_root, "life").read_text()).reason == pyvirt.VIR_DOMAIN_PAUSED_USER
    dom.resume()
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_UNPAUSED]

    pid = status.pid
    dom.destroy()
    assert dom.state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_DESTROYED]
    assert not pid_alive(pid)
    assert not status_file(embed_root, "life").exists()
    assert dom.ID() == -1
    dom.undefine()
    assert not (embed_root / "etc" / "qemu" / "life.xml").exists()


def test_lifecycle_events(embed_uri, tmp_path):
    conn = pyvirt.open(embed_uri)
    seen = []
    conn.domainEventRegisterAny(None, pyvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda c, d, ev, detail, _: seen.append((ev, detail)), None)
    dom = conn.createXML(tiny_xml("ev", tmp_path / "s.log"), 0)
    dom.suspend()
    dom.resume()
    dom.destroy()
    E = pyvirt
    wait_for(lambda: (E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_DESTROYED) in seen, 5,
             what="the STOPPED event")
    assert seen[:4] == [(E.VIR_DOMAIN_EVENT_RESUMED, E.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED),
                        (E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_STARTED_BOOTED),
                        (E.VIR_DOMAIN_EVENT_SUSPENDED, E.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED),
                        (E.VIR_DOMAIN_EVENT_RESUMED, E.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED)]


def test_start_paused(embed_uri, tmp_path):
    conn = pyvirt.open(embed_uri)
    dom = conn.createXML(tiny_xml("paused", tmp_path / "s.log"), pyvirt.VIR_DOMAIN_START_PAUSED)
    assert dom.state() == [pyvirt.VIR_DOMAIN_PAUSED, pyvirt.VIR_DOMAIN_PAUSED_USER]
    dom.resume()
    wait_for_text(tmp_path / "s.log", READY)
    dom.destroy()


def test_guest_shutdown_via_acpi(embed_uri, tmp_path):
    conn = pyvirt.open(embed_uri)
    log = tmp_path / "linux.log"
    dom = conn.createXML(linux_xml("linux", log), 0)
    wait_for_text(log, READY, timeout=60)
    dom.shutdown()
    def gone():
        try:
            conn.lookupByName("linux")
        except pyvirt.libvirtError as e:
            return e.get_error_code() == pyvirt.VIR_ERR_NO_DOMAIN
        return False
    wait_for(gone, 60, what="the transient guest to power off and vanish")


def test_guest_shutdown_persistent_reason(embed_uri, tmp_path):
    conn = pyvirt.open(embed_uri)
    log = tmp_path / "linux.log"
    dom = conn.defineXML(linux_xml("linuxp", log))
    dom.create()
    wait_for_text(log, READY, timeout=60)
    dom.shutdown()
    wait_for(lambda: dom.state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF, 60, what="the guest to power off")
    assert dom.state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN]


def test_killed_qemu_becomes_crashed_with_event(embed_uri, embed_root, tmp_path):
    conn = pyvirt.open(embed_uri)
    seen = []
    conn.domainEventRegisterAny(None, pyvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda c, d, ev, detail, _: seen.append((d.name(), ev, detail)), None)
    dom = conn.defineXML(tiny_xml("victim", tmp_path / "s.log"))
    dom.create()
    pid = qemu_pid(embed_root, "victim")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: dom.state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF, 10, what="the crash to be noticed")
    assert dom.state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_CRASHED]
    assert ("victim", pyvirt.VIR_DOMAIN_EVENT_STOPPED, pyvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED) in seen
    assert not status_file(embed_root, "victim").exists()


def test_restart_recovery(embed_uri, embed_root, tmp_path):
    from pyvirt import aio
    from pyvirt.drivers.qemu import embed

    conn = pyvirt.open(embed_uri)
    keep = conn.defineXML(tiny_xml("keep", tmp_path / "keep.log"))
    keep.create()
    keep.suspend()
    conn.createXML(tiny_xml("doomed", tmp_path / "doomed.log"), 0)
    keep_pid, doomed_pid = qemu_pid(embed_root, "keep"), qemu_pid(embed_root, "doomed")
    conn.close()
    aio.run(embed.close_all())          # the manager goes away; guests stay
    assert pid_alive(keep_pid) and pid_alive(doomed_pid)
    os.kill(doomed_pid, signal.SIGKILL)  # one guest dies while nobody watches
    wait_for(lambda: not pid_alive(doomed_pid), 5, what="the killed QEMU to exit")

    conn = pyvirt.open(embed_uri)        # a new manager on the same root
    keep = conn.lookupByName("keep")
    assert keep.state() == [pyvirt.VIR_DOMAIN_PAUSED, pyvirt.VIR_DOMAIN_PAUSED_USER]
    assert keep.ID() > 0
    with pytest.raises(pyvirt.libvirtError) as info:   # transient and dead: gone
        conn.lookupByName("doomed")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_NO_DOMAIN
    assert not status_file(embed_root, "doomed").exists()
    keep.resume()                        # the monitor works after reconnecting
    assert keep.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_UNPAUSED]
    os.kill(keep_pid, signal.SIGKILL)    # and an adopted QEMU's exit is noticed (pidfd)
    wait_for(lambda: keep.state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF, 10, what="the adopted QEMU's exit")
    assert keep.state()[1] == pyvirt.VIR_DOMAIN_SHUTOFF_CRASHED


def test_restart_recovery_of_persistent_crashed_guest(embed_uri, embed_root, tmp_path):
    from pyvirt import aio
    from pyvirt.drivers.qemu import embed

    conn = pyvirt.open(embed_uri)
    dom = conn.defineXML(tiny_xml("pers", tmp_path / "p.log"))
    dom.create()
    pid = qemu_pid(embed_root, "pers")
    aio.run(embed.close_all())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 5, what="QEMU to exit")
    conn = pyvirt.open(embed_uri)
    assert conn.lookupByName("pers").state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_CRASHED]
    assert not status_file(embed_root, "pers").exists()


def test_autodestroy_on_connection_close(embed_uri, embed_root, tmp_path):
    owner, watcher = pyvirt.open(embed_uri), pyvirt.open(embed_uri)
    dom = owner.defineXML(tiny_xml("ad", tmp_path / "s.log"))
    dom.createWithFlags(pyvirt.VIR_DOMAIN_START_AUTODESTROY)
    pid = qemu_pid(embed_root, "ad")
    owner.close()
    assert not pid_alive(pid)
    assert watcher.lookupByName("ad").state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_DESTROYED]


def test_autodestroy_of_a_transient_guest_removes_it(embed_uri, embed_root, tmp_path):
    owner, watcher = pyvirt.open(embed_uri), pyvirt.open(embed_uri)
    owner.createXML(tiny_xml("adt", tmp_path / "s.log"), pyvirt.VIR_DOMAIN_START_AUTODESTROY)
    pid = qemu_pid(embed_root, "adt")
    assert watcher.lookupByName("adt").isActive()
    owner.close()
    assert not pid_alive(pid)
    with pytest.raises(pyvirt.libvirtError) as info:   # transient: gone entirely
        watcher.lookupByName("adt")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_NO_DOMAIN


def test_autodestroy_forgotten_when_guest_stops(embed_uri, tmp_path):
    """A guest destroyed and restarted by someone else is not killed by the first owner's close."""
    owner, other = pyvirt.open(embed_uri), pyvirt.open(embed_uri)
    owner.defineXML(tiny_xml("ad2", tmp_path / "s.log"))
    owner.lookupByName("ad2").createWithFlags(pyvirt.VIR_DOMAIN_START_AUTODESTROY)
    dom = other.lookupByName("ad2")
    dom.destroy()
    dom.create()
    owner.close()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    dom.destroy()


def test_foreign_domain_type_refused(embed_uri):
    conn = pyvirt.open(embed_uri)
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.defineXML("<domain type='lxc'><name>c</name><memory>1024</memory><os><type>exe</type></os></domain>")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_CONFIG_UNSUPPORTED
    assert "'lxc'" in info.value.get_error_message() and "qemu driver" in info.value.get_error_message()


def test_bad_emulator_leaves_nothing_behind(embed_uri, embed_root, tmp_path):
    conn = pyvirt.open(embed_uri)
    xml = tiny_xml("bademu", tmp_path / "s.log").replace(
        "<devices>", "<devices>\n    <emulator>/nonexistent/qemu-system-x86_64</emulator>")
    dom = conn.defineXML(xml)
    with pytest.raises(pyvirt.libvirtError) as info:
        dom.create()
    assert "/nonexistent/qemu-system-x86_64" in info.value.get_error_message()
    assert "No such file" in info.value.get_error_message()
    assert dom.state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_FAILED]
    assert not status_file(embed_root, "bademu").exists()


def test_occupied_vnc_port_quotes_qemu(embed_uri, embed_root, tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        if port < 5900:
            blocker.close()
            blocker = socket.socket()
            blocker.bind(("127.0.0.1", 5999))
            blocker.listen(1)
            port = 5999
        conn = pyvirt.open(embed_uri)
        xml = tiny_xml("vncbusy", tmp_path / "s.log", extra_devices=f"""
    <graphics type='vnc' port='{port}' autoport='no' listen='127.0.0.1'/>""")
        with pytest.raises(pyvirt.libvirtError) as info:
            conn.createXML(xml, 0)
    msg = info.value.get_error_message()
    assert "Address already in use" in msg, msg
    assert not qemu_pids_under(tmp_path)
    assert not status_file(embed_root, "vncbusy").exists()


def test_vnc_autoport_allocates_a_free_port(embed_uri, tmp_path):
    conn = pyvirt.open(embed_uri)
    xml = tiny_xml("vncauto", tmp_path / "s.log",
                   extra_devices="\n    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>")
    dom = conn.createXML(xml, 0)
    from pyvirt.conf import parse
    port = parse(dom.XMLDesc(0)).devices.graphics[0].port
    assert port >= 5900
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert s.recv(12).startswith(b"RFB ")
    dom.destroy()


def test_kvm_guest_when_available(embed_uri, tmp_path):
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        pytest.skip("/dev/kvm cannot be opened")
    conn = pyvirt.open(embed_uri)
    log = tmp_path / "kvm.log"
    dom = conn.createXML(tiny_xml("kvmguest", log, virt="kvm"), 0)
    wait_for_text(log, READY, timeout=60)
    dom.destroy()


def test_unknown_flags_and_missing_domain(embed_uri):
    conn = pyvirt.open(embed_uri)
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.createXML("<domain type='qemu'><name>x</name><memory>1024</memory><os><type>hvm</type></os></domain>",
                       1 << 20)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    with pytest.raises(pyvirt.libvirtError) as info:
        conn.lookupByName("ghost")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_NO_DOMAIN
    assert info.value.get_error_domain() == pyvirt.VIR_FROM_QEMU


def test_shutoff_reason_survives_manager_restart(embed_uri, tmp_path):
    from pyvirt import aio
    from pyvirt.drivers.qemu import embed

    conn = pyvirt.open(embed_uri)
    dom = conn.defineXML(tiny_xml("reason", tmp_path / "s.log"))
    dom.create()
    dom.destroy()
    aio.run(embed.close_all())
    conn = pyvirt.open(embed_uri)
    assert conn.lookupByName("reason").state() == [pyvirt.VIR_DOMAIN_SHUTOFF, pyvirt.VIR_DOMAIN_SHUTOFF_DESTROYED]


def test_graceful_destroy_uses_sigterm_only(embed_uri, embed_root, tmp_path):
    conn = pyvirt.open(embed_uri)
    dom = conn.defineXML(tiny_xml("graceful", tmp_path / "s.log"))
    dom.create()
    pid = qemu_pid(embed_root, "graceful")
    os.kill(pid, signal.SIGSTOP)          # a QEMU that cannot act on SIGTERM
    try:
        with pytest.raises(pyvirt.libvirtError) as info:
            dom.destroyFlags(pyvirt.VIR_DOMAIN_DESTROY_GRACEFUL)
        assert "SIGTERM" in info.value.get_error_message()
        assert pid_alive(pid) and dom.isActive()
    finally:
        os.kill(pid, signal.SIGCONT)      # the pending SIGTERM now ends it
    wait_for(lambda: dom.state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF or None, 10, what="QEMU to exit")
