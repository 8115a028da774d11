"""Security managers: the DAC driver's ownership of descriptors, paths and whole domains, the
owners it remembers (libvirt's xattrs, or its own record), the stack, the no-op driver."""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time

import pytest

import pyvirt
from pyvirt.conf import DomainDef
from pyvirt.conf.devices import Disk, Serial
from pyvirt.security import KNOWN, DACSecurityManager, NopSecurityManager, SavedLabel, SecurityStack, new_manager
from pyvirt.security import remember as rem
from pyvirt.security.dac import BY_RECORD, BY_XATTR, TO_ROOT, resolve_group, resolve_user

DOM = DomainDef(type="qemu", name="g", memory_kib=1024, current_memory_kib=1024)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")


def _other_ids() -> tuple[str, int, str, int]:
    user = pwd.getpwnam("nobody")
    group = grp.getgrgid(user.pw_gid)
    return user.pw_name, user.pw_uid, group.gr_name, group.gr_gid


def test_driver_table():
    assert set(KNOWN) == {"none", "dac"}
    stack = new_manager("dac", "root", "root", privileged=True)
    assert [type(m) for m in stack.managers] == [DACSecurityManager]
    # libvirt's "none": no driver on top of DAC, which stays while we are root
    assert [type(m) for m in new_manager("none", privileged=True).managers] == [DACSecurityManager]
    assert [type(m) for m in new_manager(["dac", "none"], privileged=True).managers] == [DACSecurityManager]
    # unprivileged there is nobody to switch to: nothing labels, QEMU runs as we do
    unpriv = new_manager("dac", "no-such-user-here", privileged=False)
    assert [type(m) for m in unpriv.managers] == [NopSecurityManager] and unpriv.process_ids() is None
    with pytest.raises(pyvirt.libvirtError) as info:
        new_manager("selinux")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_CONFIG_UNSUPPORTED
    assert "selinux" in info.value.get_error_message()


def test_dac_resolves_names_and_numbers():
    name, uid, gname, gid = _other_ids()
    assert resolve_user("root") == 0 and resolve_group("root") == 0
    assert resolve_user(name) == uid and resolve_group(gname) == gid
    assert resolve_user("+4321") == 4321 and resolve_group("+77") == 77
    assert resolve_user("54321") == 54321            # not a user name: taken as a number
    mgr = DACSecurityManager(name, gname)
    assert (mgr.uid, mgr.gid, mgr.label) == (uid, gid, f"+{uid}:+{gid}")
    assert DACSecurityManager().label == "+0:+0"     # root by default


@pytest.mark.parametrize("user, group, words", [
    ("no-such-user-here", "root", "cannot find user 'no-such-user-here'"),
    ("root", "no-such-group-here", "cannot find group 'no-such-group-here'"),
    ("+x1", "root", "invalid user id '+x1'"),
])
def test_dac_refuses_unknown_ids(user, group, words):
    with pytest.raises(pyvirt.libvirtError) as info:
        DACSecurityManager(user, group)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    assert info.value.get_error_domain() == pyvirt.VIR_FROM_SECURITY
    assert words in info.value.get_error_message()


@needs_root
def test_dac_labels_an_image_file_descriptor_and_gives_it_back(tmp_path):
    name, uid, gname, gid = _other_ids()
    mgr = DACSecurityManager(name, gname)
    path = tmp_path / "g.save"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        saved = mgr.set_image_fd_label(DOM, fd)
        assert saved == SavedLabel(0, 0)
        assert (os.stat(path).st_uid, os.stat(path).st_gid) == (uid, gid)
        mgr.restore_image_fd_label(DOM, fd, saved)
        assert (os.stat(path).st_uid, os.stat(path).st_gid) == (0, 0)
    finally:
        os.close(fd)


