#!/usr/bin/env python3
"""Statistics figures: pyvirtd beside libvirtd 9.0, same run, same client.

For each side (two pyvirtd hosts, then two private libvirtd 9.0 hosts from
bench/libvirt_ref.py), Debian's python3-libvirt drives:

- N running tiny guests (128 MiB, a 64 MiB qcow2 disk, a virtio balloon) on
  the first host; ``getAllDomainStats()`` (every group, flags 0) for all of
  them, repeated: calls/s and p50/p99 latency;
- the daemon's RSS with those N guests;
- ``blockStats("vda")`` of one more guest while it live-migrates to the second
  host at 2 MiB/s (a guest that keeps dirtying its memory, so the migration
  lasts): p50/p99 latency, every call checked to have come back during the job.

Usage: bench/stats.py [--guests N] [--calls N] [--no-libvirt]
(default 50 guests; the whole run takes a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from pairs import libvirtd_pair, pyvirtd_pair  # noqa: E402

# The measuring client, run by python3-libvirt against either daemon pair.
CLIENT = r"""
import json, subprocess, sys, threading, time
import libvirt
cfg = json.loads(sys.argv[1])
src, dst = libvirt.open(cfg["uris"][0]), libvirt.open(cfg["uris"][1])
work = cfg["work"]
tiny = cfg["tiny"]

def xml(name, cmdline=None, memory=128):
    image = f"{work}/{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", image, "64M"], check=True)
    extra = f"<cmdline>{cmdline}</cmdline>" if cmdline else ""
    return f'''<domain type='qemu'><name>{name}</name><memory unit='MiB'>{memory}</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>{tiny}</kernel>{extra}</os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{image}'/>
<target dev='vda' bus='virtio'/></disk>
<serial type='file'><source path='{work}/{name}.log'/><target port='0'/></serial>
<memballoon model='virtio'/></devices></domain>'''

def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]

out = {}
doms = [src.createXML(xml(f"stat{i}"), 0) for i in range(cfg["guests"])]
assert all(d.state()[0] == libvirt.VIR_DOMAIN_RUNNING for d in doms)
records = src.getAllDomainStats(0, 0)          # warm-up (and a check of what comes back)
assert len(records) == cfg["guests"] and all("block.0.rd.reqs" in s for _d, s in records), records[:1]
lat = []
t0 = time.perf_counter()
for _ in range(cfg["calls"]):
    t = time.perf_counter()
    src.getAllDomainStats(0, 0)
    lat.append((time.perf_counter() - t) * 1000)
wall = time.perf_counter() - t0
out["bulk"] = {"calls_per_s": cfg["calls"] / wall, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
               "params": sum(len(s) for _d, s in records)}
print("RSS", flush=True)                       # the parent reads the daemon's RSS now
sys.stdin.readline()

# blockStats of a migrating guest
mig = src.createXML(xml("statmig", "dirty=64:20", 256), 0)
deadline = time.time() + 60
while "PYVIRT-HEARTBEAT 1" not in open(f"{work}/statmig.log", errors="replace").read():
    assert time.time() < deadline, "migrating guest not ready"
    time.sleep(0.05)
def migrate_in_thread():
    result = {}
    def run():
        try:
            mig.migrate3(dst, {"bandwidth": 2, "migrate_uri": cfg["miguris"][1]},
                         libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_UNSAFE)
        except libvirt.libvirtError as exc:
            result["error"] = exc.get_error_code()
            result["message"] = exc.get_error_message()
    thread = threading.Thread(target=run)
    thread.start()
    return thread, result

watch = libvirt.open(cfg["uris"][0]).lookupByName("statmig")
# The destination's migration port may be taken by another program for a moment: try again.
for attempt in range(5):
    thread, result = migrate_in_thread()
    deadline = time.time() + 60
    while thread.is_alive() and not (watch.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
                                     and watch.jobInfo()[4] > 0):
        assert time.time() < deadline, "migration did not start"
        time.sleep(0.02)
    if thread.is_alive():
        break
    thread.join()
    print(f"migration attempt {attempt + 1} failed: {result.get('message')}", file=sys.stderr)
    time.sleep(1)
else:
    raise SystemExit("the migration never started")
