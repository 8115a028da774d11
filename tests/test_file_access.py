"""Files a client names: read-only connections cannot make the daemon open them,
writes never follow a symbolic link, bad paths get INVALID_ARG, reads stay off
the event loop.

Reproduced against main: a read-only connection read the first bytes of
/etc/shadow through saveImageGetXMLDesc; ``virsh save DOM LINK`` overwrote the
link's target; a raw DOMAIN_RESTORE with a NUL in the path answered
INTERNAL_ERROR with a traceback in the daemon's log.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading

import pytest

import pyvirt
from guests import READY, tiny_xml, wait_for_text
from pyvirt.drivers.qemu import imagefile
from pyvirt.rpc.client import RPCClient
from pyvirt.rpc.protocol import REMOTE
from pyvirt.rpc.wire import Program

SYSTEM_PYTHON = "/usr/bin/python3"
SECRET = b"root:$y$j9T$not-for-your-eyes:19000:0:99999:7:::\n"


def python3_libvirt() -> None:
    if subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")


@pytest.fixture
def secret_file(pyvirtd):
    path = pyvirtd.workdir / "shadow"
    path.write_bytes(SECRET * 10)
    path.chmod(0o600)
    return path


# --- read-only connections -----------------------------------------------------------------

def test_read_only_save_image_get_xml_desc_denied_through_python3_libvirt(pyvirtd, secret_file):
    python3_libvirt()
    code = f"""
import libvirt
for flags in (0, libvirt.VIR_DOMAIN_SAVE_IMAGE_XML_SECURE):
    conn = libvirt.openReadOnly({pyvirtd.unix_ro_uri!r})
    try:
        print("ANSWERED", conn.saveImageGetXMLDesc({str(secret_file)!r}, flags))
    except libvirt.libvirtError as e:
        print(e.get_error_code(), e.get_error_domain(), e.get_error_message())
rw = libvirt.open({pyvirtd.unix_uri!r})
try:
    rw.saveImageGetXMLDesc({str(secret_file)!r}, 0)
except libvirt.libvirtError as e:
    print(e.get_error_code(), e.get_error_message())
