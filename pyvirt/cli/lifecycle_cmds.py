"""virsh's commands for lifecycle, metadata and events: reset, reboot, shutdown (--mode),
desc, metadata, event — with virsh's options, messages and output layout."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any, Callable

import pyvirt
from pyvirt.enums import EventID, MetadataType, ShutdownFlags
from pyvirt.errors import ErrorNumber, libvirtError

from .domain_cmds import _failed, add_domain_arg, lookup
from .registry import CommandError, Handler, command

# VIR_DOMAIN_AFFECT_*
_LIVE, _CONFIG = 1, 2

_MODES = {"acpi": ShutdownFlags.ACPI_POWER_BTN, "agent": ShutdownFlags.GUEST_AGENT,
          "initctl": ShutdownFlags.INITCTL, "signal": ShutdownFlags.SIGNAL,
          "paravirt": ShutdownFlags.PARAVIRT}


def _mode_flags(mode: str | None, expecting: str) -> int:
    flags = 0
    for word in (mode.split(",") if mode else []):
        if word not in _MODES:
            raise CommandError(f"Unknown mode {word} value, expecting {expecting}")
        flags |= int(_MODES[word])
    return flags


@command("reset", "reset a domain")
def _reset(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        try:
            dom.reset(0)
        except libvirtError as exc:
            raise _failed(f"Failed to reset domain '{dom.name()}'", exc)
        print(f"Domain '{dom.name()}' was reset\n")
    return run


@command("reboot", "reboot a domain")
def _reboot(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--mode", help="shutdown mode: acpi|agent|initctl|signal|paravirt")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = _mode_flags(args.mode, "'acpi', 'agent', 'initctl', 'signal' or 'paravirt'")
        dom = lookup(conn, args)
        try:
            dom.reboot(flags)
        except libvirtError as exc:
            raise _failed(f"Failed to reboot domain '{dom.name()}'", exc)
        print(f"Domain '{dom.name()}' is being rebooted\n")
    return run


@command("shutdown", "gracefully shutdown a domain")
def _shutdown(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--mode", help="shutdown mode: acpi|agent|initctl|signal|paravirt")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = _mode_flags(args.mode, "'acpi', 'agent', 'initctl', 'signal', or 'paravirt'")
        dom = lookup(conn, args)
        try:
            dom.shutdownFlags(flags) if flags else dom.shutdown()
        except libvirtError as exc:
            raise _failed(f"Failed to shutdown domain '{dom.name()}'", exc)
        print(f"Domain '{dom.name()}' is being shutdown\n")
    return run


def _add_impact(p: argparse.ArgumentParser) -> None:
    p.add_argument("--live", action="store_true", help="modify/get running state")
    p.add_argument("--config", action="store_true", help="modify/get persistent state")
    p.add_argument("--current", action="store_true", help="modify/get current state")


def _impact(args: argparse.Namespace) -> int:
    if args.current and (args.live or args.config):
        other = "live" if args.live else "config"
        raise CommandError(f"Options --current and --{other} are mutually exclusive")
    return (_LIVE if args.live else 0) | (_CONFIG if args.config else 0)


@command("desc", "show or set domain's description or title")
def _desc(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    _add_impact(p)
    p.add_argument("--title", action="store_true", help="modify/get the title instead of description")
    p.add_argument("--new-desc", dest="new_desc_opt", metavar="TEXT", help="message")
    p.add_argument("new_desc", nargs="*", help="message")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = _impact(args)
        dom = lookup(conn, args)
        kind = MetadataType.TITLE if args.title else MetadataType.DESCRIPTION
        words = ([args.new_desc_opt] if args.new_desc_opt else []) + list(args.new_desc)
        what = "title" if args.title else "description"
        if words:
            try:
                dom.setMetadata(int(kind), " ".join(words), None, None, flags)
            except libvirtError as exc:
                raise _failed(f"Failed to set new domain {what}", exc)
            print(f"Domain {what} updated successfully")
            return
        try:
            text = dom.metadata(int(kind), None, flags)
        except libvirtError as exc:
            if exc.get_error_code() != ErrorNumber.NO_DOMAIN_METADATA:
                raise
            text = ""
        print(text if text else f"No {what} for domain: {dom.name()}")
    return run


@command("metadata", "show or set domain's custom XML metadata")
def _metadata(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("uri", nargs="?", help="URI of the namespace")
    p.add_argument("--uri", dest="uri_opt", help=argparse.SUPPRESS)
    _add_impact(p)
    p.add_argument("--key", help="key to be used as a namespace identifier")
    p.add_argument("--set", dest="set_xml", help="new metadata to set")
    p.add_argument("--remove", action="store_true", help="remove the metadata corresponding to an uri")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = _impact(args)
        uri = args.uri_opt or args.uri
        if not uri:
            raise CommandError("command 'metadata' requires <uri> option")
        if args.set_xml is not None and args.remove:
            raise CommandError("Options --set and --remove are mutually exclusive")
        dom = lookup(conn, args)
        kind = int(MetadataType.ELEMENT)
        if args.set_xml is not None or args.remove:
            if args.set_xml is not None and not args.key:
                raise CommandError("namespace key is required when modifying metadata")
            dom.setMetadata(kind, args.set_xml, args.key, uri, flags)
            print("Metadata removed\n" if args.remove else "Metadata modified\n")
            return
        print(dom.metadata(kind, uri, flags) + "\n")
    return run


# -- event ---------------------------------------------------------------------------

EVENT_NAMES = ("lifecycle", "reboot", "rtc-change", "watchdog", "io-error", "graphics",
               "io-error-reason", "control-error", "block-job", "disk-change", "tray-change",
               "pm-wakeup", "pm-suspend", "balloon-change", "pm-suspend-disk", "device-removed",
               "block-job-2", "tunable", "agent-lifecycle", "device-added", "migration-iteration",
               "job-completed", "device-removal-failed", "metadata-change", "block-threshold",
               "memory-failure", "memory-device-size-change")
"""virsh's names, by event id."""

