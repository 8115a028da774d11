"""Save, restore and managed save through real pyvirtd with real QEMU guests.

The guest is the tiny one rewriting 8 MiB of its RAM and printing a
heartbeat every second; the heartbeat counter lives in guest RAM, so a
restored guest goes on counting from where it was saved.  Every test ends
with no QEMU left behind (the fixture kills and reports leftovers).
"""

from __future__ import annotations

import contextlib
import grp
import gzip
import os
import pwd
import re
import shutil
import stat
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

import pyvirt
from daemons import Pyvirtd, qemu_pid
from guests import READY, tiny_xml, wait_for, wait_for_text
from pyvirt.drivers.qemu import saveimage
from pyvirt.drivers.qemu.saveimage import FORMATS, HEADER_SIZE

pytestmark = pytest.mark.qemu

E = pyvirt
# What the start of each format's compressed stream looks like (the helpers' own magic numbers).
STREAM_MAGIC = {"raw": b"QEVM", "gzip": b"\x1f\x8b", "bzip2": b"BZh", "xz": b"\xfd7zXZ\x00",
                "lzop": b"\x89LZO\x00\r\n\x1a\n", "zstd": b"\x28\xb5\x2f\xfd"}


@pytest.fixture
def make_host(tmp_path, guests_built, monkeypatch):
    """Start pyvirtd hosts with a save format (and, for helper tests, their own PATH)."""
    started: list[Pyvirtd] = []

    def make(fmt: str = "raw", path: str | None = None, extra: str = "") -> Pyvirtd:
        host = Pyvirtd(tmp_path / f"host{len(started)}",
                       extra_config=f'save_image_format = "{fmt}"\n{extra}')
        with monkeypatch.context() as env:
            if path is not None:
                env.setenv("PATH", path)       # where the daemon looks its helpers up
            started.append(host)
            host.start()
        return host
    yield make
    leaked = [pid for host in started for pid in host.cleanup()]
    assert not leaked, f"QEMU processes left behind: {leaked}"


def start_guest(host: Pyvirtd, name: str = "g", persistent: bool = False,
                **kw) -> tuple[pyvirt.virConnect, pyvirt.virDomain, Path]:
    conn = pyvirt.open(host.uri)
    log = host.workdir / f"{name}.log"
    xml = tiny_xml(name, log, cmdline="dirty=8:4", **kw)
    if persistent:
        dom = conn.defineXML(xml)
        dom.create()
    else:
        dom = conn.createXML(xml, 0)
    wait_for_text(log, "PYVIRT-HEARTBEAT 1")
    return conn, dom, log


def heartbeat(log: Path) -> int:
    """The guest's last complete heartbeat line (a line may be half written)."""
    beats = re.findall(r"PYVIRT-HEARTBEAT (\d+)\r?\n", log.read_text(errors="replace"))
    return int(beats[-1]) if beats else 0


def assert_continues(log: Path, before: int) -> None:
    """The restored guest counts on from where it was saved (not from 1 again)."""
    wait_for(lambda: heartbeat(log) > before, 15, what="the restored guest's next heartbeat")
    assert log.read_text(errors="replace").count(READY) == 1, "the guest booted again instead"


def header_of(path: Path) -> tuple[bytes, int, int, int, int, int]:
    raw = path.read_bytes()[:HEADER_SIZE]
    return (raw[:16], *struct.unpack_from("<5I", raw, 16))


def stream_of(path: Path) -> bytes:
    data = path.read_bytes()
    _magic, _version, data_len, *_ = header_of(path)
    return data[HEADER_SIZE + data_len:]


@contextlib.contextmanager
def expect_error(code: int, *words: str) -> Iterator[Any]:
    """The call fails with ``code`` and a message naming the cause."""
    with pytest.raises(pyvirt.libvirtError) as info:
        yield info
    err = info.value
    assert err.get_error_code() == code, err.get_error_message()
    for word in words:
        assert word in err.get_error_message(), (word, err.get_error_message())


# --- every format: save, check the file, restore, the guest runs on ----------------------

