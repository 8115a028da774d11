"""The ``etcd`` backend: cluster-wide disk leases held in etcd, with fencing.

Every guest (an :class:`Owner`, one QEMU process) gets one etcd *lease*
(``lock_etcd_ttl`` seconds), kept alive by this lock daemon.  Each disk
resource is one key, ``lock_etcd_prefix`` + the SHA-256 of the disk path,
taken in one transaction ``If create_revision(key) == 0 Then Put(key, lease)``
for all of a guest's disks at once, so they are taken all or none.  The key's
create revision is the lease's **fencing token** and the backend's state
(``HASH:TOKEN`` per disk): etcd never hands the same revision out twice.

Releasing (the guest's CPUs stopped: suspend, save, end of an outgoing
migration) *parks* the keys: they stay on the owner's lease with
``"state": "released"`` in their value, so
- the destination of a migration (or the same guest resuming) takes the key
  over with ``If create_revision(key) == TOKEN Then Put(key, its lease)``:
  the same token, exactly the lease the source held;
- anyone else may take a parked key: it is deleted (guarded by its mod
  revision, so a resume in between wins) and created afresh, with a new token;
- it goes when the owner's lease goes (the QEMU process ended).
Shared (``<shareable/>``) disks get one key per holder under ``KEY/s/``; an
exclusive take compares the whole range, so it fails while any holder is there.

Fencing: a keep-alive every TTL/4 seconds.  The lease expires on etcd's side
no earlier than TTL seconds after the last *successful* keep-alive was sent,
so when renewals fail the daemon is told (``Hooks.lease_lost``) at that send
time + TTL - margin on its own monotonic clock, before anyone else can take
the keys.  A fenced owner gets its disks back only with the same tokens
(its lease survived the outage); once the lease expired it stays fenced.
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
from .etcd_client import (EtcdClient, EtcdError, KeyValue, cmp_create, cmp_mod, make_ssl_context,
                          op_delete, op_put, op_range, prefix_end)

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
    """How long before the lease can expire on etcd's side the guest is stopped:
    a quarter of the TTL, at least 1.5 s, so that with the time pausing takes the
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
    """One owner's etcd lease and what it holds."""

    owner: Owner
    id: int
    ttl: int
    last_ok: float                          # monotonic send time of the last successful renewal
    held: dict[str, tuple[Resource, int]] = field(default_factory=dict)     # hash → (res, token)
    shared: dict[str, tuple[Resource, int]] = field(default_factory=dict)
    parked: dict[str, int] = field(default_factory=dict)                    # released, still ours
    fenced: bool = False                    # lease_lost was reported; only the same tokens restore it
    expired: bool = False                   # etcd no longer knows the lease
    timer: asyncio.TimerHandle | None = None