_LIFECYCLE = ("Defined", "Undefined", "Started", "Suspended", "Resumed", "Stopped", "Shutdown",
              "PMSuspended", "Crashed")
_LIFECYCLE_DETAILS = (
    ("Added", "Updated", "Renamed", "Snapshot"),
    ("Removed", "Renamed"),
    ("Booted", "Migrated", "Restored", "Snapshot", "Event wakeup"),
    ("Paused", "Migrated", "I/O Error", "Watchdog", "Restored", "Snapshot", "API error", "Post-copy",
     "Post-copy Error"),
    ("Unpaused", "Migrated", "Snapshot", "Post-copy", "Post-copy Error"),
    ("Shutdown", "Destroyed", "Crashed", "Migrated", "Saved", "Failed", "Snapshot"),
    ("Finished", "Finished after guest request", "Finished after host request"),
    ("Memory", "Disk"),
    ("Panicked", "Crashloaded"),
)
_WATCHDOG = ("none", "pause", "reset", "poweroff", "shutdown", "debug", "inject-nmi")
_IO_ERROR = ("none", "pause", "report")
_GRAPHICS_PHASES = ("connect", "initialize", "disconnect")
_ADDRESS = ("IPv4", "IPv6", "unix")
_BLOCK_JOBS = ("Unknown job", "Block Pull", "Block Copy", "Block Commit", "Active Block Commit", "Backup")
_BLOCK_STATUS = ("completed", "failed", "canceled", "ready")
_DISK_CHANGE = ("changed", "dropped")
_AGENT_STATE = ("unknown", "connected", "disconnected")
_AGENT_REASON = ("unknown", "domain started", "channel event")
_METADATA = ("description", "title", "element")
_RECIPIENT = ("hypervisor", "guest")
_MEMORY_ACTION = ("ignore", "inject", "fatal", "reset")


def _pick(words: tuple[str, ...], index: int, unknown: str = "unknown") -> str:
    return words[index] if 0 <= index < len(words) else unknown


def _null(text: str | None) -> str:
    return "<null>" if text is None else text


