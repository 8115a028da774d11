"""The ``etcd`` backend: cluster-wide disk leases held in etcd, with fencing.

The lock daemon holds one etcd *lease* (``lock_etcd_ttl`` seconds) and keeps
it alive; every disk one of its guests (an :class:`Owner`, one QEMU process)
holds is a key on that lease: ``lock_etcd_prefix`` + the SHA-256 of the disk
path, taken in one transaction ``If create_revision(key) == 0 Then Put(key,
lease)`` for all of a guest's disks at once, so they are taken all or none.
The key's value names the holder (host, host UUID, domain, UUID, pid).  The
key's create revision is the lease's **fencing token** and the backend's
state (``HASH:TOKEN`` per disk): etcd never hands the same revision out twice.
One lease per host, not per guest: one keep-alive however many guests run,
and a start or a migration's hand-over costs one transaction, no grant.

Releasing (the guest's CPUs stopped: suspend, save, end of an outgoing
migration) *parks* the keys: they stay, with ``"state": "released"``, so
- the destination of a migration (or the same guest resuming) takes the key
  over with ``If create_revision(key) == TOKEN Then Put(key, its lease)``:
  the same token, exactly the lease the source held;
- anyone else may take a parked key: it is deleted (guarded by its mod
  revision, so a resume in between wins) and created afresh, with a new token;
- it is deleted when its guest's process ends (a hand-over moved it away
  already, then nothing is left to delete).
Shared (``<shareable/>``) disks get one key per holder under ``KEY/s/``; an
exclusive take compares the whole range, so it fails while any holder is there.

Fencing: a keep-alive every TTL/4 seconds.  The lease expires on etcd's side
no earlier than TTL seconds after the last *successful* keep-alive was sent,
so when renewals fail the daemon is told (``Hooks.lease_lost``, for every
guest holding a disk) at that send time + TTL - margin on its own monotonic
clock, before anyone else can take the keys.  A fenced guest gets its disks
back only with the same tokens (the lease survived the outage); once the
lease expired it stays fenced.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import ErrorDomain, ErrorNumber, error
from .backend import Backend, Hooks, Owner, Resource, register
from .etcd_client import (EtcdClient, EtcdError, KeyValue, cmp_create, cmp_lease, cmp_mod,
                          make_ssl_context, op_delete, op_put, op_range, prefix_end)

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/pyvirt/leases/"
DEFAULT_TTL = 10
MIN_TTL = 3          # below that a keep-alive period and a fencing margin no longer fit in the TTL
_HEX64 = re.compile(r"[0-9a-f]{64}")


def resource_hash(res: Resource) -> str:
    """The SHA-256 hex of the disk path.  A lockspace resource is already named
    by that hash (the files backend's layout), so both kinds map to one key."""
    if res.lockspace and _HEX64.fullmatch(res.name):
        return res.name
    return hashlib.sha256((res.what or res.path).encode()).hexdigest()


def fencing_margin(ttl: float) -> float:
    """How long before the lease can expire on etcd's side the guests are stopped:
    a quarter of the TTL, at least 1.5 s, so that with the time pausing takes a
    guest has stopped by TTL - 1 s after the last renewal."""
    return max(1.5, ttl / 4)


def parse_state(state: str | None) -> dict[str, int]:
    """``HASH:TOKEN HASH:TOKEN`` → {hash: token}; junk is an error naming it."""
    tokens: dict[str, int] = {}
    for item in (state or "").split():
        h, _, tok = item.partition(":")
        if not _HEX64.fullmatch(h) or not tok.isdigit():
            raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.LOCKING,
                        f"Malformed etcd lock state '{item}'")
        tokens[h] = int(tok)
    return tokens


def format_state(tokens: Mapping[str, int]) -> str | None:
    return " ".join(f"{h}:{t}" for h, t in sorted(tokens.items())) or None


