"""What the host kernel knows about a running guest: /proc figures for QEMU's
threads and the host side of its tap devices.

Plain file reads, no monitor: these never wait on QEMU or on a job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True, slots=True)
class TaskStat:
    """One thread's (or the whole process's) CPU figures from its ``stat`` file."""

    user_ns: int
    system_ns: int
    processor: int          # the host CPU it last ran on
    rss_kib: int

    @property
    def time_ns(self) -> int:
        return self.user_ns + self.system_ns


def _parse_stat(data: bytes) -> TaskStat:
    # Fields after the command name, which may hold spaces and parentheses.
    fields = data[data.rindex(b")") + 2:].split()
    return TaskStat(user_ns=int(fields[11]) * NS_PER_TICK, system_ns=int(fields[12]) * NS_PER_TICK,
                    processor=int(fields[36]), rss_kib=int(fields[21]) * PAGE_KIB)


def process_stat(pid: int) -> TaskStat | None:
    """QEMU's own figures (all threads together); None once it has gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return _parse_stat(f.read())
    except (OSError, ValueError, IndexError):
        return None


def thread_stat(pid: int, tid: int) -> TaskStat | None:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            return _parse_stat(f.read())
    except (OSError, ValueError, IndexError):
        return None


def thread_delay_ns(pid: int, tid: int) -> int:
    """Time the thread spent runnable, waiting for a host CPU (schedstat's second
    field), libvirt's ``vcpu.N.delay``; 0 where the kernel keeps no schedstat."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def thread_wait_ns(pid: int, tid: int) -> int:
    """The scheduler's ``wait_sum`` of the thread (milliseconds in /proc/.../sched),
    libvirt's ``vcpu.N.wait``: 0 unless the kernel collects schedstats."""
    try:
        with open(f"/proc/{pid}/task/{tid}/sched", "rb") as f:
            for line in f:
                key, _, value = line.partition(b":")
                if key.strip().endswith(b"wait_sum"):
                    return int(float(value) * 1_000_000)
    except (OSError, ValueError):
        pass
    return 0


def halt_poll_ns(pid: int) -> tuple[int, int]:
    """KVM's halt-polling time of the guest's vCPUs (debugfs), succeeded and failed;
    (0, 0) when debugfs is not there or the guest does not run on KVM."""
    import glob
    totals = [0, 0]
    for n, name in enumerate(("halt_poll_success_ns", "halt_poll_fail_ns")):
        for path in glob.glob(f"/sys/kernel/debug/kvm/{pid}-*/vcpu*/{name}"):
            try:
                with open(path) as f:
                    totals[n] += int(f.read())
            except (OSError, ValueError):
                continue
    return totals[0], totals[1]


def thread_affinity(tid: int, ncpus: int) -> list[bool]:
    """Which host CPUs the thread may run on (all when it cannot be asked)."""
    try:
        allowed = os.sched_getaffinity(tid)
    except OSError:
        return [True] * ncpus
    return [cpu in allowed for cpu in range(ncpus)]


@dataclass(frozen=True, slots=True)
class NetCounters:
    rx_bytes: int
    rx_packets: int
    rx_errs: int
    rx_drop: int
    tx_bytes: int
    tx_packets: int
    tx_errs: int
    tx_drop: int

    def guest_view(self) -> "NetCounters":
        """A tap's counters seen from the guest: what the host side receives the
        guest sent (libvirt swaps them the same way for taps)."""
        return NetCounters(self.tx_bytes, self.tx_packets, self.tx_errs, self.tx_drop,
                           self.rx_bytes, self.rx_packets, self.rx_errs, self.rx_drop)


def net_dev() -> dict[str, NetCounters]:
    """Every interface of the daemon's network namespace, from one read of /proc/net/dev."""
    out: dict[str, NetCounters] = {}
    try:
        with open("/proc/net/dev", "rb") as f:
            lines = f.read().decode("ascii", "replace").splitlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        cols = rest.split()
        if len(cols) < 12:
            continue
        try:
            v = [int(c) for c in cols]
        except ValueError:
            continue
        out[name.strip()] = NetCounters(v[0], v[1], v[2], v[3], v[8], v[9], v[10], v[11])
    return out


def _cpu_set(name: str) -> set[int] | None:
    """/sys/devices/system/cpu/NAME ('0-3,6') as a set of CPU numbers."""
    try:
        with open(f"/sys/devices/system/cpu/{name}") as f:
            text = f.read().strip()
    except OSError:
        return None
    cpus: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def host_cpu_count() -> int:
    """Host CPUs present (libvirt sizes its CPU maps by these)."""
    present = _cpu_set("present")
    return max(present) + 1 if present else (os.cpu_count() or 1)


def online_cpus() -> set[int]:
    online = _cpu_set("online")
    return online if online is not None else set(range(host_cpu_count()))