def _param_text(value: Any) -> str:
    """virTypedParameterToString: booleans as 1/0, doubles with six decimals."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:f}"
    return str(value)


def event_text(event_id: int, dom: str, args: tuple[Any, ...]) -> str:
    """What virsh's event command prints for one event (``args``: libvirt-python's callback
    arguments between ``dom`` and ``opaque``), ending with a newline."""
    name = EVENT_NAMES[event_id]
    head = f"event '{name}' for domain '{dom}'"
    E = EventID
    if event_id == E.LIFECYCLE:
        ev, detail = args
        details = _LIFECYCLE_DETAILS[ev] if 0 <= ev < len(_LIFECYCLE_DETAILS) else ()
        return f"{head}: {_pick(_LIFECYCLE, ev)} {_pick(details, detail)}\n"
    if event_id in (E.REBOOT, E.CONTROL_ERROR, E.PMWAKEUP, E.PMSUSPEND, E.PMSUSPEND_DISK):
        return f"{head}\n"
    if event_id == E.RTC_CHANGE:
        return f"{head}: {args[0]}\n"
    if event_id == E.WATCHDOG:
        return f"{head}: {_pick(_WATCHDOG, args[0])}\n"
    if event_id == E.IO_ERROR:
        path, alias, action = args
        return f"event 'io-error' for domain '{dom}': {path} ({alias}) {_pick(_IO_ERROR, action)}\n"
    if event_id == E.IO_ERROR_REASON:
        path, alias, action, reason = args
        return (f"event 'io-error' for domain '{dom}': {path} ({alias}) {_pick(_IO_ERROR, action)} "
                f"due to {reason}\n")
    if event_id == E.GRAPHICS:
        phase, local, remote, scheme, subject = args
        text = (f"{head}: {_pick(_GRAPHICS_PHASES, phase)} "
                f"local[{_pick(_ADDRESS, local['family'])} {local['node']} {local['service']}] "
                f"remote[{_pick(_ADDRESS, remote['family'])} {remote['node']} {remote['service']}] {scheme}\n")
        return text + "".join(f"\t{kind}={who}\n" for kind, who in subject)
    if event_id in (E.BLOCK_JOB, E.BLOCK_JOB_2):
        disk, job_type, status = args
        return f"{head}: {_pick(_BLOCK_JOBS, job_type)} for {disk} {_pick(_BLOCK_STATUS, status)}\n"
    if event_id == E.DISK_CHANGE:
        old, new, alias, reason = args
        return f"{head} disk {alias}: {_null(old)} -> {_null(new)}: {_pick(_DISK_CHANGE, reason)}\n"
    if event_id == E.TRAY_CHANGE:
        alias, reason = args
        return f"{head} disk {alias}: {_pick(('opened', 'closed'), reason)}\n"
    if event_id == E.BALLOON_CHANGE:
        return f"{head}: {args[0]}KiB\n"
    if event_id in (E.DEVICE_REMOVED, E.DEVICE_ADDED, E.DEVICE_REMOVAL_FAILED):
        return f"{head}: {args[0]}\n"
    if event_id in (E.TUNABLE, E.JOB_COMPLETED):
        return f"{head}:\n" + "".join(f"\t{key}: {_param_text(value)}\n" for key, value in args[0].items())
    if event_id == E.AGENT_LIFECYCLE:
        state, reason = args
        return (f"{head}: state: '{_pick(_AGENT_STATE, state, 'unsupported value')}' "
                f"reason: '{_pick(_AGENT_REASON, reason, 'unsupported value')}'\n")
    if event_id == E.MIGRATION_ITERATION:
        return f"{head}: iteration: '{args[0]}'\n"
    if event_id == E.METADATA_CHANGE:
        kind, nsuri = args
        return f"{head}: type {_pick(_METADATA, kind, 'unsupported value')}, uri {_null(nsuri)}\n"
    if event_id == E.BLOCK_THRESHOLD:
        dev, path, threshold, excess = args
        return f"{head}: dev: {dev}({_null(path)}) {threshold} {excess}\n"
    if event_id == E.MEMORY_FAILURE:
        recipient, action, flags = args
        return (f"{head}:\nrecipient: {_pick(_RECIPIENT, recipient, 'unsupported value')}\n"
                f"action: {_pick(_MEMORY_ACTION, action, 'unsupported value')}\n"
                f"flags:\n\taction required: {int(bool(flags & 1))}\n\trecursive: {int(bool(flags & 2))}\n")
    if event_id == E.MEMORY_DEVICE_SIZE_CHANGE:
        alias, size = args
        return f"{head}:\nalias: {alias}\nsize: {size}\n"
    return f"{head}\n"


def _timestamp() -> str:
    """virTimeStringNowRaw: 'YYYY-MM-DD HH:MM:SS.mmm+0000' in UTC."""
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}+0000"


class _Printer:
    """Counts and prints events as virsh's virshEventPrintf; a one-shot wait ends at the first."""

    def __init__(self, loop: bool, timestamp: bool) -> None:
        self.loop, self.timestamp = loop, timestamp
        self.count = 0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def callback(self, event_id: int) -> Callable[..., None]:
        def on_event(conn: Any, dom: Any, *rest: Any) -> None:
            text = event_text(event_id, dom.name(), rest[:-1])
            with self.lock:
                if not self.loop and self.count:
                    return
                prefix = f"{_timestamp()}: " if self.timestamp else ""
                sys.stdout.write(prefix + text)
                sys.stdout.flush()
                self.count += 1
                if not self.loop:
                    self.done.set()
        return on_event


