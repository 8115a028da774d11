"""Unit tests, one layer each, for what QEMU cannot be made to do on this host.

* The wire: every event id encodes (daemon/events.py) into its callback
  message and, up to DEVICE_REMOVED, its legacy one, and decodes (what the
  remote driver does) back to the same DomainEvent; libvirt-python's
  callback shapes (graphics addresses as dicts, typed parameters as a dict).
* The translation of QEMU events the test guests never raise (a watchdog
  firing, a disk I/O error, a balloon driver answering, SPICE), on a real
  QemuDomainObj, from the event data QEMU 7.2's QAPI schema documents.
* virsh's event lines for those ids (pyvirt event's formatter).
"""

from __future__ import annotations

import pytest

from pyvirt import conf
from pyvirt.api.lifecycle import callback_arguments
from pyvirt.cli.lifecycle_cmds import EVENT_NAMES, event_text
from pyvirt.daemon import events as forms
from pyvirt.driver import DomainEvent
from pyvirt.drivers.qemu import qemu_events
from pyvirt.drivers.qemu.command import assign_aliases
from pyvirt.drivers.qemu.domainobj import QemuDomainObj
from pyvirt.drivers.qemu.jobs import AsyncJob, AsyncJobState
from pyvirt.enums import DomainState, EventID, PausedReason, ShutoffReason
from pyvirt.refs import DomainRef
from pyvirt.rpc import wire
from pyvirt.rpc.protocol import REMOTE
from pyvirt.rpc.protocol.remote import EVENT_CALLBACK_PROCEDURES
from pyvirt.rpc.protocol.remote_lifecycle import callback_event_fields

DOM = DomainRef("d", bytes(range(16)), 3)
ULL, INT = 4, 1

# One payload per id, in the wire's types: the fields after dom (DomainEvent's convention).
SAMPLES: dict[EventID, tuple] = {
    EventID.LIFECYCLE: (5, 1),
    EventID.REBOOT: (),
    EventID.RTC_CHANGE: (-3600,),
    EventID.WATCHDOG: (2,),
    EventID.IO_ERROR: ("/var/d.qcow2", "virtio-disk0", 1),
    EventID.GRAPHICS: (0, (0, "127.0.0.1", "5900"), (1, "::1", "40000"), "vnc",
                       [("x509dname", "CN=a"), ("saslUsername", "bob")]),
    EventID.IO_ERROR_REASON: ("/var/d.qcow2", "virtio-disk0", 1, "enospc"),
    EventID.CONTROL_ERROR: (),
    EventID.BLOCK_JOB: ("/var/d.qcow2", 1, 0),
    EventID.DISK_CHANGE: ("/old.iso", None, "ide0-1-0", 1),
    EventID.TRAY_CHANGE: ("ide0-1-0", 0),
    EventID.PMWAKEUP: (0,),
    EventID.PMSUSPEND: (0,),
    EventID.BALLOON_CHANGE: (65536,),
    EventID.PMSUSPEND_DISK: (0,),
    EventID.DEVICE_REMOVED: ("virtio-disk1",),
    EventID.BLOCK_JOB_2: ("vda", 2, 3),
    EventID.TUNABLE: ([("cputune.vcpupin0", 7, "0-1"), ("blkdeviotune.total_bytes_sec", ULL, 1000)],),
    EventID.AGENT_LIFECYCLE: (1, 2),
    EventID.DEVICE_ADDED: ("net1",),
    EventID.MIGRATION_ITERATION: (3,),
    EventID.JOB_COMPLETED: ([("operation", INT, 5), ("memory_total", ULL, 2**31)],),
    EventID.DEVICE_REMOVAL_FAILED: ("virtio-disk1",),
    EventID.METADATA_CHANGE: (2, "http://x/"),
    EventID.BLOCK_THRESHOLD: ("vda", "/var/d.qcow2", 1024, 12),
    EventID.MEMORY_FAILURE: (1, 2, 3),
    EventID.MEMORY_DEVICE_SIZE_CHANGE: ("dimm0", 1048576),
}


def _decode(packet: bytes) -> tuple[int, tuple]:
    framer = wire.Framer()
    framer.receive_data(packet)
    msg = framer.next_message()
    assert msg.header.type == wire.MessageType.MESSAGE and msg.header.prog == wire.Program.REMOTE
    return msg.header.proc, REMOTE[msg.header.proc].decode_args(msg.payload)