@pytest.mark.parametrize("fmt", list(FORMATS))
def test_save_restore_each_format(make_host, fmt):
    host = make_host(fmt)
    conn, dom, log = start_guest(host)
    image = host.workdir / "g.save"
    dom.save(str(image))
    before = heartbeat(log)
    with expect_error(E.VIR_ERR_NO_DOMAIN):
        conn.lookupByName("g")                       # a saved transient domain is gone
    assert qemu_pid(host, "g") is None
    magic, version, data_len, was_running, compressed, cookie = header_of(image)
    assert (magic, version, was_running, compressed, cookie) == (saveimage.MAGIC, 2, 1, FORMATS[fmt].code, 0)
    assert (HEADER_SIZE + data_len) % saveimage.STREAM_ALIGN == 0
    stream = stream_of(image)
    assert stream.startswith(STREAM_MAGIC[fmt])
    if fmt != "raw":                                 # really QEMU's stream, really compressed
        plain = subprocess.run([fmt, "-dc"], input=stream, capture_output=True, check=True).stdout
        assert plain.startswith(b"QEVM") and len(stream) < len(plain)
    assert "<name>g</name>" in conn.saveImageGetXMLDesc(str(image))
    conn.restore(str(image))
    dom = conn.lookupByName("g")
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_RESTORED]
    assert_continues(log, before)
    dom.destroy()


def test_states_events_and_job_record(make_host):
    host = make_host()
    conn, dom, log = start_guest(host, persistent=True)
    seen: list[tuple[int, int]] = []
    conn.domainEventRegisterAny(dom, E.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda c, d, ev, detail, _: seen.append((ev, detail)), None)
    image = host.workdir / "g.save"
    dom.save(str(image))
    assert dom.state() == [E.VIR_DOMAIN_SHUTOFF, E.VIR_DOMAIN_SHUTOFF_SAVED]
    assert dom.ID() == -1
    done = dom.jobStats(1)                    # VIR_DOMAIN_JOB_STATS_COMPLETED
    assert done["type"] == E.VIR_DOMAIN_JOB_COMPLETED and done["operation"] == E.VIR_DOMAIN_JOB_OPERATION_SAVE
    assert done["memory_processed"] > 1 << 20         # the pages the guest wrote went out
    before = heartbeat(log)
    conn.restore(str(image))
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_RESTORED]
    assert dom.isPersistent() == 1 and dom.hasManagedSaveImage() == 0
    assert_continues(log, before)
    wait_for(lambda: len(seen) >= 4, 5, what="the lifecycle events")
    assert seen == [(E.VIR_DOMAIN_EVENT_SUSPENDED, E.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED),
                    (E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_SAVED),
                    (E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_STARTED_RESTORED),
                    (E.VIR_DOMAIN_EVENT_RESUMED, E.VIR_DOMAIN_EVENT_RESUMED_FROM_SNAPSHOT)]
    with expect_error(E.VIR_ERR_OPERATION_INVALID, "already active"):
        conn.restore(str(image))                      # the domain runs: refused, left alone
    assert dom.state()[0] == E.VIR_DOMAIN_RUNNING
    dom.destroy()


def test_running_and_paused_flags(make_host):
    host = make_host()
    conn, dom, log = start_guest(host, persistent=True)
    paused_image, running_image = host.workdir / "p.save", host.workdir / "r.save"
    dom.saveFlags(str(paused_image), None, E.VIR_DOMAIN_SAVE_PAUSED)      # running now, paused after restore
    assert header_of(paused_image)[3] == 0
    conn.restore(str(paused_image))
    assert dom.state() == [E.VIR_DOMAIN_PAUSED, E.VIR_DOMAIN_PAUSED_MIGRATION]   # as libvirt 9.0 reports it
    before = heartbeat(log)
    dom.resume()
    assert_continues(log, before)
    dom.suspend()
    dom.saveFlags(str(running_image), None, E.VIR_DOMAIN_SAVE_RUNNING)    # paused now, running after restore
    assert header_of(running_image)[3] == 1
    conn.restoreFlags(str(running_image), None, E.VIR_DOMAIN_SAVE_PAUSED)  # the caller's word wins
    assert dom.state()[0] == E.VIR_DOMAIN_PAUSED
    dom.destroy()
    conn.restoreFlags(str(paused_image), None, E.VIR_DOMAIN_SAVE_RUNNING)
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_RESTORED]
    with expect_error(E.VIR_ERR_INVALID_ARG, "mutually exclusive"):
        dom.saveFlags(str(running_image), None, E.VIR_DOMAIN_SAVE_RUNNING | E.VIR_DOMAIN_SAVE_PAUSED)
    with expect_error(E.VIR_ERR_ARGUMENT_UNSUPPORTED, "BYPASS_CACHE"):
        dom.saveFlags(str(running_image), None, E.VIR_DOMAIN_SAVE_BYPASS_CACHE)
    with expect_error(E.VIR_ERR_INVALID_ARG, "unsupported flags (0x100)"):
        conn.restoreFlags(str(running_image), None, 0x100)
    assert dom.state()[0] == E.VIR_DOMAIN_RUNNING
    dom.destroy()


