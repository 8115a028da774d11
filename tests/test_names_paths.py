"""Names never become paths outside their directory; long names never make a socket path too long.

The attacks reproduced against main: ``virsh migrate --dname '../../../../x'``
created ``x.xml``, ``x.qmp`` and ``x.log`` outside the destination's state
directory; names with a newline were accepted; a 90-character name failed at
start with "AF_UNIX path too long".  libvirt's own answers (its test driver,
in-process through python3-libvirt) are the reference for the messages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

import pyvirt
from daemons import Pyvirtd, qemu_pid, running_copies, running_pair
from guests import READY, pid_alive, tiny_xml, wait_for_text
from pyvirt.conf import parse_status
from pyvirt.conf.names import check_name, contained, short_name, socket_address
from pyvirt.drivers.qemu.config import QemuConfig

SYSTEM_PYTHON = "/usr/bin/python3"
LONG_NAME = ("a-guest-whose-name-alone-overflows-a-unix-socket-path-" * 2)[:90]


def python3_libvirt() -> None:
    if subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")


def needs_virsh() -> None:
    if shutil.which("virsh") is None:
        pytest.skip("virsh (libvirt-clients) is not installed")


# --- the rule itself -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a/b", "../../x", "/abs"])
def test_slash_refused_with_libvirts_message(name):
    with pytest.raises(pyvirt.libvirtError) as info:
        check_name(name)
    err = info.value
    assert (err.get_error_code(), err.get_error_domain()) == (pyvirt.VIR_ERR_XML_ERROR, pyvirt.VIR_FROM_DOMAIN)
    assert err.get_error_message() == f"XML error: name {name} cannot contain '/'"


@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x00", "\x1b", "\x7f"])
def test_control_characters_refused(char):
    with pytest.raises(pyvirt.libvirtError) as info:
        check_name(f"a{char}b")
    err = info.value
    assert (err.get_error_code(), err.get_error_domain()) == (pyvirt.VIR_ERR_XML_DETAIL, pyvirt.VIR_FROM_XML)
    assert err.get_error_message() == f"invalid char in name: {char}"


def test_empty_name_refused_and_ordinary_names_kept():
    with pytest.raises(pyvirt.libvirtError) as info:
        check_name("")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_NO_NAME
    assert info.value.get_error_message() == "missing name information"
    for name in ("web", "..", ".", "a b", "ünïcode-名前", "x" * 200):
        assert check_name(name) == name


@pytest.mark.parametrize("filename", ["../x.xml", "..", ".", "", "a/b", "nul\x00.xml"])
def test_contained_refuses_what_would_leave_the_directory(tmp_path, filename):
    with pytest.raises(pyvirt.libvirtError) as info:
        contained(tmp_path, filename)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    assert contained(tmp_path, "...xml") == tmp_path / "...xml"


def test_every_composed_path_is_checked(tmp_path):
    """Defence in depth: a name that slipped past the checks still cannot leave its directory."""
    cfg = QemuConfig(tmp_path)
    for compose in (cfg.config_path, cfg.autostart_path, cfg.status_path, cfg.log_path,
                    cfg.shutoff_reason_path, cfg.managed_save_path, lambda n: cfg.monitor_path(n, 1)):
        with pytest.raises(pyvirt.libvirtError):
            compose("../../../../x")
        assert tmp_path in compose("x").parents


def test_per_domain_directory_is_libvirts_short_name(tmp_path):
    cfg = QemuConfig(tmp_path)
    assert short_name(7, LONG_NAME) == f"7-{LONG_NAME[:20]}"
    assert short_name(3, "名前" * 20) == f"3-{('名前' * 20)[:20]}"      # characters, not bytes
    assert cfg.monitor_path(LONG_NAME, 7) == cfg.state_dir / f"domain-7-{LONG_NAME[:20]}" / "monitor.sock"


def test_socket_reached_through_its_directory_when_the_path_is_too_long(tmp_path):
    deep = tmp_path / ("d" * 100) / "monitor.sock"
    deep.parent.mkdir()
    assert len(os.fsencode(str(deep))) > 108
    with socket.socket(socket.AF_UNIX) as s:
        with pytest.raises(OSError):
            s.bind(str(deep))                    # what failed at start before
    server = socket.socket(socket.AF_UNIX)
    with socket_address(deep) as address:
        server.bind(address)
    server.listen(1)
    with socket.socket(socket.AF_UNIX) as client, socket_address(deep) as address:
        client.connect(address)
    server.close()
    assert deep.exists()                         # created where it was meant to be


# --- define: stock virsh and python3-libvirt ---------------------------------------------

def _xml(name_markup: str) -> str:
    return ("<domain type='qemu'><name>" + name_markup + "</name><memory>131072</memory>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>")


def test_virsh_define_refuses_newline_and_slash_names(pyvirtd, tmp_path):
    needs_virsh()
    for markup, words in (("a\nb", "invalid char in name"), ("a&#9;b", "invalid char in name"),
                          ("../../../../x", "name ../../../../x cannot contain '/'")):
        path = tmp_path / "bad.xml"
        path.write_text(_xml(markup))
        out = subprocess.run(["virsh", "-c", pyvirtd.uri, "define", str(path)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and words in out.stderr, (markup, out.stderr)
    listing = subprocess.run(["virsh", "-c", pyvirtd.uri, "list", "--all", "--name"],
                             capture_output=True, text=True, timeout=60).stdout
    assert listing.strip() == ""
    assert not list((pyvirtd.state_dir / "etc" / "qemu").glob("*.xml"))
    assert not (pyvirtd.state_dir / "x.xml").exists() and not (pyvirtd.workdir / "x.xml").exists()


def test_python3_libvirt_gets_libvirts_errors_for_bad_names(pyvirtd):
    """The same (code, domain, message) as libvirt 9.0's own parser, for define and create."""
    python3_libvirt()
    code = f"""
import libvirt
def attempt(conn, call, xml):
    try:
        getattr(conn, call)(*((xml,) if call == "defineXML" else (xml, 0)))
        return "accepted"
    except libvirt.libvirtError as e:
        return (e.get_error_code(), e.get_error_domain(), e.get_error_message())
ours = libvirt.open({pyvirtd.uri!r})
ref = libvirt.open("test:///default")
for name in ("a\\nb", "a/b"):
    mine = "<domain type='%s'><name>" + name + "</name><memory>131072</memory><os><type>hvm</type></os></domain>"
    print(repr((attempt(ours, "defineXML", mine % "qemu"), attempt(ref, "defineXML", mine % "test"))))
    print(repr(attempt(ours, "createXML", mine % "qemu")))
"""
    out = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [eval(line) for line in out.stdout.splitlines()]   # noqa: S307 - our own repr output
    (ours_nl, libvirt_nl), create_nl, (ours_slash, libvirt_slash), create_slash = lines
    assert ours_nl == libvirt_nl == (pyvirt.VIR_ERR_XML_DETAIL, pyvirt.VIR_FROM_XML, "invalid char in name: \n")
    assert ours_slash == libvirt_slash == (pyvirt.VIR_ERR_XML_ERROR, pyvirt.VIR_FROM_DOMAIN,
                                           "XML error: name a/b cannot contain '/'")
    assert create_nl == ours_nl and create_slash == ours_slash


