"""The split-brain soak: two hosts race to start the same guest on the same disk.

Each round: maybe stop the last winner; both hosts call ``create`` in a random
order after random delays, and sometimes one daemon is killed with SIGKILL at
a random moment of the race (and started again, adopting what it ran).  After
every round the disk's users are counted: QEMU processes with the image open
(``/proc/*/fd``) and, of those, the ones whose CPUs run by QEMU's own account
(``query-status``).  Two running copies is a split brain: the lease failed.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field

import pyvirt

from daemons import running_copies
from guests import pid_alive, wait_for
from lease_hosts import LeaseCluster, guest_xml, holders

NAME = "racer"
UUID = "6b1f7c8e-3a52-4d1b-9f0e-5c2d8a7b9e10"
# what a start that loses the race (or races a killed daemon) may say
EXPECTED = ("is locked", "already active", "already running", "Cannot write data", "Cannot recv data",
            "connection", "Connection", "End of file", "broken", "closed", "not running",
            "was lost", "domain is no longer running")


@dataclass
class Round:
    number: int
    order: tuple[str, str]
    killed: str | None
    outcomes: dict[str, str]
    running: int
    holders: int


@dataclass
class LeaseRace:
    cluster: LeaseCluster
    seed: int
    rounds: int
    kill_chance: float = 0.3
    history: list[Round] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.hosts = {h.name: h for h in self.cluster.hosts}
        for host in self.hosts.values():
            # the same guest and disk on both; each host's serial log its own (a local file
            # on a real host: one file for both would have two hosts' DAC labels fight over it)
            xml = guest_xml(NAME, self.cluster.disk, host.daemon.workdir / "racer.log")
            xml = xml.replace(f"<name>{NAME}</name>", f"<name>{NAME}</name>\n  <uuid>{UUID}</uuid>", 1)
            with _conn(host.uri) as conn:
                conn.defineXML(xml)

    def run(self) -> None:
        for n in range(1, self.rounds + 1):
            self.one_round(n)

    def one_round(self, n: int) -> None:
        if self.rng.random() < 0.5:
            self._destroy_everywhere()
        order = tuple(self.rng.sample(sorted(self.hosts), 2))
        delays = {name: self.rng.uniform(0, 0.25) for name in order}
        killed = self.rng.choice(order) if self.rng.random() < self.kill_chance else None
        kill_at = self.rng.uniform(0, 0.6)
        outcomes: dict[str, str] = {}
        go = threading.Barrier(len(order) + (1 if killed else 0))

        def racer(name: str) -> None:
            go.wait()
            time.sleep(delays[name])
            try:
                with _conn(self.hosts[name].uri) as conn:
                    conn.lookupByUUIDString(UUID).create()
                outcomes[name] = "started"
            except pyvirt.libvirtError as exc:
                text = exc.get_error_message() or str(exc)
                outcomes[name] = text
                if not any(e in text for e in EXPECTED):
                    self.unexpected.append(f"round {n} {name}: {text} [{self._who_holds()}]")

        def killer() -> None:
            go.wait()
            time.sleep(kill_at)
            self.hosts[killed].daemon.stop(signal.SIGKILL)

        threads = [threading.Thread(target=racer, args=(name,)) for name in order]
        if killed:
            threads.append(threading.Thread(target=killer))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if killed:
            self.hosts[killed].daemon.start()      # adopts whatever it ran
        running = running_copies([h.daemon for h in self.hosts.values()], UUID)
        users = holders(self.cluster.disk)
        self._reap_orphans(n, users)
        self.history.append(Round(n, order, killed, outcomes, running, len(users)))
        if running > 1:
            self.violations.append(f"round {n}: {running} QEMUs run the disk at once (pids {users}); "
                                   f"order {order}, killed {killed}, outcomes {outcomes}")
        if running > len(users):
            self.violations.append(f"round {n}: {running} running copies but only {len(users)} "
                                   f"processes with the disk open")

    def _reap_orphans(self, n: int, users: list[int]) -> None:
        """A QEMU no daemon knows (its daemon was killed between spawning it and writing
        its status): it never ran its CPUs (they run only after the lease is taken, which
        comes after the status), but it keeps the image open, so it is noted and killed."""
        known = set()
        for host in self.hosts.values():
            for status in (host.daemon.state_dir / "run" / "qemu").glob("*.xml"):
                try:
                    known.add(int(status.read_text().split("pid='", 1)[1].split("'", 1)[0]))
                except (OSError, IndexError, ValueError):
                    continue
        for pid in users:
            if pid in known:
                continue
            self.orphans.append(f"round {n}: QEMU pid {pid} known to no daemon")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            wait_for(lambda: not pid_alive(pid), 10, what=f"orphan QEMU {pid} gone")

    def _who_holds(self) -> str:
        """For a report: each QEMU with the disk open, its parent and which host's view it has."""
        out = []
        for pid in holders(self.cluster.disk):
            try:
                ppid = next(line.split()[1] for line in open(f"/proc/{pid}/status") if line.startswith("PPid:"))
                ns = os.readlink(f"/proc/{pid}/ns/mnt")
            except OSError:
                continue
            out.append(f"pid {pid} ppid {ppid} mnt {ns}")
        return "; ".join(out) or "no QEMU has the disk open"

    def _destroy_everywhere(self) -> None:
        for host in self.hosts.values():
            with _conn(host.uri) as conn:
                dom = conn.lookupByUUIDString(UUID)
                if dom.isActive():
                    try:
                        dom.destroy()
                    except pyvirt.libvirtError as exc:
                        if "not running" not in str(exc):
                            raise

    def report(self) -> str:
        won = sum(1 for r in self.history if "started" in r.outcomes.values())
        both = sum(1 for r in self.history if list(r.outcomes.values()).count("started") > 1)
        kills = sum(1 for r in self.history if r.killed)
        return (f"lease soak seed {self.seed}: {len(self.history)} rounds, {kills} with a daemon killed, "
                f"{won} with a start that succeeded, {both} where both calls 'succeeded' (one host "
                f"already ran it), max running copies {max((r.running for r in self.history), default=0)}, "
                f"{len(self.violations)} violations, {len(self.unexpected)} unexpected errors, "
                f"{len(self.orphans)} QEMUs left by a killed daemon before their status was written"
                + "".join(f"\n  {o}" for o in self.orphans))


class _conn:
    def __init__(self, uri: str) -> None:
        self.uri = uri

    def __enter__(self):
        self.conn = pyvirt.open(self.uri)
        return self.conn

    def __exit__(self, *exc) -> None:
        try:
            self.conn.close()
        except pyvirt.libvirtError:
            pass