def test_application_xml_on_save_and_restore(make_host):
    host = make_host()
    conn, dom, log = start_guest(host, persistent=True)
    image = host.workdir / "g.save"
    xml = dom.XMLDesc(E.VIR_DOMAIN_XML_INACTIVE)
    bad = xml.replace("<vcpu placement='static'>1</vcpu>", "<vcpu placement='static'>2</vcpu>")
    assert bad != xml
    with expect_error(E.VIR_ERR_CONFIG_UNSUPPORTED, "vCPU"):
        dom.saveFlags(str(image), bad, 0)
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_BOOTED] and not image.exists()
    nowhere = host.workdir / "no-such-dir" / "g.save"
    with expect_error(E.VIR_ERR_SYSTEM_ERROR, "cannot create save image", "No such file or directory"):
        dom.save(str(nowhere))                        # refused before the guest is even paused
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_BOOTED]
    titled = xml.replace("<name>g</name>", "<name>g</name>\n  <title>saved with new XML</title>")
    dom.saveFlags(str(image), titled, 0)
    assert "<title>saved with new XML</title>" in conn.saveImageGetXMLDesc(str(image))
    with expect_error(E.VIR_ERR_CONFIG_UNSUPPORTED, "guest ABI would change", "vCPU"):
        conn.restoreFlags(str(image), bad, 0)
    assert dom.state() == [E.VIR_DOMAIN_SHUTOFF, E.VIR_DOMAIN_SHUTOFF_SAVED] and qemu_pid(host, "g") is None
    retitled = titled.replace("saved with new XML", "restored with new XML")
    conn.restoreFlags(str(image), retitled, 0)
    assert "<title>restored with new XML</title>" in dom.XMLDesc(0)
    assert "<title>" not in dom.XMLDesc(E.VIR_DOMAIN_XML_INACTIVE)   # the persistent definition is untouched
    dom.destroy()


def test_typed_parameter_calls_and_read_only_access(make_host):
    host = make_host()
    conn, dom, log = start_guest(host, persistent=True)
    image = host.workdir / "g.save"
    xml = dom.XMLDesc(E.VIR_DOMAIN_XML_INACTIVE)
    titled = xml.replace("<name>g</name>", "<name>g</name>\n  <title>by parameters</title>")
    dom.saveParams({"file": str(image), "dxml": titled}, E.VIR_DOMAIN_SAVE_PAUSED)
    assert header_of(image)[3] == 0
    assert "<title>by parameters</title>" in conn.saveImageGetXMLDesc(str(image))
    reader = pyvirt.openReadOnly(host.uri)
    with expect_error(E.VIR_ERR_OPERATION_DENIED, "read only access prevents virDomainSaveImageGetXMLDesc"):
        reader.saveImageGetXMLDesc(str(image))      # it would read any file as root
    with expect_error(E.VIR_ERR_OPERATION_DENIED):
        reader.restore(str(image))
    with expect_error(E.VIR_ERR_INVALID_ARG, "parameter 'bogus' is not supported"):
        conn.restoreParams({"file": str(image), "bogus": "x"})
    conn.restoreParams({"file": str(image)}, E.VIR_DOMAIN_SAVE_RUNNING)
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_RESTORED]
    with expect_error(E.VIR_ERR_OPERATION_DENIED):
        reader.lookupByName("g").save(str(image))
    assert dom.state()[0] == E.VIR_DOMAIN_RUNNING
    dom.destroy()


