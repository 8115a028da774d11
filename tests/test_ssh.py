"""qemu+ssh:// end to end: pyvirt's client and stock virsh through a real sshd to a pyvirtd.

The sshd is Debian's, started by the test on a loopback port with its own
host key and an authorized client key (ssh-keygen in the temp dir), inside a
private mount namespace whose /run is a tmpfs of its own: there
/run/libvirt/libvirt-sock(-ro) lead to the test pyvirtd's sockets, so the
relay libvirt picks without a ``socket=`` (virt-ssh-helper qemu:///system)
reaches the test daemon and nothing of this machine is touched.

Both clients run ssh through ``command=`` a small wrapper that records its
argument list and adds ``-F`` with the test's known_hosts file (so root's
own ~/.ssh is never written); the argument lists pyvirt and virsh build for
the same URI are compared.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

import pyvirt
from daemons import Pyvirtd, free_port
from guests import READY, REPO, tiny_xml, wait_for_text

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="sshd in a private mount namespace needs root"),
    pytest.mark.skipif(not Path("/usr/sbin/sshd").exists() or shutil.which("ssh") is None,
                       reason="openssh-server / openssh-client not installed"),
    pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd not installed"),
]

HAVE_HELPER = shutil.which("virt-ssh-helper") is not None
SSHD_CONFIG = """ListenAddress 127.0.0.1
HostKey {dir}/host_key
AuthorizedKeysFile {dir}/authorized_keys
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
LogLevel VERBOSE
"""
CLIENT_CONFIG = """UserKnownHostsFile {known_hosts}
GlobalKnownHostsFile /dev/null
IdentitiesOnly yes
ConnectTimeout 20
"""
WRAPPER = """#!/bin/sh
# ssh as the client under test ran it (argv recorded by pid), with the test's known hosts
printf '%s\\0' "$@" > '{calls}'/$$
exec ssh -F '{config}' "$@"
"""
# /run of sshd's own mount namespace: its privilege-separation directory and
# libvirt's system sockets, leading to the test daemon.
NAMESPACE_SETUP = ("mount -t tmpfs -o mode=0755,size=1m pyvirt-test-run /run && "
                   "mkdir -m 0755 /run/sshd /run/libvirt && "
                   'ln -s "$0" /run/libvirt/libvirt-sock && ln -s "$1" /run/libvirt/libvirt-sock-ro && '
                   'exec /usr/sbin/sshd -D -e -f "$2" -p "$3"')


@dataclass
class Sshd:
    dir: Path
    port: int
    proc: subprocess.Popen
    key: Path
    log: Path

    def wrapper(self, strict: bool = False) -> Path:
        return self.dir / ("ssh-strict" if strict else "ssh")

    def uri(self, *, strict: bool = False, user: str | None = "root", port: int | None = None,
            **params: str) -> str:
        query = {"keyfile": str(self.key), "command": str(self.wrapper(strict))}
        if not strict:
            query["no_verify"] = "1"
        query.update(params)
        authority = (f"{user}@" if user else "") + f"127.0.0.1:{port or self.port}"
        return f"qemu+ssh://{authority}/system?" + "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())

    def calls(self) -> dict[int, list[str]]:
        """Every ssh the clients ran: pid -> argument list (without the wrapper's -F)."""
        return {int(p.name): [a.decode() for a in p.read_bytes().split(b"\0")[:-1]]
                for p in (self.dir / "calls").iterdir()}

    def new_calls(self, before: dict[int, list[str]]) -> dict[int, list[str]]:
        return {pid: argv for pid, argv in self.calls().items() if pid not in before}

    def descendants(self) -> list[list[str]]:
        """Command lines of the processes below sshd (the relays of open sessions)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], list(children.get(self.proc.pid, []))
        while todo:
            pid = todo.pop()
            todo += children.get(pid, [])
            try:
                found.append([a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a])
            except OSError:
                pass
        return found


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pyvirt-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=60)


def _start_sshd(d: Path, daemon: Pyvirtd) -> Sshd:
    d.mkdir()
    (d / "calls").mkdir()
    _keygen(d / "host_key")
    _keygen(d / "client_key")
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    (d / "sshd_config").write_text(SSHD_CONFIG.format(dir=d))
    for name, known in (("ssh", d / "known_hosts"), ("ssh-strict", d / "known_hosts_empty")):
        known.touch()
        (d / f"{name}.config").write_text(CLIENT_CONFIG.format(known_hosts=known))
        wrapper = d / name
        wrapper.write_text(WRAPPER.format(calls=d / "calls", config=d / f"{name}.config"))
        wrapper.chmod(0o755)
    port = free_port()
    log = d / "sshd.log"
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", NAMESPACE_SETUP,
                             str(daemon.sock_dir / "libvirt-sock"), str(daemon.sock_dir / "libvirt-sock-ro"),
                             str(d / "sshd_config"), str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # sshd says when it listens: wait for that line, and keep copying its log to a file.
    listening = threading.Event()

    def copy_log() -> None:
        with open(log, "wb") as out:
            for line in proc.stderr:
                out.write(line)
                out.flush()
                if b"Server listening on 127.0.0.1" in line:
                    listening.set()
        listening.set()         # exited: the waiter looks at why
    threading.Thread(target=copy_log, name="sshd-log", daemon=True).start()
    if not listening.wait(30) or proc.poll() is not None:
        _stop(proc)
        pytest.fail(f"sshd did not start: {log.read_text(errors='replace')[-2000:]}")
    return Sshd(d, port, proc, d / "client_key", log)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def host(tmp_path):
    """(pyvirtd, sshd in front of it); both stopped afterwards, by PID."""
    daemon = Pyvirtd(tmp_path / "hostA")
    sshd = None
    try:
        daemon.start()
        sshd = _start_sshd(tmp_path / "sshd", daemon)
        yield daemon, sshd
    finally:
        if sshd is not None:
            _stop(sshd.proc)
        leaked = daemon.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def _closed_and_reaped(conn: pyvirt.virConnect, pid: int) -> None:
    """Close ``conn`` and wait until its ssh child is reaped (the client's ``closed``
    is set only once it is), then check the pid is gone, not a zombie."""
    import asyncio
    from pyvirt import aio
    client = conn._drv.client
    conn.close()
    aio.run(asyncio.wait_for(asyncio.shield(client.closed), 30))
    assert client.process.returncode is not None
    assert not Path(f"/proc/{pid}").exists(), f"ssh child {pid} left behind"


def _only_call(sshd: Sshd, before: dict[int, list[str]]) -> tuple[int, list[str]]:
    calls = sshd.new_calls(before)
    assert len(calls) == 1, calls
    return next(iter(calls.items()))


# -- pyvirt's client --------------------------------------------------------------------------

def test_pyvirt_lifecycle_over_ssh_through_nc(host, guests_built, tmp_path):
    """socket= given: libvirt's nc relay (nc -q0 -U SOCKET); a whole lifecycle goes through it."""
    daemon, sshd = host
    before = sshd.calls()
    conn = pyvirt.open(sshd.uri(socket=str(daemon.sock_dir / "libvirt-sock")))
    pid, argv = _only_call(sshd, before)
    assert argv[:argv.index("--")] == ["-p", str(sshd.port), "-l", "root", "-i", str(sshd.key),
                                       "-T", "-e", "none", "-o", "StrictHostKeyChecking=no"]
    assert argv[argv.index("--") + 1] == "127.0.0.1"
    assert argv[-1].startswith("sh -c 'if 'nc' -q 2>&1 | grep") and argv[-1].endswith(
        f"'nc' $ARG -U {daemon.sock_dir}/libvirt-sock'")
    assert any(cmd[:1] == ["nc"] and "-U" in cmd for cmd in sshd.descendants()), sshd.descendants()

    assert conn.listAllDomains() == []
    serial = tmp_path / "ssh-guest.log"
    dom = conn.defineXML(tiny_xml("viassh", serial))
    dom.create()
    wait_for_text(serial, READY)
    assert dom.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_BOOTED]
    assert [d.name() for d in conn.listAllDomains(pyvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)] == ["viassh"]
    dom.suspend()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_PAUSED
    dom.resume()
    dom.destroy()
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF
    dom.undefine()
    assert conn.listAllDomains() == []
    _closed_and_reaped(conn, pid)