# --- migration: a traversing dname through stock virsh ------------------------------------

@pytest.fixture
def two_hosts(tmp_path, guests_built):
    with running_pair(Pyvirtd(tmp_path / "a"), Pyvirtd(tmp_path / "b")) as pair:
        yield pair


def _start(host: Pyvirtd, name: str) -> tuple[pyvirt.virConnect, pyvirt.virDomain, str]:
    conn = pyvirt.open(host.uri)
    uid = str(uuid.uuid4())
    serial = host.workdir / "serial.log"
    dom = conn.createXML(tiny_xml(name, serial, uuid=uid), 0)
    wait_for_text(serial, READY)
    return conn, dom, uid


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.qemu
@pytest.mark.parametrize("dname", ["../../../../x", "x\ny"])
def test_traversing_dname_refused_and_nothing_created(two_hosts, tmp_path, dname):
    needs_virsh()
    a, b = two_hosts
    _, dom, uid = _start(a, "mig")
    outside = tmp_path                            # where '../../../../x' from B's directories leads
    before = {p for p in outside.iterdir()}
    before_b = _files_under(b.workdir)
    out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--persistent", "--dname", dname,
                          "mig", b.uri], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert ("cannot contain '/'" if "/" in dname else "invalid char in name") in out.stderr, out.stderr
    # nothing anywhere the traversal could reach, nothing new on B at all
    for base in (b.state_dir / "etc" / "qemu", b.state_dir / "run" / "qemu", b.state_dir / "log" / "qemu"):
        for leaf in ("x.xml", "x.qmp", "x.log"):
            assert not (base / "../../../.." / leaf).exists()
    assert {p for p in outside.iterdir()} == before
    new_on_b = {p for p in _files_under(b.workdir) - before_b if p.name != "pyvirtd.log"}
    assert new_on_b == set(), new_on_b
    # the guest never left A
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_BOOTED]
    assert running_copies([a, b], uid) == 1
    dom.destroy()