@dataclass
class _Lease:
    """The lock daemon's etcd lease."""

    id: int
    ttl: int
    last_ok: float                          # monotonic send time of the last successful renewal
    expired: bool = False                   # etcd no longer knows it
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Owned:
    """What one guest holds."""

    owner: Owner
    held: dict[str, tuple[Resource, int]] = field(default_factory=dict)     # hash → (res, token)
    shared: dict[str, tuple[Resource, int]] = field(default_factory=dict)
    parked: dict[str, tuple[Resource, int]] = field(default_factory=dict)   # released, still there
    fenced: bool = False        # lease_lost was reported: only the same tokens give the disks back

    def exclusive_tokens(self) -> dict[str, int]:
        return {h: t for h, (_, t) in self.held.items()}


def _value(kv: KeyValue) -> dict[str, Any]:
    try:
        v = json.loads(kv.value)
        return v if isinstance(v, dict) else {}
    except ValueError:
        return {}


def _busy(res: Resource, kv: KeyValue | None, why: str = "") -> Exception:
    holder = ""
    if kv is not None:
        v = _value(kv)
        if v:
            host = f"'{v.get('host', '?')}'"
            if v.get("host_uuid"):
                host += f" ({v['host_uuid']})"
            holder = f" by domain '{v.get('domain', '?')}' (pid {v.get('pid', '?')}) on host {host}"
            if v.get("state") == "released":
                holder += " (paused, released)"
        else:
            holder = " by a foreign writer"
        holder += f", etcd lease {kv.lease:x}, token {kv.create_revision}"
    detail = (f"Lockspace resource '{resource_hash(res)}' is locked: the lease on disk "
              f"'{res.what or res.path}' is held{holder}")
    if why:
        detail += f" ({why})"
    return error(ErrorNumber.RESOURCE_BUSY, ErrorDomain.LOCKSPACE, detail)


def _lost(res: Resource, token: int) -> Exception:
    return error(ErrorNumber.RESOURCE_BUSY, ErrorDomain.LOCKSPACE,
                 f"Lockspace resource '{resource_hash(res)}' is locked: the lease on disk "
                 f"'{res.what or res.path}' (token {token}) was lost; it expired while etcd was "
                 f"unreachable, so the guest stays paused")


