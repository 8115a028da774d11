"""The ssh transport's command line, one layer alone: what each URI option turns into.

(That these are the argument lists stock virsh 9.0 builds is checked end to
end in test_ssh.py, by recording both.)
"""

from __future__ import annotations

import pytest

from pyvirt import uri as urimod
from pyvirt.errors import ErrorNumber, libvirtError
from pyvirt.rpc.ssh_transport import helper_command, plan, shell_escape, ssh_argv

NC = ("if 'nc' -q 2>&1 | grep \"requires an argument\" >/dev/null 2>&1; then ARG=-q0;else ARG=;fi;"
      "'nc' $ARG -U /var/run/libvirt/libvirt-sock")


def test_auto_tries_virt_ssh_helper_then_nc():
    assert helper_command("auto", None, "/var/run/libvirt/libvirt-sock", "qemu:///system", False) == (
        "sh -c 'which virt-ssh-helper 1>/dev/null 2>&1; if test $? = 0; then "
        "    virt-ssh-helper 'qemu:///system'; else    " + NC + "; fi'")


def test_netcat_and_native_and_read_only():
    assert helper_command("netcat", None, "/var/run/libvirt/libvirt-sock", "qemu:///system", False) == \
        f"sh -c '{NC}'"
    assert helper_command("native", None, "/x", "qemu:///system", True) == \
        "sh -c 'virt-ssh-helper -r 'qemu:///system''"
    # a netcat path asks for nc even under auto
    assert helper_command("auto", "/opt/nc", "/s", "qemu:///system", False).startswith("sh -c 'if '/opt/nc' -q")


def test_refusals_are_libvirts():
    with pytest.raises(libvirtError, match="netcat path not valid with native proxy mode"):
        helper_command("native", "nc", "/s", "qemu:///system", False)
    with pytest.raises(libvirtError, match="proxy type 'bogus'") as err:
        plan(urimod.parse("qemu+ssh://h/system?proxy=bogus"), False)
    assert err.value.get_error_code() == ErrorNumber.INVALID_ARG
    with pytest.raises(libvirtError, match="Failed to parse value of URI component no_verify"):
        plan(urimod.parse("qemu+ssh://h/system?no_verify=yes"), False)


def test_shell_escape_as_libvirt():
    assert shell_escape("nc") == "nc"
    assert shell_escape("") == "''"
    assert shell_escape("my nc") == "'my nc'"
    assert shell_escape("it's") == "'it'\\''s'"


def _fake(path, name):
    path.mkdir(exist_ok=True)
    prog = path / name
    prog.write_text("#!/bin/sh\nprintf '[%s]' \"$@\"\n")
    prog.chmod(0o755)
    return prog


def _as_remote_shell(cmd, path):
    """What the remote login shell does with the command ssh hands it (sh -c CMD)."""
    import os
    import subprocess
    env = dict(os.environ, PATH=f"{path}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=30, env=env).stdout


def test_odd_paths_and_uris_survive_both_shells(tmp_path):
    bin_dir = tmp_path / "bin dir"
    nc = _fake(bin_dir, "my nc")
    out = _as_remote_shell(helper_command("netcat", str(nc), "/odd path/it's.sock", "qemu:///system", False),
                           bin_dir)
    assert out.endswith("[-U][/odd path/it's.sock]"), out
    _fake(bin_dir, "virt-ssh-helper")
    cmd = plan(urimod.parse("qemu+ssh://h/system?mode=legacy&keyfile=/k"), False).argv[-1]
    assert _as_remote_shell(cmd, bin_dir) == "[qemu:///system?mode=legacy]"


def test_argv_order_and_options():
    assert ssh_argv("h", "CMD") == ["ssh", "-T", "-e", "none", "--", "h", "CMD"]
    assert ssh_argv("h", "CMD", binary="/usr/bin/ssh", port=2222, user="u", keyfile="/k",
                    no_tty=True, no_verify=True) == [
        "/usr/bin/ssh", "-p", "2222", "-l", "u", "-i", "/k", "-T", "-e", "none",
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "--", "h", "CMD"]


def test_plan_from_uri():
    p = plan(urimod.parse("qemu+ssh://root@host:2200/system?keyfile=/k&no_verify=1&socket=/s"), False)
    assert p.argv[:-1] == ["ssh", "-p", "2200", "-l", "root", "-i", "/k", "-T", "-e", "none",
                           "-o", "StrictHostKeyChecking=no", "--", "host"]
    assert p.argv[-1].endswith("-U /s'") and "virt-ssh-helper" not in p.argv[-1]   # socket= means nc
    assert p.label == "qemu+ssh to root@host:2200"
    assert p.env["LC_ALL"] == "C" and set(p.env) <= {"LC_ALL", "LD_PRELOAD", "LD_LIBRARY_PATH", "PATH",
                                                      "HOME", "USER", "LOGNAME", "TMPDIR", "XDG_RUNTIME_DIR",
                                                      "KRB5CCNAME", "SSH_AUTH_SOCK", "SSH_ASKPASS",
                                                      "OPENSSL_CONF", "DISPLAY", "XAUTHORITY"}
    # no host: localhost; read-only: the -ro socket and virt-ssh-helper -r
    ro = plan(urimod.parse("qemu+ssh:///system"), True)
    assert ro.argv[-2] == "localhost"
    assert "virt-ssh-helper -r 'qemu:///system'" in ro.argv[-1] and "libvirt-sock-ro" in ro.argv[-1]
    # a session URI without socket: only virt-ssh-helper can find the socket
    assert plan(urimod.parse("qemu+ssh://h/session"), False).argv[-1] == \
        "sh -c 'virt-ssh-helper 'qemu:///session''"