"""
    out = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == (f"{pyvirt.VIR_ERR_OPERATION_DENIED} {pyvirt.VIR_FROM_DOMAIN} "
                        "operation forbidden: read only access prevents virDomainSaveImageGetXMLDesc")
    # with SECURE, libvirt's client library refuses by itself before asking us
    assert lines[1].startswith(f"{pyvirt.VIR_ERR_OPERATION_DENIED} ") and "virDomainSaveImageGetXMLDesc" in lines[1]
    # a read-write connection may name the file, and still learns nothing of its content
    assert lines[2].startswith(f"{pyvirt.VIR_ERR_OPERATION_FAILED} ") and "image magic is incorrect" in lines[2]
    assert "not-for-your-eyes" not in out.stdout and "root:" not in out.stdout


# --- writing: no symbolic link followed, nothing truncated that we may not -------------------

@pytest.fixture
def guest(pyvirtd, guests_built):
    conn = pyvirt.open(pyvirtd.uri)
    serial = pyvirtd.workdir / "serial.log"
    dom = conn.createXML(tiny_xml("fa", serial), 0)
    wait_for_text(serial, READY)
    yield conn, dom
    conn.close()


@pytest.mark.qemu
def test_virsh_save_through_a_symlink_refused_and_its_target_untouched(pyvirtd, guest, secret_file):
    if shutil.which("virsh") is None:
        pytest.skip("virsh (libvirt-clients) is not installed")
    _, dom = guest
    link = pyvirtd.workdir / "image.save"
    link.symlink_to(secret_file)
    dangling = pyvirtd.workdir / "dangling.save"
    dangling.symlink_to(pyvirtd.workdir / "created-through-the-link")
    for path in (link, dangling):
        out = subprocess.run(["virsh", "-c", pyvirtd.uri, "save", "fa", str(path)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode != 0
        assert "is a symbolic link; refusing to write through it" in out.stderr, out.stderr
        assert path.is_symlink()
    assert secret_file.read_bytes() == SECRET * 10
    assert not (pyvirtd.workdir / "created-through-the-link").exists()
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_BOOTED]   # never paused


@pytest.mark.qemu
def test_save_refuses_a_fifo_and_replaces_a_regular_file(pyvirtd, guest):
    conn, dom = guest
    fifo = pyvirtd.workdir / "image.fifo"
    os.mkfifo(fifo)
    with pytest.raises(pyvirt.libvirtError) as info:
        dom.save(str(fifo))
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    assert "must be a regular file or a block device" in info.value.get_error_message()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    old = pyvirtd.workdir / "old.save"
    old.write_bytes(b"x" * 10_000_000)              # the file the call is told to replace
    dom.save(str(old))
    assert old.read_bytes()[:16] == b"LibvirtQemudSave" and not old.is_symlink()


# --- paths with a NUL byte, relative paths ----------------------------------------------------

def test_nul_and_relative_paths_are_invalid_arg_over_raw_rpc(pyvirtd):
    async def check() -> list[tuple[int, str]]:
        client = await RPCClient.connect_tcp("127.0.0.1", pyvirtd.tcp_port)
        await client.call(Program.REMOTE, REMOTE.by_name["CONNECT_OPEN"], ("qemu:///system", 0))
        answers = []
        for proc, args in (("DOMAIN_RESTORE", ("/tmp/a\x00b",)),
                           ("DOMAIN_RESTORE_FLAGS", ("/tmp/a\x00b", None, 0)),
                           ("DOMAIN_RESTORE_PARAMS", ([("file", 7, "/tmp/a\x00b")], 0)),
                           ("DOMAIN_SAVE_IMAGE_GET_XML_DESC", ("/tmp/a\x00b", 0)),
                           ("DOMAIN_RESTORE", ("relative.save",))):
            with pytest.raises(pyvirt.libvirtError) as info:
                await client.call(Program.REMOTE, REMOTE.by_name[proc], args)
            answers.append((info.value.get_error_code(), info.value.get_error_message()))
        client.close()
        return answers
    answers = asyncio.run(check())
    for code, message in answers[:4]:
        assert code == pyvirt.VIR_ERR_INVALID_ARG, message
        assert message == "invalid argument: save image path '/tmp/a\\0b' contains a NUL byte"
    assert answers[4][0] == pyvirt.VIR_ERR_INVALID_ARG and "must be absolute" in answers[4][1]
    log = pyvirtd.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "embedded null" not in log


def test_nul_path_through_the_client_library(pyvirtd):
    conn = pyvirt.open(pyvirtd.uri)
    for call in (lambda: conn.restore("/tmp/a\x00b"), lambda: conn.saveImageGetXMLDesc("/tmp/a\x00b")):
        with pytest.raises(pyvirt.libvirtError) as info:
            call()
        assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
        assert "contains a NUL byte" in info.value.get_error_message()
    conn.close()


def test_python3_libvirt_client_cannot_send_a_nul_and_gets_invalid_arg_for_relative_raw_paths(pyvirtd):
    """A C client cannot put a NUL in a path (libvirt-python refuses it before sending); what it can
    send, a path the daemon cannot use, gets a clean libvirt error, never INTERNAL_ERROR."""
    python3_libvirt()
    code = f"""
import libvirt
c = libvirt.open({pyvirtd.uri!r})
try:
    c.restore("/tmp/a\\x00b")
except ValueError as e:
    print("ValueError")
try:
    c.restoreFlags("/nonexistent/image.save", None, 0)
except libvirt.libvirtError as e:
    print(e.get_error_code(), e.get_error_message())
"""
    out = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first == "ValueError"
    assert second.startswith(f"{pyvirt.VIR_ERR_SYSTEM_ERROR} ") and "No such file or directory" in second


# --- reads of caller-named files happen off the event loop -------------------------------------

def test_image_reads_run_off_the_event_loop(monkeypatch):
    """A read that blocks (a slow NFS server, a hung device) must not stop the loop."""
    entered, release = threading.Event(), threading.Event()

    def blocking_open(path: str):
        entered.set()
        release.wait(60)
        raise pyvirt.libvirtError("unreadable", pyvirt.VIR_ERR_OPERATION_FAILED)

    monkeypatch.setattr(imagefile, "open_image", blocking_open)

    async def scenario() -> str:
        read = asyncio.ensure_future(imagefile.image_xml("/srv/slow.save", secure=False))
        await asyncio.to_thread(entered.wait, 60)  # the worker thread is now blocked in the read
        ticks = 0
        for _ in range(3):                        # ... and the loop still runs other work
            await asyncio.sleep(0)
            ticks += 1
        assert not read.done() and ticks == 3
        release.set()
        with pytest.raises(pyvirt.libvirtError, match="unreadable"):
            await read
        return "ok"

    assert asyncio.run(scenario()) == "ok"
