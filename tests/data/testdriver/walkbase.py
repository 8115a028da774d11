"""What every differential walk of a test-driver host shares (tests/walkdiff.py runs them).

A walk is run as ``PYTHON walk_X.py MODULE URI``: MODULE is ``libvirt`` (python3-libvirt)
or ``pyvirt``, imported here as ``libvirt``.  Each call goes through :func:`step`, which
records ``[name, value]`` in :data:`out`, a failed call's value being ``["ERR", code,
domain, message]``; the walk prints :data:`out` as one JSON list at its end.
"""

import sys
import threading

MODULE, URI = sys.argv[1:3]
if MODULE == "libvirt":
    import libvirt
    libvirt.registerErrorHandler(lambda *args: None, None)   # errors go in the output, not on stderr
else:
    import pyvirt as libvirt

out = []
seen, cond = [], threading.Condition()     # events, as the callbacks note them


def start_events():
    """Stock libvirt-python delivers events only from an event loop the program runs:
    register libvirt's default one and run it (before the connection is opened)."""
    if MODULE != "libvirt":
        return
    libvirt.virEventRegisterDefaultImpl()

    def _loop():
        while True:
            libvirt.virEventRunDefaultImpl()
    threading.Thread(target=_loop, daemon=True).start()


def note(*record):
    with cond:
        seen.append(list(record))
        cond.notify_all()


def step(name, fn, *args):
    try:
        value = fn(*args)
    except libvirt.libvirtError as exc:
        value = ["ERR", exc.get_error_code(), exc.get_error_domain(), exc.get_error_message()]
    except Exception as exc:    # a call the library lacks, or a crash: part of the record too
        value = ["EXC", type(exc).__name__, str(exc)]
    out.append([name, value])
    return value


def M(obj, method):
    """obj.method, looked up when called: a method the library lacks is recorded, not fatal."""
    return lambda *args: getattr(obj, method)(*args)