def _busy(res: Resource, kv: KeyValue | None, why: str = "") -> Exception:
    holder = ""
    if kv is not None:
        try:
            v = json.loads(kv.value)
            host = f"'{v.get('host', '?')}'"
            if v.get("host_uuid"):
                host += f" ({v['host_uuid']})"
            holder = f" by domain '{v.get('domain', '?')}' (pid {v.get('pid', '?')}) on host {host}"
            if v.get("state") == "released":
                holder += " (paused, released)"
        except ValueError:
            holder = " by a foreign writer"
        holder += f", etcd lease {kv.lease:x}, token {kv.create_revision}"
    disk = res.what or res.path
    detail = (f"Lockspace resource '{resource_hash(res)}' is locked: the lease on disk '{disk}' "
              f"is held{holder}")
    if why:
        detail += f" ({why})"
    return error(ErrorNumber.RESOURCE_BUSY, ErrorDomain.LOCKSPACE, detail)


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
        self._leases: dict[str, _Lease] = {}          # owner uuid → its lease
        self._locks: dict[str, asyncio.Lock] = {}
        self._renewer: asyncio.Task | None = None

    def _opt(self, name: str, default: Any) -> Any:
        for key in (f"lock_etcd_{name}", name):
            if self.options.get(key) not in (None, ""):
                return self.options[key]
        return default

    # --- keys ------------------------------------------------------------------------------------

    def key(self, res: Resource) -> bytes:
        return (self.prefix + resource_hash(res)).encode()

    def _value(self, owner: Owner, res: Resource, state: str = "held") -> bytes:
        return json.dumps({"host": self.host, "host_uuid": self.host_uuid, "domain": owner.name,
                           "uuid": owner.uuid, "pid": owner.pid, "disk": res.what or res.path,
                           "state": state}, sort_keys=True).encode()

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
        for lease in list(self._leases.values()):
            self._disarm(lease)
            try:
                await self.client.revoke(lease.id, timeout=1)
            except EtcdError as exc:
                log.warning("%s: etcd lease %x not revoked (%s); it expires in %d s",
                            lease.owner.name, lease.id, exc, lease.ttl)
        self._leases.clear()
        await self.client.close()

    def _lock(self, owner: Owner) -> asyncio.Lock:
        return self._locks.setdefault(owner.uuid, asyncio.Lock())

    async def _lease_for(self, owner: Owner) -> _Lease:
        lease = self._leases.get(owner.uuid)
        if lease is not None and not lease.expired:
            if lease.owner.pid != owner.pid:
                lease.owner = owner
            return lease
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            lid, ttl = await self.client.grant(self.ttl)
        except EtcdError as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.LOCKING,
                        f"Failed to acquire lease: cannot get an etcd lease for domain '{owner.name}': {exc}"
                        ) from exc
        new = _Lease(owner, lid, ttl, sent)
        if lease is not None:
            # its old lease expired: what it held may come back only with the same tokens
            # (which fails: the keys went with the lease), so the guest stays fenced
            new.fenced = lease.fenced or bool(lease.held or lease.parked)
            new.parked = {**lease.parked, **{h: t for h, (_, t) in lease.held.items()}}
        self._leases[owner.uuid] = new
        self._arm(new)
        log.info("%s (pid %d): etcd lease %x granted, TTL %d s", owner.name, owner.pid, lid, ttl)
        return new

    # --- acquire / release -----------------------------------------------------------------------

    async def acquire(self, owner: Owner, resources: Sequence[Resource], state: str | None) -> str | None:
        async with self._lock(owner):
            tokens = parse_state(state)
            lease = await self._lease_for(owner)
            await self._ensure_fresh(lease)
            for attempt in range(3):
                if await self._try_acquire(lease, resources, tokens, last=attempt == 2):
                    break
            else:
                raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.LOCKING,
                            "Failed to acquire lease: the etcd transaction kept failing, try again")
            lease.fenced = False
            return format_state({h: t for h, (_, t) in lease.held.items()})

    async def _ensure_fresh(self, lease: _Lease) -> None:
        """CPUs may run only on a lease with time left on our clock: when its renewal
        deadline is near or past (renewals failed, the guest was fenced), renew it now.
        A transaction on etcd does not renew a lease; only a keep-alive does."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline(lease) - self.period:
            return
        sent = loop.time()
        try:
            ttl = await self.client.keepalive(lease.id, timeout=min(self.period, 2.0))
        except EtcdError as exc:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.LOCKING,
                        f"Failed to acquire lease: cannot renew etcd lease {lease.id:x} of domain "
                        f"'{lease.owner.name}': {exc}") from exc
        if ttl <= 0:
            lease.expired = True
            self._disarm(lease)
            disks = ", ".join(f"'{r.what or r.path}'" for r, _ in [*lease.held.values(), *lease.shared.values()])
            lease.parked.update({h: t for h, (_, t) in lease.held.items()})
            lease.held.clear()
            lease.shared.clear()
            lease.fenced = lease.fenced or bool(lease.parked)
            raise error(ErrorNumber.RESOURCE_BUSY, ErrorDomain.LOCKSPACE,
                        f"Failed to acquire lease: the lease on {('disk ' + disks) if disks else 'its disks'} "
                        f"was lost: etcd lease {lease.id:x} of domain '{lease.owner.name}' expired while etcd "
                        f"was unreachable, so the guest stays paused")
        lease.last_ok = sent
        self._arm(lease)

    async def _try_acquire(self, lease: _Lease, resources: Sequence[Resource], tokens: dict[str, int],
                           last: bool) -> bool:
        """One transaction for every resource not yet held.  True when done; False after
        clearing parked keys of others out of the way (try again)."""
        owner = lease.owner
        todo = [r for r in resources
                if resource_hash(r) not in (lease.shared if r.shared else lease.held)]
        if not todo:
            return True
        compare, success, failure = [], [], []
        for res in todo:
            h, key = resource_hash(res), self.key(res)
            if res.shared:
                compare.append(cmp_create(key, 0))
                success.append(op_put(key + f"/s/{lease.id:x}".encode(), self._value(owner, res), lease.id))
                failure.append(op_range(key))
            elif h in tokens or h in lease.parked:
                # take over exactly the lease described (a migration's source, or our own park)
                compare.append(cmp_create(key, tokens.get(h) or lease.parked[h]))
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
                    lease.shared[h] = (res, result.revision)
                else:
                    lease.held[h] = (res, tokens.get(h) or lease.parked.get(h) or result.revision)
                    lease.parked.pop(h, None)
            log.info("%s (pid %d): acquired %s (etcd lease %x, tokens %s)", owner.name, owner.pid,
                     ", ".join(r.what or r.path for r in todo), lease.id,
                     ", ".join(str(lease.held[resource_hash(r)][1]) for r in todo if not r.shared) or "-")
            return True
        # find the first reason, naming the disk and who holds it
        cleared = False
        for res, kvs in zip(todo, result.ranges):
            h, key = resource_hash(res), self.key(res)
            main = next((kv for kv in kvs if kv.key == key), None)
            want = tokens.get(h) or lease.parked.get(h)
            if res.shared:
                if main is not None:
                    if not last and self._parked_by_other(main, lease):
                        cleared |= await self._clear(main)
                        continue
                    raise _busy(res, main)
                continue
            if want is not None:
                if main is not None and main.create_revision == want:
                    continue                    # fine; another resource failed
                if main is None and not lease.fenced and h not in lease.parked and h in tokens:
                    # the lease the state describes is gone (expired, revoked) and nobody holds
                    # the disk: a guest that was not fenced takes it afresh
                    log.warning("%s: etcd lease for %s (token %d) is gone; taking the disk afresh",
                                owner.name, res.what or res.path, want)
                    tokens.pop(h)
                    cleared = True
                    continue
                if main is None:
                    lease.parked.pop(h, None)
                    raise error(ErrorNumber.RESOURCE_BUSY, ErrorDomain.LOCKSPACE,
                                f"Lockspace resource '{h}' is locked: the lease on disk '{res.what or res.path}'"
                                f" (token {want}) was lost; it expired while etcd was unreachable, so the"
                                f" guest stays paused")
                raise _busy(res, main, f"expected token {want}")
            others = [kv for kv in kvs if kv.lease != lease.id]
            if not others:
                continue
            if main is not None and not last and self._same_process(main, owner):
                # this very QEMU holds it on an older lease (the lock daemon was restarted):
                # carry the key over to the new lease with its token
                tokens[h] = main.create_revision
                cleared = True
                continue
            if not last and all(self._parked_by_other(kv, lease) for kv in others):
                for kv in others:
                    cleared |= await self._clear(kv)
                continue
            raise _busy(res, main or others[0])
        return False

    def _same_process(self, kv: KeyValue, owner: Owner) -> bool:
        try:
            v = json.loads(kv.value)
        except ValueError:
            return False
        return (v.get("host") == self.host and v.get("host_uuid", "") == self.host_uuid
                and v.get("uuid") == owner.uuid and v.get("pid") == owner.pid and v.get("state") == "held")

    @staticmethod
    def _parked_by_other(kv: KeyValue, lease: _Lease) -> bool:
        if kv.lease == lease.id:
            return False
        try:
            return json.loads(kv.value).get("state") == "released"
        except ValueError:
            return False

    async def _clear(self, kv: KeyValue) -> bool:
        """Delete a key another guest parked (guarded: if it resumed meanwhile, it stays)."""
        result = await self.client.txn([cmp_mod(kv.key, kv.mod_revision)], [op_delete(kv.key)])
        if result.succeeded:
            log.info("took over the released etcd key %s (token %d)", kv.key.decode(errors="replace"),
                     kv.create_revision)
        return True

    async def release(self, owner: Owner, resources: Sequence[Resource] | None) -> str | None:
        async with self._lock(owner):
            lease = self._leases.get(owner.uuid)
            if lease is None:
                return None
            hashes = ({resource_hash(r) for r in resources} if resources is not None
                      else set(lease.held) | set(lease.shared))
            park = {h: lease.held[h] for h in hashes if h in lease.held}
            drop = {h: lease.shared[h] for h in hashes if h in lease.shared}
            compare, success = [], []
            for h, (res, token) in park.items():
                compare.append(cmp_create(self.key(res), token))
                success.append(op_put(self.key(res), self._value(owner, res, "released"), lease.id))
            for h, (res, _) in drop.items():
                success.append(op_delete(self.key(res) + f"/s/{lease.id:x}".encode()))
            if success:
                try:
                    result = await self.client.txn(compare, success)
                    if not result.succeeded:
                        log.warning("%s: some of its etcd keys were no longer its own at release", owner.name)
                except EtcdError as exc:
                    # unreachable: the keys stay as they were; the lease's end removes them
                    log.warning("%s: etcd unreachable at release (%s); the keys stay on lease %x",
                                owner.name, exc, lease.id)
            for h, (res, token) in park.items():
                del lease.held[h]
                lease.parked[h] = token
            for h in drop:
                del lease.shared[h]
            if park or drop:
                log.info("%s (pid %d): released %s", owner.name, owner.pid,
                         ", ".join(r.what or r.path for r, _ in [*park.values(), *drop.values()]))
            return format_state({h: t for h, (_, t) in park.items()})

    async def inquire(self, owner: Owner) -> str | None:
        lease = self._leases.get(owner.uuid)
        if lease is None:
            return None
        return format_state({h: t for h, (_, t) in lease.held.items()} or lease.parked)

    def held(self, owner: Owner) -> list[Resource]:
        lease = self._leases.get(owner.uuid)
        if lease is None:
            return []
        return [r for r, _ in lease.held.values()] + [r for r, _ in lease.shared.values()]

    async def forget(self, owner: Owner) -> None:
        async with self._lock(owner):
            lease = self._leases.pop(owner.uuid, None)
            self._locks.pop(owner.uuid, None)
            if lease is None:
                return
            self._disarm(lease)
            try:
                await self.client.revoke(lease.id, timeout=2.0)
                log.info("%s (pid %d): etcd lease %x revoked", owner.name, owner.pid, lease.id)
            except EtcdError as exc:
                log.warning("%s: etcd lease %x not revoked (%s); its keys go when it expires",
                            owner.name, lease.id, exc)

    # --- renewal and fencing ---------------------------------------------------------------------

    def tokens(self, owner: Owner) -> dict[str, int]:
        """hash → fencing token of what ``owner`` holds (tests, diagnostics)."""
        lease = self._leases.get(owner.uuid)
        return {h: t for h, (_, t) in lease.held.items()} if lease else {}

    def lease_id(self, owner: Owner) -> int | None:
        lease = self._leases.get(owner.uuid)
        return lease.id if lease else None

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
        if self._leases.get(lease.owner.uuid) is not lease:
            return
        age = asyncio.get_running_loop().time() - lease.last_ok
        why = (f"etcd lease {lease.id:x} not renewed for {age:.1f} s (TTL {lease.ttl} s): etcd at "
               f"{', '.join(self._endpoint_names())} is unreachable")
        self._report_lost(lease, why)

    def _report_lost(self, lease: _Lease, why: str) -> None:
        resources = [r for r, _ in lease.held.values()] + [r for r, _ in lease.shared.values()]
        if lease.fenced or not resources:
            lease.fenced = lease.fenced or bool(lease.parked)
            return
        lease.fenced = True
        disks = ", ".join(f"'{r.what or r.path}' (token {t})" for r, t in lease.held.values())
        log.error("%s (pid %d): lost the lease on %s: %s", lease.owner.name, lease.owner.pid,
                  disks or "its shared disks", why)
        asyncio.get_running_loop().create_task(self.hooks.lease_lost(lease.owner, resources, why))

    async def _renew_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.period)
            leases = list(self._leases.values())
            if leases:
                await asyncio.gather(*(self._renew(lease, loop) for lease in leases))

    async def _renew(self, lease: _Lease, loop: asyncio.AbstractEventLoop) -> None:
        if lease.expired:
            return
        sent = loop.time()
        try:
            ttl = await self.client.keepalive(lease.id, timeout=min(self.period, 2.0))
        except EtcdError as exc:
            log.warning("%s: etcd keep-alive of lease %x failed: %s", lease.owner.name, lease.id, exc)
            return
        if self._leases.get(lease.owner.uuid) is not lease:
            return
        if ttl <= 0:
            lease.expired = True
            self._disarm(lease)
            self._report_lost(lease, f"etcd lease {lease.id:x} expired on etcd's side")
            return
        lease.last_ok = sent
        self._arm(lease)
