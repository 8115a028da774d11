"""Encrypted migration between two pyvirtd: ``virsh migrate --live --tls``.

Certificates from tests/pki.py in QEMU's layout (``migrate_tls_x509_cert_dir``).
While the source daemon is held at its ``perform-late`` hook point (QEMU is
sending, data already out), both QEMUs are asked through
``qemu-monitor-command`` what they hold: libvirt's ``tls-creds-x509`` object
and the ``tls-creds`` parameter naming it.  Afterwards the destination's
copy runs (its heartbeats go on) and no credentials are left in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

import pyvirt
from daemons import monitor_command, running_copies
from faults.fault_hooks import HookServer
from guests import wait_for
from pki import pki  # noqa: F401  (the session fixture)
from test_migration import heartbeat, make_hosts, start_guest

pytestmark = [pytest.mark.qemu, pytest.mark.virsh,
              pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")]

ALIAS = "objlibvirt_migrate_tls0"
HOLD = 60                    # a bound for reaching a hook point, not a timing
CMDLINE = "dirty=16:2"       # at 8 MiB/s Perform lasts about two seconds: perform-late is reached
BANDWIDTH = "8"
SYSTEM_DIRS = ("/etc/pki/libvirt-migrate", "/etc/pki/qemu")


def qmp(daemon, uid: str, execute: str, **arguments) -> dict:
    cmd = {"execute": execute, **({"arguments": arguments} if arguments else {})}
    reply = monitor_command(daemon, uid, json.dumps(cmd))
    assert reply is not None, f"no running guest {uid} on {daemon.workdir.name}"
    return json.loads(reply)


def creds(daemon, uid: str) -> dict:
    """What the guest's QEMU holds for TLS migration: parameters and the object's properties."""
    params = qmp(daemon, uid, "query-migrate-parameters")["return"]
    objects = {o["name"]: o["type"] for o in qmp(daemon, uid, "qom-list", path="/objects")["return"]}
    found = {"tls-creds": params.get("tls-creds"), "tls-hostname": params.get("tls-hostname"),
             "type": objects.get(ALIAS)}
    if ALIAS in objects:
        for prop in ("endpoint", "verify-peer", "dir"):
            found[prop] = qmp(daemon, uid, "qom-get", path=f"/objects/{ALIAS}", property=prop)["return"]
    return found


class Virsh:
    """A virsh command running on its own (a migration the test watches from outside)."""

    def __init__(self, *args: str) -> None:
        self.result: subprocess.CompletedProcess | None = None
        self.thread = threading.Thread(target=self._run, args=(args,), daemon=True)
        self.thread.start()

    def _run(self, args) -> None:
        self.result = subprocess.run(["virsh", *args], capture_output=True, text=True, timeout=180)

    def wait(self) -> subprocess.CompletedProcess:
        self.thread.join(200)
        assert self.result is not None, "virsh did not finish"
        return self.result


@pytest.fixture
def tls_pair(tmp_path, guests_built, pki):  # noqa: F811
    """Two hosts with the migration certificate directory; the source reports its hook points."""
    a, b = make_hosts(tmp_path, extra=f'migrate_tls_x509_cert_dir = "{pki.qemu_dir}"')
    hooks = HookServer(tmp_path / "a-hooks.sock")
    a.extra_env["PYVIRT_TEST_HOOKS"] = str(hooks.path)
    try:
        a.start()
        b.start()
        yield a, b, hooks
    finally:
        hooks.close()
        for host in (a, b):
            host.destroy_all()
        leaked = a.cleanup() + b.cleanup()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def test_virsh_migrate_live_tls(tls_pair, pki):  # noqa: F811
    a, b, hooks = tls_pair
    _, dom, uid = start_guest(a, cmdline=CMDLINE)
    assert creds(a, uid)["type"] is None                  # nothing before the migration
    hooks.arm("perform-late")
    virsh = Virsh("-c", a.uri, "migrate", "--live", "--tls", "--bandwidth", BANDWIDTH, "mig", b.uri)
    try:
        assert hooks.wait_reached(HOLD), f"the source never reached perform-late: {hooks.seen}"
        dst, src = creds(b, uid), creds(a, uid)
    finally:
        hooks.disarm()
    out = virsh.wait()
    assert out.returncode == 0, out.stderr

    # destination: the server end, verifying the source's certificate (migrate_tls_x509_verify's default)
    assert dst == {"tls-creds": ALIAS, "tls-hostname": "", "type": "child<tls-creds-x509>",
                   "endpoint": "server", "verify-peer": True, "dir": str(pki.qemu_dir)}
    # source: the client end, checking the server's certificate against the URI's host
    assert src == {"tls-creds": ALIAS, "tls-hostname": "127.0.0.1", "type": "child<tls-creds-x509>",
                   "endpoint": "client", "verify-peer": True, "dir": str(pki.qemu_dir)}

    moved = pyvirt.open(b.uri).lookupByUUIDString(uid)
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert running_copies([a, b], uid) == 1
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before + 1, 20, what="the guest's heartbeats to go on after the migration")
    # over: the destination keeps no credentials
    assert creds(b, uid) == {"tls-creds": "", "tls-hostname": "", "type": None}


def test_tls_destination_names_the_certificate_to_expect(tls_pair):
    """--tls-destination becomes the source QEMU's tls-hostname (the server certificate
    also carries 'localhost')."""
    a, b, hooks = tls_pair
    _, dom, uid = start_guest(a, cmdline=CMDLINE)
    hooks.arm("perform-late")
    virsh = Virsh("-c", a.uri, "migrate", "--live", "--tls", "--tls-destination", "localhost",
                  "--bandwidth", BANDWIDTH, "mig", b.uri)
    try:
        assert hooks.wait_reached(HOLD), hooks.seen
        src = creds(a, uid)
    finally:
        hooks.disarm()
    out = virsh.wait()
    assert out.returncode == 0, out.stderr
    assert src["tls-hostname"] == "localhost"
    assert running_copies([a, b], uid) == 1


def test_aborted_tls_migration_leaves_no_credentials_in_the_source(tls_pair):
    a, b, hooks = tls_pair
    _, dom, uid = start_guest(a, cmdline=CMDLINE)
    hooks.arm("perform-late")
    virsh = Virsh("-c", a.uri, "migrate", "--live", "--tls", "--bandwidth", "1", "mig", b.uri)
    try:
        assert hooks.wait_reached(HOLD), hooks.seen
        assert creds(a, uid)["type"] == "child<tls-creds-x509>"
        dom.abortJob()
    finally:
        hooks.disarm()
    out = virsh.wait()
    assert out.returncode != 0 and "canceled" in out.stderr, out.stderr
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
    assert running_copies([a, b], uid) == 1
    assert creds(a, uid) == {"tls-creds": "", "tls-hostname": "", "type": None}


def test_wrong_ca_on_the_source_fails_the_handshake(tmp_path, guests_built, pki):  # noqa: F811
    """The stream really is TLS with peer verification: a source whose client
    certificate comes from another CA is refused by the destination QEMU, and the
    guest goes on on the source."""
    intruder = tmp_path / "intruder-qemu"
    shutil.copytree(pki.qemu_dir, intruder)
    shutil.copy(pki.clients["other_ca"].cert, intruder / "client-cert.pem")
    shutil.copy(pki.clients["other_ca"].key, intruder / "client-key.pem")
    os.chmod(intruder, 0o755)
    for f in intruder.iterdir():
        f.chmod(0o644)
    a, b = make_hosts(tmp_path)
    a.extra_config = f'migrate_tls_x509_cert_dir = "{intruder}"'
    b.extra_config = f'migrate_tls_x509_cert_dir = "{pki.qemu_dir}"'
    from daemons import running_pair
    with running_pair(a, b):
        _, dom, uid = start_guest(a)
        out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--tls", "mig", b.uri],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode != 0, out.stdout
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
        assert running_copies([a, b], uid) == 1
        assert creds(a, uid)["type"] is None


@pytest.mark.skipif(any(os.path.isdir(d) for d in SYSTEM_DIRS),
                    reason="this machine has a system migration certificate directory")
@pytest.mark.parametrize("missing_on", ["destination", "source"])
def test_tls_without_certificate_directory_is_refused(tmp_path, guests_built, pki, missing_on):  # noqa: F811
    a, b = make_hosts(tmp_path)
    configured = b if missing_on == "source" else a
    configured.extra_config = f'migrate_tls_x509_cert_dir = "{pki.qemu_dir}"'
    from daemons import running_pair
    with running_pair(a, b):
        _, dom, uid = start_guest(a)
        out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--tls", "mig", b.uri],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode != 0
        assert "Requested operation is not valid: host migration TLS directory not configured" in out.stderr, \
            out.stderr
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
        assert running_copies([a, b], uid) == 1
        assert pyvirt.open(b.uri).listAllDomains() == []


def test_migrate_tls_force_refuses_plain_migration(tmp_path, guests_built, pki):  # noqa: F811
    extra = f'migrate_tls_x509_cert_dir = "{pki.qemu_dir}"\nmigrate_tls_force = 1'
    from daemons import running_pair
    with running_pair(*make_hosts(tmp_path, extra=extra)) as (a, b):
        _, dom, uid = start_guest(a)
        out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "mig", b.uri],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode != 0
        assert "this libvirtd instance allows migration only with VIR_MIGRATE_TLS flag" in out.stderr, out.stderr
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING
        out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--tls", "mig", b.uri],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert running_copies([a, b], uid) == 1
        assert pyvirt.open(b.uri).lookupByUUIDString(uid).state()[0] == pyvirt.VIR_DOMAIN_RUNNING


def test_p2p_tls_migration_over_a_tls_daemon_link(tmp_path, guests_built, pki):  # noqa: F811
    """virsh migrate --p2p --tls to qemu+tls://: the source daemon reaches the destination
    daemon over TLS (client certificate from pkipath=) and the QEMUs' own stream is TLS
    too.  TLS inside the (one-way) tunnel is refused before anything starts."""
    from daemons import Pyvirtd, free_port, running_pair
    from pki import ALLOWED_DN_LIST
    port = free_port()
    mig_dir = f'migrate_tls_x509_cert_dir = "{pki.qemu_dir}"\n'
    a = Pyvirtd(tmp_path / "a", extra_config=mig_dir)
    b = Pyvirtd(tmp_path / "b", extra_config=mig_dir + pki.daemon_config(port=port, allowed_dn_list=ALLOWED_DN_LIST))
    b_tls = f"qemu+tls://127.0.0.1:{port}/system?pkipath={pki.pkipath()}"
    with running_pair(a, b):
        _, dom, uid = start_guest(a)
        out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--p2p", "--tunnelled", "--tls",
                              "mig", b_tls], capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and "TLS migration cannot be tunnelled" in out.stderr, out.stderr
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and running_copies([a, b], uid) == 1

        out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--p2p", "--tls", "mig", b_tls],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        moved = pyvirt.open(b.uri).lookupByUUIDString(uid)
        assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
        assert running_copies([a, b], uid) == 1
        before = heartbeat(a)
        wait_for(lambda: heartbeat(a) > before + 1, 20, what="the guest's heartbeats to go on after the migration")
        assert creds(b, uid) == {"tls-creds": "", "tls-hostname": "", "type": None}


def pyvirt_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyvirt.cli", *args], capture_output=True, text=True, timeout=180)


def test_pyvirt_migrate_tls_and_tls_destination(tls_pair):
    """pyvirt's own migrate takes virsh's --tls and --tls-destination: the source QEMU
    holds libvirt's credentials object and checks the name given, and the guest moves."""
    a, b, hooks = tls_pair
    _, dom, uid = start_guest(a, cmdline=CMDLINE)
    hooks.arm("perform-late")
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(out=pyvirt_cli(
        "-c", a.uri, "migrate", "--live", "--tls", "--tls-destination", "localhost",
        "--bandwidth", BANDWIDTH, "mig", b.uri)), daemon=True)
    runner.start()
    try:
        assert hooks.wait_reached(HOLD), f"the source never reached perform-late: {hooks.seen}"
        src = creds(a, uid)
    finally:
        hooks.disarm()
    runner.join(200)
    out = result["out"]
    assert out.returncode == 0, out.stderr
    assert src["tls-creds"] == ALIAS and src["tls-hostname"] == "localhost" and src["endpoint"] == "client"
    assert running_copies([a, b], uid) == 1
    assert pyvirt.open(b.uri).lookupByUUIDString(uid).state()[0] == pyvirt.VIR_DOMAIN_RUNNING


@pytest.mark.skipif(any(os.path.isdir(d) for d in SYSTEM_DIRS),
                    reason="this machine has a system migration certificate directory")
def test_pyvirt_migrate_tls_without_certificate_directory_is_refused_as_virsh(tmp_path, guests_built):
    from daemons import running_pair
    with running_pair(*make_hosts(tmp_path)) as (a, b):
        _, dom, uid = start_guest(a)
        virsh = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--tls", "mig", b.uri],
                               capture_output=True, text=True, timeout=120)
        ours = pyvirt_cli("-c", a.uri, "migrate", "--live", "--tls", "mig", b.uri)
        assert ours.returncode == virsh.returncode == 1
        assert (ours.stdout, ours.stderr) == (virsh.stdout, virsh.stderr), (virsh.stdout, virsh.stderr)
        assert "error: Requested operation is not valid: host migration TLS directory not configured" in ours.stderr
        assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING and running_copies([a, b], uid) == 1
