"""Security managers: the DAC driver's ownership of descriptors and paths, the no-op driver."""

from __future__ import annotations

import grp
import os
import pwd

import pytest

import pyvirt
from pyvirt.conf import DomainDef
from pyvirt.security import DRIVERS, DACSecurityManager, NopSecurityManager, SavedLabel, new_manager
from pyvirt.security.dac import resolve_group, resolve_user

DOM = DomainDef(type="qemu", name="g", memory_kib=1024, current_memory_kib=1024)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")


def _other_ids() -> tuple[str, int, str, int]:
    user = pwd.getpwnam("nobody")
    group = grp.getgrgid(user.pw_gid)
    return user.pw_name, user.pw_uid, group.gr_name, group.gr_gid


def test_driver_table():
    assert set(DRIVERS) == {"none", "dac"}
    assert isinstance(new_manager("none"), NopSecurityManager)
    assert isinstance(new_manager("dac", "root", "root"), DACSecurityManager)
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