def test_managed_save_then_start(make_host):
    host = make_host("lzop")
    conn, dom, log = start_guest(host, persistent=True)
    managed = host.state_dir / "lib" / "qemu" / "save" / "g.save"
    dom.managedSave()
    assert dom.state() == [E.VIR_DOMAIN_SHUTOFF, E.VIR_DOMAIN_SHUTOFF_SAVED]
    assert dom.hasManagedSaveImage() == 1 and header_of(managed)[4] == FORMATS["lzop"].code
    assert [d.name() for d in conn.listAllDomains(E.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE)] == ["g"]
    assert conn.listAllDomains(E.VIR_CONNECT_LIST_DOMAINS_NO_MANAGEDSAVE) == []
    with expect_error(E.VIR_ERR_OPERATION_INVALID, "managed save image exists"):
        dom.undefine()
    assert dom.isPersistent() == 1 and managed.exists()
    before = heartbeat(log)
    dom.create()                                      # resumes from the image, then drops it
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_RESTORED]
    assert dom.hasManagedSaveImage() == 0 and not managed.exists()
    assert_continues(log, before)
    dom.managedSave()
    dom.createWithFlags(E.VIR_DOMAIN_START_PAUSED)
    assert dom.state() == [E.VIR_DOMAIN_PAUSED, E.VIR_DOMAIN_PAUSED_MIGRATION]
    dom.resume()
    dom.managedSave()
    dom.createWithFlags(E.VIR_DOMAIN_START_FORCE_BOOT)    # throws the image away, boots afresh
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_BOOTED] and not managed.exists()
    wait_for(lambda: log.read_text(errors="replace").count(READY) == 2, 15, what="a fresh boot")
    dom.managedSave()
    dom.managedSaveRemove()
    assert not managed.exists() and dom.hasManagedSaveImage() == 0
    dom.managedSaveRemove()                            # nothing to remove: fine, as in libvirt
    dom.create()
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_BOOTED]
    dom.managedSave()
    dom.undefineFlags(E.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    assert not managed.exists()
    with expect_error(E.VIR_ERR_NO_DOMAIN):
        conn.lookupByName("g")
    transient = conn.createXML(tiny_xml("t", host.workdir / "t.log"), 0)
    with expect_error(E.VIR_ERR_OPERATION_INVALID, "transient"):
        transient.managedSave()
    assert transient.state()[0] == E.VIR_DOMAIN_RUNNING
    transient.destroy()


def test_managed_save_survives_a_daemon_restart_and_an_incomplete_image_is_dropped(make_host):
    host = make_host()
    conn, dom, log = start_guest(host, persistent=True)
    managed = host.state_dir / "lib" / "qemu" / "save" / "g.save"
    dom.managedSave()
    host.stop()
    host.start()
    conn = pyvirt.open(host.uri)
    dom = conn.lookupByName("g")
    assert dom.hasManagedSaveImage() == 1
    assert [d.name() for d in conn.listAllDomains(E.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE)] == ["g"]
    with open(managed, "r+b") as f:                    # as if the save never finished
        f.write(saveimage.MAGIC_PARTIAL)
    dom.create()                                       # libvirt's rule: drop it, boot afresh
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_BOOTED]
    assert not managed.exists()
    dom.destroy()


# --- abort, with the compressor held back so the save is certainly under way ----------------

def _gated_helper(bindir: Path, gate: Path, program: str) -> None:
    """A stand-in for ``program`` that waits for ``gate`` to exist before it reads anything."""
    bindir.mkdir(exist_ok=True)
    script = bindir / program
    script.write_text(f"#!/bin/sh\nwhile [ ! -e '{gate}' ]; do sleep 0.05; done\n"
                      f"exec {shutil.which(program)} \"$@\"\n")
    script.chmod(0o755)


