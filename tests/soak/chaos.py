"""The soak's engine: client threads drawing random operations, the faults, the op log.

Each client has its own python3-libvirt connections to both hosts and its own
random.Random, seeded from the soak's seed and its index, which picks its
operations; how the clients' calls interleave is left to the machine (that is
the point), so a replay repeats every client's choices, not the timing.

Operations hold a shared lock; the invariant check after each step takes it
exclusively, so it always looks at a quiet point (no call in flight), while
the calls between two checks race freely.  Starting, restoring and migrating
a guest also hold that guest's placement lock: without a lock manager (as in
libvirt) nothing stops a user from booting one guest on two hosts, so the soak
itself never asks for that (starts on one host race each other, see op_start);
every other operation races them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from daemons import Pyvirtd, qemu_pid
from guests import READY, pid_alive, tiny_xml, wait_for, wait_for_text
from soak import check

OP_HANG = 240.0          # s a single call may take before the soak calls it hung
STOP_TIMEOUT = 30.0      # s a SIGTERMed daemon may take to exit

# Operation weights: (name, weight, is_fault).
OPERATIONS = [
    ("start", 18, False), ("destroy", 6, False), ("migrate", 24, False),
    ("save", 5, False), ("restore", 6, False), ("suspend", 6, False), ("resume", 7, False),
    ("define", 4, False), ("undefine", 3, False),
    ("restart_daemon", 2, True), ("kill_daemon", 2, True), ("kill_qemu", 3, True),
]
FLOWS = ("migrate", "migrate2", "migrate3", "p2p", "tunnelled")


class RWLock:
    """Many operations at once, or one check alone; a waiting check blocks new operations."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._writer and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writer and not self._readers)
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class Guest:
    name: str
    uuid: str
    xml: str
    serial: Path
    home: int | None = 0          # where starts racing each other boot it (set holding the placement alone)
    placement: RWLock = field(default_factory=RWLock)
    images: list[Path] = field(default_factory=list)


class Skip(Exception):
    """The operation does not apply now (said in the log)."""


