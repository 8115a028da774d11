"""QEMU unprivileged under the default configuration, through real pyvirtd and QEMU.

QEMU runs as libvirt's Debian user (libvirt-qemu, group kvm) with no
capabilities; the DAC driver gives it the files it opens and gives them back
to their owner when the guest stops — also when the daemon restarted in
between, and on a file system without extended attributes; read-only and
shareable disks stay with QEMU's user; a file that cannot be given refuses
the start naming it; ``user = "root"`` still runs QEMU as root.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest

import pyvirt
from daemons import Pyvirtd, qemu_pid
from guests import READY, tiny_xml, wait_for_text

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching QEMU's user needs root")

NOBODY = pwd.getpwnam("nobody")
OTHER = (NOBODY.pw_uid, NOBODY.pw_gid)      # "someone else" owning the guest's files before start


def _qemu_ids() -> tuple[int, int]:
    try:
        return pwd.getpwnam("libvirt-qemu").pw_uid, grp.getgrnam("kvm").gr_gid
    except KeyError:
        pytest.skip("the libvirt-qemu user or kvm group is missing: run make deps")


@pytest.fixture
def hosts(tmp_path, guests_built):
    """Start pyvirtd hosts (default configuration plus ``extra``); all cleaned up."""
    started: list[Pyvirtd] = []

    def make(extra: str = "", name: str | None = None) -> Pyvirtd:
        host = Pyvirtd(tmp_path / (name or f"host{len(started)}"), extra_config=extra)
        started.append(host)
        return host.start()
    yield make
    leaked = [pid for host in started for pid in host.cleanup()]
    assert not leaked, f"QEMU processes left behind: {leaked}"


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _owner(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid


def _disk(path: Path, dev: str = "vda", extra: str = "") -> str:
    return f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{path}'/>
      <target dev='{dev}' bus='virtio'/>{extra}
    </disk>"""


def _image(path: Path, owner=OTHER, mode: int = 0o640) -> Path:
    with open(path, "wb") as f:
        f.truncate(1 << 20)
    os.chown(path, *owner)
    os.chmod(path, mode)
    return path


def _serial(path: Path, owner=OTHER) -> Path:
    path.write_bytes(b"")
    os.chown(path, *owner)
    os.chmod(path, 0o600)
    return path


def _start(host: Pyvirtd, name: str, serial: Path, devices: str = "") -> pyvirt.virDomain:
    conn = pyvirt.open(host.uri)
    dom = conn.createXML(tiny_xml(name, serial, extra_devices=devices), 0)
    wait_for_text(serial, READY)
    return dom


def test_qemu_runs_as_libvirt_qemu_without_capabilities(hosts, tmp_path):
    uid, gid = _qemu_ids()
    host = hosts()
    _start(host, "caps", tmp_path / "caps.log")
    status = _status(qemu_pid(host, "caps"))
    assert status["Uid"].split() == [str(uid)] * 4
    assert status["Gid"].split() == [str(gid)] * 4
    assert str(gid) in status["Groups"].split()                  # kvm: /dev/kvm is root:kvm 0660
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"):
        assert int(status[caps], 16) == 0, f"{caps} is {status[caps]}"


@pytest.mark.parametrize("setpriv", [True, False], ids=["setpriv", "preexec"])
def test_embedded_driver_runs_qemu_unprivileged_too(embed_uri, tmp_path, monkeypatch, setpriv):
    from pyvirt.drivers.qemu import process
    uid, gid = _qemu_ids()
    if not setpriv:
        monkeypatch.setattr(process, "_SETPRIV", None)      # a host without util-linux's setpriv
    # (pyvirtd, on uvloop, always drops the ids in that hook: see the test above)
    serial = _serial(tmp_path / "e.log")
    dom = pyvirt.open(embed_uri).createXML(tiny_xml("e", serial), 0)
    wait_for_text(serial, READY)
    status = _status(_embedded_pid(tmp_path, "e"))
    assert status["Uid"].split()[0] == str(uid) and status["Gid"].split()[0] == str(gid)
    for caps in ("CapPrm", "CapEff", "CapBnd"):
        assert int(status[caps], 16) == 0, f"{caps} is {status[caps]}"
    assert _owner(serial) == (uid, gid)
    dom.destroy()
    assert _owner(serial) == OTHER


def _embedded_pid(tmp_path: Path, name: str) -> int:
    status = (tmp_path / "host" / "run" / "qemu" / f"{name}.xml").read_text()
    return int(status.split("pid='", 1)[1].split("'", 1)[0])


def test_files_go_to_qemu_and_back_to_their_owner(hosts, tmp_path):
    qemu = _qemu_ids()
    host = hosts()
    disk, serial = _image(tmp_path / "disk.img"), _serial(tmp_path / "g.log")
    dom = _start(host, "g", serial, _disk(disk))
    assert _owner(disk) == _owner(serial) == qemu
    assert os.getxattr(disk, "trusted.libvirt.security.dac").decode() == "+{}:+{}".format(*OTHER)
    dom.destroy()
    assert _owner(disk) == _owner(serial) == OTHER
    assert not [a for a in os.listxattr(disk) if a.startswith("trusted.libvirt.")]