def _save_in_thread(dom: pyvirt.virDomain, path: Path) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run():
        try:
            dom.save(str(path))
        except pyvirt.libvirtError as exc:
            result["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_abort_during_save_keeps_the_guest_running(make_host, tmp_path):
    bindir, gate = tmp_path / "bin", tmp_path / "gate"
    _gated_helper(bindir, gate, "zstd")
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    host = make_host("zstd", path=f"{bindir}:{os.environ['PATH']}",
                     extra=f'user = "nobody"\ngroup = "{group}"')
    conn, dom, log = start_guest(host, memory_mib=128)
    image = host.workdir / "g.save"
    thread, result = _save_in_thread(dom, image)
    watcher = pyvirt.open(host.uri).lookupByName("g")
    wait_for(lambda: watcher.jobInfo()[4] > 0, 20, interval=0.05,
             what="QEMU to be writing into the held-back compressor")
    stats = watcher.jobStats()
    assert stats["type"] == E.VIR_DOMAIN_JOB_UNBOUNDED and stats["operation"] == E.VIR_DOMAIN_JOB_OPERATION_SAVE
    assert watcher.state() == [E.VIR_DOMAIN_PAUSED, E.VIR_DOMAIN_PAUSED_SAVE]
    # The descriptor QEMU writes to is labelled for the configured user (the DAC driver).
    qpid = qemu_pid(host, "g")
    fds = [os.stat(f"/proc/{qpid}/fd/{fd}") for fd in os.listdir(f"/proc/{qpid}/fd")]
    assert any(stat.S_ISFIFO(st.st_mode) and st.st_uid == nobody.pw_uid for st in fds)
    watcher.abortJob()
    thread.join(30)
    assert not thread.is_alive()
    err = result["error"]
    assert err.get_error_code() == E.VIR_ERR_OPERATION_ABORTED
    assert "domain save job: canceled by client" in err.get_error_message()
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_SAVE_CANCELED]
    assert not image.exists(), "the partial image was left behind"
    before = heartbeat(log)
    wait_for(lambda: heartbeat(log) > before, 15, what="the guest to keep running")
    gate.touch()                                        # the next save is not held back
    dom.save(str(image))
    assert header_of(image)[0] == saveimage.MAGIC
    assert os.stat(image).st_uid == 0                   # the file's owner was given back


# --- helpers that are missing or fail -------------------------------------------------------

def _fake_image(path: Path, fmt: str, name: str = "g", uuid: str | None = None) -> None:
    """A complete image header for ``fmt`` over a stream that is never read."""
    xml = tiny_xml(name, path.parent / f"{name}.log", uuid=uuid)
    header, head = saveimage.build(xml, True, FORMATS[fmt])
    path.write_bytes(saveimage.pack_header(header, complete=True) + head[HEADER_SIZE:] + b"junk" * 1000)


def test_missing_helper_is_reported_and_the_guest_untouched(make_host, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    host = make_host("zstd", path=str(empty))
    conn, dom, log = start_guest(host)
    image = host.workdir / "g.save"
    with expect_error(E.VIR_ERR_OPERATION_FAILED, "compression program 'zstd'", "not available", str(empty)):
        dom.save(str(image))
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_BOOTED] and not image.exists()
    dom.destroy()
    _fake_image(image, "zstd")
    with expect_error(E.VIR_ERR_OPERATION_FAILED, "'zstd'", "not available"):
        conn.restore(str(image))
    with expect_error(E.VIR_ERR_NO_DOMAIN):
        conn.lookupByName("g")


def _failing_helper(bindir: Path, program: str, code: int) -> None:
    bindir.mkdir(exist_ok=True)
    script = bindir / program
    script.write_text(f"#!/bin/sh\necho '{program}: simulated failure: No space left on device' >&2\nexit {code}\n")
    script.chmod(0o755)


def test_failing_helper_reports_its_exit_status_and_words(make_host, tmp_path):
    bindir = tmp_path / "bin"
    _failing_helper(bindir, "zstd", 3)
    host = make_host("zstd", path=f"{bindir}:{os.environ['PATH']}")
    conn, dom, log = start_guest(host, persistent=True)
    image = host.workdir / "g.save"
    with expect_error(E.VIR_ERR_OPERATION_FAILED, "compressor 'zstd' exited with status 3",
                      "simulated failure: No space left on device"):
        dom.save(str(image))
    assert dom.state() == [E.VIR_DOMAIN_RUNNING, E.VIR_DOMAIN_RUNNING_SAVE_CANCELED]
    assert not image.exists()
    before = heartbeat(log)
    wait_for(lambda: heartbeat(log) > before, 15, what="the guest to keep running")
    dom.destroy()
    _fake_image(image, "zstd", uuid=dom.UUIDString())
    with expect_error(E.VIR_ERR_OPERATION_FAILED, "decompressor 'zstd' exited with status 3",
                      "simulated failure"):
        conn.restore(str(image))
    assert dom.state() == [E.VIR_DOMAIN_SHUTOFF, E.VIR_DOMAIN_SHUTOFF_DESTROYED]
    assert qemu_pid(host, "g") is None


