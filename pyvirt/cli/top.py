"""``pyvirt top``: a live per-guest view of a connection, as virt-top gives.

Every refresh is one ``getAllDomainStats`` call (state, cpu-total, balloon,
vcpu, interface and block groups) plus ``jobStats`` of each active guest, so
it works against pyvirtd and libvirtd alike.  Rates (CPU %, bytes per second)
are differences between two samples over the time between them; ``--once``
takes two samples ``--delay`` apart and prints one plain-text frame.

%CPU is the guest's CPU time over the interval, as a share of its vCPUs
(100 = every vCPU busy the whole time).  Sizes are MiB, rates KiB/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from .registry import command

STATS_GROUPS = 1 | 2 | 4 | 8 | 16 | 32   # state, cpu-total, balloon, vcpu, interface, block
SORT_KEYS = ("id", "name", "state", "cpu", "mem", "rd", "wr", "rx", "tx")
HEADERS = ["ID", "NAME", "STATE", "VCPU", "%CPU", "MEM(MiB)", "RD(KiB/s)", "WR(KiB/s)", "RX(KiB/s)",
           "TX(KiB/s)", "JOB"]
# jobStats operation numbers for which a progress bar is shown, and its label
JOB_LABELS = {2: "save", 3: "restore", 4: "incoming migration", 5: "migration", 8: "dump"}
BAR_WIDTH = 20


@dataclass
class Sample:
    """One guest in one getAllDomainStats answer."""

    name: str
    id: int
    state: int
    reason: int
    vcpus: int
    cpu_ns: int
    mem_kib: int
    rd_bytes: int
    wr_bytes: int
    rx_bytes: int
    tx_bytes: int


@dataclass
class Row:
    sample: Sample
    cpu_pct: float
    rd_rate: float          # bytes per second
    wr_rate: float
    rx_rate: float
    tx_rate: float
    job: tuple[str, float] | None    # (label, fraction done) of a job in progress


def _sum(params: dict[str, Any], prefix: str, count_key: str, field: str) -> int:
    return sum(int(params.get(f"{prefix}.{i}.{field}", 0)) for i in range(int(params.get(count_key, 0))))


def to_sample(dom: Any, params: dict[str, Any]) -> Sample:
    mem = params.get("balloon.current")
    if mem is None:
        mem = dom.info()[2]
    return Sample(name=dom.name(), id=dom.ID(), state=int(params.get("state.state", 0)),
                  reason=int(params.get("state.reason", 0)), vcpus=int(params.get("vcpu.current", 0)),
                  cpu_ns=int(params.get("cpu.time", 0)), mem_kib=int(mem),
                  rd_bytes=_sum(params, "block", "block.count", "rd.bytes"),
                  wr_bytes=_sum(params, "block", "block.count", "wr.bytes"),
                  rx_bytes=_sum(params, "net", "net.count", "rx.bytes"),
                  tx_bytes=_sum(params, "net", "net.count", "tx.bytes"))


def sample(conn: Any) -> tuple[float, dict[str, tuple[Any, Sample]]]:
    """(monotonic time, {uuid: (domain, sample)}) for every guest."""
    records = conn.getAllDomainStats(STATS_GROUPS, 0)
    now = time.monotonic()
    return now, {dom.UUIDString(): (dom, to_sample(dom, params)) for dom, params in records}


def job_progress(dom: Any) -> tuple[str, float] | None:
    """The running job's label and fraction done, or None (no job, or not one with progress)."""
    from pyvirt.errors import libvirtError
    try:
        stats = dom.jobStats(0)
    except libvirtError:
        return None
    if stats.get("type", 0) not in (1, 2):        # bounded or unbounded: in progress
        return None
    label = JOB_LABELS.get(int(stats.get("operation", 0)), "job")
    total = stats.get("data_total") or stats.get("memory_total") or 0
    done = stats.get("data_processed", stats.get("memory_processed", 0))
    return label, (min(1.0, done / total) if total else 0.0)


def rows(prev: tuple[float, dict[str, tuple[Any, Sample]]],
         cur: tuple[float, dict[str, tuple[Any, Sample]]]) -> list[Row]:
    t0, before = prev
    t1, after = cur
    dt = max(t1 - t0, 1e-9)
    out = []
    for key, (dom, s) in after.items():
        old = before.get(key, (None, None))[1]
        if old is None or old.id != s.id:          # new, or restarted since: no rates yet
            old = s

        def rate(field: str) -> float:
            return max(0, getattr(s, field) - getattr(old, field)) / dt
        cpu = 100.0 * rate("cpu_ns") / 1e9 / max(s.vcpus, 1) if s.id >= 0 else 0.0
        job = job_progress(dom) if s.id >= 0 else None
        out.append(Row(s, cpu, rate("rd_bytes"), rate("wr_bytes"), rate("rx_bytes"), rate("tx_bytes"), job))
    return out


