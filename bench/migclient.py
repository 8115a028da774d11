#!/usr/bin/python3
"""The migration benchmarks' client, run with Debian's python3-libvirt (system python3).

One JSON argument describes the hosts, the guest and the runs; one JSON line
comes back with, per migration, the wall time of the API call and QEMU's own
time (setup → completed MIGRATION events of the source QEMU, received with
libvirt-qemu's monitor-event API from whichever daemon serves the source).

Modes: "direct" (migrate3, client-driven), "p2p" and "tunnelled" (migrateToURI3);
"tls": true adds VIR_MIGRATE_TLS.
With "fresh": true every run starts a new guest and migrates it once (the
first hop out of a fresh QEMU); otherwise one guest goes back and forth.
"""

import json
import sys
import threading
import time

import libvirt
import libvirt_qemu

cfg = json.loads(sys.argv[1])
libvirt.virEventRegisterDefaultImpl()
threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)], daemon=True).start()
conns = [libvirt.open(u) for u in cfg["uris"]]
events = {}


def on_event(conn, dom, event, seconds, micros, details, opaque):
    status = json.loads(details or "{}").get("status")
    if status in ("setup", "completed"):
        events.setdefault(opaque, {})[status] = seconds + micros / 1e6


for i, c in enumerate(conns):
    libvirt_qemu.qemuMonitorEventRegister(c, None, "MIGRATION", on_event, i, 0)


def start(host):
    open(cfg["log"], "w").close()
    conns[host].createXML(cfg["xml"], 0)
    deadline = time.time() + 120
    while cfg["ready"] not in open(cfg["log"], errors="replace").read():
        if time.time() > deadline:
            raise SystemExit("guest not ready")
        time.sleep(0.05)
    time.sleep(1.0)


def migrate(src):
    dst = 1 - src
    events.clear()
    mode = cfg["mode"]
    params = {}
    if mode != "tunnelled":
        params = {"migrate_uri": cfg["miguris"][dst], "listen_address": "127.0.0.1"}
    dom = conns[src].lookupByName(cfg["name"])
    flags = libvirt.VIR_MIGRATE_LIVE
    if cfg.get("tls"):
        flags |= libvirt.VIR_MIGRATE_TLS
    t0 = time.perf_counter()
    if mode == "direct":
        dom.migrate3(conns[dst], params, flags)
    else:
        flags |= libvirt.VIR_MIGRATE_PEER2PEER
        if mode == "tunnelled":
            flags |= libvirt.VIR_MIGRATE_TUNNELLED
        dom.migrateToURI3(cfg["uris"][dst], params, flags)
    wall = time.perf_counter() - t0
    for _ in range(200):
        if "completed" in events.get(src, {}):
            break
        time.sleep(0.01)
    ev = events.get(src, {})
    qemu = ev["completed"] - ev["setup"] if "completed" in ev and "setup" in ev else None
    return {"wall": wall, "qemu": qemu}


runs = []
if cfg.get("fresh"):
    for _ in range(cfg["runs"]):
        start(0)
        runs.append(migrate(0))
        conns[1].lookupByName(cfg["name"]).destroy()
        time.sleep(0.5)
else:
    start(0)
    src = 0
    for _ in range(cfg["runs"]):
        runs.append(migrate(src))
        src = 1 - src
        time.sleep(0.5)
    conns[src].lookupByName(cfg["name"]).destroy()
print(json.dumps(runs))
