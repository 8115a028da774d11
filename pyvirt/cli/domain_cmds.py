"""Domain commands: list, dominfo, domstate, define, undefine, start, create,
destroy, suspend, resume, shutdown, dumpxml — with virsh's output."""

from __future__ import annotations

import argparse
import re

import pyvirt
from pyvirt.enums import DomainState, ListDomainsFlags
from pyvirt.errors import ErrorNumber, libvirtError

from .registry import CommandError, Handler, command
from .output import print_fields, print_table

# virsh's own words for states and reasons (they differ from the status-XML names).
STATE_WORDS = {
    DomainState.NOSTATE: "no state", DomainState.RUNNING: "running", DomainState.BLOCKED: "idle",
    DomainState.PAUSED: "paused", DomainState.SHUTDOWN: "in shutdown", DomainState.SHUTOFF: "shut off",
    DomainState.CRASHED: "crashed", DomainState.PMSUSPENDED: "pmsuspended",
}
REASON_WORDS: dict[DomainState, tuple[str, ...]] = {
    DomainState.RUNNING: ("unknown", "booted", "migrated", "restored", "from snapshot", "unpaused",
                          "migration canceled", "save canceled", "event wakeup", "crashed",
                          "post-copy", "post-copy failed"),
    DomainState.PAUSED: ("unknown", "user", "migrating", "saving", "dumping", "I/O error", "watchdog",
                         "from snapshot", "shutting down", "creating snapshot", "crashed",
                         "starting up", "post-copy", "post-copy failed"),
    DomainState.SHUTDOWN: ("unknown", "user"),
    DomainState.SHUTOFF: ("unknown", "shutdown", "destroyed", "crashed", "migrated", "saved",
                          "failed", "from snapshot", "daemon"),
    DomainState.CRASHED: ("unknown", "panicked"),
}
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def state_word(state: int) -> str:
    return STATE_WORDS.get(DomainState(state), "no state")


def reason_word(state: int, reason: int) -> str:
    words = REASON_WORDS.get(DomainState(state), ("unknown",))
    return words[reason] if 0 <= reason < len(words) else "unknown"


def add_domain_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("domain", nargs="?", metavar="DOMAIN", help="domain name, id or uuid")
    parser.add_argument("--domain", dest="domain_opt", metavar="DOMAIN", help=argparse.SUPPRESS)
    parser.set_defaults(needs_domain=True)     # checked as the line is parsed (Session.parse)


def lookup(conn: pyvirt.virConnect, args: argparse.Namespace) -> pyvirt.virDomain:
    """virsh's rule: a number is tried as an id, a UUID as a UUID, then the name."""
    name = args.domain_opt or args.domain
    if not name:
        raise CommandError("command requires a domain argument (--domain)")
    tries = []
    if name.isdigit():
        tries.append(lambda: conn.lookupByID(int(name)))
    if _UUID_RE.match(name):
        tries.append(lambda: conn.lookupByUUIDString(name))
    tries.append(lambda: conn.lookupByName(name))
    for attempt in tries:
        try:
            return attempt()
        except libvirtError as exc:
            if exc.get_error_code() != ErrorNumber.NO_DOMAIN:
                raise
    raise CommandError(f"failed to get domain '{name}'")


def read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise CommandError(f"Failed to open file '{path}': {exc.strerror}") from None


def _failed(what: str, exc: libvirtError) -> CommandError:
    err = CommandError(what)
    err.__cause__ = exc
    return err


