"""Fixtures of the fault matrix: one pair of hosts per migration protocol, reused by
every cell (a cell restarts only what its fault killed), and the result table."""

from __future__ import annotations

import time

import pytest

RESULTS: dict[str, tuple[str, str]] = {}     # cell id -> (result, note)
_STARTED = [0.0]


@pytest.fixture(scope="session")
def fault_hosts(tmp_path_factory, guests_built):
    """Hosts per protocol ("v3", "v2"), created when first asked for."""
    from fault_hosts import Hosts
    made: dict[str, Hosts] = {}

    def get(proto: str) -> Hosts:
        if proto not in made:
            made[proto] = Hosts(tmp_path_factory.mktemp(f"faults-{proto}"), proto)
        return made[proto]
    try:
        yield get
    finally:
        leaked = []
        for hosts in made.values():
            leaked += hosts.close()
    assert not leaked, f"QEMU processes left behind: {leaked}"


def pytest_collection_finish(session):
    _STARTED[0] = time.monotonic()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
    if cell is None or not hasattr(cell, "flow"):
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            result = "xfail"
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            result = "n/a" if "n/a:" in reason else "skip"
            RESULTS[cell.id] = (result, reason.split("n/a:", 1)[-1].strip())
            return
        else:
            result = "pass" if report.passed else "FAIL"
        notes = "; ".join(v for k, v in item.user_properties if k == "note")
        if result == "FAIL":
            lines = str(report.longrepr).splitlines() if report.longrepr else []
            errors = [line[1:].strip() for line in lines if line.startswith("E ")]
            notes = (" | ".join(errors[:3]) if errors else (lines[-1] if lines else ""))[:300]
        RESULTS[cell.id] = (result, notes)


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    from fault_cells import FAULTS, FLOWS, PHASES
    short = {"pass": "ok", "FAIL": "FAIL", "n/a": "n/a", "xfail": "xfail", "skip": "skip"}
    w = terminalreporter
    w.section("fault matrix (flow × fault × phase)")
    for flow in FLOWS:
        if not any(cid.startswith(f"{flow}:") for cid in RESULTS):
            continue
        w.write_line(f"\n{flow}")
        w.write_line(f"  {'fault':20}" + "".join(f"{p:>15}" for p in PHASES))
        for fault in FAULTS:
            row = [short[RESULTS[f"{flow}:{fault}:{p}"][0]] + ("*" if RESULTS[f"{flow}:{fault}:{p}"][1]
                                                               and RESULTS[f"{flow}:{fault}:{p}"][0] == "pass"
                                                               else "")
                   if f"{flow}:{fault}:{p}" in RESULTS else "-" for p in PHASES]
            if any(r != "-" for r in row):
                w.write_line(f"  {fault:20}" + "".join(f"{r:>15}" for r in row))
    counts: dict[str, int] = {}
    for result, _ in RESULTS.values():
        counts[result] = counts.get(result, 0) + 1
    w.write_line("\ncounts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                 + f"; {time.monotonic() - _STARTED[0]:.0f} s")
    for label, wanted in (("* notes", "pass"), ("failures", "FAIL"), ("not applicable", "n/a")):
        lines = [(cid, n) for cid, (r, n) in sorted(RESULTS.items()) if n and r == wanted]
        if lines:
            w.write_line(f"{label}:")
            for cid, n in lines:
                w.write_line(f"  {cid}: {n}")