@needs_root
def test_dac_labels_a_pipe_with_nothing_to_give_back():
    name, uid, gname, gid = _other_ids()
    mgr = DACSecurityManager(name, gname)
    r, w = os.pipe()
    try:
        assert mgr.set_image_fd_label(DOM, w) is None      # the pipe goes away with QEMU
        assert (os.fstat(w).st_uid, os.fstat(w).st_gid) == (uid, gid)
    finally:
        os.close(r)
        os.close(w)


def test_dac_changes_nothing_already_right(tmp_path):
    st = os.stat(tmp_path)
    mgr = DACSecurityManager(f"+{st.st_uid}", f"+{st.st_gid}")
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        assert mgr.set_image_fd_label(DOM, fd) is None
        mgr.restore_image_fd_label(DOM, fd, None)
    finally:
        os.close(fd)
    assert mgr.set_tap_fd_label(DOM, 0) is None               # not image data: DAC has nothing to do


@needs_root
def test_dac_saved_state_path_label(tmp_path):
    name, uid, gname, gid = _other_ids()
    mgr = DACSecurityManager(name, gname)
    path = tmp_path / "g.save"
    path.write_bytes(b"x")
    saved = mgr.set_saved_state_label(DOM, str(path))
    assert saved == SavedLabel(0, 0) and os.stat(path).st_uid == uid
    mgr.restore_saved_state_label(DOM, str(path), saved)
    assert os.stat(path).st_uid == 0
    with pytest.raises(pyvirt.libvirtError) as info:
        mgr.set_saved_state_label(DOM, str(tmp_path / "missing"))
    assert info.value.get_error_code() == pyvirt.VIR_ERR_SYSTEM_ERROR
    assert "missing" in info.value.get_error_message()


def test_dac_reports_a_descriptor_it_cannot_label():
    mgr = DACSecurityManager("+4321", "+4321")
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(pyvirt.libvirtError) as info:
        mgr.set_image_fd_label(DOM, w)              # closed: EBADF
    assert info.value.get_error_code() == pyvirt.VIR_ERR_SYSTEM_ERROR
    assert f"descriptor {w}" in info.value.get_error_message()


