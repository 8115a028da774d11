"""Block job commands: blockcopy, blockcommit, blockpull, blockjob — with virsh's options,
messages and progress lines ("Block Copy: [ 42 %]" on stderr)."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import pyvirt
from pyvirt.errors import libvirtError

from .domain_cmds import add_domain_arg, lookup, read_file
from .registry import CommandError, Handler, command

JOB_NAMES = {0: "Unknown job", 1: "Block Pull", 2: "Block Copy", 3: "Block Commit", 4: "Active Block Commit",
             5: "Backup"}
COMPLETED, FAILED, CANCELED, READY = 0, 1, 2, 3
_POLL = 0.5           # how often --verbose refreshes the progress line (the end comes as an event)


def progress_line(label: str, remaining: int, total: int) -> str:
    """virsh's virshPrintJobProgress."""
    if remaining == 0:
        pct = 100
    else:
        pct = min(int(100.0 - remaining * 100.0 / total), 99) if total else 0
    return f"\r{label}: [{pct:3d} %]"


def _fail(exc: libvirtError) -> CommandError:
    return CommandError(exc.get_error_message())


def _add_path(p: argparse.ArgumentParser) -> None:
    add_domain_arg(p)
    p.add_argument("path", metavar="PATH", help="fully-qualified path of disk")