@command("event", "Domain Events")
def _event(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--domain", dest="domain_opt", metavar="DOMAIN", help="filter by domain name, id or uuid")
    p.add_argument("--event", help="which event type to wait for")
    p.add_argument("--all", action="store_true", help="wait for all events instead of just one type")
    p.add_argument("--loop", action="store_true", help="loop until timeout or interrupt, rather than one-shot")
    p.add_argument("--timeout", help="timeout seconds")
    p.add_argument("--list", action="store_true", help="list valid event types")
    p.add_argument("--timestamp", action="store_true", help="show timestamp for each printed event")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        for a, b in (("all", "event"), ("list", "all"), ("list", "event")):
            if getattr(args, a) and getattr(args, b):
                raise CommandError(f"Options --{a} and --{b} are mutually exclusive")
        if args.list:
            print("\n".join(EVENT_NAMES) + "\n")
            return
        if not args.event and not args.all:
            raise CommandError("one of --list, --all, or --event <type> is required")
        ids = [i for i, name in enumerate(EVENT_NAMES) if args.event is None or name == args.event]
        if not ids:
            raise CommandError(f"unknown event type {args.event}")
        timeout = None
        if args.timeout is not None:
            timeout = int(args.timeout) if args.timeout.isdigit() else 0
            if timeout <= 0:
                raise CommandError(f"Numeric value '{args.timeout}' for <timeout> option is malformed or out of range")
        args.domain = None
        dom = lookup(conn, args) if args.domain_opt else None
        printer = _Printer(args.loop, args.timestamp)
        registered: list[int] = []
        try:
            for n, event_id in enumerate(ids):
                try:
                    registered.append(conn.domainEventRegisterAny(dom, event_id, printer.callback(event_id), None))
                except libvirtError:
                    if n == 0:      # as virsh: later ids may be unknown to an older server
                        raise
            # virsh catches ^C for its loop even when started with SIGINT ignored (a shell's
            # background job): without this, only a harder signal would end the loop
            import signal
            ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            if ignored:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                finished = printer.done.wait(timeout)
                if not finished:
                    print("event loop timed out")
            except KeyboardInterrupt:
                print("event loop interrupted")
            finally:
                if ignored:
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
        finally:
            for callback_id in registered:
                try:
                    conn.domainEventDeregisterAny(callback_id)
                except libvirtError:
                    pass
        if not printer.count:
            print(f"events received: {printer.count}")
            raise CommandError("")     # virsh fails quietly when nothing came (main adds the blank line)
        print(f"events received: {printer.count}\n")
    return run