def _plain(value):
    """Lists and tuples alike, as XDR decodes arrays to lists and structs to tuples."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def test_every_event_id_has_a_sample_and_a_callback_message():
    assert set(SAMPLES) == set(EventID) == set(EVENT_CALLBACK_PROCEDURES)


@pytest.mark.parametrize("event_id", list(EventID), ids=lambda e: e.name)
def test_callback_form_round_trip(event_id):
    event = DomainEvent(int(event_id), DOM, SAMPLES[event_id])
    proc, args = _decode(forms.callback_packet(42, event))
    assert proc == EVENT_CALLBACK_PROCEDURES[event_id].number
    callback_id, dom, detail = callback_event_fields(REMOTE[proc], args)
    assert (callback_id, dom) == (42, DOM)
    assert _plain(detail) == _plain(SAMPLES[event_id])


@pytest.mark.parametrize("event_id", list(EventID), ids=lambda e: e.name)
def test_legacy_form(event_id):
    event = DomainEvent(int(event_id), DOM, SAMPLES[event_id])
    packet = forms.legacy_packet(event)
    if event_id > EventID.DEVICE_REMOVED:
        assert packet is None and event_id not in forms.LEGACY_PROCEDURES
        return
    proc, args = _decode(packet)
    assert REMOTE[proc].name == ("DOMAIN_EVENT_LIFECYCLE" if event_id == 0 else f"DOMAIN_EVENT_{event_id.name}")
    dom, *fields = args
    assert dom == DOM
    # the PM events' legacy message has no reason
    expected = () if event_id in (EventID.PMWAKEUP, EventID.PMSUSPEND, EventID.PMSUSPEND_DISK) else SAMPLES[event_id]
    assert _plain(fields) == _plain(expected)


def test_legacy_numbers_are_libvirt_s():
    assert {p.name: p.number for p in forms.LEGACY_PROCEDURES.values()} == {
        "DOMAIN_EVENT_LIFECYCLE": 107, "DOMAIN_EVENT_REBOOT": 169, "DOMAIN_EVENT_RTC_CHANGE": 170,
        "DOMAIN_EVENT_WATCHDOG": 171, "DOMAIN_EVENT_IO_ERROR": 172, "DOMAIN_EVENT_GRAPHICS": 173,
        "DOMAIN_EVENT_IO_ERROR_REASON": 195, "DOMAIN_EVENT_CONTROL_ERROR": 224, "DOMAIN_EVENT_BLOCK_JOB": 241,
        "DOMAIN_EVENT_DISK_CHANGE": 248, "DOMAIN_EVENT_TRAY_CHANGE": 268, "DOMAIN_EVENT_PMWAKEUP": 269,
        "DOMAIN_EVENT_PMSUSPEND": 270, "DOMAIN_EVENT_BALLOON_CHANGE": 276, "DOMAIN_EVENT_PMSUSPEND_DISK": 292,
        "DOMAIN_EVENT_DEVICE_REMOVED": 311,
    }


def test_delivery_follows_registrations():
    class Client:
        sent: list[bytes] = []

        def send(self, packet: bytes) -> None:
            self.sent.append(packet)

    client = Client()
    other = DomainRef("e", bytes(16), 4)
    callbacks = {7: (int(EventID.REBOOT), None), 8: (int(EventID.REBOOT), DOM.uuid),
                 9: (int(EventID.REBOOT), other.uuid), 10: (int(EventID.WATCHDOG), None)}
    forms.deliver(client, {int(EventID.REBOOT)}, callbacks, DomainEvent(int(EventID.REBOOT), DOM, ()))
    got = [_decode(p) for p in client.sent]
    assert [proc for proc, _ in got] == [169, 319, 319]            # legacy once, callbacks 7 and 8
    assert [args[0] for _, args in got[1:]] == [7, 8]


def test_registration_checks():
    forms.check_callback_id(26)
    with pytest.raises(Exception, match="unsupported event ID 27"):
        forms.check_callback_id(27)
    with pytest.raises(Exception, match="unsupported event ID 16"):
        forms.check_legacy_id(16, set())
    with pytest.raises(Exception, match="event callback already tracked"):
        forms.check_legacy_id(3, {3})


def test_libvirt_python_callback_shapes():
    phase, local, remote, scheme, subject = callback_arguments(EventID.GRAPHICS, SAMPLES[EventID.GRAPHICS])
    assert local == {"family": 0, "node": "127.0.0.1", "service": "5900"}
    assert remote == {"family": 1, "node": "::1", "service": "40000"}
    assert subject == [("x509dname", "CN=a"), ("saslUsername", "bob")]
    assert callback_arguments(EventID.JOB_COMPLETED, SAMPLES[EventID.JOB_COMPLETED]) == (
        {"operation": 5, "memory_total": 2**31},)
    assert callback_arguments(EventID.TRAY_CHANGE, ("ide0-1-0", 1)) == ("ide0-1-0", 1)


# -- QEMU's events, translated -------------------------------------------------------------

@pytest.fixture
def obj(tmp_path):
    d = conf.parse(f"""<domain type='qemu'><name>d</name><memory unit='MiB'>128</memory>
      <os><type>hvm</type></os><devices>
        <disk type='file' device='disk'><source file='{tmp_path}/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
        <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
      </devices></domain>""")
    live = d.copy()
    assign_aliases(live)
    o = QemuDomainObj(d, persistent=True, live=live, id=3, state=DomainState.RUNNING)
    return o


def _translated(obj, name, data):
    return [(e.event_id, e.detail) for e in qemu_events.translate(obj, name, data)]


def test_watchdog_io_error_balloon_spice_and_jobs(obj, tmp_path):
    assert _translated(obj, "WATCHDOG", {"action": "inject-nmi"}) == [(EventID.WATCHDOG, (6,))]
    # a watchdog that pauses: paused (watchdog) at once, as libvirt, before QEMU's STOP
    assert _translated(obj, "WATCHDOG", {"action": "pause"}) == [(EventID.WATCHDOG, (1,)),
                                                                 (EventID.LIFECYCLE, (3, 3))]
    assert (obj.state, obj.reason) == (DomainState.PAUSED, PausedReason.WATCHDOG)
    assert _translated(obj, "WATCHDOG", {"action": "pause"}) == [(EventID.WATCHDOG, (1,))]   # paused already
    obj.state = DomainState.RUNNING
    io = {"device": "", "node-name": "libvirt-1-format", "operation": "write", "action": "stop",
          "nospace": True, "reason": "No space left on device"}
    disk = f"{tmp_path}/a.qcow2"
    assert _translated(obj, "BLOCK_IO_ERROR", io) == [
        (EventID.IO_ERROR, (disk, "virtio-disk0", 1)),
        (EventID.IO_ERROR_REASON, (disk, "virtio-disk0", 1, "enospc")),
        (EventID.LIFECYCLE, (3, 2))]                                   # Suspended: I/O error
    assert (obj.state, obj.reason) == (DomainState.PAUSED, PausedReason.IOERROR)
    obj.state = DomainState.RUNNING
    io.update(nospace=False, action="report", reason="Input/output error")
    assert _translated(obj, "BLOCK_IO_ERROR", io)[1] == (
        EventID.IO_ERROR_REASON, (disk, "virtio-disk0", 2, "Input/output error"))
    assert _translated(obj, "BALLOON_CHANGE", {"actual": 64 * 2**20}) == [(EventID.BALLOON_CHANGE, (65536,))]
    assert obj.live.current_memory_kib == 65536                 # the live XML follows the balloon
    spice = {"server": {"host": "127.0.0.1", "port": "5930", "family": "ipv4", "auth": "spice"},
             "client": {"host": "127.0.0.1", "port": "41000", "family": "ipv4", "connection-id": 1,
                        "channel-type": 1, "channel-id": 0, "tls": False}}
    assert _translated(obj, "SPICE_INITIALIZED", spice) == [
        (EventID.GRAPHICS, (1, (0, "127.0.0.1", "5930"), (0, "127.0.0.1", "41000"), "spice", []))]
    assert _translated(obj, "MIGRATION_PASS", {"pass": 4}) == [(EventID.MIGRATION_ITERATION, (4,))]
    failed = {"type": "mirror", "device": "drive-virtio-disk0", "len": 10, "offset": 5, "speed": 0,
              "error": "No space left on device"}
    assert _translated(obj, "BLOCK_JOB_COMPLETED", failed) == [
        (EventID.BLOCK_JOB, (disk, 2, 1)), (EventID.BLOCK_JOB_2, ("vda", 2, 1))]
    ready = {"type": "mirror", "device": "copy-vda-libvirt-1-format", "len": 10, "offset": 10, "speed": 0}
    assert _translated(obj, "BLOCK_JOB_READY", ready) == [                 # libvirt's own job names
        (EventID.BLOCK_JOB, (disk, 2, 3)), (EventID.BLOCK_JOB_2, ("vda", 2, 3))]
    assert _translated(obj, "BLOCK_JOB_READY", dict(ready, device="someone-elses")) == []
    assert _translated(obj, "BLOCK_JOB_CANCELLED", dict(failed, type="commit")) == [
        (EventID.BLOCK_JOB, (disk, 3, 2)), (EventID.BLOCK_JOB_2, ("vda", 3, 2))]
    assert _translated(obj, "DEVICE_TRAY_MOVED", {"device": "", "id": "/machine/peripheral/ide0-1-0",
                                                  "tray-open": True}) == [(EventID.TRAY_CHANGE, ("ide0-1-0", 0))]
    assert _translated(obj, "RTC_CHANGE", {"offset": -7200, "qom-path": "/machine/unattached/device[4]"}) == [
        (EventID.RTC_CHANGE, (-7200,))]
    # what libvirt does not turn into a domain event, and data QEMU would never send
    assert _translated(obj, "NIC_RX_FILTER_CHANGED", {"path": "/x"}) == []
    assert _translated(obj, "RTC_CHANGE", {"offset": "soon"}) == []


def test_job_completed_only_for_jobs_that_ended_well(obj):
    job = AsyncJobState(AsyncJob.SAVE)
    job.stats.update(memory_total=2**27, time_elapsed=12)
    assert qemu_events.async_job_ended(obj, job) == []          # still running: the save failed
    obj.state, obj.reason = DomainState.SHUTOFF, ShutoffReason.SAVED
    (event,) = qemu_events.async_job_ended(obj, job)
    assert event.event_id == EventID.JOB_COMPLETED
    assert event.detail == ([("operation", INT, 2), ("time_elapsed", ULL, 12), ("memory_total", ULL, 2**27)],)
    assert qemu_events.async_job_ended(obj, AsyncJobState(AsyncJob.MIGRATION_OUT)) == []   # saved, not migrated


@pytest.mark.parametrize("event_id, text", [
    (EventID.WATCHDOG, "event 'watchdog' for domain 'd': reset"),
    (EventID.IO_ERROR, "event 'io-error' for domain 'd': /var/d.qcow2 (virtio-disk0) pause"),
    (EventID.IO_ERROR_REASON, "event 'io-error' for domain 'd': /var/d.qcow2 (virtio-disk0) pause due to enospc"),
    (EventID.GRAPHICS, "event 'graphics' for domain 'd': connect local[IPv4 127.0.0.1 5900] "
                       "remote[IPv6 ::1 40000] vnc\n\tx509dname=CN=a\n\tsaslUsername=bob"),
    (EventID.CONTROL_ERROR, "event 'control-error' for domain 'd'"),
    (EventID.DISK_CHANGE, "event 'disk-change' for domain 'd' disk ide0-1-0: /old.iso -> <null>: dropped"),
    (EventID.PMSUSPEND, "event 'pm-suspend' for domain 'd'"),
    (EventID.BALLOON_CHANGE, "event 'balloon-change' for domain 'd': 65536KiB"),
    (EventID.DEVICE_REMOVED, "event 'device-removed' for domain 'd': virtio-disk1"),
    (EventID.BLOCK_JOB_2, "event 'block-job-2' for domain 'd': Block Copy for vda ready"),
    (EventID.TUNABLE, "event 'tunable' for domain 'd':\n\tcputune.vcpupin0: 0-1\n\tblkdeviotune.total_bytes_sec: 1000"),
    (EventID.AGENT_LIFECYCLE, "event 'agent-lifecycle' for domain 'd': state: 'connected' reason: 'channel event'"),
    (EventID.DEVICE_ADDED, "event 'device-added' for domain 'd': net1"),
    (EventID.MIGRATION_ITERATION, "event 'migration-iteration' for domain 'd': iteration: '3'"),
    (EventID.BLOCK_THRESHOLD, "event 'block-threshold' for domain 'd': dev: vda(/var/d.qcow2) 1024 12"),
    (EventID.MEMORY_FAILURE, "event 'memory-failure' for domain 'd':\nrecipient: guest\naction: fatal\n"
                             "flags:\n\taction required: 1\n\trecursive: 1"),
    (EventID.MEMORY_DEVICE_SIZE_CHANGE, "event 'memory-device-size-change' for domain 'd':\nalias: dimm0\nsize: 1048576"),
], ids=lambda v: v.name if isinstance(v, EventID) else "")
def test_virsh_event_lines(event_id, text):
    args = callback_arguments(event_id, SAMPLES[event_id])
    assert event_text(event_id, "d", args) == text + "\n"


def test_event_names_are_virsh_s_list():
    assert len(EVENT_NAMES) == len(EventID)
    assert EVENT_NAMES[EventID.METADATA_CHANGE] == "metadata-change"
