"""Debian's own libvirtd.conf and qemu.conf, with every documented setting
uncommented, load in pyvirtd: ``pyvirtd --check-config FILE`` exits 0 and
lists what it would ignore; a real pyvirtd acts on the keys it implements
and logs the others once.

The files come from Debian's ``libvirt-daemon-system`` package, unpacked
(not installed) by ``make test`` into ``build/libvirt-conf``."""

from __future__ import annotations

import grp
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from daemons import Pyvirtd
from guests import REPO
from pyvirt.daemon.config import DaemonConfig, load

DEBIAN_CONF = REPO / "build" / "libvirt-conf" / "etc" / "libvirt"
IMPLEMENTED = {name for name in DaemonConfig.__dataclass_fields__ if name != "ignored"}


def debian_file(name: str) -> Path:
    path = DEBIAN_CONF / name
    if not path.is_file():
        pytest.skip(f"{path} is missing: `make test` unpacks it from Debian's libvirt-daemon-system "
                    "package (apt-get download), which could not be fetched here")
    return path


def uncomment(text: str) -> str:
    """Every documented ``#key = value`` line made live, lists spanning lines included."""
    out, in_list = [], False
    for line in text.splitlines():
        if in_list:
            body = line[1:] if line.startswith("#") else line
            in_list = "]" not in body
            out.append(body)
            continue
        m = re.fullmatch(r"#([a-z][a-z0-9_]*\s*=(?!=).*)", line)
        if m:
            body = m.group(1)
            in_list = "[" in body and "]" not in body
            out.append(body)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def check_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyvirt.daemon.main", "--check-config", str(path)],
                          capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          timeout=60)


def keys_in(text: str) -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9_]*)\s*=", text, re.M))


@pytest.mark.parametrize("name,at_least", [("libvirtd.conf", 50), ("qemu.conf", 90)])
def test_debian_file_with_every_setting_uncommented_loads(tmp_path, name, at_least):
    # polkit (the UNIX sockets' example) is refused on its own (test_polkit_is_refused...)
    text = uncomment(debian_file(name).read_text()).replace('"polkit"', '"none"')
    keys = keys_in(text)
    assert len(keys) >= at_least, sorted(keys)     # the uncommenting really reached the settings
    conf = tmp_path / name
    conf.write_text(text)
    run = check_config(conf)
    assert run.returncode == 0, run.stderr
    listed = set(re.findall(rf"^{re.escape(str(conf))}:\d+: (\w+): ignored: ", run.stdout, re.M))
    # every setting is either one pyvirtd acts on or one it names as ignored
    assert keys <= IMPLEMENTED | listed, sorted(keys - IMPLEMENTED - listed)
    assert f"{conf}: loads; {len(run.stdout.splitlines()) - 1} settings ignored" in run.stdout
    if name == "libvirtd.conf":
        assert {"access_drivers"} <= listed
        assert {"auth_unix_rw", "auth_tls", "sasl_allowed_username_list", "tcp_min_ssf"} <= IMPLEMENTED
        cfg = load(text, str(conf))
        assert cfg.tcp_port == 16509 and cfg.listen_tcp == 1    # tcp_port = "16509", a string
        assert (cfg.unix_sock_rw_perms, cfg.unix_sock_group) == ("0770", "libvirt")
    else:
        assert {"vnc_listen", "security_driver", "cgroup_device_acl", "nvram"} <= listed | IMPLEMENTED
        cfg = load(text, str(conf))
        assert cfg.user == "libvirt-qemu" and cfg.migration_address == "0.0.0.0"


def test_both_files_in_one(tmp_path):
    text = "".join(uncomment(debian_file(name).read_text()) for name in ("libvirtd.conf", "qemu.conf"))
    text = text.replace('"polkit"', '"none"')
    conf = tmp_path / "pyvirtd.conf"
    conf.write_text(text)
    run = check_config(conf)
    assert run.returncode == 0, run.stderr
    # keepalive_* are in both: libvirt reads the first, and says nothing; pyvirtd says so
    assert re.search(r":\d+: keepalive_interval: ignored: repeated: the setting at line \d+ applies", run.stdout)


def test_misspelt_key_is_refused_naming_the_line(tmp_path):
    conf = tmp_path / "pyvirtd.conf"
    conf.write_text('listen_tcp = 0\ntcp_prot = "16509"\n')
    run = check_config(conf)
    assert run.returncode == 1
    assert f"pyvirtd: error: {conf}:2: unknown setting 'tcp_prot'" in run.stderr
    assert "Traceback" not in run.stderr


def test_missing_file_is_an_error(tmp_path):
    run = check_config(tmp_path / "absent.conf")
    assert run.returncode == 1 and "cannot read" in run.stderr and "No such file" in run.stderr


def other_group() -> grp.struct_group:
    for g in grp.getgrall():
        if g.gr_gid != os.getgid():
            return g
    pytest.skip("no group other than the daemon's own")


def test_running_daemon_applies_and_logs_ignored_once(tmp_path):
    group = other_group()
    daemon = Pyvirtd(tmp_path / "d", extra_config=f'unix_sock_group = "{group.gr_name}"\n'
                     'audit_logging = 0\nadmin_max_clients = 5\nvnc_listen = "0.0.0.0"\nlog_level = 2\n')
    try:
        daemon.start()
        for sock in ("libvirt-sock", "libvirt-sock-ro"):
            assert (daemon.sock_dir / sock).stat().st_gid == group.gr_gid
    finally:
        daemon.stop()
    log = daemon.log_path.read_text()
    for key in ("audit_logging", "admin_max_clients", "vnc_listen"):
        assert log.count(f"ignoring '{key}'") == 1, log
    assert "Traceback" not in log


def test_polkit_is_refused_by_check_config_and_at_start(tmp_path):
    conf = tmp_path / "pyvirtd.conf"
    conf.write_text('auth_unix_ro = "none"\nauth_unix_rw = "polkit"\n')
    run = check_config(conf)
    assert run.returncode == 1
    assert f'{conf}:2: auth_unix_rw = "polkit" is not supported by pyvirtd (it has no polkit)' in run.stderr
    daemon = Pyvirtd(tmp_path / "d", extra_config='auth_unix_rw = "polkit"\nunix_sock_rw_perms = "0777"\n')
    with pytest.raises(RuntimeError, match="pyvirtd exited"):
        daemon.start()
    daemon.stop()
    assert 'auth_unix_rw = "polkit" is not supported' in daemon.log_path.read_text()


def test_log_level_takes_effect(tmp_path):
    """log_level = 4 (errors only): the warnings about ignored settings are not written."""
    daemon = Pyvirtd(tmp_path / "d", extra_config='log_level = 4\naudit_logging = 0\n')
    try:
        daemon.start()
    finally:
        daemon.stop()
    log = daemon.log_path.read_text()
    assert "ignoring 'audit_logging'" not in log and "pyvirtd ready" not in log
    info = Pyvirtd(tmp_path / "e", extra_config='log_level = 2\naudit_logging = 0\n')
    try:
        info.start()
    finally:
        info.stop()
    assert "ignoring 'audit_logging'" in info.log_path.read_text()
