"""Peer-to-peer tunnelled migration to a pyvirtd that asks for SASL on plain TCP (DIGEST-MD5):
the source daemon authenticates with the credentials of its own auth.conf, as libvirtd does,
and the migration stream goes through the SASL security layer; the guest keeps running."""

from __future__ import annotations

import os

import pytest

import pyvirt
from daemons import Pyvirtd, qemu_pid, running_pair
from guests import pid_alive, wait_for
from saslenv import USERS, SaslPyvirtd, SaslSetup
from test_migration import heartbeat, start_guest

pytestmark = pytest.mark.qemu
TUNNELLED = pyvirt.VIR_MIGRATE_LIVE | pyvirt.VIR_MIGRATE_PEER2PEER | pyvirt.VIR_MIGRATE_TUNNELLED


@pytest.fixture
def hosts(tmp_path, guests_built):
    sasl = SaslSetup(tmp_path / "sasl", mechs="digest-md5").make()
    creds = sasl.auth_file("alice", USERS["alice"], host="127.0.0.1")
    saved = os.environ.get("LIBVIRT_AUTH_FILE")
    os.environ["LIBVIRT_AUTH_FILE"] = str(creds)         # this test's own clients, torn down last
    try:
        a = Pyvirtd(tmp_path / "a", extra_env={"LIBVIRT_AUTH_FILE": str(creds)})   # the source's peer link
        b = SaslPyvirtd(tmp_path / "b", sasl=sasl, auth={"auth_tcp": "sasl"})
        with running_pair(a, b) as pair:
            yield pair
    finally:
        if saved is None:
            os.environ.pop("LIBVIRT_AUTH_FILE", None)
        else:
            os.environ["LIBVIRT_AUTH_FILE"] = saved


def test_tunnelled_p2p_migration_through_the_security_layer(hosts):
    a, b = hosts
    ca, dom, uid = start_guest(a, cmdline="dirty=32:10", memory_mib=128)
    dom.migrateToURI3(b.uri, {}, TUNNELLED)
    moved = pyvirt.open(b.uri).lookupByName("mig")
    assert moved.state() == [pyvirt.VIR_DOMAIN_RUNNING, pyvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    # one copy only (the raw monitor probe of daemons.running_copies cannot authenticate to B)
    assert moved.UUIDString() == uid
    assert pid_alive(qemu_pid(b, "mig"))
    assert ca.listAllDomains(pyvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE) == []
    assert qemu_pid(a, "mig") is None
    before = heartbeat(a)
    wait_for(lambda: heartbeat(a) > before + 1, 10, what="the guest to keep running on B")
    log = b.log_path.read_text()
    assert "authenticated with SASL as 'alice'" in log
    assert "sasl=alice: virDomainMigratePrepareTunnel3Params" in log, log[-3000:]