@pytest.mark.skipif(not HAVE_HELPER, reason="virt-ssh-helper is not installed")
def test_pyvirt_over_ssh_through_virt_ssh_helper(host):
    """No socket=: proxy=auto finds virt-ssh-helper on the remote side, which relays
    qemu:///system to the system socket (here, the test daemon's)."""
    daemon, sshd = host
    before = sshd.calls()
    conn = pyvirt.open(sshd.uri())
    pid, argv = _only_call(sshd, before)
    assert argv[-1].startswith("sh -c 'which virt-ssh-helper 1>/dev/null 2>&1; if test $? = 0; then "
                               "    virt-ssh-helper 'qemu:///system'; else    if 'nc' -q")
    assert ["virt-ssh-helper", "qemu:///system"] in sshd.descendants(), sshd.descendants()
    assert conn.getHostname()
    assert conn.listAllDomains() == []
    _closed_and_reaped(conn, pid)


@pytest.mark.skipif(not HAVE_HELPER, reason="virt-ssh-helper is not installed")
def test_pyvirt_read_only_over_ssh(host):
    """openReadOnly: virt-ssh-helper -r, and the daemon's read-only socket refuses a define."""
    daemon, sshd = host
    before = sshd.calls()
    conn = pyvirt.openReadOnly(sshd.uri())
    pid, argv = _only_call(sshd, before)
    assert "virt-ssh-helper -r 'qemu:///system'" in argv[-1]
    assert ["virt-ssh-helper", "-r", "qemu:///system"] in sshd.descendants(), sshd.descendants()
    assert conn.listAllDomains() == []
    with pytest.raises(pyvirt.libvirtError) as err:
        conn.defineXML("<domain type='qemu'><name>x</name></domain>")
    assert err.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_DENIED
    _closed_and_reaped(conn, pid)