@register
class EtcdBackend(Backend):
    name = "etcd"
    uses_state = True

    def __init__(self, options: Mapping[str, Any], hooks: Hooks) -> None:
        super().__init__(options, hooks)
        endpoints = self._opt("endpoints", ["http://127.0.0.1:2379"])
        if isinstance(endpoints, str):
            endpoints = [e for e in re.split(r"[,\s]+", endpoints) if e]
        self.ttl = int(self._opt("ttl", DEFAULT_TTL))
        if self.ttl < MIN_TTL:
            raise error(ErrorNumber.CONFIG_UNSUPPORTED, ErrorDomain.LOCKING,
                        f"lock_etcd_ttl must be at least {MIN_TTL} seconds, not {self.ttl}")
        prefix = str(self._opt("prefix", DEFAULT_PREFIX))
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        # who holds a disk, for people: the host's name and (pyvirtd's host_uuid) its UUID
        self.host = socket.gethostname()
        self.host_uuid = str(self._opt("host", "") or "")
        ca, cert, key = self._opt("ca_file", None), self._opt("cert_file", None), self._opt("key_file", None)
        ctx = make_ssl_context(ca, cert, key) if (ca or cert or any(
            str(e).startswith("https:") for e in endpoints)) else None
        self.period = self.ttl / 4
        self.margin = fencing_margin(self.ttl)
        # transactions get a few seconds; a keep-alive at most a period (a hung etcd costs
        # one renewal, never the fencing deadline)
        self.client = EtcdClient(list(endpoints), timeout=5.0, ssl_context=ctx)
        self._lease: _Lease | None = None
        self._granting = asyncio.Lock()
        self._owned: dict[str, _Owned] = {}           # owner uuid → what it holds
        self._locks: dict[str, asyncio.Lock] = {}
        self._leftover: dict[bytes, int] = {}         # keys of ended guests still to delete → token
        self._renewer: asyncio.Task | None = None

    def _opt(self, name: str, default: Any) -> Any:
        for key in (f"lock_etcd_{name}", name):
            if self.options.get(key) not in (None, ""):
                return self.options[key]
        return default

    # --- keys ------------------------------------------------------------------------------------

    def key(self, res: Resource) -> bytes:
        return (self.prefix + resource_hash(res)).encode()

    def _shared_key(self, res: Resource, owner: Owner) -> bytes:
        return self.key(res) + f"/s/{owner.uuid}".encode()

    def _value(self, owner: Owner, res: Resource, state: str = "held") -> bytes:
        return json.dumps({"host": self.host, "host_uuid": self.host_uuid, "domain": owner.name,
                           "uuid": owner.uuid, "pid": owner.pid, "disk": res.what or res.path,
                           "state": state}, sort_keys=True).encode()

    def _ours(self, kv: KeyValue, owner: Owner) -> bool:
        v = _value(kv)
        return (v.get("host") == self.host and v.get("host_uuid", "") == self.host_uuid
                and v.get("uuid") == owner.uuid)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        # one round trip proves the cluster answers; the daemon refuses to start otherwise
        try:
            await self.client.range(self.prefix.encode(), prefix_end(self.prefix.encode()), timeout=5)
        except EtcdError as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.LOCKING,
                        f"cannot reach etcd at {', '.join(self._endpoint_names())}: {exc}") from exc
        self._renewer = asyncio.create_task(self._renew_forever(), name="etcd-lease-renewal")

    def _endpoint_names(self) -> list[str]:
        return [f"{s}://{h}:{p}" for s, h, p in self.client.endpoints]

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        lease, self._lease = self._lease, None
        holding = [o.owner.name for o in self._owned.values() if o.held or o.shared]
        if lease is not None and holding:
            # guests still run on these disks: leave the lease to its TTL, so a lock daemon
            # started again within it carries their keys over (same host, guest and pid)
            self._disarm(lease)
            log.error("stopping while %s hold disk leases: etcd lease %x is left to expire in %d s",
                      ", ".join(holding), lease.id, lease.ttl)
        elif lease is not None and not lease.expired:
            self._disarm(lease)
            try:
                await self.client.revoke(lease.id, timeout=1)
            except EtcdError as exc:
                log.warning("etcd lease %x not revoked (%s); it expires in %d s", lease.id, exc, lease.ttl)
        self._owned.clear()
        await self.client.close()

    def _lock(self, owner: Owner) -> asyncio.Lock:
        return self._locks.setdefault(owner.uuid, asyncio.Lock())

    def _owned_by(self, owner: Owner) -> _Owned:
        owned = self._owned.get(owner.uuid)
        if owned is None:
            owned = self._owned[owner.uuid] = _Owned(owner)
        elif owned.owner.pid != owner.pid:
            owned.owner = owner
        return owned

    async def _current_lease(self) -> _Lease:
        """The lock daemon's lease, granted on first use (again once etcd dropped it)."""
        async with self._granting:
            lease = self._lease
            if lease is not None and not lease.expired:
                return lease
            loop = asyncio.get_running_loop()
            sent = loop.time()
            try:
                lid, ttl = await self.client.grant(self.ttl)
            except EtcdError as exc:
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.LOCKING,
                            f"Failed to acquire lease: cannot get an etcd lease: {exc}") from exc
            self._lease = _Lease(lid, ttl, sent)
            self._arm(self._lease)
            log.info("etcd lease %x granted, TTL %d s", lid, ttl)
            return self._lease

    def _lease_expired(self, lease: _Lease) -> None:
        """etcd dropped our lease: every key on it is gone.  Guests that held disks
        keep their tokens as parked, so only the same tokens (impossible now) would
        give them back: they stay fenced."""
        lease.expired = True
        self._disarm(lease)
        for owned in self._owned.values():
            if owned.held or owned.parked:
                owned.fenced = True
            owned.parked.update(owned.held)
            owned.held.clear()
            owned.shared.clear()
        self._leftover.clear()          # their keys went with the lease

    async def _ensure_fresh(self, lease: _Lease) -> None:
        """CPUs may run only on a lease with time left on our clock: when its renewal
        deadline is near or past (renewals failed, guests were fenced), renew it now.
        A transaction on etcd does not renew a lease; only a keep-alive does."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline(lease) - self.period:
            return
        sent = loop.time()
        try:
            ttl = await self.client.keepalive(lease.id, timeout=min(self.period, 2.0))
        except EtcdError as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.LOCKING,
                        f"Failed to acquire lease: cannot renew etcd lease {lease.id:x}: {exc}") from exc
        if ttl <= 0:
            self._report_all(lease, f"etcd lease {lease.id:x} expired on etcd's side")
            self._lease_expired(lease)
            return
        lease.last_ok = sent
        self._arm(lease)

    # --- acquire / release -----------------------------------------------------------------------

    async def acquire(self, owner: Owner, resources: Sequence[Resource], state: str | None) -> str | None:
        async with self._lock(owner):
            tokens = parse_state(state)
            owned = self._owned_by(owner)
            lease = await self._current_lease()
            await self._ensure_fresh(lease)
            if lease.expired:                      # it expired just now: a new one, guests fenced
                lease = await self._current_lease()
            for attempt in range(3):
                if await self._try_acquire(owned, lease, resources, tokens, last=attempt == 2):
                    break
            else:
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.LOCKING,
                            "Failed to acquire lease: the etcd transaction kept failing, try again")
            owned.fenced = False
            return format_state(owned.exclusive_tokens())

    async def _try_acquire(self, owned: _Owned, lease: _Lease, resources: Sequence[Resource],
                           tokens: dict[str, int], last: bool) -> bool:
        """One transaction for every resource not yet held.  True when done; False after
        clearing keys out of the way (try again)."""
        owner = owned.owner
        todo = [r for r in resources
                if resource_hash(r) not in (owned.shared if r.shared else owned.held)]
        if not todo:
            return True

        def wanted(h: str) -> int | None:
            if h in owned.parked:
                return owned.parked[h][1]
            return tokens.get(h)

        compare, success, failure = [], [], []
        for res in todo:
            h, key = resource_hash(res), self.key(res)
            if res.shared:
                compare.append(cmp_create(key, 0))
                success.append(op_put(self._shared_key(res, owner), self._value(owner, res), lease.id))
                failure.append(op_range(key))
            elif wanted(h) is not None:
                # take over exactly the lease described (a migration's source, or our own park)
                compare.append(cmp_create(key, wanted(h)))
                success.append(op_put(key, self._value(owner, res), lease.id))
                failure.append(op_range(key, prefix_end(key)))
            else:
                compare.append(cmp_create(key, 0, prefix_end(key)))
                success.append(op_put(key, self._value(owner, res), lease.id))
                failure.append(op_range(key, prefix_end(key)))
        try:
            result = await self.client.txn(compare, success, failure)
        except EtcdError as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.LOCKING,
                        f"Failed to acquire lease on {', '.join(r.what or r.path for r in todo)}: {exc}") from exc
        if result.succeeded:
            for res in todo:
                h = resource_hash(res)
                if res.shared:
                    owned.shared[h] = (res, result.revision)
                else:
                    owned.held[h] = (res, wanted(h) or result.revision)
                    owned.parked.pop(h, None)
                    self._leftover.pop(self.key(res), None)
            log.info("%s (pid %d): acquired %s (etcd lease %x, tokens %s)", owner.name, owner.pid,
                     ", ".join(r.what or r.path for r in todo), lease.id,
                     ", ".join(str(owned.held[resource_hash(r)][1]) for r in todo if not r.shared) or "-")
            return True
        # find the first reason, naming the disk and who holds it
        for res, kvs in zip(todo, result.ranges):
            h, key = resource_hash(res), self.key(res)
            main = next((kv for kv in kvs if kv.key == key), None)
            want = wanted(h)
            if res.shared:
                if main is None:
                    continue
                if not last and self._takeable(main, owner):
                    await self._clear(main)
                    continue
                raise _busy(res, main)
            if want is not None:
                if main is not None and main.create_revision == want:
                    continue                    # fine; another resource failed
                if main is None and not owned.fenced and h not in owned.parked:
                    # the lease the state describes is gone (expired, revoked) and nobody holds
                    # the disk: a guest that was not fenced takes it afresh
                    log.warning("%s: the etcd key of %s (token %d) is gone; taking the disk afresh",
                                owner.name, res.what or res.path, want)
                    tokens.pop(h)
                    continue
                if main is None:
                    raise _lost(res, want)
                raise _busy(res, main, f"expected token {want}")
            others = [kv for kv in kvs if not (kv.lease == lease.id and self._ours(kv, owner))]
            if not others:
                continue
            if main is not None and not last and self._ours(main, owner) and _value(main).get("pid") == owner.pid:
                # this very QEMU holds it on an older lease (the lock daemon was restarted):
                # carry the key over to our lease with its token
                tokens[h] = main.create_revision
                continue
            if not last and all(self._takeable(kv, owner) for kv in others):
                for kv in others:
                    await self._clear(kv)
                continue
            raise _busy(res, main or others[0])
        return False

    def _takeable(self, kv: KeyValue, owner: Owner) -> bool:
        """Another guest's parked (released) key may be taken."""
        return not self._ours(kv, owner) and _value(kv).get("state") == "released"

    async def _clear(self, kv: KeyValue) -> None:
        """Delete a key another guest parked (guarded: if it resumed meanwhile, it stays)."""
        result = await self.client.txn([cmp_mod(kv.key, kv.mod_revision)], [op_delete(kv.key)])
        if result.succeeded:
            log.info("took over the released etcd key %s (token %d)", kv.key.decode(errors="replace"),
                     kv.create_revision)

    async def release(self, owner: Owner, resources: Sequence[Resource] | None) -> str | None:
        async with self._lock(owner):
            owned = self._owned.get(owner.uuid)
            lease = self._lease
            if owned is None or lease is None:
                return None
            hashes = ({resource_hash(r) for r in resources} if resources is not None
                      else set(owned.held) | set(owned.shared))
            park = {h: owned.held[h] for h in hashes if h in owned.held}
            drop = {h: owned.shared[h] for h in hashes if h in owned.shared}
            compare, success = [], []
            for h, (res, token) in park.items():
                compare += [cmp_create(self.key(res), token), cmp_lease(self.key(res), lease.id)]
                success.append(op_put(self.key(res), self._value(owner, res, "released"), lease.id))
            for h, (res, _) in drop.items():
                success.append(op_delete(self._shared_key(res, owner)))
            if success and owned.fenced:
                # renewals failed: etcd does not answer, and the lock daemon waits for this
                # release to know the guest is fenced; the keys stay held (safe) until the
                # lease expires or the guest resumes with them
                log.warning("%s: fenced, its etcd keys stay as they are on lease %x", owner.name, lease.id)
            elif success and not lease.expired:
                try:
                    result = await self.client.txn(compare, success)
                    if not result.succeeded:
                        log.warning("%s: some of its etcd keys were no longer its own at release", owner.name)
                except EtcdError as exc:
                    # unreachable: the keys stay as they were (held) until the lease ends them
                    log.warning("%s: etcd unreachable at release (%s); its keys stay on lease %x",
                                owner.name, exc, lease.id)
            for h, held in park.items():
                del owned.held[h]
                owned.parked[h] = held
            for h in drop:
                del owned.shared[h]
            if park or drop:
                log.info("%s (pid %d): released %s", owner.name, owner.pid,
                         ", ".join(r.what or r.path for r, _ in [*park.values(), *drop.values()]))
            return format_state({h: t for h, (_, t) in park.items()})

    async def inquire(self, owner: Owner) -> str | None:
        owned = self._owned.get(owner.uuid)
        if owned is None:
            return None
        return format_state(owned.exclusive_tokens() or {h: t for h, (_, t) in owned.parked.items()})

    def held(self, owner: Owner) -> list[Resource]:
        owned = self._owned.get(owner.uuid)
        if owned is None:
            return []
        return [r for r, _ in owned.held.values()] + [r for r, _ in owned.shared.values()]

    async def forget(self, owner: Owner) -> None:
        """The guest's process ended: delete its keys (those a hand-over did not move away)."""
        async with self._lock(owner):
            owned = self._owned.pop(owner.uuid, None)
            self._locks.pop(owner.uuid, None)
            lease = self._lease
            if owned is None or lease is None or lease.expired:
                return
            keys = {self.key(r): t for r, t in [*owned.held.values(), *owned.parked.values()]}
            keys.update({self._shared_key(r, owner): 0 for r, _ in owned.shared.values()})
            if keys:
                self._leftover.update(keys)
                await self._delete_leftovers(lease)
                log.info("%s (pid %d) ended: its etcd keys are deleted", owner.name, owner.pid)

    async def _delete_leftovers(self, lease: _Lease) -> None:
        """Delete keys of ended guests still on our lease (guarded by token and lease: a key
        a migration's destination took over keeps its token but is on the destination's
        lease, not ours to delete); retried after the next renewal when etcd does not
        answer, since our lease would keep them alive."""
        if not self._leftover:
            return
        keys = dict(self._leftover)
        compare_ops = []
        for key, token in keys.items():
            check = [cmp_lease(key, lease.id)] + ([cmp_create(key, token)] if token else [])
            compare_ops.append(self.client.txn(check, [op_delete(key)]))
        try:
            await asyncio.gather(*compare_ops)
        except EtcdError as exc:
            log.warning("etcd keys of ended guests not deleted yet (%s); retrying", exc)
            return
        for key in keys:
            self._leftover.pop(key, None)

    # --- renewal and fencing ---------------------------------------------------------------------

    def tokens(self, owner: Owner) -> dict[str, int]:
        """hash → fencing token of what ``owner`` holds (tests, diagnostics)."""
        owned = self._owned.get(owner.uuid)
        return owned.exclusive_tokens() if owned else {}

    def lease_id(self, owner: Owner | None = None) -> int | None:
        return self._lease.id if self._lease is not None and not self._lease.expired else None

    def _deadline(self, lease: _Lease) -> float:
        return lease.last_ok + lease.ttl - self.margin

    def _arm(self, lease: _Lease) -> None:
        self._disarm(lease)
        loop = asyncio.get_running_loop()
        lease.timer = loop.call_at(self._deadline(lease), self._expiring, lease)

    @staticmethod
    def _disarm(lease: _Lease) -> None:
        if lease.timer is not None:
            lease.timer.cancel()
            lease.timer = None

    def _expiring(self, lease: _Lease) -> None:
        """The renewal deadline passed: fence before etcd can expire the lease."""
        lease.timer = None
        if self._lease is not lease:
            return
        age = asyncio.get_running_loop().time() - lease.last_ok
        self._report_all(lease, f"etcd lease {lease.id:x} not renewed for {age:.1f} s (TTL {lease.ttl} s): "
                                f"etcd at {', '.join(self._endpoint_names())} is unreachable",
                         expires_at=lease.last_ok + lease.ttl)

    def _report_all(self, lease: _Lease, why: str, expires_at: float | None = None) -> None:
        """Fence every guest holding disks; ``expires_at`` (our monotonic clock) is when the
        lease can have expired on etcd's side: now, if etcd said so already."""
        loop = asyncio.get_running_loop()
        if expires_at is None:
            expires_at = loop.time()
        for owned in list(self._owned.values()):
            resources = [r for r, _ in owned.held.values()] + [r for r, _ in owned.shared.values()]
            if owned.fenced or not resources:
                owned.fenced = owned.fenced or bool(owned.parked)
                continue
            owned.fenced = True
            disks = ", ".join(f"'{r.what or r.path}' (token {t})" for r, t in owned.held.values())
            log.error("%s (pid %d): lost the lease on %s: %s", owned.owner.name, owned.owner.pid,
                      disks or "its shared disks", why)
            loop.create_task(self.hooks.lease_lost(owned.owner, resources, why, expires_at))

    async def _renew_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.period)
            lease = self._lease
            if lease is None or lease.expired:
                continue
            sent = loop.time()
            try:
                ttl = await self.client.keepalive(lease.id, timeout=min(self.period, 2.0))
            except EtcdError as exc:
                log.warning("etcd keep-alive of lease %x failed: %s", lease.id, exc)
                continue
            if self._lease is not lease:
                continue
            if ttl <= 0:
                self._report_all(lease, f"etcd lease {lease.id:x} expired on etcd's side")
                self._lease_expired(lease)
                continue
            lease.last_ok = sent
            self._arm(lease)
            await self._delete_leftovers(lease)
