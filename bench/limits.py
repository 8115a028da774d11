#!/usr/bin/env python3
"""Client limits: the server's memory under idle and half-sent connections, and
what a healthy client sees meanwhile.  pyvirtd and libvirtd 9.0, same run.

Each server runs one tiny guest on its qemu driver and its default limits
(libvirtd.conf's own defaults for both; pyvirtd's frame_timeout 30 s and
max_large_frame_bytes 32 MiB).  For each, in turn:

- idle: 2,000 TCP connections that each open ``qemu:///system``
  (CONNECT_OPEN) and then say nothing;
- partial: 100 connections that each announce a 32 MiB frame (a CONNECT_OPEN
  of the largest size libvirt allows) and send all of it but the last byte
  as fast as the server takes it; measured once no socket could send more
  for 2 s, that is while every frame is held incomplete;
- the server's resident memory (VmRSS): before, with the idle connections,
  and its peak during the partial frames;
- a healthy python3-libvirt 9.0 client's ``dom.info()`` latency, p50 and p99
  over 2,000 calls on a connection opened beforehand: with no load, with the
  idle connections held, and with the partial frames held.

libvirtd reads every frame whole into memory (32 MiB each, 3.2 GiB for 100);
pyvirtd reads one large frame at a time and leaves the rest in the kernel
(see pyvirt/rpc/server.py).  RLIMIT_NOFILE is raised to its hard limit for
the bench and both servers.

Usage: bench/limits.py [--idle N] [--partial N] [--calls N] [--no-libvirt]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

REMOTE, CONNECT_OPEN, CALL = 0x20008086, 1, 0
DECLARED = 32 * 1024 * 1024
QUIET = 2.0        # s without a byte taken: the server holds the rest back

LATENCY_CLIENT = r"""
import json, sys, time
import libvirt
uri, name, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = libvirt.open(uri)
dom = conn.lookupByName(name)
for _ in range(200):
    dom.info()                                  # warm-up