# --- corrupt images: a clear error, and the domain left as it was ------------------------------

def _rewrite(src: Path, dst: Path, *, offset: int = 0, data: bytes = b"", cut: int | None = None) -> Path:
    raw = bytearray(src.read_bytes())
    raw[offset:offset + len(data)] = data
    dst.write_bytes(bytes(raw[:cut] if cut is not None else raw))
    return dst


def test_corrupt_images_leave_the_domain_as_it_was(make_host):
    host = make_host()
    conn, dom, log = start_guest(host, persistent=True)
    good = host.workdir / "good.save"
    dom.save(str(good))
    stream_at = HEADER_SIZE + header_of(good)[2]
    d = host.workdir
    xml_len = len(conn.saveImageGetXMLDesc(str(good)))
    stream = stream_of(good)
    gz = bytearray(good.read_bytes()[:stream_at] + gzip.compress(stream, 1))
    struct.pack_into("<I", gz, 28, FORMATS["gzip"].code)
    (d / "gzip-cut.save").write_bytes(bytes(gz[:stream_at + (len(gz) - stream_at) // 2]))
    cases = [
        (_rewrite(good, d / "magic.save", data=b"NotALibvirtImage"), E.VIR_ERR_OPERATION_FAILED,
         ("image magic is incorrect",)),
        (_rewrite(good, d / "partial.save", data=saveimage.MAGIC_PARTIAL), E.VIR_ERR_OPERATION_FAILED,
         ("save image is incomplete",)),
        (_rewrite(good, d / "short.save", cut=40), E.VIR_ERR_OPERATION_FAILED, ("failed to read qemu header",)),
        (_rewrite(good, d / "version.save", offset=16, data=struct.pack("<I", 3)), E.VIR_ERR_OPERATION_FAILED,
         ("image version is not supported (3 > 2)",)),
        (_rewrite(good, d / "format.save", offset=28, data=struct.pack("<I", 9)), E.VIR_ERR_OPERATION_FAILED,
         ("unsupported save image format: 9",)),
        (_rewrite(good, d / "datalen.save", offset=20, data=struct.pack("<I", 0)), E.VIR_ERR_OPERATION_FAILED,
         ("invalid header data length: 0",)),
        (_rewrite(good, d / "xmlcut.save", cut=HEADER_SIZE + xml_len // 2), E.VIR_ERR_OPERATION_FAILED,
         ("failed to read domain XML", "truncated")),
        (_rewrite(good, d / "nostream.save", cut=stream_at), E.VIR_ERR_OPERATION_FAILED,
         ("truncated", "before QEMU's migration stream")),
        (_rewrite(good, d / "badxml.save", offset=HEADER_SIZE, data=b"<domian"), E.VIR_ERR_XML_DETAIL,
         ("domain XML in save image", "badxml.save", "tag mismatch")),
        (_rewrite(good, d / "streamcut.save", cut=stream_at + len(stream) // 2), E.VIR_ERR_OPERATION_FAILED,
         ("domain restore job: QEMU exited", "load of migration failed")),
        (d / "gzip-cut.save", E.VIR_ERR_OPERATION_FAILED,
         ("decompressor 'gzip' exited with status 1", "gzip: stdin: unexpected end of file")),
        (d / "missing.save", E.VIR_ERR_SYSTEM_ERROR, ("cannot open save image", "No such file")),
        (d, E.VIR_ERR_SYSTEM_ERROR, ("cannot read save image", "Is a directory")),
    ]
    for path, code, words in cases:
        with expect_error(code, *words):
            conn.restore(str(path))
        assert dom.state() == [E.VIR_DOMAIN_SHUTOFF, E.VIR_DOMAIN_SHUTOFF_SAVED], path.name
        assert qemu_pid(host, "g") is None, path.name
    with expect_error(E.VIR_ERR_INVALID_ARG, "must be absolute"):
        aio_restore_relative(conn)
    before = heartbeat(log)
    conn.restore(str(good))                            # the good image still restores
    assert_continues(log, before)
    dom.destroy()


def aio_restore_relative(conn: pyvirt.virConnect) -> None:
    """A relative path straight to the driver (the client library would make it absolute)."""
    from pyvirt import aio
    aio.run(conn._drv.domain_restore_flags("relative.save", None, 0))