def sort_rows(table: list[Row], key: str) -> list[Row]:
    keys = {
        "id": lambda r: (r.sample.id < 0, r.sample.id, r.sample.name),
        "name": lambda r: r.sample.name,
        "state": lambda r: (r.sample.state, r.sample.name),
        "cpu": lambda r: (-r.cpu_pct, r.sample.name),
        "mem": lambda r: (-r.sample.mem_kib, r.sample.name),
        "rd": lambda r: (-r.rd_rate, r.sample.name), "wr": lambda r: (-r.wr_rate, r.sample.name),
        "rx": lambda r: (-r.rx_rate, r.sample.name), "tx": lambda r: (-r.tx_rate, r.sample.name),
    }
    return sorted(table, key=keys[key])


def bar(fraction: float) -> str:
    filled = int(round(fraction * BAR_WIDTH))
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + f"] {fraction * 100:3.0f}%"


def cells(row: Row) -> list[str]:
    from .domain_cmds import state_word
    s = row.sample
    job = f"{row.job[0]} {bar(row.job[1])}" if row.job else ""
    return [str(s.id) if s.id >= 0 else "-", s.name, state_word(s.state), str(s.vcpus),
            f"{row.cpu_pct:.1f}", f"{s.mem_kib / 1024:.0f}", f"{row.rd_rate / 1024:.1f}",
            f"{row.wr_rate / 1024:.1f}", f"{row.rx_rate / 1024:.1f}", f"{row.tx_rate / 1024:.1f}", job]


def header_line(table: list[Row], uri: str) -> str:
    from .domain_cmds import state_word
    states: dict[int, int] = {}
    for r in table:
        states[r.sample.state] = states.get(r.sample.state, 0) + 1
    counts = ", ".join(f"{n} {state_word(code)}" for code, n in sorted(states.items()))
    return f"pyvirt top - {uri} - {len(table)} domains" + (f": {counts}" if counts else "")


def plain_frame(table: list[Row], uri: str) -> str:
    from .output import table_lines
    return "\n".join([header_line(table, uri), ""] + table_lines(HEADERS, [cells(r) for r in table])) + "\n"


def rich_frame(table: list[Row], uri: str, sort: str) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    view = Table(*HEADERS, box=None, header_style="bold reverse", expand=True)
    for r in table:
        view.add_row(*cells(r))
    hint = Text(f"sorted by {sort} — keys: c cpu, m mem, n name, i id, s state, r/w block, x/t net, "
                "q quit", style="dim")
    return Group(Text(header_line(table, uri), style="bold"), view, hint)


_KEYS = {"c": "cpu", "m": "mem", "n": "name", "i": "id", "s": "state", "r": "rd", "w": "wr", "x": "rx",
         "t": "tx"}


def live(conn: Any, uri: str, sort: str, delay: float) -> None:
    """Refresh every ``delay`` seconds until q or ^C; single keys change the sort."""
    import select
    import termios
    import tty
    from rich.live import Live
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if sys.stdin.isatty() else None
    if saved is not None:
        tty.setcbreak(fd)
    try:
        prev = sample(conn)
        table: list[Row] = rows(prev, prev)
        with Live(rich_frame(sort_rows(table, sort), uri, sort), auto_refresh=False, screen=True) as view:
            deadline = time.monotonic() + delay
            while True:
                wait = max(0.0, deadline - time.monotonic())
                ready = select.select([fd], [], [], wait)[0] if saved is not None else time.sleep(wait)
                if ready:
                    key = sys.stdin.read(1)
                    if key in ("q", "Q"):
                        return
                    sort = _KEYS.get(key, sort)
                else:
                    cur = sample(conn)
                    table, prev = rows(prev, cur), cur
                    deadline = time.monotonic() + delay
                view.update(rich_frame(sort_rows(table, sort), uri, sort), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@command("top", "live view of every domain: state, CPU, memory, I/O rates, jobs")
def _top(p: argparse.ArgumentParser) -> Any:
    p.add_argument("--once", action="store_true", help="print one frame (two samples --delay apart) and exit")
    p.add_argument("--delay", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--sort", choices=SORT_KEYS, default="id", help="column to sort by (default id)")

    def run(conn: Any, args: argparse.Namespace) -> None:
        from .registry import CommandError
        if args.delay <= 0:
            raise CommandError("Invalid value for delay: must be positive")
        uri = conn.getURI()
        if not args.once:
            live(conn, uri, args.sort, args.delay)
            return
        first = sample(conn)
        time.sleep(args.delay)     # rates need an interval; this is what the frame measures
        sys.stdout.write(plain_frame(sort_rows(rows(first, sample(conn)), args.sort), uri))
    return run