print("ready", flush=True)
while sys.stdin.readline().strip() == "measure":
    lat = []
    for _ in range(calls):
        t = time.perf_counter()
        dom.info()
        lat.append(time.perf_counter() - t)
    lat.sort()
    print(json.dumps({"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)]}), flush=True)
"""


class LatencyClient:
    """python3-libvirt in its own process, connected before the load starts."""

    def __init__(self, uri: str, name: str, calls: int) -> None:
        self.proc = subprocess.Popen(["/usr/bin/python3", "-c", LATENCY_CLIENT, uri, name, str(calls)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the latency client did not start")

    def measure(self) -> dict[str, float]:
        self.proc.stdin.write("measure\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the latency client died")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """VmRSS (everything resident, shared libraries' pages included) or RssAnon
    (the process's own memory), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def call_header(length: int, serial: int) -> bytes:
    return struct.pack(">IIIiiIi", length, REMOTE, 1, CONNECT_OPEN, CALL, serial, 0)


def open_payload(uri: str) -> bytes:
    # remote_connect_open_args: remote_string name (optional: present, length, padded), int flags
    raw = uri.encode()
    return struct.pack(">II", 1, len(raw)) + raw + b"\0" * (-len(raw) % 4) + struct.pack(">i", 0)


def open_idle(port: int, n: int) -> list[socket.socket]:
    """``n`` connections, each with CONNECT_OPEN answered, then silent."""
    payload = open_payload("qemu:///system")
    socks: list[socket.socket] = []
    with selectors.DefaultSelector() as sel:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(call_header(28 + len(payload), i) + payload)
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, bytearray())
        while sel.get_map():
            ready = sel.select(60)
            if not ready:
                raise RuntimeError(f"{len(sel.get_map())} of {n} CONNECT_OPEN calls unanswered after 60 s")
            for key, _ in ready:
                data = key.fileobj.recv(4096)
                if not data:
                    raise RuntimeError("the server dropped an idle client while it opened")
                key.data.extend(data)
                if len(key.data) >= 28:
                    status = struct.unpack_from(">i", key.data, 24)[0]
                    if status != 0:
                        raise RuntimeError("CONNECT_OPEN failed")
                    sel.unregister(key.fileobj)
    return socks


def push_partial(port: int, n: int, pid: int) -> tuple[list[socket.socket], tuple[float, float], int]:
    """``n`` connections sending 32 MiB frames but their last byte;
    (sockets, (peak VmRSS, peak RssAnon), bytes sent)."""
    chunk = memoryview(bytes(1 << 20))
    socks, sent = [], {}
    upto = DECLARED - 1
    peak = rss_mib(pid)
    peak_anon = rss_mib(pid, "RssAnon")
    with selectors.DefaultSelector() as sel:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(call_header(DECLARED, i))
            s.setblocking(False)
            socks.append(s)
            sent[s] = 28
            sel.register(s, selectors.EVENT_WRITE)
        while sel.get_map():
            ready = sel.select(QUIET)
            if not ready:
                break
            for key, _ in ready:
                s = key.fileobj
                try:
                    while sent[s] < upto:
                        sent[s] += s.send(chunk[:min(len(chunk), upto - sent[s])])
                except BlockingIOError:
                    pass
                if sent[s] >= upto:
                    sel.unregister(s)
            peak = max(peak, rss_mib(pid))
            peak_anon = max(peak_anon, rss_mib(pid, "RssAnon"))
    return socks, (max(peak, rss_mib(pid)), max(peak_anon, rss_mib(pid, "RssAnon"))), sum(sent.values())


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def measure_side(uri: str, port: int, pid_of, name: str, args) -> dict:
    res: dict = {}
    client = LatencyClient(uri, name, args.calls)
    try:
        pid = pid_of()
        res["rss_base"], res["anon_base"] = rss_mib(pid), rss_mib(pid, "RssAnon")
        res["lat_base"] = client.measure()
        idle = open_idle(port, args.idle)
        time.sleep(1.0)                               # let the server settle after the opens
        res["rss_idle"], res["anon_idle"] = rss_mib(pid), rss_mib(pid, "RssAnon")
        res["lat_idle"] = client.measure()
        close_all(idle)
        time.sleep(1.0)
        socks, (peak, peak_anon), taken = push_partial(port, args.partial, pid)
        res["lat_partial"] = client.measure()
        res["rss_partial"] = max(peak, rss_mib(pid))
        res["anon_partial"] = max(peak_anon, rss_mib(pid, "RssAnon"))
        res["taken_partial"] = taken
        close_all(socks)
    finally:
        client.close()
    return res


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--partial", type=int, default=100)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--no-libvirt", action="store_true")
    args = ap.parse_args()
    raise_nofile()
    need = args.idle + args.partial + 100
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        print(f"RLIMIT_NOFILE is below {need}; lower --idle", file=sys.stderr)
        return 1
    from guests import ensure_guests
    ensure_guests()
    from daemons import Pyvirtd
    from rpc import start_guest, stop_guest

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pyvirt-limitsbench-") as tmp:
        os.chmod(tmp, 0o711)   # QEMU runs unprivileged: it must reach the files here
        daemon = Pyvirtd(Path(tmp) / "pyvirtd")
        try:
            daemon.start()
            name = start_guest(daemon.uri, Path(tmp))
            results["pyvirtd"] = measure_side(daemon.uri, daemon.tcp_port, lambda: daemon.pid, name, args)
            stop_guest(daemon.uri)
        finally:
            daemon.cleanup()
        if not args.no_libvirt:
            try:
                from libvirt_ref import LibvirtHost, libvirt_available, pick_free_port
                ok, why = libvirt_available()
            except ImportError as exc:
                ok, why = False, str(exc)
            if not ok:
                print(f"libvirt reference skipped: {why}")
            else:
                port = pick_free_port()
                with LibvirtHost(Path(tmp) / "libvirtd", tcp_port=port) as host:
                    name = start_guest(host.uri, Path(tmp))
                    results["libvirtd 9.0"] = measure_side(host.uri, port, lambda: host.pid, name, args)
                    stop_guest(host.uri)
    print_table(results, args)
    return 0


def print_table(results: dict[str, dict], args) -> None:
    sides = list(results)
    print(f"\nClient limits: {args.idle:,} idle connections, {args.partial} clients each holding a "
          f"32 MiB frame but its last byte; dom.info() latency over {args.calls:,} calls (python3-libvirt)")
    print(f"{'':46}" + "".join(f"{s:>16}" for s in sides))

    def row(label: str, fmt) -> None:
        print(f"{label:46}" + "".join(f"{fmt(results[s]):>16}" for s in sides))

    def ms(lat: dict) -> str:
        return f"{lat['p50'] * 1e3:.2f} / {lat['p99'] * 1e3:.2f}"

    row("server RSS, no clients (MiB)", lambda r: f"{r['rss_base']:.1f}")
    row("  of which its own (RssAnon, not libraries)", lambda r: f"{r['anon_base']:.1f}")
    row(f"RSS with {args.idle:,} idle connections (MiB)", lambda r: f"{r['rss_idle']:.1f}")
    row("  RssAnon", lambda r: f"{r['anon_idle']:.1f}")
    row("  per idle connection (KiB)",
        lambda r: f"{(r['rss_idle'] - r['rss_base']) * 1024 / args.idle:.1f}")
    row(f"peak RSS, {args.partial} partial 32 MiB frames (MiB)", lambda r: f"{r['rss_partial']:,.1f}")
    row("  RssAnon", lambda r: f"{r['anon_partial']:,.1f}")
    row("  bytes they got sent (MiB; in server + kernel)", lambda r: f"{r['taken_partial'] / 2**20:,.0f}")
    row("dom.info p50 / p99 (ms), no load", lambda r: ms(r["lat_base"]))
    row(f"  with {args.idle:,} idle connections", lambda r: ms(r["lat_idle"]))
    row(f"  with {args.partial} partial frames held", lambda r: ms(r["lat_partial"]))
    if len(sides) == 2:
        a, b = (results[s] for s in sides)
        print(f"\npeak RSS {sides[0]} / {sides[1]}: idle {a['rss_idle'] / b['rss_idle']:.2f} "
              f"(RssAnon {a['anon_idle'] / b['anon_idle']:.2f}), partial frames "
              f"{a['rss_partial'] / b['rss_partial']:.3f} (RssAnon {a['anon_partial'] / b['anon_partial']:.3f})")


if __name__ == "__main__":
    sys.exit(main())