# --- a 90-character name: start, migrate, adoption after a restart ------------------------

@pytest.mark.qemu
def test_long_name_starts_migrates_and_is_adopted(two_hosts):
    a, b = two_hosts
    name = LONG_NAME
    assert len(name) == 90
    ca, dom, uid = _start(a, name)
    status = parse_status((a.state_dir / "run" / "qemu" / f"{name}.xml").read_text())
    monitor = Path(status.monitor_path)
    assert monitor.parent.name == f"domain-{dom.ID()}-{name[:20]}" and monitor.name == "monitor.sock"
    assert stat_mode(monitor.parent) == 0o700
    a_dir = monitor.parent

    cb = pyvirt.open(b.uri)
    moved = dom.migrate(cb, pyvirt.VIR_MIGRATE_LIVE)
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert not a_dir.exists()                     # the source's per-domain directory went with it
    pid = qemu_pid(b, name)
    assert pid is not None and pid_alive(pid)
    cb.close()

    b.stop()                                      # SIGTERM: the guest keeps running
    assert pid_alive(pid)
    b.start()
    cb = pyvirt.open(b.uri)
    adopted = cb.lookupByName(name)
    assert adopted.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and qemu_pid(b, name) == pid
    adopted.suspend()                             # the monitor answers: really adopted
    assert adopted.state() == [pyvirt.VIR_DOMAIN_PAUSED, pyvirt.VIR_DOMAIN_PAUSED_USER]
    adopted.resume()
    b_dir = Path(parse_status((b.state_dir / "run" / "qemu" / f"{name}.xml").read_text()).monitor_path).parent
    assert b_dir.is_dir()
    adopted.destroy()
    assert not pid_alive(pid) and not b_dir.exists()
    assert not [p for p in (b.state_dir / "run" / "qemu").iterdir() if p.name.startswith("domain-")]


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.qemu
def test_per_domain_directory_of_a_guest_that_died_unseen_is_removed(pyvirtd, guests_built):
    """Daemon killed, then its QEMU: the next start marks the guest crashed and leaves no directory."""
    import select
    import signal
    _, dom, _ = _start(pyvirtd, "gone")
    run = pyvirtd.state_dir / "run" / "qemu"
    domain_dir = Path(parse_status((run / "gone.xml").read_text()).monitor_path).parent
    assert domain_dir.is_dir()
    pid = qemu_pid(pyvirtd, "gone")
    pyvirtd.stop(signal.SIGKILL)
    pidfd = os.pidfd_open(pid)
    os.kill(pid, signal.SIGKILL)
    assert select.select([pidfd], [], [], 30)[0], "QEMU did not exit"
    os.close(pidfd)
    pyvirtd.start()
    assert not domain_dir.exists() and not (run / "gone.xml").exists()
