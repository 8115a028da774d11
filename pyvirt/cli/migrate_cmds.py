"""Migration and job commands: migrate, domjobinfo, domjobabort, migrate-setspeed,
migrate-getspeed, migrate-setmaxdowntime, migrate-getmaxdowntime, migrate-postcopy."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable

import pyvirt
from pyvirt.errors import libvirtError

from .domain_cmds import add_domain_arg, lookup, read_file
from .output import print_fields
from .registry import CommandError, Handler, command

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any

JOB_TYPES = {0: "None", 1: "Bounded", 2: "Unbounded", 3: "Completed", 4: "Failed", 5: "Cancelled"}
OPERATIONS = {0: "Unknown", 1: "Start", 2: "Save", 3: "Restore", 4: "Incoming migration",
              5: "Outgoing migration", 6: "Snapshot", 7: "Snapshot revert", 8: "Dump", 9: "Backup"}
MIB = 1 << 20


def _flags(args: argparse.Namespace) -> int:
    table = (("live", pyvirt.VIR_MIGRATE_LIVE), ("p2p", pyvirt.VIR_MIGRATE_PEER2PEER),
             ("tunnelled", pyvirt.VIR_MIGRATE_TUNNELLED), ("persistent", pyvirt.VIR_MIGRATE_PERSIST_DEST),
             ("undefinesource", pyvirt.VIR_MIGRATE_UNDEFINE_SOURCE), ("suspend", pyvirt.VIR_MIGRATE_PAUSED),
             ("auto_converge", pyvirt.VIR_MIGRATE_AUTO_CONVERGE), ("abort_on_error", pyvirt.VIR_MIGRATE_ABORT_ON_ERROR),
             ("unsafe", pyvirt.VIR_MIGRATE_UNSAFE), ("tls", pyvirt.VIR_MIGRATE_TLS),
             ("copy_storage_all", pyvirt.VIR_MIGRATE_NON_SHARED_DISK),
             ("copy_storage_inc", pyvirt.VIR_MIGRATE_NON_SHARED_INC),
             ("copy_storage_synchronous_writes", pyvirt.VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES),
             ("compressed", pyvirt.VIR_MIGRATE_COMPRESSED), ("postcopy", pyvirt.VIR_MIGRATE_POSTCOPY),
             ("zerocopy", pyvirt.VIR_MIGRATE_ZEROCOPY), ("parallel", pyvirt.VIR_MIGRATE_PARALLEL))
    return sum(flag for name, flag in table if getattr(args, name))


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.xml:
        params["destination_xml"] = read_file(args.xml)
    if args.persistent_xml:
        params["persistent_xml"] = read_file(args.persistent_xml)
    if args.dname:
        params["destination_name"] = args.dname
    if args.migrateuri:
        params["migrate_uri"] = args.migrateuri
    if args.listen_address:
        params["listen_address"] = args.listen_address
    if args.bandwidth:
        params["bandwidth"] = args.bandwidth
    if args.tls_destination:
        params["tls.destination"] = args.tls_destination
    if args.migrate_disks:
        params["migrate_disks"] = [d for d in args.migrate_disks.split(",") if d]
    if args.disks_port:
        params["disks_port"] = args.disks_port
    if args.disks_uri:
        params["disks_uri"] = args.disks_uri
    _convergence_params(args, params)
    return params


def _convergence_params(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """virsh's names for the convergence tools' typed parameters (virsh sends only those given)."""
    if args.comp_methods:
        params["compression"] = [m for m in args.comp_methods.split(",") if m]
    for option, name in (("comp_mt_level", "compression.mt.level"), ("comp_mt_threads", "compression.mt.threads"),
                         ("comp_mt_dthreads", "compression.mt.dthreads"),
                         ("comp_xbzrle_cache", "compression.xbzrle.cache"),
                         ("auto_converge_initial", "auto_converge.initial"),
                         ("auto_converge_increment", "auto_converge.increment"),
                         ("postcopy_bandwidth", "bandwidth.postcopy"),
                         ("parallel_connections", "parallel.connections")):
        if getattr(args, option) is not None:
            params[name] = getattr(args, option)
    if args.converge:
        params["pyvirt.converge"] = 1      # pyvirt's policy (pyvirtd only; libvirtd refuses the name)


class Progress:
    """Migration progress from the source's job statistics: a rich bar on a
    terminal, virsh's "Migration: [ NN %]" lines otherwise."""

    def __init__(self, label: str = "Migration") -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self._bar: Any = None

    def __enter__(self) -> "Progress":
        if self.tty:
            from rich.progress import (BarColumn, Progress as Bar, TaskProgressColumn, TextColumn,
                                       TimeRemainingColumn, TransferSpeedColumn)
            self._bar = Bar(TextColumn(self.label), BarColumn(), TaskProgressColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=100)
            self._parts: dict[str, Any] = {}
        return self

    def _part(self, name: str, total: int, done: int) -> None:
        """Disk and memory as bars of their own (a storage-copying migration)."""
        if name not in self._parts:
            self._parts[name] = self._bar.add_task(f"  {name}", total=total)
        self._bar.update(self._parts[name], total=total, completed=done)

    def update(self, stats: dict[str, Any]) -> None:
        total, remaining = stats.get("data_total", 0), stats.get("data_remaining", 0)
        if not total:
            return
        done = total - remaining
        if self._bar is not None:
            self._bar.update(self._task, total=total, completed=done)
            if stats.get("disk_total"):
                for part in ("disk", "memory"):
                    part_total = stats.get(f"{part}_total", 0)
                    if part_total:
                        self._part(part.capitalize(), part_total, part_total - stats.get(f"{part}_remaining", 0))
        else:
            print(f"\r{self.label}: [{int(done * 100 / total):3d} %]", end="", file=sys.stderr, flush=True)

    def finish(self, ok: bool) -> None:
        if self._bar is not None:
            if ok:
                task = self._bar.tasks[0]
                self._bar.update(self._task, completed=task.total or 100)
            self._bar.__exit__(None, None, None)
        elif ok:
            print(f"\r{self.label}: [100 %]", file=sys.stderr)
        else:
            print(file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        pass


def run_with_progress(dom: pyvirt.virDomain, work: Callable[[], Any], verbose: bool, label: str,
                      watch: "Callable[[dict[str, Any]], None] | None" = None) -> Any:
    """Run ``work`` (a long job on ``dom``) in a thread, showing its progress;
    ``watch`` sees every statistics snapshot (post-copy switch, policy decisions)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    started = time.perf_counter()
    thread.start()
    progress = Progress(label).__enter__() if verbose else None
    try:
        while thread.is_alive():
            thread.join(0.3)
            if (progress is not None or watch is not None) and thread.is_alive():
                try:
                    stats = dom.jobStats()
                except libvirtError:
                    continue
                if progress is not None:
                    progress.update(stats)
                if watch is not None:
                    watch(stats)
    finally:
        if progress is not None:
            progress.finish("error" not in result)
    if "error" in result:
        raise result["error"]
    result["seconds"] = time.perf_counter() - started
    return result


@command("migrate", "migrate domain to another host")
def _migrate(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("desturi", metavar="DESTURI", help="connection URI of the destination host")
    for name, help_text in (("live", "live migration"), ("p2p", "peer-2-peer migration"),
                            ("tunnelled", "tunnelled migration"), ("persistent", "persist VM on destination"),
                            ("undefinesource", "undefine VM on source"), ("suspend", "do not restart the domain on the destination host"),
                            ("auto-converge", "force convergence during live migration"),
                            ("abort-on-error", "abort on soft errors during migration"),
                            ("unsafe", "force migration even if it may be unsafe"),
                            ("tls", "use TLS for migration"),
                            ("copy-storage-all", "migration with non-shared storage with full disk copy"),
                            ("copy-storage-inc", "migration with non-shared storage with incremental copy "
                                                 "(same base image shared between source and destination)"),
                            ("copy-storage-synchronous-writes",
                             "force guest disk writes to be synchronously written to the destination "
                             "to improve storage migration convergence"),
                            ("verbose", "display the progress of migration"),
                            ("compressed", "compress repeated pages during live migration"),
                            ("postcopy", "enable post-copy migration; switch to it using migrate-postcopy command"),
                            ("postcopy-after-precopy",
                             "automatically switch to post-copy migration after one pass of pre-copy"),
                            ("zerocopy", "use zero-copy mechanism for migrating memory pages"),
                            ("parallel", "enable parallel migration"),
                            ("converge", "let pyvirtd's convergence policy finish the migration (raise the "
                                         "downtime, throttle, switch to post-copy if --postcopy, or abort "
                                         "within its bound)")):
        p.add_argument(f"--{name}", action="store_true", help=help_text)
    p.add_argument("--xml", metavar="FILE", help="domain XML to use on the destination (ABI-compatible)")
    p.add_argument("--persistent-xml", metavar="FILE", help="inactive XML to persist on the destination")
    p.add_argument("--dname", help="rename to new name during migration")
    p.add_argument("--migrateuri", metavar="URI", help="migration URI (tcp:HOST:PORT)")
    p.add_argument("--listen-address", help="address the destination listens on for the migration stream")
    p.add_argument("--bandwidth", type=int, default=0, metavar="MiB", help="migration bandwidth limit in MiB/s")
    p.add_argument("--tls-destination", metavar="HOST",
                   help="override the destination host name used for TLS verification")
    p.add_argument("--timing", action="store_true", help="print how long the migration took")
    p.add_argument("--migrate-disks", metavar="DISKS", help="comma separated list of disks to be migrated")
    p.add_argument("--disks-port", type=int, default=0, metavar="PORT",
                   help="port to use by target server for incoming disks migration")
    p.add_argument("--disks-uri", metavar="URI", help="URI to use for disks migration (overrides --disks-port)")
    for name, help_text in (("comp-methods", "comma separated list of compression methods to be used"),):
        p.add_argument(f"--{name}", metavar="METHODS", help=help_text)
    for name, help_text in (("comp-mt-level", "compress level for multithread compression"),
                            ("comp-mt-threads", "number of compression threads for multithread compression"),
                            ("comp-mt-dthreads", "number of decompression threads for multithread compression"),
                            ("comp-xbzrle-cache", "page cache size for xbzrle compression"),
                            ("auto-converge-initial", "initial CPU throttling rate for auto-convergence"),
                            ("auto-converge-increment", "CPU throttling rate increment for auto-convergence"),
                            ("postcopy-bandwidth", "post-copy migration bandwidth limit in MiB/s"),
                            ("parallel-connections", "number of connections for parallel migration")):
        p.add_argument(f"--{name}", type=int, default=None, metavar="N", help=help_text)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        if args.postcopy_after_precopy and not args.postcopy:
            raise CommandError("Option --postcopy is required by option --postcopy-after-precopy")
        dom = lookup(conn, args)
        flags, params = _flags(args), _params(args)
        if flags & pyvirt.VIR_MIGRATE_PEER2PEER:
            def work() -> Any:
                return dom.migrateToURI3(args.desturi, params, flags)
            dconn = None
        else:
            # as virsh: credentials from auth.conf or the terminal, and only the library's error
            from pyvirt.authconf import TERMINAL_AUTH
            try:
                dconn = pyvirt.openAuth(args.desturi, TERMINAL_AUTH, 0)
            except libvirtError as exc:
                raise CommandError(exc.get_error_message()) from None

            def work() -> Any:
                return dom.migrate3(dconn, params, flags)
        try:
            result = run_with_progress(dom, work, args.verbose, "Migration",
                                       _Watcher(dom, args.postcopy_after_precopy, args.verbose))
        except libvirtError as exc:
            raise CommandError(exc.get_error_message()) from None
        finally:
            if dconn is not None:
                dconn.close()
        if args.timing:
            print(f"Migration took {result['seconds'] * 1000:.0f} ms")
        print()
    return run


class _Watcher:
    """Client-side duties while a migration runs: switch to post-copy after the
    first pass (virsh's --postcopy-after-precopy), show the policy's decisions."""

    def __init__(self, dom: pyvirt.virDomain, postcopy_after_precopy: bool, verbose: bool) -> None:
        self.dom, self.switch, self.verbose = dom, postcopy_after_precopy, verbose
        self.last_decision = 0

    def __call__(self, stats: dict[str, Any]) -> None:
        if self.switch and stats.get("memory_iteration", 0) >= 2:
            self.switch = False
            try:
                self.dom.migrateStartPostCopy()
            except libvirtError as exc:
                print(f"error: {exc.get_error_message()}", file=sys.stderr)
        count = stats.get("pyvirt.converge.decisions", 0)
        if self.verbose and count > self.last_decision:
            self.last_decision = count
            print(f"\rconvergence policy: {stats.get('pyvirt.converge.last', '')}", file=sys.stderr)


@command("domjobinfo", "domain job information")
def _domjobinfo(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--completed", action="store_true", help="return statistics of a recently completed job")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        stats = dom.jobStats(1 if args.completed else 0)
        job_type = stats.get("type", 0)
        fields = [("Job type", JOB_TYPES.get(job_type, "Unknown"))]
        if job_type:
            fields.append(("Operation", OPERATIONS.get(stats.get("operation", 0), "Unknown")))
            for key, label, unit, scale in (("time_elapsed", "Time elapsed", "ms", 1),
                                            ("data_processed", "Data processed", "MiB", MIB),
                                            ("data_remaining", "Data remaining", "MiB", MIB),
                                            ("data_total", "Data total", "MiB", MIB),
                                            ("memory_processed", "Memory processed", "MiB", MIB),
                                            ("memory_remaining", "Memory remaining", "MiB", MIB),
                                            ("memory_total", "Memory total", "MiB", MIB),
                                            ("memory_bps", "Memory bandwidth", "MiB/s", MIB),
                                            ("memory_dirty_rate", "Dirty rate", "pages/s", 1),
                                            ("memory_page_size", "Page size", "bytes", 1),
                                            ("memory_iteration", "Iteration", "", 1),
                                            ("memory_constant", "Constant pages", "", 1),
                                            ("memory_normal", "Normal pages", "", 1),
                                            ("memory_normal_bytes", "Normal data", "MiB", MIB),
                                            ("downtime", "Expected downtime", "ms", 1),
                                            ("setup_time", "Setup time", "ms", 1)):
                if key in stats:
                    value = stats[key]
                    text = f"{value / scale:.3f} {unit}" if scale != 1 else f"{value:<12} {unit}".rstrip()
                    fields.append((label, text))
        print_fields(fields, width=18)
    return run


def _domain_call(name: str, help_text: str, method: str, value: tuple[str, str] | None = None,
                 prints: bool = False) -> None:
    """Commands that call one domain method, with at most one integer argument,
    and print its result or nothing (domjobabort, migrate-set/get*)."""
    @command(name, help_text)
    def setup(p: argparse.ArgumentParser) -> Handler:
        add_domain_arg(p)
        if value is not None:
            p.add_argument(value[0], type=int, metavar=value[0].upper(), help=value[1])

        def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
            call = getattr(lookup(conn, args), method)
            result = call(getattr(args, value[0])) if value is not None else call()
            if prints:
                print(f"{result}\n")
        return run


_domain_call("domjobabort", "abort active domain job", "abortJob")
_domain_call("migrate-setspeed", "Set the maximum migration bandwidth", "migrateSetMaxSpeed",
             ("bandwidth", "migration bandwidth limit in MiB/s"))
_domain_call("migrate-getspeed", "Get the maximum migration bandwidth", "migrateGetMaxSpeed", prints=True)
_domain_call("migrate-setmaxdowntime", "set maximum tolerable downtime", "migrateSetMaxDowntime",
             ("downtime", "maximum tolerable downtime (in milliseconds)"))
_domain_call("migrate-getmaxdowntime", "get maximum tolerable downtime", "migrateGetMaxDowntime", prints=True)
_domain_call("migrate-postcopy", "Switch running migration from pre-copy to post-copy", "migrateStartPostCopy")