lat = []
for _ in range(cfg["mig_calls"]):
    t = time.perf_counter()
    watch.blockStats("vda")
    lat.append((time.perf_counter() - t) * 1000)
still = watch.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_UNBOUNDED
watch.abortJob()
thread.join(120)
out["mig"] = {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": max(lat), "during_job": still,
              "aborted": result.get("error") == libvirt.VIR_ERR_OPERATION_ABORTED}
for d in doms + [mig]:
    try:
        d.destroy()
    except libvirt.libvirtError:
        pass
print(json.dumps(out))
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def daemon_pid(uri: str) -> int:
    """The pid of the daemon listening on the URI's TCP port (pyvirtd or libvirtd)."""
    port = int(uri.split(":")[2].split("/")[0])
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


def run_side(uris: list[str], miguris: list[str], work: Path, args: argparse.Namespace) -> dict:
    from guests import TINY
    side_work = work / f"side-{len(list(work.iterdir()))}"
    side_work.mkdir()
    os.chmod(side_work, 0o711)
    cfg = {"uris": uris, "miguris": miguris, "work": str(side_work), "tiny": str(TINY),
           "guests": args.guests, "calls": args.calls, "mig_calls": args.mig_calls}
    proc = subprocess.Popen(["/usr/bin/python3", "-c", CLIENT, json.dumps(cfg)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if line.strip() != "RSS":
            raise RuntimeError(f"client failed: {line}{proc.stderr.read()[-3000:]}")
        rss = rss_kib(daemon_pid(uris[0]))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        rest, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"client failed:\n{err[-3000:]}")
    result = json.loads(rest.strip().splitlines()[-1])
    result["rss_mib"] = rss / 1024
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guests", type=int, default=50)
    ap.add_argument("--calls", type=int, default=40, help="getAllDomainStats calls to time")
    ap.add_argument("--mig-calls", type=int, default=300, help="blockStats calls during the migration")
    ap.add_argument("--no-libvirt", action="store_true", help="measure pyvirtd only")
    args = ap.parse_args()
    from guests import ensure_guests
    ensure_guests()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pyvirt-statbench-") as tmp:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        work = Path(tmp)
        with pyvirtd_pair(work) as (uris, miguris):
            results["pyvirtd"] = run_side(uris, miguris, work, args)
        if not args.no_libvirt:
            with libvirtd_pair(work, 61200) as pair:
                if pair is not None:
                    results["libvirtd 9.0"] = run_side(*pair, work, args)
    print_table(results, args)
    return 0


def print_table(results: dict[str, dict], args: argparse.Namespace) -> None:
    sides = list(results)
    print(f"\nStatistics with {args.guests} running tiny guests (python3-libvirt client); "
          f"ratio = pyvirtd / libvirtd")
    print(f"{'':52}" + "".join(f"{s:>14}" for s in sides) + ("    ratio" if len(sides) == 2 else ""))
    rows = [("getAllDomainStats, all groups: calls/s", lambda r: r["bulk"]["calls_per_s"]),
            ("  latency p50 (ms)", lambda r: r["bulk"]["p50"]),
            ("  latency p99 (ms)", lambda r: r["bulk"]["p99"]),
            ("  typed parameters per call", lambda r: r["bulk"]["params"]),
            ("blockStats during a 2 MiB/s migration: p50 (ms)", lambda r: r["mig"]["p50"]),
            ("  p99 (ms)", lambda r: r["mig"]["p99"]),
            ("  max (ms)", lambda r: r["mig"]["max"]),
            (f"daemon RSS with {args.guests} guests (MiB)", lambda r: r["rss_mib"])]
    for label, get in rows:
        vals = [get(results[s]) for s in sides]
        line = f"{label:52}" + "".join(f"{v:>14.2f}" for v in vals)
        if len(vals) == 2 and vals[1]:
            line += f"    {vals[0] / vals[1]:.2f}"
        print(line)
    for s in sides:
        m = results[s]["mig"]
        print(f"  {s}: every blockStats answered while the migration job ran: {m['during_job']}; "
              f"migration aborted afterwards: {m['aborted']}")


if __name__ == "__main__":
    sys.exit(main())