class Soak:
    def __init__(self, libvirt, libvirt_qemu, daemons: list[Pyvirtd], root: Path, *, seed: int, ops: int,
                 clients: int = 4, guests: int = 3, faults: bool = True, memory_mib: int = 64) -> None:
        self.lv, self.lvq = libvirt, libvirt_qemu
        self.daemons = daemons
        self.root = root
        self.seed = seed
        self.ops = ops
        self.nclients = clients
        self.faults = faults
        self.rw = RWLock()
        self.log_lock = threading.Lock()
        self.log: list[str] = []
        self.violations: list[str] = []       # invariant violations: the soak stops at the first
        self.unexpected: list[str] = []       # calls failing with an error of no expected kind
        self.transients: list[str] = []
        self.stop = threading.Event()
        self.seq = itertools.count(1)
        self.image_seq = itertools.count(1)
        self.done = 0
        self.checked = 0
        self.checks = 0
        self.fault_epoch = 0                  # bumped when a fault starts and when it ends
        self.faults_running = 0
        self.host_epoch = [0] * len(daemons)  # bumped when a daemon goes down
        self.fault_locks = [threading.Lock() for _ in daemons]
        self.state_lock = threading.Lock()
        self.current: dict[int, tuple[float, str, str]] = {}
        self.stats: dict[str, dict[str, int]] = {}     # operation -> {ok, error, skipped, UNEXPECTED: count}
        (root / "guests").mkdir(parents=True, exist_ok=True)
        (root / "saves").mkdir(parents=True, exist_ok=True)
        os.chmod(root / "saves", 0o777)
        self.guests = []
        for i in range(guests):
            rng = random.Random(f"{seed}/guest{i}")
            uid = "%08x-%04x-4%03x-8%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                                                   rng.getrandbits(12), rng.getrandbits(48))
            serial = root / "guests" / f"soak{i}.log"
            self.guests.append(Guest(f"soak{i}", uid, tiny_xml(f"soak{i}", serial, memory_mib=memory_mib,
                                                                 cmdline="dirty=8:2", uuid=uid), serial, home=i % 2))
        self.names = {g.uuid: g.name for g in self.guests}
        self.oplog_path = root / "soak-oplog.txt"

    # -- log ---------------------------------------------------------------
    def note(self, line: str) -> None:
        with self.log_lock:
            self.log.append(f"{time.monotonic() - self.t0:8.2f} {line}")

    def tail(self, n: int = 40) -> str:
        with self.log_lock:
            return "\n".join(self.log[-n:])

    def label(self, h: int) -> str:
        return "AB"[h]

    # -- run ---------------------------------------------------------------
    def boot_guests(self) -> None:
        conns = [self.lv.open(d.uri) for d in self.daemons]
        try:
            for i, g in enumerate(self.guests):
                conns[i % 2].createXML(g.xml, 0)
                wait_for_text(g.serial, READY)
        finally:
            for c in conns:
                c.close()

    def run(self) -> None:
        self.t0 = time.monotonic()
        try:
            self._run()
        finally:
            self.elapsed = time.monotonic() - self.t0
            self.oplog_path.write_text("\n".join(self.log) + "\n")

    def _run(self) -> None:
        self.boot_guests()
        per_client = [self.ops // self.nclients + (1 if i < self.ops % self.nclients else 0)
                      for i in range(self.nclients)]
        clients = [Client(self, i, n) for i, n in enumerate(per_client)]
        threads = [threading.Thread(target=c.run, name=f"soak-client{c.index}", daemon=True) for c in clients]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(1.0)
            now = time.monotonic()
            for index, (since, what, _guest) in list(self.current.items()):
                if now - since > OP_HANG and not self.stop.is_set():
                    self.violation(f"client {index}: {what} hung for {now - since:.0f}s")
                    for d in self.daemons:      # breaks the blocked calls' connections
                        d.stop(signal.SIGKILL)
        for c in clients:
            c.close()
        if not self.stop.is_set():
            self.final_checks()

    def violation(self, text: str) -> None:
        with self.state_lock:
            self.violations.append(text)
        self.note(f"VIOLATION {text}")
        self.stop.set()

    def check_now(self, done_upto: int) -> None:
        with self.rw.exclusive():
            if self.checked >= done_upto or self.stop.is_set():
                return
            through = self.done
            problems, transient = check.settled(self.lv, self.lvq, self.daemons, self.root, self.names)
            self.checks += 1
            self.checked = through
            for p in transient:
                self.transients.append(p)
                self.note(f"transient (settled) {p}")
            for p in problems:
                self.violation(p)

    def final_checks(self) -> None:
        """At the end: the invariants, every guest accounted for (active on one host at most,
        running ones still beating)."""
        self.check_now(self.done + 1)
        if self.stop.is_set():
            return
        where = {}
        for h, d in enumerate(self.daemons):
            for uid, entry in check.host_view(self.lv, self.lvq, d).items():
                where.setdefault(uid, []).append((self.label(h), entry))
        for g in self.guests:
            places = where.get(g.uuid, [])
            if len(places) > 1:
                self.violation(f"at the end {g.name} is active on {len(places)} hosts")
            elif places and places[0][1]["qmp"].get("running") and not beats_again(g.serial, 30.0):
                self.violation(f"at the end {g.name} runs on {places[0][0]} but prints no heartbeat for 30s")
            state = f"on {places[0][0]} ({places[0][1]['qmp'].get('status')})" if places else \
                f"not running ({len(g.images)} saved image(s))"
            self.note(f"end: {g.name} {state}")

    def report(self) -> str:
        return (f"soak seed={self.seed} ops={self.ops} clients={self.nclients} faults={self.faults}: "
                f"{self.done} operations, {self.checks} checks, {self.elapsed:.1f}s; "
                f"{len(self.violations)} invariant violation(s), {len(self.unexpected)} unexpected error(s), "
                f"{len(self.transients)} transient observation(s)\n  " +
                "\n  ".join(f"{kind:15} " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items()))
                             for kind, counts in sorted(self.stats.items())))

    def failure(self) -> str:
        lines = [self.report(), f"replay: PYVIRT_SOAK_SEED={self.seed} PYVIRT_SOAK_OPS={self.ops}",
                 f"full op log: {self.oplog_path}"]
        lines += [f"VIOLATION: {v}" for v in self.violations]
        lines += [f"UNEXPECTED: {u}" for u in self.unexpected]
        lines += ["op log tail:", self.tail(60)]
        return "\n".join(lines)


