"""Peer-to-peer tunnelled migration between two pyvirtd over qemu+tls://: the source
daemon is a TLS client of the destination's listener, and the guest's memory travels
as an RPC stream inside that TLS session (through the event loop on both ends)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import pyvirt
from daemons import Pyvirtd, free_port, running_pair
from guests import wait_for
from pki import ALLOWED_DN_LIST, pki  # noqa: F401
from test_migration import assert_only_on, heartbeat, start_guest

pytestmark = pytest.mark.qemu

TUNNELLED = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_PEER2PEER | pyvirt.VIR_MIGRATE_TUNNELLED


@pytest.fixture
def tls_hosts(tmp_path, guests_built, pki):  # noqa: F811
    port = free_port()
    b = Pyvirtd(tmp_path / "b", extra_config=pki.daemon_config(port=port, allowed_dn_list=ALLOWED_DN_LIST))
    with running_pair(Pyvirtd(tmp_path / "a"), b) as pair:
        yield pair, f"qemu+tls://127.0.0.1:{port}/system?pkipath={pki.pkipath()}"


def test_tunnelled_p2p_over_tls(tls_hosts):
    (a, b), b_tls = tls_hosts
    ca, dom, uid = start_guest(a, cmdline="dirty=16:8", memory_mib=128)
    dom.migrateToURI3(b_tls, {}, TUNNELLED)
    moved = pyvirt.open(b.uri).lookupByName("mig")
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_only_on(b, uid, "mig", (a, b))
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before + 1, 10, what="the guest to keep running on B")


def test_p2p_refused_by_the_destination_dn_list(tls_hosts, pki):  # noqa: F811
    (a, b), b_tls = tls_hosts
    ca, dom, uid = start_guest(a)
    outsider = b_tls.replace(str(pki.pkipath()), str(pki.pkipath("outside_dn")))
    with pytest.raises(pyvirt.libvirtError) as err:
        dom.migrateToURI3(outsider, {}, TUNNELLED)
    assert "server verification (of our certificate or IP address) failed" in str(err.value)
    assert dom.state()[0] == pyvirt.VIR_DOMAIN_RUNNING       # still on A
    assert_only_on(a, uid, "mig", (a, b))


@pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")
def test_virsh_tunnelled_p2p_over_tls(tls_hosts):
    (a, b), b_tls = tls_hosts
    ca, dom, uid = start_guest(a)
    out = subprocess.run(["virsh", "-c", a.uri, "migrate", "--live", "--p2p", "--tunnelled", "mig", b_tls],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert_only_on(b, uid, "mig", (a, b))