def test_nop_does_nothing(tmp_path):
    mgr = NopSecurityManager()
    path = tmp_path / "f"
    path.write_bytes(b"")
    before = os.stat(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert mgr.set_image_fd_label(DOM, fd) is None
        mgr.restore_image_fd_label(DOM, fd, None)
        assert mgr.set_saved_state_label(DOM, str(path)) is None
        mgr.set_tap_fd_label(DOM, fd)
    finally:
        os.close(fd)
    after = os.stat(path)
    assert (before.st_uid, before.st_gid, before.st_mode) == (after.st_uid, after.st_gid, after.st_mode)
    assert mgr.model == "none"


# -- remembered owners (libvirt's xattrs) -------------------------------------------------
DAC_ATTRS = ("trusted.libvirt.security.dac", "trusted.libvirt.security.ref_dac",
             "trusted.libvirt.security.timestamp_dac")


def _attrs(path) -> dict[str, str]:
    return {name: os.getxattr(path, name).decode() for name in os.listxattr(path) if name in DAC_ATTRS}


def _owner(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid


@needs_root
def test_remember_counts_users_and_the_last_one_gets_the_label(tmp_path):
    path = str(tmp_path / "disk.img")
    open(path, "w").close()
    assert rem.remember(path, "+1000:+1000") == 1
    assert _attrs(path) == {"trusted.libvirt.security.dac": "+1000:+1000",
                            "trusted.libvirt.security.ref_dac": "1",
                            "trusted.libvirt.security.timestamp_dac": rem.boot_time()}
    assert rem.remember(path, "+999:+107") == 2        # a second user: the first owner stays
    assert _attrs(path)["trusted.libvirt.security.dac"] == "+1000:+1000"
    assert rem.recall(path) is None                    # still in use
    assert _attrs(path)["trusted.libvirt.security.ref_dac"] == "1"
    assert rem.recall(path) == "+1000:+1000"
    assert _attrs(path) == {}
    assert rem.recall(path) == rem.UNSUPPORTED         # nothing remembered any more


@needs_root
def test_remember_drops_records_of_an_earlier_boot(tmp_path):
    path = str(tmp_path / "disk.img")
    open(path, "w").close()
    os.setxattr(path, "trusted.libvirt.security.dac", b"+5:+5")
    os.setxattr(path, "trusted.libvirt.security.ref_dac", b"3")
    os.setxattr(path, "trusted.libvirt.security.timestamp_dac", b"12345")   # not this boot
    assert rem.recall(path) == rem.UNSUPPORTED and _attrs(path) == {}
    for name, value in (("dac", b"+5:+5"), ("ref_dac", b"3"), ("timestamp_dac", b"12345")):
        os.setxattr(path, f"trusted.libvirt.security.{name}", value)
    assert rem.remember(path, "+7:+7") == 1            # a fresh start, not a fourth user
    assert _attrs(path)["trusted.libvirt.security.dac"] == "+7:+7"


@needs_root
def test_remember_refuses_a_malformed_count(tmp_path):
    path = str(tmp_path / "disk.img")
    open(path, "w").close()
    os.setxattr(path, "trusted.libvirt.security.ref_dac", b"many")
    os.setxattr(path, "trusted.libvirt.security.timestamp_dac", rem.boot_time().encode())
    with pytest.raises(pyvirt.libvirtError) as info:
        rem.remember(path, "+0:+0")
    assert "malformed refcount many on " + path in info.value.get_error_message()


def test_remember_without_xattr_support(tmp_path, monkeypatch):
    def unsupported(*args):
        raise OSError(errno.ENOTSUP, "Operation not supported")
    monkeypatch.setattr(os, "getxattr", unsupported)
    monkeypatch.setattr(os, "setxattr", unsupported)
    path = str(tmp_path / "f")
    open(path, "w").close()
    assert rem.remember(path, "+1:+1") == rem.UNSUPPORTED
    assert rem.recall(path) == rem.UNSUPPORTED


def test_boot_time_is_stable_and_in_the_past():
    first = rem.boot_time()
    assert first == rem.boot_time() and first.isdigit()
    assert 0 < int(first) <= time.time()


def test_fallback_gives_back_only_after_the_last_user():
    fb = rem.Fallback()
    assert fb.acquire("/x", "a", "+1:+1") == "+1:+1"
    assert fb.acquire("/x", "b", "+999:+107") == "+1:+1"     # found relabelled: the first owner counts
    assert fb.release("/x", "a") is False
    assert fb.release("/x", "b") is True
    assert fb.release("/x", "c") is True                      # unknown: nothing holds it


def test_metadata_lock_excludes_another_process(tmp_path, monkeypatch):
    path = tmp_path / "disk.img"
    path.write_bytes(b"x" * 8)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'r+');"
         "fcntl.lockf(f, fcntl.LOCK_EX, 1, 1); print('locked', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"      # libvirt's POSIX lock on byte 1
        monkeypatch.setattr(rem, "LOCK_TIMEOUT", 0.05)
        with pytest.raises(pyvirt.libvirtError) as info:
            with rem.metadata_lock(str(path)):
                pass
        assert f"unable to lock {path}" in info.value.get_error_message()
    finally:
        holder.stdin.close()
        holder.wait()
    with rem.metadata_lock(str(path)):                            # free again
        pass


# -- the DAC driver on a whole domain -----------------------------------------------------
def _domain(tmp_path, name="g", uuid="11111111-2222-3333-4444-555555555555", *, disk="disk.img",
            readonly=False, shareable=False) -> DomainDef:
    d = DomainDef(type="qemu", name=name, uuid=uuid, memory_kib=1024, current_memory_kib=1024)
    d.devices.disks.append(Disk(target_dev="vda", target_bus="virtio", source=str(tmp_path / disk),
                                readonly=readonly, shareable=shareable))
    d.devices.serials.append(Serial(type="file", path=str(tmp_path / f"{name}.log")))
    d.os.kernel = str(tmp_path / "kernel")
    return d


def _files(tmp_path, owner=(1234, 1234)):
    for name in ("disk.img", "kernel"):
        (tmp_path / name).write_bytes(b"x")
        os.chown(tmp_path / name, *owner)


@needs_root
def test_dac_labels_a_domain_and_gives_everything_back(tmp_path):
    name, uid, gname, gid = _other_ids()
    _files(tmp_path)
    mgr = DACSecurityManager(name, gname)
    dom = _domain(tmp_path)
    record = mgr.set_all_label(dom)
    serial = tmp_path / "g.log"
    assert serial.exists() and stat.S_IMODE(os.stat(serial).st_mode) == 0o600   # created first
    for path in (tmp_path / "disk.img", tmp_path / "kernel", serial):
        assert _owner(path) == (uid, gid)
    assert [entry[1] for entry in record] == [BY_XATTR] * 3
    mgr.restore_all_label(dom, record)
    assert _owner(tmp_path / "disk.img") == _owner(tmp_path / "kernel") == (1234, 1234)
    assert _owner(serial) == (0, 0) and _attrs(tmp_path / "disk.img") == {}


@needs_root
def test_dac_shared_file_goes_back_when_the_last_guest_stops(tmp_path):
    name, uid, gname, gid = _other_ids()
    _files(tmp_path)
    mgr = DACSecurityManager(name, gname)
    a, b = _domain(tmp_path, "a"), _domain(tmp_path, "b", "11111111-2222-3333-4444-666666666666")
    ra, rb = mgr.set_all_label(a), mgr.set_all_label(b)
    assert _attrs(tmp_path / "kernel")["trusted.libvirt.security.ref_dac"] == "2"
    mgr.restore_all_label(a, ra)
    assert _owner(tmp_path / "kernel") == (uid, gid)          # b still runs
    mgr.restore_all_label(b, rb)
    assert _owner(tmp_path / "kernel") == (1234, 1234)


@needs_root
@pytest.mark.parametrize("flag", ["readonly", "shareable"])
def test_dac_never_gives_back_a_readonly_or_shared_disk(tmp_path, flag):
    name, uid, gname, gid = _other_ids()
    _files(tmp_path)
    mgr = DACSecurityManager(name, gname)
    dom = _domain(tmp_path, **{flag: True})
    record = mgr.set_all_label(dom)
    assert _owner(tmp_path / "disk.img") == (uid, gid) and _attrs(tmp_path / "disk.img") == {}
    assert str(tmp_path / "disk.img") not in [entry[0] for entry in record]
    mgr.restore_all_label(dom, record)
    assert _owner(tmp_path / "disk.img") == (uid, gid)        # other guests may still read it


@needs_root
def test_dac_refuses_a_file_another_user_holds(tmp_path):
    name, uid, gname, gid = _other_ids()
    _files(tmp_path)
    disk = tmp_path / "disk.img"
    rem.remember(str(disk), "+1234:+1234")                    # a guest of another QEMU user has it
    mgr = DACSecurityManager(name, gname)
    with pytest.raises(pyvirt.libvirtError) as info:
        mgr.set_all_label(_domain(tmp_path))
    assert info.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_INVALID
    assert info.value.get_error_message().endswith(
        f"Setting different DAC user or group on {disk} which is already in use")
    assert _attrs(disk)["trusted.libvirt.security.ref_dac"] == "1" and _owner(disk) == (1234, 1234)


@needs_root
def test_dac_failure_names_the_path_and_leaves_nothing_labelled(tmp_path):
    name, uid, gname, gid = _other_ids()
    _files(tmp_path)
    (tmp_path / "kernel").unlink()
    mgr = DACSecurityManager(name, gname)
    with pytest.raises(pyvirt.libvirtError) as info:
        mgr.set_all_label(_domain(tmp_path))
    assert info.value.get_error_code() == pyvirt.VIR_ERR_SYSTEM_ERROR
    assert f"unable to stat: {tmp_path / 'kernel'}: No such file or directory" in info.value.get_error_message()
    assert _owner(tmp_path / "disk.img") == (1234, 1234) and _attrs(tmp_path / "disk.img") == {}


@needs_root
def test_dac_without_xattrs_keeps_the_owner_in_its_record(tmp_path, monkeypatch):
    name, uid, gname, gid = _other_ids()
    _files(tmp_path)
    monkeypatch.setattr(rem, "remember", lambda *a, **k: rem.UNSUPPORTED)
    monkeypatch.setattr(rem, "FALLBACK", rem.Fallback())
    mgr = DACSecurityManager(name, gname)
    a, b = _domain(tmp_path, "a"), _domain(tmp_path, "b", "11111111-2222-3333-4444-666666666666")
    ra, rb = mgr.set_all_label(a), mgr.set_all_label(b)
    assert [str(tmp_path / "disk.img"), BY_RECORD, "+1234:+1234"] in ra
    assert [str(tmp_path / "disk.img"), BY_RECORD, "+1234:+1234"] in rb   # the first owner, not QEMU's
    # a daemon restart: a new manager learns from the records of the guests still running
    monkeypatch.setattr(rem, "FALLBACK", rem.Fallback())
    again = DACSecurityManager(name, gname)
    again.reserve_all_label(a, ra)
    again.reserve_all_label(b, rb)
    again.restore_all_label(a, ra)
    assert _owner(tmp_path / "disk.img") == (uid, gid)
    again.restore_all_label(b, rb)
    assert _owner(tmp_path / "disk.img") == (1234, 1234)


@needs_root
def test_dac_dynamic_ownership_off_and_remember_owner_off(tmp_path):
    name, uid, gname, gid = _other_ids()
    _files(tmp_path)
    off = DACSecurityManager(name, gname, dynamic_ownership=False)
    assert off.set_all_label(_domain(tmp_path)) is None
    assert _owner(tmp_path / "disk.img") == (1234, 1234) and not (tmp_path / "g.log").exists()
    forgetful = DACSecurityManager(name, gname, remember_owner=False)
    dom = _domain(tmp_path)
    record = forgetful.set_all_label(dom)
    assert {entry[1] for entry in record} == {TO_ROOT} and _attrs(tmp_path / "disk.img") == {}
    forgetful.restore_all_label(dom, record)
    assert _owner(tmp_path / "disk.img") == (0, 0)             # libvirt's old rule: back to root


@needs_root
def test_dac_tolerates_a_refused_chown_only_when_qemu_can_use_the_file(tmp_path, monkeypatch):
    name, uid, gname, gid = _other_ids()
    _files(tmp_path)
    real_chown = os.chown

    def refusing(path, *ids):
        if str(path).endswith(("disk.img", "kernel")):
            raise OSError(errno.EPERM, "Operation not permitted")
        real_chown(path, *ids)
    monkeypatch.setattr(os, "chown", refusing)
    mgr = DACSecurityManager(name, gname)
    os.chmod(tmp_path / "disk.img", 0o666)
    os.chmod(tmp_path / "kernel", 0o644)
    dom = _domain(tmp_path)
    mgr.restore_all_label(dom, mgr.set_all_label(dom))          # usable as they are: start goes on
    os.chmod(tmp_path / "disk.img", 0o644)                      # QEMU could not write it
    with pytest.raises(pyvirt.libvirtError) as info:
        mgr.set_all_label(dom)
    assert (f"unable to set user and group to '{uid}:{gid}' on '{tmp_path / 'disk.img'}': "
            "Operation not permitted") in info.value.get_error_message()


class _Recorder(NopSecurityManager):
    def __init__(self, model, calls, fail=False):
        self.model, self.calls, self.fail = model, calls, fail

    def set_all_label(self, domain):
        if self.fail:
            raise pyvirt.libvirtError("refused")
        self.calls.append(("set", self.model))
        return [self.model]

    def restore_all_label(self, domain, record):
        self.calls.append(("restore", self.model, record))


def test_stack_labels_in_order_and_restores_in_reverse():
    calls: list = []
    stack = SecurityStack([_Recorder("dac", calls), _Recorder("selinux", calls)])
    record = stack.set_all_label(DOM)
    assert record == {"dac": ["dac"], "selinux": ["selinux"]}
    stack.restore_all_label(DOM, record)
    assert calls == [("set", "dac"), ("set", "selinux"),
                     ("restore", "selinux", ["selinux"]), ("restore", "dac", ["dac"])]
    calls.clear()
    failing = SecurityStack([_Recorder("dac", calls), _Recorder("apparmor", calls, fail=True)])
    with pytest.raises(pyvirt.libvirtError):
        failing.set_all_label(DOM)
    assert calls == [("set", "dac"), ("restore", "dac", ["dac"])]   # nothing stays labelled


def test_dac_refuses_a_path_with_a_nul(tmp_path):
    mgr = DACSecurityManager("+4321", "+4321")
    dom = DomainDef(type="qemu", name="g", memory_kib=1024, current_memory_kib=1024)
    dom.os.kernel = f"{tmp_path}/k\0ernel"
    with pytest.raises(pyvirt.libvirtError) as info:
        mgr.set_all_label(dom)
    assert info.value.get_error_code() == pyvirt.VIR_ERR_INVALID_ARG
    assert "not a valid path" in info.value.get_error_message()


def _qemu_img(*args) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img is not installed")
def test_qcow2_backing_chain_is_followed_only_through_qcow2(tmp_path):
    from pyvirt.security.dac import _backing_chain
    _qemu_img("create", "-f", "raw", str(tmp_path / "base.img"), "1M")
    _qemu_img("create", "-f", "qcow2", "-b", "base.img", "-F", "raw", str(tmp_path / "mid.qcow2"))
    _qemu_img("create", "-f", "qcow2", "-b", str(tmp_path / "mid.qcow2"), "-F", "qcow2",
              str(tmp_path / "top.qcow2"))
    assert _backing_chain(str(tmp_path / "top.qcow2")) == [str(tmp_path / "mid.qcow2"),
                                                           str(tmp_path / "base.img")]
    # a backing file recorded as raw is the guest's data, even when it looks like qcow2
    _qemu_img("create", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", str(tmp_path / "lure.img"))
    _qemu_img("create", "-f", "qcow2", "-b", "lure.img", "-F", "raw", str(tmp_path / "guest.qcow2"))
    assert _backing_chain(str(tmp_path / "guest.qcow2")) == [str(tmp_path / "lure.img")]
    assert _backing_chain(str(tmp_path / "base.img")) == []


@needs_root
@pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img is not installed")
def test_dac_labels_backing_files_without_giving_them_back(tmp_path):
    name, uid, gname, gid = _other_ids()
    _files(tmp_path)
    _qemu_img("create", "-f", "qcow2", "-b", "disk.img", "-F", "raw", str(tmp_path / "top.qcow2"))
    os.chown(tmp_path / "top.qcow2", 1234, 1234)
    dom = _domain(tmp_path, disk="top.qcow2")
    dom.devices.disks[0].driver_type = "qcow2"
    mgr = DACSecurityManager(name, gname)
    record = mgr.set_all_label(dom)
    assert _owner(tmp_path / "top.qcow2") == _owner(tmp_path / "disk.img") == (uid, gid)
    mgr.restore_all_label(dom, record)
    assert _owner(tmp_path / "top.qcow2") == (1234, 1234)
    assert _owner(tmp_path / "disk.img") == (uid, gid)      # shared by every overlay: libvirt's rule