def beats_again(serial: Path, timeout: float) -> bool:
    """Whether the guest appends a heartbeat line to its serial log within ``timeout``
    (a file QEMU appends to: nothing signals it, so it is polled)."""
    start = serial.stat().st_size
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with serial.open("rb") as f:
            f.seek(start)
            if b"PYVIRT-HEARTBEAT" in f.read():
                return True
        time.sleep(0.2)
    return False


EXPECTED_ERRORS = ("OPERATION_INVALID", "NO_DOMAIN", "OPERATION_TIMEOUT", "OPERATION_FAILED",
                   "OPERATION_ABORTED", "DOM_EXIST", "MIGRATE_UNSAFE", "MIGRATE_FINISH_OK",
                   "AGENT_UNRESPONSIVE")
# Errors of a connection a fault cut (the daemon went away mid-call, or before it).
CONNECTION_ERRORS = ("SYSTEM_ERROR", "RPC", "NO_CONNECT", "AUTH_FAILED", "INTERNAL_ERROR")
# What libvirt's client (virnetclient.c) says, as an internal error of its RPC layer,
# of a socket the daemon closed: not a reply.
CLIENT_SOCKET_ERRORS = ("client socket is closed", "received hangup event on socket",
                        "received error event on socket", "End of file", "Cannot recv", "Cannot write")


