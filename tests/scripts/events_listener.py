"""A libvirt-python event listener.  Run it with ``libvirt`` (real python3-libvirt) or
``pyvirt`` as MODULE; both must print the same for the same events.

usage: events_listener.py MODULE URI [any|legacy]

``any`` (the default) registers every event id with domainEventRegisterAny and
prints ``registered N`` (how many the server accepted, as virsh's event --all
counts them: after the first, failures are skipped); ``legacy`` registers the
old lifecycle callback (domainEventRegister) and prints ``registered 1``.  Then
each event is one JSON line ``[event id, domain name, callback arguments...]``.
Ends, deregistering everything, when its stdin closes.
"""

import importlib
import json
import sys
import threading

libvirt = importlib.import_module(sys.argv[1])
uri = sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "any"

if hasattr(libvirt, "virEventRegisterDefaultImpl"):      # python3-libvirt needs an event loop
    libvirt.virEventRegisterDefaultImpl()

    def run_loop():
        while True:
            libvirt.virEventRunDefaultImpl()
    threading.Thread(target=run_loop, daemon=True).start()

out = threading.Lock()


def emit(event_id, dom, args):
    with out:
        print(json.dumps([event_id, dom.name(), *args], sort_keys=True), flush=True)


def callback_for(event_id):
    def on_event(conn, dom, *rest):
        emit(event_id, dom, rest[:-1])       # the last one is the opaque value
    return on_event


conn = libvirt.open(uri)
ids = []
lifecycle = callback_for(0)
if mode == "legacy":
    conn.domainEventRegister(lifecycle, None)
    registered = 1
else:
    registered = 0
    for event_id in range(27):              # VIR_DOMAIN_EVENT_ID_LAST in libvirt 9.0
        try:
            ids.append(conn.domainEventRegisterAny(None, event_id, callback_for(event_id), None))
            registered += 1
        except libvirt.libvirtError as exc:
            if event_id == 0:
                raise
            with out:
                print(f"refused {event_id}: {exc.get_error_message()}", flush=True)
with out:
    print(f"registered {registered}", flush=True)
sys.stdin.read()
for callback_id in ids:
    conn.domainEventDeregisterAny(callback_id)
if mode == "legacy":
    conn.domainEventDeregister(lifecycle)
conn.close()
