"""The etcd lease backend of pyvirtlockd against a real etcd (two "hosts" = two
backend instances with their own etcd clients, in one event loop).

The daemon around the backend, QEMU and the fencing of real guests are in
test_locking_etcd.py; here: keys, tokens, all-or-nothing, the migration
hand-over, parking on release, and the renewal deadline on the backend's own
clock when etcd freezes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket

import pytest

from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError
from pyvirt.lockd.backend import Owner, Resource, backend_class
from pyvirt.lockd.etcd import EtcdBackend, fencing_margin, parse_state
from pyvirt.lockd.etcd_client import EtcdClient

from etcd_server import EtcdServer

TTL = 3


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    server = EtcdServer(tmp_path_factory.mktemp("etcd")).start()
    try:
        yield server
    finally:
        server.stop()


class Hooks:
    def __init__(self) -> None:
        self.lost: list[tuple[Owner, list[Resource], str, float]] = []
        self.event = asyncio.Event()

    async def lease_lost(self, owner, resources, why, expires_at=None):
        self.lost.append((owner, list(resources), why, asyncio.get_running_loop().time()))
        self.event.set()


def disk(path: str, shared: bool = False) -> Resource:
    return Resource(lockspace="", name=path, shared=shared, what=path)


def run(coro):
    return asyncio.run(coro)


async def host(etcd, name: str, prefix: str, ttl: int = TTL):
    hooks = Hooks()
    b = EtcdBackend({"lock_etcd_endpoints": [etcd.endpoint], "lock_etcd_ttl": ttl,
                     "lock_etcd_prefix": prefix, "host": name}, hooks)
    await b.start()
    return b, hooks


async def raw(etcd, key: bytes):
    c = EtcdClient([etcd.endpoint])
    try:
        kvs = await c.range(key)
        return kvs[0] if kvs else None
    finally:
        await c.close()


async def lease_ttl(etcd, lease: int) -> int:
    c = EtcdClient([etcd.endpoint])
    try:
        return await c.keepalive(lease)
    finally:
        await c.close()


def test_registered_by_name():
    assert backend_class("etcd") is EtcdBackend
    assert EtcdBackend.uses_state


def test_bad_state_and_ttl_refused(etcd):
    with pytest.raises(libvirtError, match="Malformed etcd lock state 'nonsense'"):
        parse_state("nonsense")
    with pytest.raises(libvirtError, match="lock_etcd_ttl must be at least 3"):
        EtcdBackend({"lock_etcd_endpoints": [etcd.endpoint], "lock_etcd_ttl": 1}, Hooks())


def test_unreachable_etcd_refuses_to_start():
    async def scenario():
        b = EtcdBackend({"lock_etcd_endpoints": ["http://127.0.0.1:1"]}, Hooks())
        with pytest.raises(libvirtError, match=r"cannot reach etcd at http://127.0.0.1:1"):
            await b.start()
        await b.close()
    run(scenario())


def test_one_key_per_disk_token_is_create_revision_and_second_host_refused(etcd):
    async def scenario():
        a, _ = await host(etcd, "hostA", "/t1/")
        b, _ = await host(etcd, "hostB", "/t1/")
        try:
            ga, gb = Owner("u-a", "guestA", 100), Owner("u-b", "guestB", 200)
            state = await a.acquire(ga, [disk("/img/one.qcow2")], None)
            key = b"/t1/" + hashlib.sha256(b"/img/one.qcow2").hexdigest().encode()
            kv = await raw(etcd, key)
            assert kv is not None and kv.lease == a.lease_id(ga)
            assert json.loads(kv.value) == {"host": socket.gethostname(), "host_uuid": "hostA",
                                            "domain": "guestA", "uuid": "u-a", "pid": 100,
                                            "disk": "/img/one.qcow2", "state": "held"}
            assert parse_state(state) == {key.decode()[4:]: kv.create_revision}
            with pytest.raises(libvirtError) as ei:
                await b.acquire(gb, [disk("/img/two.qcow2"), disk("/img/one.qcow2")], None)
            e = ei.value
            assert e.get_error_code() == ErrorNumber.RESOURCE_BUSY
            assert e.get_error_domain() == ErrorDomain.LOCKSPACE
            msg = e.get_error_message()
            assert "'/img/one.qcow2'" in msg and "guestA" in msg and "hostA" in msg
            assert f"etcd lease {a.lease_id(ga):x}" in msg and f"token {kv.create_revision}" in msg
            # all or nothing: the free disk was not taken either
            two = b"/t1/" + hashlib.sha256(b"/img/two.qcow2").hexdigest().encode()
            assert await raw(etcd, two) is None
            assert b.held(gb) == []
        finally:
            await a.close()
            await b.close()
    run(scenario())


def test_owner_end_revokes_the_lease_and_frees_the_disk(etcd):
    async def scenario():
        a, _ = await host(etcd, "hostA", "/t2/")
        b, _ = await host(etcd, "hostB", "/t2/")
        try:
            ga, gb = Owner("u-a", "g", 1), Owner("u-b", "g", 2)
            first = parse_state(await a.acquire(ga, [disk("/img/x")], None))
            await a.forget(ga)
            second = parse_state(await b.acquire(gb, [disk("/img/x")], None))
            (h, t1), = first.items()
            assert second[h] > t1                   # a new holder, a new (larger) token
        finally:
            await a.close()
            await b.close()
    run(scenario())


def test_migration_hand_over_keeps_the_token_and_moves_the_key_to_the_destination_lease(etcd):
    async def scenario():
        a, _ = await host(etcd, "hostA", "/t3/")
        b, _ = await host(etcd, "hostB", "/t3/")
        try:
            src, dst = Owner("u", "web", 10), Owner("u", "web", 20)
            await a.acquire(src, [disk("/img/m")], None)
            cookie_state = await a.inquire(src)
            released = await a.release(src, None)           # end of migration: source paused
            assert released == cookie_state
            got = await b.acquire(dst, [disk("/img/m")], released)
            assert got == released                           # exactly the source's token
            key = a.key(disk("/img/m"))
            kv = await raw(etcd, key)
            assert kv.lease == b.lease_id(dst) and json.loads(kv.value)["host_uuid"] == "hostB"
            await a.forget(src)                              # Confirm kills the source QEMU
            kv = await raw(etcd, key)
            assert kv is not None and kv.create_revision == parse_state(got)[key.decode()[4:]]
            # the source host can no longer start the disk
            with pytest.raises(libvirtError, match="hostB"):
                await a.acquire(Owner("u2", "other", 30), [disk("/img/m")], None)
        finally:
            await a.close()
            await b.close()
    run(scenario())


def test_state_of_another_holder_is_refused(etcd):
    async def scenario():
        a, _ = await host(etcd, "hostA", "/t4/")
        b, _ = await host(etcd, "hostB", "/t4/")
        try:
            ga = Owner("u-a", "a", 1)
            state = await a.acquire(ga, [disk("/img/s")], None)
            (h, tok), = parse_state(state).items()
            forged = f"{h}:{tok + 1000}"
            with pytest.raises(libvirtError, match=f"expected token {tok + 1000}"):
                await b.acquire(Owner("u-b", "b", 2), [disk("/img/s")], forged)
        finally:
            await a.close()
            await b.close()
    run(scenario())


def test_suspend_parks_resume_takes_the_same_token_and_others_may_take_a_parked_disk(etcd):
    async def scenario():
        a, _ = await host(etcd, "hostA", "/t5/")
        b, _ = await host(etcd, "hostB", "/t5/")
        try:
            ga, gb = Owner("u-a", "a", 1), Owner("u-b", "b", 2)
            state = await a.acquire(ga, [disk("/img/p")], None)
            assert await a.release(ga, None) == state
            assert a.held(ga) == []
            kv = await raw(etcd, a.key(disk("/img/p")))
            assert json.loads(kv.value)["state"] == "released"
            assert await a.acquire(ga, [disk("/img/p")], state) == state     # resume: same token
            await a.release(ga, None)
            # while parked, another host may take the disk: a new token, and A's resume fails
            other = await b.acquire(gb, [disk("/img/p")], None)
            assert parse_state(other) != parse_state(state)
            with pytest.raises(libvirtError, match="hostB"):
                await a.acquire(ga, [disk("/img/p")], state)
        finally:
            await a.close()
            await b.close()
    run(scenario())


def test_shared_disks_share_and_exclude_exclusive(etcd):
    async def scenario():
        a, _ = await host(etcd, "hostA", "/t6/")
        b, _ = await host(etcd, "hostB", "/t6/")
        try:
            ga, gb, gc = Owner("1", "a", 1), Owner("2", "b", 2), Owner("3", "c", 3)
            await a.acquire(ga, [disk("/img/sh", shared=True)], None)
            await b.acquire(gb, [disk("/img/sh", shared=True)], None)
            with pytest.raises(libvirtError, match="is locked"):
                await b.acquire(gc, [disk("/img/sh")], None)
            await a.forget(ga)
            await b.release(gb, None)
            await b.acquire(gc, [disk("/img/sh")], None)
            with pytest.raises(libvirtError, match="is locked"):
                await a.acquire(ga, [disk("/img/sh", shared=True)], None)
        finally:
            await a.close()
            await b.close()
    run(scenario())


def test_frozen_etcd_fences_before_the_lease_can_expire_and_the_disk_is_free_only_after(etcd):
    """SIGSTOP etcd: the backend reports the lost lease (naming disk and token)
    before last successful renewal + TTL on its own clock; another host gets the
    disk only once etcd dropped the lease, and the fenced guest cannot come back."""
    async def scenario():
        a, hooks = await host(etcd, "hostA", "/t7/")
        b, _ = await host(etcd, "hostB", "/t7/")
        loop = asyncio.get_running_loop()
        try:
            ga = Owner("u-a", "victim", 1)
            state = await a.acquire(ga, [disk("/img/f")], None)
            lease = a._lease
            etcd.pause()
            try:
                await asyncio.wait_for(hooks.event.wait(), TTL * 3)
                owner, resources, why, at = hooks.lost[0]
                last_ok = lease.last_ok
                assert owner == ga and resources == [disk("/img/f")]
                assert f"etcd lease {lease.id:x} not renewed" in why
                assert at < last_ok + TTL                     # before etcd could expire it
                assert at >= last_ok + TTL - fencing_margin(TTL) - 0.001
                # the lease can only have expired once TTL passed since that renewal was sent
                await asyncio.sleep(max(0.0, last_ok + TTL + 0.5 - loop.time()))
            finally:
                etcd.resume()
            # etcd expires the lease as soon as it runs again; B waits for that, never earlier
            while True:
                try:
                    got = await b.acquire(Owner("u-b", "taker", 2), [disk("/img/f")], None)
                    break
                except libvirtError as exc:
                    assert "victim" in exc.get_error_message()
                    await asyncio.sleep(0.1)
            assert parse_state(got) != parse_state(state)
            # the fenced guest may not resume: its token is gone
            await a.release(ga, None)
            with pytest.raises(libvirtError, match="taker|was lost"):
                await a.acquire(ga, [disk("/img/f")], state)
        finally:
            etcd.resume()
            await a.close()
            await b.close()
    run(scenario())


def test_short_etcd_outage_fences_then_the_same_token_resumes(etcd):
    async def scenario():
        a, hooks = await host(etcd, "hostA", "/t8/", ttl=6)
        try:
            ga = Owner("u-a", "g", 1)
            state = await a.acquire(ga, [disk("/img/r")], None)
            etcd.pause()
            try:
                await asyncio.wait_for(hooks.event.wait(), 20)
            finally:
                etcd.resume()
            lease = a._lease
            released = await a.release(ga, None)         # the daemon paused the guest
            assert released == state
            # the lease outlived the outage (renewed before the TTL ran out on etcd's side)
            assert await lease_ttl(etcd, lease.id) > 0
            assert await a.acquire(ga, [disk("/img/r")], released) == state
            assert not a._owned[ga.uuid].fenced
        finally:
            etcd.resume()
            await a.close()
    run(scenario())


def test_a_restarted_lock_daemon_carries_its_own_guests_keys_over_with_their_tokens(etcd):
    async def scenario():
        old, _ = await host(etcd, "hostA", "/t9/")
        g = Owner("u-a", "g", 4242)
        state = await old.acquire(g, [disk("/img/ad")], None)
        old._renewer.cancel()              # the lock daemon dies: no revoke, its lease lingers
        await old.client.close()
        new, _ = await host(etcd, "hostA", "/t9/")
        other, _ = await host(etcd, "hostB", "/t9/")
        try:
            with pytest.raises(libvirtError, match="is locked"):     # not another process
                await new.acquire(Owner("u-a", "g", 4343), [disk("/img/ad")], None)
            with pytest.raises(libvirtError, match="is locked"):     # nor another host
                await other.acquire(g, [disk("/img/ad")], None)
            assert await new.acquire(g, [disk("/img/ad")], None) == state
            kv = await raw(etcd, new.key(disk("/img/ad")))
            assert kv.lease == new.lease_id(g)
        finally:
            await new.close()
            await other.close()
    run(scenario())


def test_resuming_after_a_fence_renews_first_and_a_second_outage_fences_again(etcd):
    async def scenario():
        a, hooks = await host(etcd, "hostA", "/t10/", ttl=6)
        try:
            ga = Owner("u-a", "g", 1)
            state = await a.acquire(ga, [disk("/img/twice")], None)
            for outage in range(2):
                hooks.event.clear()
                etcd.pause()
                try:
                    await asyncio.wait_for(hooks.event.wait(), 20)
                finally:
                    etcd.resume()
                lease = a._lease
                stale = lease.last_ok
                assert await a.release(ga, None) == state
                # the deadline has passed on our clock: the acquire renews before anything runs
                assert await a.acquire(ga, [disk("/img/twice")], state) == state
                assert lease.last_ok > stale and lease.timer is not None
            assert len(hooks.lost) == 2
        finally:
            etcd.resume()
            await a.close()
    run(scenario())


def test_two_guests_of_one_host_exclude_each_other_on_its_one_lease(etcd):
    async def scenario():
        a, _ = await host(etcd, "hostA", "/t11/")
        try:
            g1, g2 = Owner("u-1", "first", 1), Owner("u-2", "second", 2)
            await a.acquire(g1, [disk("/img/same")], None)
            with pytest.raises(libvirtError, match="domain 'first'"):
                await a.acquire(g2, [disk("/img/same")], None)
            await a.acquire(g2, [disk("/img/other")], None)
            assert (await raw(etcd, a.key(disk("/img/other")))).lease == \
                (await raw(etcd, a.key(disk("/img/same")))).lease      # one lease per lock daemon
            await a.forget(g1)
            assert await raw(etcd, a.key(disk("/img/same"))) is None
            await a.acquire(g2, [disk("/img/same")], None)
        finally:
            await a.close()
    run(scenario())


def test_etcd_over_tls_with_client_certificates(tmp_path):
    from pki import ORG, _SERVER, _make_signed, make_pki
    pki = make_pki(tmp_path / "pki")
    client = pki.clients["trusted"]
    # etcd's gateway reaches its own gRPC port with the server certificate as a client
    # certificate, so with client-cert-auth that certificate must allow both uses
    both = _make_signed(tmp_path / "pki" / "work", "etcd-server",
                        _SERVER.format(org=ORG, serial=40) + "tls_www_client\n", pki.ca)
    server = EtcdServer(tmp_path / "etcd-tls", tls=(pki.ca.cert, both.cert, both.key,
                                                    client.cert, client.key)).start()
    try:
        assert server.endpoint.startswith("https://")

        async def scenario():
            opts = {"lock_etcd_endpoints": [server.endpoint], "lock_etcd_ttl": 3, "host": "tlshost",
                    "lock_etcd_ca_file": str(pki.ca.cert)}
            good = EtcdBackend({**opts, "lock_etcd_cert_file": str(client.cert),
                                "lock_etcd_key_file": str(client.key)}, Hooks())
            await good.start()
            try:
                state = await good.acquire(Owner("u", "secure", 1), [disk("/img/tls")], None)
                assert parse_state(state)
            finally:
                await good.close()
            # without a client certificate etcd refuses the handshake: the daemon cannot start
            anonymous = EtcdBackend(opts, Hooks())
            with pytest.raises(libvirtError, match="cannot reach etcd at https://127.0.0.1"):
                await anonymous.start()
            await anonymous.close()
            # a CA that did not sign etcd's certificate: refused too
            wrong = EtcdBackend({**opts, "lock_etcd_ca_file": str(pki.other_ca.cert),
                                 "lock_etcd_cert_file": str(client.cert),
                                 "lock_etcd_key_file": str(client.key)}, Hooks())
            with pytest.raises(libvirtError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                await wrong.start()
            await wrong.close()
        run(scenario())
    finally:
        server.stop()


def test_a_lock_daemon_stopped_with_guests_holding_disks_leaves_their_keys_to_the_ttl(etcd):
    async def scenario():
        old, _ = await host(etcd, "hostA", "/t12/")
        g = Owner("u-a", "g", 4242)
        state = await old.acquire(g, [disk("/img/stop")], None)
        await old.close()                      # SIGTERM of the lock daemon, its guest still running
        assert await raw(etcd, old.key(disk("/img/stop"))) is not None
        new, _ = await host(etcd, "hostA", "/t12/")
        try:
            assert await new.acquire(g, [disk("/img/stop")], None) == state
        finally:
            await new.close()
        # with nothing held, a stop revokes its lease at once
        idle, _ = await host(etcd, "hostA", "/t12/")
        await idle.acquire(Owner("u-b", "b", 1), [disk("/img/idle")], None)
        await idle.forget(Owner("u-b", "b", 1))
        lid = idle.lease_id()
        await idle.close()
        assert await lease_ttl(etcd, lid) == 0
    run(scenario())