class Client:
    def __init__(self, soak: Soak, index: int, count: int) -> None:
        self.soak = soak
        self.lv = soak.lv
        self.index = index
        self.count = count
        self.rng = random.Random(f"{soak.seed}/client{index}")
        self.conns: list = [None] * len(soak.daemons)
        self.conn_epoch = [0] * len(soak.daemons)
        kinds = [op for op in OPERATIONS if soak.faults or not op[2]]
        self.kinds = [k[0] for k in kinds]
        self.weights = [k[1] for k in kinds]

    # -- connections -------------------------------------------------------
    def conn(self, h: int):
        if self.conns[h] is None:
            self.conn_epoch[h] = self.soak.host_epoch[h]
            self.conns[h] = self.lv.open(self.soak.daemons[h].uri)
        return self.conns[h]

    def drop(self, h: int) -> None:
        conn, self.conns[h] = self.conns[h], None
        if conn is not None:
            with contextlib.suppress(self.lv.libvirtError):
                conn.close()

    def close(self) -> None:
        for h in range(len(self.conns)):
            self.drop(h)

    def lookup(self, h: int, g: Guest):
        return self.conn(h).lookupByUUIDString(g.uuid)

    def target(self, g: Guest, h: int) -> int:
        """Mostly the host the guest is active on (so calls act on it), sometimes ``h`` blindly."""
        if self.op_rng.random() >= 0.2:
            active = self.where(g)
            h = active[0] if active else h
        self.soak.note(f"  c{self.index} {g.name}: on {self.soak.label(h)}")
        return h

    def where(self, g: Guest) -> list[int]:
        """The hosts where the guest is active."""
        found = []
        for h in range(len(self.soak.daemons)):
            try:
                if self.lookup(h, g).isActive():
                    found.append(h)
            except self.lv.libvirtError as exc:
                if exc.get_error_code() != self.lv.VIR_ERR_NO_DOMAIN:
                    raise
        return found

    # -- the loop ----------------------------------------------------------
    def run(self) -> None:
        try:
            for _ in range(self.count):
                if self.soak.stop.is_set():
                    return
                kind = self.rng.choices(self.kinds, self.weights)[0]
                g = self.rng.choice(self.soak.guests)
                h = self.rng.randrange(len(self.soak.daemons))
                # What an operation draws depends on what it finds; its own generator
                # keeps the client's sequence of operations the same in a replay.
                self.op_rng = random.Random(self.rng.getrandbits(64))
                self.step(kind, g, h)
        except BaseException:              # a bug in the soak, or a wait_for that failed: say so, stop
            self.soak.violation(f"client {self.index} crashed:\n{traceback.format_exc()}")

    def step(self, kind: str, g: Guest, h: int) -> None:
        soak = self.soak
        with soak.rw.shared():
            for host in range(len(self.conns)):      # a daemon restarted since: reconnect, as clients do
                if self.conn_epoch[host] != soak.host_epoch[host] and not soak.fault_locks[host].locked():
                    self.drop(host)
            seq = next(soak.seq)
            what = f"#{seq} c{self.index} {kind} {g.name} host={soak.label(h)}"
            epoch = soak.fault_epoch
            soak.current[self.index] = (time.monotonic(), what, g.name)
            soak.note(f"{what} ...")
            outcome = "ok"
            try:
                outcome = getattr(self, f"op_{kind}")(g, h) or "ok"
            except Skip as why:
                outcome = f"skipped: {why}"
            except self.lv.libvirtError as exc:
                outcome = self.judge(what, exc, epoch, g)
            finally:
                del soak.current[self.index]
                soak.note(f"{what} -> {outcome}")
                with soak.state_lock:
                    soak.done += 1
                    done = soak.done
                    kind_stats = soak.stats.setdefault(kind, {})
                    verdict = outcome.split(" ", 1)[0].rstrip(":")
                    verdict = verdict if verdict in ("error", "skipped", "UNEXPECTED") else "ok"
                    kind_stats[verdict] = kind_stats.get(verdict, 0) + 1
        soak.check_now(done)

    def held_job(self, g: Guest, msg: str) -> str | None:
        """For a 'busy with ... job since Ns' refusal: why that job is a leak, if it is one
        (no call on the guest in flight for that long: nobody holds it)."""
        match = re.search(r"busy with .* job since (\d+)s", msg)
        if not match or int(match.group(1)) < 25:
            return None
        age = int(match.group(1)) - 5
        now = time.monotonic()
        holders = [what for index, (since, what, guest) in list(self.soak.current.items())
                   if index != self.index and guest == g.name and now - since >= age]
        return None if holders else f"the job has outlived every call on {g.name} (leaked job)"

    def judge(self, what: str, exc, epoch: int, g: Guest) -> str:
        lv, soak = self.lv, self.soak
        code, domain, msg = exc.get_error_code(), exc.get_error_domain(), exc.get_error_message()
        name = next((n[8:] for n in dir(lv) if n.startswith("VIR_ERR_") and getattr(lv, n) == code
                     and n != "VIR_ERR_WARNING"), str(code))
        faulted = (soak.fault_epoch != epoch or soak.faults_running
                   or any(self.conn_epoch[h] != soak.host_epoch[h] for h in range(len(self.conns))))
        text = f"{name} (domain {domain}): {msg}"
        if name in CONNECTION_ERRORS:
            for h in range(len(self.conns)):
                self.drop(h)                     # reconnect at the next call
        if name == "INTERNAL_ERROR":
            # libvirt's client reports a socket a daemon closed as an internal error
            # of its RPC layer; an internal error the daemon sent is a finding.
            client_side = domain == lv.VIR_FROM_RPC and any(m in msg for m in CLIENT_SOCKET_ERRORS)
            if not (client_side and faulted):
                soak.unexpected.append(f"{what}: {text}")
                return f"UNEXPECTED {text}"
        elif name == "OPERATION_TIMEOUT" and (leak := self.held_job(g, msg)):
            soak.unexpected.append(f"{what}: {text}: {leak}")
            return f"UNEXPECTED {text}: {leak}"
        elif name not in EXPECTED_ERRORS and not (name in CONNECTION_ERRORS and faulted):
            soak.unexpected.append(f"{what}: {text}{' (during a fault)' if faulted else ''}")
            return f"UNEXPECTED {text}"
        return f"error {text}"

    # -- operations --------------------------------------------------------
    def op_start(self, g: Guest, h: int) -> str | None:
        """Boot the guest: its definition on the host when it has one there, else from XML.

        Mostly on its home, holding the guest's placement shared: such starts
        race each other (one boots it, the others must be refused) but never pick
        two hosts.  Sometimes on host ``h`` (or where it is active), holding the
        placement alone, which makes that host the new home."""
        if self.op_rng.random() < 0.3:
            with g.placement.exclusive():
                try:
                    active = self.where(g)
                    return self.boot(g, active[0] if active else h, active)
                finally:
                    self.settle_home(g)
        with g.placement.shared():
            active = self.where(g)
            if g.home is None or any(host != g.home for host in active):
                raise Skip(f"active on {[self.soak.label(a) for a in active]}, home {g.home}")
            return self.boot(g, g.home, active)

    def boot(self, g: Guest, target: int, active: list[int]) -> str:
        try:
            dom = self.lookup(target, g)
        except self.lv.libvirtError as exc:
            if exc.get_error_code() != self.lv.VIR_ERR_NO_DOMAIN:
                raise
            how = "createXML"
            self.conn(target).createXML(g.xml, 0)
        else:
            how = "create"
            dom.create()
        # Succeeding where it was active is no error by itself: a save or a
        # destroy racing this call may have stopped it meanwhile.  A second
        # copy is what the invariant check looks for.
        return f"started on {self.soak.label(target)} ({how}{', was active' if active else ''})"

    def settle_home(self, g: Guest) -> None:
        """After a call that may move the guest (placement held alone): its home is
        where it is active now; unknown (no racing starts) when a host cannot tell."""
        try:
            active = self.where(g)
        except self.lv.libvirtError:
            g.home = None
            return
        if len(active) == 1:
            g.home = active[0]
        elif active:
            g.home = None
        elif g.home is None:
            g.home = 0

    def op_define(self, g: Guest, h: int) -> None:
        self.conn(h).defineXML(g.xml)

    def op_undefine(self, g: Guest, h: int) -> None:
        self.lookup(h, g).undefine()

    def op_destroy(self, g: Guest, h: int) -> str:
        h = self.target(g, h)
        self.lookup(h, g).destroy()
        return f"ok on {self.soak.label(h)}"

    def op_suspend(self, g: Guest, h: int) -> str:
        h = self.target(g, h)
        self.lookup(h, g).suspend()
        return f"ok on {self.soak.label(h)}"

    def op_resume(self, g: Guest, h: int) -> str:
        h = self.target(g, h)
        self.lookup(h, g).resume()
        return f"ok on {self.soak.label(h)}"

    def op_migrate(self, g: Guest, _h: int) -> str:
        lv = self.lv
        with g.placement.exclusive():
            active = self.where(g)
            if not active:
                raise Skip("not active anywhere")
            src = active[0]
            dst = 1 - src
            flow = self.op_rng.choice(FLOWS)
            flags = lv.VIR_MIGRATE_LIVE if self.op_rng.random() < 0.8 else 0
            if self.op_rng.random() < 0.3:
                flags |= lv.VIR_MIGRATE_PERSIST_DEST | lv.VIR_MIGRATE_UNDEFINE_SOURCE
            bandwidth = self.op_rng.choice((0, 0, 8, 32))          # MiB/s, 0: unlimited
            params = {lv.VIR_MIGRATE_PARAM_BANDWIDTH: bandwidth} if bandwidth else {}
            what = f"{flow} {self.soak.label(src)}->{self.soak.label(dst)} flags={flags} bw={bandwidth}"
            self.soak.note(f"  c{self.index} {g.name}: {what}")
            try:
                dom = self.lookup(src, g)
                if flow == "migrate":
                    dom.migrate(self.conn(dst), flags, None, None, bandwidth)
                elif flow == "migrate2":
                    dom.migrate2(self.conn(dst), None, flags, None, None, bandwidth)
                elif flow == "migrate3":
                    dom.migrate3(self.conn(dst), params, flags)
                else:
                    flags |= lv.VIR_MIGRATE_PEER2PEER | (lv.VIR_MIGRATE_TUNNELLED if flow == "tunnelled" else 0)
                    dom.migrateToURI3(self.soak.daemons[dst].uri, params, flags)
            finally:
                self.settle_home(g)
            return f"migrated {what}"

    def op_save(self, g: Guest, h: int) -> str:
        path = self.soak.root / "saves" / f"{g.name}-{next(self.soak.image_seq)}.img"
        h = self.target(g, h)
        self.lookup(h, g).save(str(path))
        with self.soak.state_lock:
            g.images.append(path)
        return f"saved on {self.soak.label(h)} to {path.name}"

    def op_restore(self, g: Guest, h: int) -> str:
        with g.placement.exclusive():
            with self.soak.state_lock:
                image = g.images[-1] if g.images else None
            if image is None:
                raise Skip("no saved image")
            if self.where(g):
                raise Skip("active")
            try:
                self.conn(h).restore(str(image))
            finally:
                self.settle_home(g)
            with self.soak.state_lock:
                old, g.images = g.images, []
            for path in old:
                path.unlink(missing_ok=True)
            return f"restored {image.name}"

    def fault(self, h: int, sig: int) -> str:
        soak = self.soak
        d = soak.daemons[h]
        with soak.fault_locks[h]:
            with soak.state_lock:
                soak.faults_running += 1
                soak.fault_epoch += 1
                soak.host_epoch[h] += 1
            try:
                proc = d.proc
                took = time.monotonic()
                if proc is not None and proc.poll() is None:
                    proc.send_signal(sig)
                    try:
                        proc.wait(STOP_TIMEOUT)
                    except Exception:
                        soak.unexpected.append(f"pyvirtd {soak.label(h)} still running {STOP_TIMEOUT:.0f}s "
                                               f"after signal {sig}; killed")
                        proc.kill()
                        proc.wait()
                d.proc = None
                took = time.monotonic() - took
                try:
                    d.start(timeout=60)
                except RuntimeError as exc:
                    soak.violation(f"pyvirtd {soak.label(h)} did not start again: {exc}")
                    raise Skip("daemon down") from exc
                return f"{soak.label(h)} stopped in {took:.2f}s, started again"
            finally:
                with soak.state_lock:
                    soak.faults_running -= 1
                    soak.fault_epoch += 1

    def op_restart_daemon(self, _g: Guest, h: int) -> str:
        return self.fault(h, signal.SIGTERM)

    def op_kill_daemon(self, _g: Guest, h: int) -> str:
        return self.fault(h, signal.SIGKILL)

    def op_kill_qemu(self, g: Guest, h: int) -> str:
        soak = self.soak
        pid = qemu_pid(soak.daemons[h], g.name)
        if pid is None or not pid_alive(pid):
            raise Skip(f"no QEMU of it on {soak.label(h)}")
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            raise Skip("QEMU gone meanwhile") from None
        if g.uuid.encode() not in argv:                    # pid reused: not ours
            raise Skip(f"pid {pid} is no longer its QEMU")
        with soak.state_lock:
            soak.faults_running += 1
            soak.fault_epoch += 1
        try:
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not pid_alive(pid), 30, what=f"QEMU {pid} to die")
        finally:
            with soak.state_lock:
                soak.faults_running -= 1
                soak.fault_epoch += 1
        return f"killed QEMU {pid} on {soak.label(h)}"