def _add_wait(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--wait", action="store_true", help=f"wait for job to complete{what}")
    p.add_argument("--verbose", action="store_true", help="with --wait, display the progress")
    p.add_argument("--timeout", type=int, default=0, metavar="SECONDS",
                   help="implies --wait, abort if copy exceeds timeout (in seconds)")
    p.add_argument("--async", dest="async_", action="store_true",
                   help="with --wait, don't wait for cancel to finish")


def _bandwidth(args: argparse.Namespace) -> int:
    return args.bandwidth or 0


def wait_job(conn: pyvirt.virConnect, dom: pyvirt.virDomain, path: str, label: str, verbose: bool,
             timeout: int, async_abort: bool) -> int:
    """virsh's virshBlockJobWait: until the job's event (READY for a mirror, the end
    otherwise); the status it ended with (CANCELED after a --timeout abort)."""
    status: list[int] = []
    arrived = threading.Event()
    names = {path}

    def on_job(_c: Any, _d: Any, disk: str, _type: int, st: int, _o: Any) -> None:
        if disk in names:
            status.append(st)
            arrived.set()
    cb = conn.domainEventRegisterAny(dom, pyvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, on_job, None)
    cb_path = conn.domainEventRegisterAny(dom, pyvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB, on_job, None)
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while True:
            info = dom.blockJobInfo(path, 0)
            if verbose and info:
                print(progress_line(label, info["end"] - info["cur"], info["end"]), end="", file=sys.stderr,
                      flush=True)
            if status:
                break
            if not info:              # gone before we listened: it ended well
                status.append(COMPLETED)
                break
            if info["type"] in (2, 4) and 0 < info["end"] == info["cur"]:
                status.append(READY)  # virsh's fallback: a mirror reports cur == end only once ready
                break
            if deadline is not None and time.monotonic() > deadline:
                dom.blockJobAbort(path, pyvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC if async_abort else 0)
                status.append(CANCELED)
                break
            arrived.wait(_POLL)
    finally:
        conn.domainEventDeregisterAny(cb)
        conn.domainEventDeregisterAny(cb_path)
    if verbose and status[0] in (COMPLETED, READY):
        print(progress_line(label, 0, 1), end="", file=sys.stderr, flush=True)
    return status[0]


def _ended_badly(st: int, what: str) -> None:
    if st == FAILED:
        print()
        raise CommandError(f"{what} failed")
    if st == CANCELED:
        print()
        raise CommandError(f"{what} aborted")


@command("blockcopy", "Start a block copy operation.")
def _blockcopy(p: argparse.ArgumentParser) -> Handler:
    _add_path(p)
    p.add_argument("dest", nargs="?", metavar="DEST", help=argparse.SUPPRESS)
    p.add_argument("--dest", dest="dest_opt", metavar="DEST", help="path of the copy to create")
    p.add_argument("--bandwidth", type=int, default=0, metavar="MiB", help="bandwidth limit in MiB/s")
    p.add_argument("--shallow", action="store_true", help="make the copy share a backing chain")
    p.add_argument("--reuse-external", action="store_true", help="reuse existing destination")
    p.add_argument("--raw", action="store_true", help="use raw destination file")
    p.add_argument("--blockdev", action="store_true", help="copy destination is block device instead of regular file")
    p.add_argument("--pivot", action="store_true", help="with --wait, pivot when mirroring starts")
    p.add_argument("--finish", action="store_true", help="with --wait, quit when mirroring starts")
    _add_wait(p, ", or with --pivot or --finish, pivot or finish when mirroring starts")
    p.add_argument("--xml", metavar="FILE", help="filename containing XML description of the copy destination")
    p.add_argument("--format", metavar="FORMAT", help="format of the destination file")
    p.add_argument("--granularity", type=int, default=0, metavar="BYTES", help="power-of-two granularity to use during the copy")
    p.add_argument("--buf-size", type=int, default=0, metavar="BYTES", help="maximum amount of in-flight data during the copy")
    p.add_argument("--bytes", action="store_true", help="the bandwidth limit is in bytes/s rather than MiB/s")
    p.add_argument("--transient-job", action="store_true", help="the copy job is not persisted if VM is turned off")
    p.add_argument("--synchronous-writes", action="store_true", help="the copy job forces guest writes to be synchronously written to the destination")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dest = args.dest_opt or args.dest
        if bool(dest) == bool(args.xml):
            raise CommandError("Exactly one of --dest or --xml is required" if not dest and not args.xml
                               else "Options --dest and --xml are mutually exclusive")
        if args.pivot and args.finish:
            raise CommandError("Options --pivot and --finish are mutually exclusive")
        if args.raw and args.format and args.format != "raw":
            raise CommandError("Options --raw and --format are mutually exclusive")
        dom = lookup(conn, args)
        fmt = "raw" if args.raw else args.format
        blocking = args.wait or args.pivot or args.finish or args.timeout
        flags = ((pyvirt.VIR_DOMAIN_BLOCK_COPY_SHALLOW if args.shallow else 0)
                 | (pyvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT if args.reuse_external else 0)
                 | (pyvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB if args.transient_job else 0)
                 | (pyvirt.VIR_DOMAIN_BLOCK_COPY_SYNCHRONOUS_WRITES if args.synchronous_writes else 0))
        if args.xml:
            xml = read_file(args.xml)
        else:
            kind, attr = ("block", "dev") if args.blockdev else ("file", "file")
            driver = f"<driver type='{fmt}'/>" if fmt else ""
            xml = f"<disk type='{kind}'>{driver}<source {attr}='{dest}'/></disk>"
        params: dict[str, int] = {}
        if args.bandwidth:
            params["bandwidth"] = args.bandwidth if args.bytes else args.bandwidth << 20
        if args.granularity:
            params["granularity"] = args.granularity
        if args.buf_size:
            params["buf-size"] = args.buf_size
        try:
            dom.blockCopy(args.path, xml, params, flags)
            if not blocking:
                print("Block Copy started")
                return
            st = wait_job(conn, dom, args.path, "Block Copy", args.verbose, args.timeout, args.async_)
            _ended_badly(st, "Copy")
            if args.pivot:
                dom.blockJobAbort(args.path, pyvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                print("\nSuccessfully pivoted")
            elif args.finish:
                dom.blockJobAbort(args.path, 0)
                print("\nSuccessfully copied")
            else:
                print("\nNow in mirroring phase")
        except libvirtError as exc:
            raise _fail(exc) from None
    return run


@command("blockcommit", "Start a block commit operation.")
def _blockcommit(p: argparse.ArgumentParser) -> Handler:
    _add_path(p)
    p.add_argument("--bandwidth", type=int, default=0, metavar="MiB", help="bandwidth limit in MiB/s")
    p.add_argument("--base", help="path of base file to commit into (default bottom of chain)")
    p.add_argument("--shallow", action="store_true", help="use backing file of top as base")
    p.add_argument("--top", help="path of top file to commit from (default top of chain)")
    p.add_argument("--active", action="store_true", help="trigger two-stage active commit of top file")
    p.add_argument("--delete", action="store_true", help="delete files that were successfully committed")
    p.add_argument("--pivot", action="store_true", help="implies --active --wait, pivot when commit is synced")
    p.add_argument("--keep-overlay", action="store_true",
                   help="implies --active --wait, quit when commit is synced")
    _add_wait(p, " (with --active, wait for job to sync)")
    p.add_argument("--keep-relative", action="store_true", help="keep the backing chain relatively referenced")
    p.add_argument("--bytes", action="store_true", help="the bandwidth limit is in bytes/s rather than MiB/s")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        if args.pivot and args.keep_overlay:
            raise CommandError("Options --pivot and --keep-overlay are mutually exclusive")
        dom = lookup(conn, args)
        active = args.active or args.pivot or args.keep_overlay
        blocking = args.wait or args.pivot or args.keep_overlay or args.timeout
        flags = ((pyvirt.VIR_DOMAIN_BLOCK_COMMIT_SHALLOW if args.shallow else 0)
                 | (pyvirt.VIR_DOMAIN_BLOCK_COMMIT_DELETE if args.delete else 0)
                 | (pyvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE if active else 0)
                 | (pyvirt.VIR_DOMAIN_BLOCK_COMMIT_RELATIVE if args.keep_relative else 0)
                 | (pyvirt.VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES if args.bytes else 0))
        try:
            dom.blockCommit(args.path, args.base, args.top, _bandwidth(args), flags)
            if not blocking:
                print("Active Block Commit started" if active else "Block Commit started")
                return
            label = "Active Block Commit" if active else "Block Commit"
            st = wait_job(conn, dom, args.path, label, args.verbose, args.timeout, args.async_)
            _ended_badly(st, "Commit")
            if not active:
                print("\nCommit complete")
            elif args.pivot:
                dom.blockJobAbort(args.path, pyvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                print("\nSuccessfully pivoted")
            elif args.keep_overlay:
                dom.blockJobAbort(args.path, 0)
                print("\nCommit complete, overlay image kept")
            else:
                print("\nNow in synchronized phase")
        except libvirtError as exc:
            raise _fail(exc) from None
    return run


@command("blockpull", "Populate a disk from its backing image.")
def _blockpull(p: argparse.ArgumentParser) -> Handler:
    _add_path(p)
    p.add_argument("--bandwidth", type=int, default=0, metavar="MiB", help="bandwidth limit in MiB/s")
    p.add_argument("--base", help="path of backing file in chain for a partial pull")
    _add_wait(p, "")
    p.add_argument("--keep-relative", action="store_true", help="keep the backing chain relatively referenced")
    p.add_argument("--bytes", action="store_true", help="the bandwidth limit is in bytes/s rather than MiB/s")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        try:
            if args.base or args.keep_relative:
                flags = ((pyvirt.VIR_DOMAIN_BLOCK_REBASE_RELATIVE if args.keep_relative else 0)
                         | (pyvirt.VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES if args.bytes else 0))
                dom.blockRebase(args.path, args.base, _bandwidth(args), flags)
            else:
                dom.blockPull(args.path, _bandwidth(args),
                              pyvirt.VIR_DOMAIN_BLOCK_PULL_BANDWIDTH_BYTES if args.bytes else 0)
            if not (args.wait or args.timeout):
                print("Block Pull started")
                return
            st = wait_job(conn, dom, args.path, "Block Pull", args.verbose, args.timeout, args.async_)
            _ended_badly(st, "Pull")
            print("\nPull complete")
        except libvirtError as exc:
            raise _fail(exc) from None
    return run


@command("blockjob", "Manage active block operations")
def _blockjob(p: argparse.ArgumentParser) -> Handler:
    _add_path(p)
    p.add_argument("--abort", action="store_true", help="abort the active job on the specified disk")
    p.add_argument("--async", dest="async_", action="store_true", help="implies --abort; request but don't wait for job end")
    p.add_argument("--pivot", action="store_true", help="implies --abort; conclude and pivot a copy or commit job")
    p.add_argument("--info", action="store_true", help="get active job information for the specified disk")
    p.add_argument("--bytes", action="store_true", help="get/set bandwidth in bytes rather than MiB/s")
    p.add_argument("--raw", action="store_true", help="implies --info; output details rather than human summary")
    p.add_argument("--bandwidth", type=int, default=None, metavar="MiB", help="set the bandwidth limit in MiB/s")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        abort = args.abort or args.async_ or args.pivot
        info = args.info or args.raw
        if sum(map(bool, (abort, info, args.bandwidth is not None))) > 1:
            raise CommandError("conflict in --abort, --info, and --bandwidth modes")
        dom = lookup(conn, args)
        try:
            if abort:
                flags = ((pyvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC if args.async_ else 0)
                         | (pyvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT if args.pivot else 0))
                dom.blockJobAbort(args.path, flags)
                print()
            elif args.bandwidth is not None:
                dom.blockJobSetSpeed(args.path, args.bandwidth,
                                     pyvirt.VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES if args.bytes else 0)
                print()           # virsh ends every blockjob mode with a newline
            else:
                _print_info(dom, args)
        except libvirtError as exc:
            raise _fail(exc) from None
    return run


def _print_info(dom: pyvirt.virDomain, args: argparse.Namespace) -> None:
    """virsh's virshBlockJobInfo: the progress line, and the bandwidth when one is set."""
    flags = pyvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES
    info = dom.blockJobInfo(args.path, flags)
    if not info:
        if not args.raw:
            print(f"No current block job for {args.path}")
        return
    speed = info["bandwidth"]
    if args.raw:
        print(f" type={JOB_NAMES.get(info['type'], 'Unknown job')}\n bandwidth={speed if args.bytes else speed >> 20}"
              f"\n cur={info['cur']}\n end={info['end']}\n")
        return
    print(progress_line(JOB_NAMES.get(info["type"], "Unknown job"), info["end"] - info["cur"], info["end"]),
          end="", file=sys.stderr, flush=True)
    if speed:
        value, unit = speed, "B"
        for next_unit in ("KiB", "MiB", "GiB", "TiB"):
            if value < 1024:
                break
            value /= 1024
            unit = next_unit
        print(f"    Bandwidth limit: {speed} bytes/s ({value:<.3f} {unit}/s)", end="")
    print()