def test_pyvirt_over_ssh_proxy_netcat_default_socket(host):
    """proxy=netcat without socket=: nc to libvirt's system socket path."""
    daemon, sshd = host
    before = sshd.calls()
    conn = pyvirt.open(sshd.uri(proxy="netcat"))
    pid, argv = _only_call(sshd, before)
    assert argv[-1].endswith("'nc' $ARG -U /var/run/libvirt/libvirt-sock'")
    assert conn.listAllDomains() == []
    _closed_and_reaped(conn, pid)


def test_pyvirt_cli_over_ssh(host):
    daemon, sshd = host
    out = subprocess.run([sys.executable, "-m", "pyvirt.cli.main",
                          "-c", sshd.uri(socket=str(daemon.sock_dir / "libvirt-sock")), "list", "--all"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "Name" in out.stdout and "State" in out.stdout, out.stdout


# -- failures: ssh's own words, the transport named, the child reaped --------------------------

def _failed_open(uri: str) -> pyvirt.libvirtError:
    with pytest.raises(pyvirt.libvirtError) as err:
        pyvirt.open(uri)
    return err.value


def _assert_reaped(sshd: Sshd, before: dict[int, list[str]]) -> None:
    for pid in sshd.new_calls(before):
        assert not Path(f"/proc/{pid}").exists(), f"ssh child {pid} left behind"


def test_unknown_host_key_refused_with_ssh_message(host):
    daemon, sshd = host
    before = sshd.calls()
    err = _failed_open(sshd.uri(strict=True, no_tty="1"))
    _pid, argv = _only_call(sshd, before)
    assert ["-o", "BatchMode=yes"] == argv[argv.index("none") + 1:argv.index("none") + 3]
    assert "StrictHostKeyChecking=no" not in argv
    text = err.get_error_message()
    assert "Host key verification failed" in text, text
    assert f"qemu+ssh to root@127.0.0.1:{sshd.port}" in text, text
    assert text.startswith("End of file while reading data: ")
    assert err.get_error_code() == pyvirt.VIR_ERR_SYSTEM_ERROR
    _assert_reaped(sshd, before)


def test_connection_refused_names_ssh(host):
    daemon, sshd = host
    before = sshd.calls()
    err = _failed_open(sshd.uri(port=free_port()))
    text = err.get_error_message()
    assert "Connection refused" in text and "(qemu+ssh to root@127.0.0.1:" in text, text
    _assert_reaped(sshd, before)


def test_missing_socket_reports_the_relay_error(host, tmp_path):
    daemon, sshd = host
    before = sshd.calls()
    err = _failed_open(sshd.uri(socket=str(tmp_path / "no-such-sock")))
    text = err.get_error_message()
    assert "No such file or directory" in text and "qemu+ssh" in text, text
    _assert_reaped(sshd, before)


def test_missing_ssh_binary(host, tmp_path):
    daemon, sshd = host
    err = _failed_open(f"qemu+ssh://127.0.0.1:{sshd.port}/system?command={tmp_path}/no-ssh")
    assert f"Cannot find '{tmp_path}/no-ssh' in path" in err.get_error_message()


# -- stock virsh through the same sshd ---------------------------------------------------------

def _virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")
@pytest.mark.parametrize("relay", ["nc", "virt-ssh-helper"])
def test_stock_virsh_over_ssh_runs_ssh_as_pyvirt_does(host, tmp_path, guests_built, relay):
    """virsh lists the daemon's guests through the sshd, and for the same URI it ran
    ssh with exactly the arguments pyvirt's client runs it with."""
    if relay == "virt-ssh-helper" and not HAVE_HELPER:
        pytest.skip("virt-ssh-helper is not installed")
    daemon, sshd = host
    params = {"socket": str(daemon.sock_dir / "libvirt-sock")} if relay == "nc" else {}
    uri = sshd.uri(**params)
    local = pyvirt.open(daemon.uri)
    local.defineXML(tiny_xml("seenbyvirsh", tmp_path / "virsh-guest.log"))
    local.close()

    before = sshd.calls()
    out = _virsh(uri, "list", "--all")
    assert out.returncode == 0, out.stderr
    assert "seenbyvirsh" in out.stdout
    _, virsh_argv = _only_call(sshd, before)

    before = sshd.calls()
    conn = pyvirt.open(uri)
    pid, pyvirt_argv = _only_call(sshd, before)
    assert [d.name() for d in conn.listAllDomains()] == ["seenbyvirsh"]
    _closed_and_reaped(conn, pid)
    assert pyvirt_argv == virsh_argv


@pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")
def test_stock_virsh_and_pyvirt_build_the_same_read_only_and_netcat_commands(host):
    daemon, sshd = host
    for flags, params in ((["-r"], {}), ([], {"netcat": "nc", "no_tty": "1"})):
        uri = sshd.uri(**params)
        before = sshd.calls()
        out = subprocess.run(["virsh", *flags, "-c", uri, "list", "--all"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        _, virsh_argv = _only_call(sshd, before)
        before = sshd.calls()
        conn = (pyvirt.openReadOnly if flags else pyvirt.open)(uri)
        pid, pyvirt_argv = _only_call(sshd, before)
        _closed_and_reaped(conn, pid)
        assert pyvirt_argv == virsh_argv, (flags, params)


# -- peer-to-peer migration: the source daemon reaches its peer over qemu+ssh:// ----------------

@pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")
@pytest.mark.parametrize("tunnelled", [False, True], ids=["p2p", "p2p-tunnelled"])
def test_p2p_migration_to_a_qemu_ssh_destination(tmp_path, guests_built, tunnelled):
    """pyvirtd A, asked by stock virsh, opens its link to B through ssh (the transport
    running inside the daemon's own event loop); tunnelled, the guest's memory goes
    through that ssh child too."""
    from daemons import running_pair
    from test_migration import assert_only_on, heartbeat, make_hosts, start_guest
    a, b = make_hosts(tmp_path)
    with running_pair(a, b):
        sshd = _start_sshd(tmp_path / "sshd", b)
        try:
            _, dom, uid = start_guest(a)
            dest = sshd.uri(socket=str(b.sock_dir / "libvirt-sock"))
            flags = ["--p2p"] + (["--tunnelled"] if tunnelled else [])
            out = _virsh(a.uri, "migrate", "--live", *flags, "mig", dest)
            assert out.returncode == 0, out.stderr
            assert sshd.calls(), "the source daemon did not go through ssh"
            moved = pyvirt.open(b.uri).lookupByUUIDString(uid)
            assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
            assert_only_on(b, uid, "mig", (a, b))
            before = heartbeat(a)
            from guests import wait_for
            wait_for(lambda: heartbeat(a) > before + 1, 20, what="the guest's heartbeats on B")
            # the daemon closed its link after the migration: its ssh child is gone too
            for pid in sshd.calls():
                wait_for(lambda: not Path(f"/proc/{pid}").exists(), 20, what=f"ssh child {pid} to be reaped")
        finally:
            _stop(sshd.proc)