def test_owner_given_back_after_a_daemon_restart(hosts, tmp_path):
    qemu = _qemu_ids()
    host = hosts()
    disk, serial = _image(tmp_path / "disk.img"), _serial(tmp_path / "g.log")
    _start(host, "g", serial, _disk(disk))
    host.stop()                                                   # the guest keeps running
    assert _owner(disk) == _owner(serial) == qemu
    host.start()
    pyvirt.open(host.uri).lookupByName("g").destroy()
    assert _owner(disk) == _owner(serial) == OTHER


@contextlib.contextmanager
def _ramfs(where: Path):
    """A file system without extended attributes (ramfs), mounted for the test."""
    where.mkdir()
    if subprocess.run(["mount", "-t", "ramfs", "ramfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a ramfs here")
    try:
        os.chmod(where, 0o755)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_without_xattrs_the_owner_is_kept_in_the_status_and_survives_a_restart(hosts, tmp_path):
    qemu = _qemu_ids()
    with _ramfs(tmp_path / "ram") as ram:
        disk, serial = _image(ram / "disk.img"), _serial(ram / "g.log")
        host = hosts()
        _start(host, "g", serial, _disk(disk))
        assert _owner(disk) == _owner(serial) == qemu
        status = (host.state_dir / "run" / "qemu" / "g.xml").read_text()
        assert "seclabels" in status and str(disk) in status
        host.stop()
        host.start()
        pyvirt.open(host.uri).lookupByName("g").destroy()
        assert _owner(disk) == _owner(serial) == OTHER


@pytest.mark.parametrize("flag", ["readonly", "shareable"])
def test_readonly_or_shareable_disk_stays_usable_for_another_guest(hosts, tmp_path, flag):
    qemu = _qemu_ids()
    host = hosts()
    disk = _image(tmp_path / "shared.img")
    devices = _disk(disk, extra=f"\n      <{flag}/>")
    a = _start(host, "a", tmp_path / "a.log", devices)
    b = _start(host, "b", tmp_path / "b.log", devices)
    a.destroy()
    assert _owner(disk) == qemu                                    # b still reads it
    assert b.isActive()
    c = _start(host, "c", tmp_path / "c.log", devices)             # and a newcomer can open it
    b.destroy()
    c.destroy()
    assert _owner(disk) == qemu                                    # libvirt never gives these back


def test_missing_disk_refuses_the_start_naming_it(hosts, tmp_path):
    host = hosts()
    serial = _serial(tmp_path / "g.log")
    missing = tmp_path / "no-such.img"
    with pytest.raises(pyvirt.libvirtError) as info:
        pyvirt.open(host.uri).createXML(tiny_xml("g", serial, extra_devices=_disk(missing)), 0)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_SYSTEM_ERROR
    assert f"unable to stat: {missing}: No such file or directory" in info.value.get_error_message()
    assert _owner(serial) == OTHER                                 # what was labelled went back


def test_file_that_cannot_be_labelled_refuses_the_start_naming_it(hosts, tmp_path):
    _qemu_ids()
    host = hosts()
    serial = _serial(tmp_path / "g.log")
    disk = _image(tmp_path / "locked.img", owner=(0, 0), mode=0o600)
    if subprocess.run(["chattr", "+i", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot make a file immutable here")
    try:
        with pytest.raises(pyvirt.libvirtError) as info:
            pyvirt.open(host.uri).createXML(tiny_xml("g", serial, extra_devices=_disk(disk)), 0)
    finally:
        subprocess.run(["chattr", "-i", str(disk)], check=True)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_SYSTEM_ERROR
    # an immutable file refuses the remembered owner before the chown itself
    assert (f"Unable to set XATTR trusted.libvirt.security.dac on {disk}: Operation not permitted"
            in info.value.get_error_message())
    assert _owner(serial) == OTHER and _owner(disk) == (0, 0)


def test_user_root_still_runs_qemu_as_root(hosts, tmp_path):
    host = hosts('user = "root"\ngroup = "root"')
    disk, serial = _image(tmp_path / "disk.img"), _serial(tmp_path / "g.log")
    dom = _start(host, "g", serial, _disk(disk))
    status = _status(qemu_pid(host, "g"))
    assert status["Uid"].split()[0] == "0" and status["Gid"].split()[0] == "0"
    assert _owner(disk) == (0, 0)                                  # labelled for root, as libvirt does
    dom.destroy()
    assert _owner(disk) == OTHER


def test_qcow2_overlay_reaches_its_backing_file(hosts, tmp_path):
    qemu = _qemu_ids()
    host = hosts()
    base = _image(tmp_path / "base.img", mode=0o600)             # nobody's, unreadable to others
    top = tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-b", str(base), "-F", "raw", str(top)],
                   check=True, capture_output=True)
    os.chown(top, *OTHER)
    disk = _disk(top).replace("type='raw'", "type='qcow2'")
    dom = _start(host, "g", tmp_path / "g.log", disk)
    assert _owner(top) == _owner(base) == qemu
    dom.destroy()
    assert _owner(top) == OTHER
    assert _owner(base) == qemu                                    # a shared base is never given back