@command("list", "list domains")
def _list(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--all", action="store_true", help="list inactive & active domains")
    p.add_argument("--inactive", action="store_true", help="list inactive domains")
    p.add_argument("--name", action="store_true", help="list domain names only")
    p.add_argument("--uuid", action="store_true", help="list uuid's only")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        # the enum, not pyvirt.VIR_*: the first VIR_ name makes every constant (start-up time)
        flags = int(ListDomainsFlags.ACTIVE)
        if args.all:
            flags |= ListDomainsFlags.INACTIVE
        elif args.inactive:
            flags = int(ListDomainsFlags.INACTIVE)
        doms = conn.listAllDomains(flags)
        # virsh lists running domains by id, then inactive ones by name.
        doms.sort(key=lambda d: (d.ID() < 0, d.ID() if d.ID() >= 0 else 0, d.name()))
        if args.name or args.uuid:
            for d in doms:
                print(d.name() if args.name else d.UUIDString())
            print()
            return
        rows = []
        for d in doms:
            state = d.state()[0]
            rows.append([str(d.ID()) if d.ID() >= 0 else "-", d.name(), state_word(state)])
        print_table(["Id", "Name", "State"], rows)
    return run


@command("dominfo", "domain information")
def _dominfo(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        state, max_mem, mem, vcpus, cpu_time = dom.info()
        fields = [("Id", str(dom.ID()) if dom.ID() >= 0 else "-"), ("Name", dom.name()),
                  ("UUID", dom.UUIDString()), ("OS Type", dom.OSType()), ("State", state_word(state))]
        if dom.ID() >= 0 or vcpus:
            fields.append(("CPU(s)", str(vcpus)))
        if cpu_time:        # virsh prints any CPU time the driver gives (the test driver's, even shut off)
            fields.append(("CPU time", f"{cpu_time / 1e9:.1f}s"))
        fields += [("Max memory", f"{max_mem} KiB"), ("Used memory", f"{mem} KiB"),
                   ("Persistent", "yes" if dom.isPersistent() else "no")]
        fields.append(("Autostart", "enable" if dom.autostart() else "disable"))
        try:
            managed = "yes" if dom.hasManagedSaveImage() else "no"
        except libvirtError:
            managed = "unknown"
        fields.append(("Managed save", managed))
        # virsh adds the host's security model, and the domain's label when it has one
        try:
            model, doi = conn.getSecurityModel()
        except libvirtError:
            model = doi = ""
        if model:
            fields += [("Security model", model), ("Security DOI", doi)]
            try:
                label, enforcing = dom.securityLabel()
            except libvirtError:
                label, enforcing = "", False
            if label:
                fields.append(("Security label", f"{label} ({'enforcing' if enforcing else 'permissive'})"))
        print_fields(fields)
    return run


@command("domstate", "domain state")
def _domstate(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--reason", action="store_true", help="also print reason for the state")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        state, reason = lookup(conn, args).state()
        if args.reason:
            print(f"{state_word(state)} ({reason_word(state, reason)})")
        else:
            print(state_word(state))
        print()
    return run


@command("define", "define (but don't start) a domain from an XML file")
def _define(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("file", metavar="FILE")
    p.add_argument("--validate", action="store_true", help="validate the XML against the schema")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        xml = read_file(args.file)
        try:
            dom = conn.defineXMLFlags(xml, 1) if args.validate else conn.defineXML(xml)
        except libvirtError as exc:
            raise _failed(f"Failed to define domain from {args.file}", exc)
        print(f"Domain '{dom.name()}' defined from {args.file}\n")
    return run


@command("undefine", "undefine a domain")
def _undefine(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--managed-save", action="store_true", help="remove domain managed state file")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        flags = pyvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE if args.managed_save else 0
        try:
            dom.undefineFlags(flags) if flags else dom.undefine()
        except libvirtError as exc:
            raise _failed(f"Failed to undefine domain '{dom.name()}'", exc)
        print(f"Domain '{dom.name()}' has been undefined\n")
    return run


def _start_flags(args: argparse.Namespace) -> int:
    flags = 0
    if args.paused:
        flags |= pyvirt.VIR_DOMAIN_START_PAUSED
    if args.autodestroy:
        flags |= pyvirt.VIR_DOMAIN_START_AUTODESTROY
    return flags


@command("start", "start a (previously defined) inactive domain")
def _start(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--paused", action="store_true", help="leave the guest paused after start")
    p.add_argument("--autodestroy", action="store_true", help="automatically destroy the guest when virsh disconnects")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        if dom.ID() >= 0:
            raise CommandError("Domain is already active")
        try:
            dom.createWithFlags(_start_flags(args))
        except libvirtError as exc:
            raise _failed(f"Failed to start domain '{dom.name()}'", exc)
        print(f"Domain '{dom.name()}' started\n")
    return run


@command("create", "create a domain from an XML file")
def _create(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("file", metavar="FILE")
    p.add_argument("--paused", action="store_true", help="leave the guest paused after creation")
    p.add_argument("--autodestroy", action="store_true", help="automatically destroy the guest when virsh disconnects")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        xml = read_file(args.file)
        try:
            dom = conn.createXML(xml, _start_flags(args))
        except libvirtError as exc:
            raise _failed(f"Failed to create domain from {args.file}", exc)
        print(f"Domain '{dom.name()}' created from {args.file}\n")
    return run


def _simple(name: str, help_text: str, act: str, done: str) -> None:
    """Commands that look a domain up, call one method and print one line."""
    @command(name, help_text)
    def setup(p: argparse.ArgumentParser) -> Handler:
        add_domain_arg(p)

        def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
            dom = lookup(conn, args)
            try:
                getattr(dom, act)()
            except libvirtError as exc:
                raise _failed(f"Failed to {name} domain '{dom.name()}'", exc)
            print(f"Domain '{dom.name()}' {done}\n")
        return run


_simple("destroy", "destroy (stop) a domain", "destroy", "destroyed")
_simple("suspend", "suspend a domain", "suspend", "suspended")
_simple("resume", "resume a domain", "resume", "resumed")
# shutdown and reboot (with --mode): lifecycle_cmds


@command("dumpxml", "domain information in XML")
def _dumpxml(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--inactive", action="store_true", help="show inactive defined XML")
    p.add_argument("--security-info", action="store_true", help="include security sensitive information in XML dump")
    p.add_argument("--migratable", action="store_true", help="provide XML suitable for migrations")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        flags = 0
        if args.inactive:
            flags |= pyvirt.VIR_DOMAIN_XML_INACTIVE
        if args.security_info:
            flags |= pyvirt.VIR_DOMAIN_XML_SECURE
        if args.migratable:
            flags |= pyvirt.VIR_DOMAIN_XML_MIGRATABLE
        print(lookup(conn, args).XMLDesc(flags))
    return run


@command("domid", "convert a domain name or UUID to domain id")
def _domid(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        print(f"{dom.ID() if dom.ID() >= 0 else '-'}\n")
    return run


@command("domuuid", "convert a domain name or id to domain UUID")
def _domuuid(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        print(f"{lookup(conn, args).UUIDString()}\n")
    return run


@command("autostart", "autostart a domain")
def _autostart(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--disable", action="store_true", help="disable autostarting")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        dom.setAutostart(0 if args.disable else 1)
        verb = "unmarked as autostarted" if args.disable else "marked as autostarted"
        print(f"Domain '{dom.name()}' {verb}\n")
    return run
