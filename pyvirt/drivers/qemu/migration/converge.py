"""pyvirt's convergence policy: make a live migration finish, or abort it cleanly, within a bound.

libvirt leaves convergence to orchestrators (Nova, KubeVirt each carry their
own).  This policy runs inside the source daemon, beside the loop that
follows QEMU's migration, and looks at every figure QEMU reports:

* **stall**: after the first full pass, a new pass whose remaining RAM is
  not at least 10 % below the best seen so far, or a dirty rate above the
  link's throughput, is a stalled pass;
* each stalled pass moves the current **stage** (the ``order`` setting)
  one step: ``downtime`` raises the allowed downtime in ``downtime_steps``
  linear steps up to ``downtime_max`` (skipped at once when even the bound
  cannot cover what is left at the link's speed); ``auto-converge``
  throttles the vCPUs harder at each pass (skipped, as Nova does, when
  post-copy is permitted: the guest keeps its speed); ``postcopy`` switches
  to post-copy when the migration was started with VIR_MIGRATE_POSTCOPY;
* past the **completion bound** (``timeout_per_gib`` seconds per GiB of
  guest RAM, at least ``timeout_min``) the migration is cancelled: the
  source keeps running, and the caller gets OPERATION_TIMEOUT naming the
  bound.

QEMU allows capabilities to change only before a migration starts, so when
the policy may throttle it enables auto-converge up front with the
throttle capped at 1 % (``max-cpu-throttle``), and lifts the cap when that
stage comes.

Every decision is logged and kept in the job's statistics (jobStats):
``pyvirt.converge.stage`` (0 watching, then 1.. the stage in ``order``,
len(order)+1 nothing left), ``pyvirt.converge.stalls``,
``pyvirt.converge.decisions``, ``pyvirt.converge.downtime`` (ms allowed
now), ``pyvirt.converge.bound`` (ms), ``pyvirt.converge.last`` (the last
decision in words).

Defaults, Nova's scaled down: Nova allows 800 s per GiB and steps the
downtime every 75 s per GiB, sized for busy multi-GiB guests on shared
links, and takes minutes to act.  Here the decisions follow the passes
themselves (no fixed delays), so the bound only has to cover a few passes:
120 s per GiB (at least 30 s) still lets a 1 GiB guest make ~20 passes at
1 Gb/s, and the 500 ms downtime bound is Nova's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ....enums import MigrateFlags
from ....errors import ErrorDomain, ErrorNumber, error

log = logging.getLogger(__name__)

STAGES = ("downtime", "auto-converge", "postcopy")
PROGRESS = 0.9          # a pass must leave at most 90 % of the best remaining so far


@dataclass
class ConvergeSettings:
    enabled: bool = False             # the default for migrations that do not say (pyvirt.converge)
    timeout_per_gib: int = 120        # completion bound, seconds per GiB of guest RAM
    timeout_min: int = 30             # ... but never less than this (seconds)
    downtime_max: int = 500           # ms
    downtime_steps: int = 5
    stall_passes: int = 2             # stalled passes in one stage before the next stage
    throttle_initial: int = 40        # auto-converge: first throttle (%)
    throttle_increment: int = 20      # ... raised by this at every pass (%)
    order: list[str] = field(default_factory=lambda: list(STAGES))

    def check(self) -> None:
        bad = [s for s in self.order if s not in STAGES]
        if bad:
            raise ValueError(f"unknown convergence stage '{bad[0]}' (known: {', '.join(STAGES)})")
        if self.downtime_steps < 1 or self.stall_passes < 1:
            raise ValueError("migration_converge_downtime_steps and _stall_passes must be at least 1")
        if not 1 <= self.throttle_initial <= 99 or not 1 <= self.throttle_increment <= 99:
            raise ValueError("throttle percentages must be between 1 and 99")


def wanted(settings: ConvergeSettings, requested: int | None) -> bool:
    """The migration's own choice (the pyvirt.converge parameter), else the daemon's default."""
    return settings.enabled if requested is None else bool(requested)


def start_capabilities(settings: ConvergeSettings, flags: int) -> tuple[dict[str, bool], dict[str, Any]]:
    """Capabilities and parameters the policy needs before the migration starts."""
    if "auto-converge" not in settings.order or flags & MigrateFlags.AUTO_CONVERGE:
        return {}, {}
    # throttling armed but capped at 1 %: lifted when the auto-converge stage comes
    return {"auto-converge": True}, {"cpu-throttle-initial": 1, "cpu-throttle-increment": 1,
                                     "max-cpu-throttle": 1}


class Policy:
    """One migration's policy: ``observe`` every query-migrate answer of the source."""

    def __init__(self, settings: ConvergeSettings, name: str, mon: Any, stats: dict[str, Any],
                 ram_bytes: int, flags: int) -> None:
        self.settings, self.name, self.mon, self.stats, self.flags = settings, name, mon, stats, flags
        gib = ram_bytes / (1 << 30)
        self.bound_s = max(float(settings.timeout_min), settings.timeout_per_gib * gib)
        self.started = time.monotonic()
        self.stage = 0                # 0: watching; n: order[n - 1] is acting
        self.stage_stalls = 0
        self.stalls = 0
        self.decisions: list[str] = []
        self.best_remaining: int | None = None
        self.last_iteration = 0
        self.downtime = 300           # QEMU's default downtime-limit; read at the first answer
        self.downtime_base: int | None = None
        self.postcopy_started = False
        self._publish()

    # -- what callers see --------------------------------------------------------
    def _decide(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        line = f"{elapsed:6.1f}s {text}"
        self.decisions.append(line)
        log.info("%s: convergence policy: %s", self.name, text)
        self._publish()

    def _publish(self) -> None:
        self.stats.update({
            "pyvirt.converge.stage": self.stage, "pyvirt.converge.stalls": self.stalls,
            "pyvirt.converge.decisions": len(self.decisions), "pyvirt.converge.downtime": self.downtime,
            "pyvirt.converge.bound": int(self.bound_s * 1000),
            "pyvirt.converge.last": self.decisions[-1] if self.decisions else "watching",
        })

    # -- the loop ----------------------------------------------------------------
    async def observe(self, info: dict[str, Any]) -> None:
        """Act on one query-migrate answer; raises (after cancelling) past the bound."""
        self._publish()       # job_stats() refreshed the rest of the figures: keep ours beside them
        status = info.get("status")
        if status not in ("active", "setup"):
            return
        if self.downtime_base is None:
            params = await self.mon.query_migrate_parameters()
            self.downtime = self.downtime_base = int(params.get("downtime-limit", 300))
        if time.monotonic() - self.started > self.bound_s:
            await self._abort()
        ram = info.get("ram", {})
        iteration = int(ram.get("dirty-sync-count", 0))
        if iteration <= self.last_iteration:
            return
        self.last_iteration = iteration
        if iteration < 2:              # the first pass sends everything once: nothing to judge
            return
        remaining = int(ram.get("remaining", 0))
        bps = ram.get("mbps", 0) * 1_000_000 / 8
        dirty_bps = ram.get("dirty-pages-rate", 0) * ram.get("page-size", 4096)
        progressed = self.best_remaining is None or remaining <= self.best_remaining * PROGRESS
        if self.best_remaining is None or remaining < self.best_remaining:
            self.best_remaining = remaining
        if progressed and not (bps and dirty_bps > bps):
            return
        self.stalls += 1
        why = (f"pass {iteration}: {remaining >> 20} MiB left"
               + (f", dirtied at {dirty_bps / 2**20:.0f} MiB/s over a {bps / 2**20:.0f} MiB/s link"
                  if bps and dirty_bps > bps else ", no progress"))
        await self._escalate(why, remaining, bps)

    async def _escalate(self, why: str, remaining: int, bps: float) -> None:
        order = self.settings.order
        if self.stage == 0:
            self._enter(1, why)
        else:
            self.stage_stalls += 1
        while 1 <= self.stage <= len(order):
            acted = await self._act(order[self.stage - 1], why, remaining, bps)
            if acted:
                return
            self._enter(self.stage + 1, why)
        if self.stage == len(order) + 1 and self.stage_stalls == 0:
            self.stage_stalls = 1
            self._decide(f"{why}: every stage used; waiting for the completion bound ({self.bound_s:.0f} s)")

    def _enter(self, stage: int, why: str) -> None:
        self.stage, self.stage_stalls = stage, 0
        self._publish()

    async def _act(self, what: str, why: str, remaining: int, bps: float) -> bool:
        """Do the stage's next step; False when the stage has nothing more to give."""
        s = self.settings
        if what == "downtime":
            needed_ms = remaining / bps * 1000 if bps else float("inf")
            if needed_ms > s.downtime_max:
                if self.stage_stalls == 0:
                    self._decide(f"{why}: sending it would take {needed_ms:.0f} ms, over the "
                                 f"{s.downtime_max} ms downtime bound; not raising the downtime")
                return False
            if self.downtime >= s.downtime_max:
                return False
            base = self.downtime_base or 300
            step = max(1, (s.downtime_max - base) // s.downtime_steps)
            self.downtime = min(s.downtime_max, self.downtime + step)
            await self.mon.execute("migrate-set-parameters", {"downtime-limit": self.downtime})
            self._decide(f"{why}: downtime raised to {self.downtime} ms")
            return True
        if what == "auto-converge":
            if self.flags & MigrateFlags.POSTCOPY and "postcopy" in self.settings.order \
                    and not self.flags & MigrateFlags.AUTO_CONVERGE:
                # as Nova: the guest keeps its full speed when post-copy may finish the job
                self._decide(f"{why}: post-copy permitted, so no vCPU throttling")
                return False
            if self.stage_stalls == 0:
                if self.flags & MigrateFlags.AUTO_CONVERGE:
                    self._decide(f"{why}: auto-converge already throttling as asked")
                else:
                    await self.mon.execute("migrate-set-parameters", {
                        "max-cpu-throttle": 99, "cpu-throttle-initial": s.throttle_initial,
                        "cpu-throttle-increment": s.throttle_increment})
                    self._decide(f"{why}: vCPU throttling on ({s.throttle_initial} %, "
                                 f"+{s.throttle_increment} % per pass)")
                return True
            return self.stage_stalls < s.stall_passes
        if what == "postcopy":
            if self.postcopy_started:
                return True
            if not self.flags & MigrateFlags.POSTCOPY:
                if self.stage_stalls == 0:
                    self._decide(f"{why}: post-copy not permitted (started without VIR_MIGRATE_POSTCOPY)")
                return False
            await self.mon.execute("migrate-start-postcopy")
            self.postcopy_started = True
            self._decide(f"{why}: switched to post-copy")
            return True
        return False

    async def _abort(self) -> None:
        elapsed = time.monotonic() - self.started
        self._decide(f"not finished after {elapsed:.0f} s, past the {self.bound_s:.0f} s bound "
                     f"({self.settings.timeout_per_gib} s per GiB): cancelling, the guest keeps running here")
        self.stage = len(self.settings.order) + 2
        self._publish()
        await self.mon.migrate_cancel()
        raise error(ErrorNumber.OPERATION_TIMEOUT, ErrorDomain.QEMU,
                    f"migration out job: not finished within the convergence bound of {self.bound_s:.0f} s "
                    f"({self.settings.timeout_per_gib} s per GiB of guest RAM); cancelled")
