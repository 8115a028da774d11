"""``pyvirt``: virsh's commands and options over pyvirt's client API.

Usage: ``pyvirt [-c URI] [-r] [COMMAND [ARGS]]``.  Output follows virsh's
layouts so scripts that parse virsh keep working; errors print as virsh
does (``error: ...``) and exit 1.  Without a command, an interactive shell
(:mod:`pyvirt.cli.shell`).  Commands are registered by the modules in this
package through :func:`pyvirt.cli.registry.command`; only the module of the
command being run is imported (see :mod:`pyvirt.cli.index`), and the client
API itself only once a command needs a connection.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from .registry import CommandError, Formatter, SESSION_COMMANDS, parser_for

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any


def default_uri() -> str:
    return os.environ.get("PYVIRT_DEFAULT_URI") or os.environ.get("LIBVIRT_DEFAULT_URI") or "qemu:///system"


def global_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="pyvirt", description="virsh-compatible management of pyvirt hosts",
                                  epilog="'pyvirt help' lists the commands; without a command, an "
                                         "interactive shell", formatter_class=Formatter)
    top.add_argument("-c", "--connect", metavar="URI", help="hypervisor connection URI")
    top.add_argument("-r", "--readonly", action="store_true", help="connect read-only")
    top.add_argument("-q", "--quiet", action="store_true", help="quiet mode")
    top.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND [ARGS]")
    return top


def split_commands(words: list[str]) -> list[list[str]]:
    """virsh accepts several commands in one argument: ``"define f; start d"``."""
    if len(words) == 1 and (";" in words[0] or " " in words[0].strip()):
        return split_line(words[0])
    return [words]


def split_line(line: str) -> list[list[str]]:
    """One shell line into commands (``;`` separates, shell quoting, ``#`` comments)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    groups: list[list[str]] = [[]]
    for token in lexer:
        if token == ";":
            groups.append([])
        else:
            groups[-1].append(token)
    return [g for g in groups if g]


class RefusedLine(CommandError):
    """A command of the line that does not parse: virsh runs none of the line's commands."""


class UnknownCommand(RefusedLine):
    pass


# Commands that make a few calls one after another and nothing else: a one-shot
# call of these goes over the blocking connection (no event loop, no asyncio:
# start-up time).  Anything with events, streams, descriptors or a progress
# thread beside its call (console, event, migrate, save, ...) keeps the full driver.
BLOCKING_COMMANDS = frozenset({
    "list", "dominfo", "domstate", "domid", "domuuid", "domname", "dumpxml", "define", "undefine",
    "start", "create", "destroy", "suspend", "resume", "shutdown", "reboot", "reset", "autostart",
    "desc", "metadata", "nodeinfo", "version", "uri", "hostname", "capabilities", "sysinfo",
    "domcapabilities", "maxvcpus", "nodememstats", "nodecpustats", "freecell", "cpu-models",
    "domstats", "domblkstat", "domblkinfo", "domifstat", "dommemstat", "vcpuinfo", "cpu-stats",
    "domjobinfo", "domjobabort", "domblklist", "domiflist", "setmem", "setmaxmem", "setvcpus",
    "vcpucount", "managedsave-remove", "migrate-setspeed", "migrate-getspeed",
    "migrate-setmaxdowntime", "migrate-getmaxdowntime", "complete", "help", "top",
    "echo", "pwd", "cd", "quit", "exit",
    "net-list", "net-info", "net-uuid", "net-name", "net-dumpxml", "net-define", "net-create",
    "net-start", "net-destroy", "net-undefine", "net-autostart", "net-edit", "net-dhcp-leases",
    "net-update",
    # storage: everything but the streams (vol-upload, vol-download need the full driver)
    "pool-list", "pool-info", "pool-uuid", "pool-name", "pool-dumpxml", "pool-capabilities", "pool-define-as",
    "pool-create-as", "pool-define", "pool-create", "pool-build", "pool-start", "pool-destroy", "pool-delete",
    "pool-undefine", "pool-refresh", "pool-autostart", "pool-edit", "vol-list", "vol-info", "vol-dumpxml",
    "vol-path", "vol-key", "vol-name", "vol-pool", "vol-create-as", "vol-create", "vol-create-from",
    "vol-clone", "vol-delete", "vol-wipe", "vol-resize", "find-storage-pool-sources",
    "find-storage-pool-sources-as",
})


class Session:
    """The state commands share: the URI, the connection (opened on first
    need, kept across the commands of one call or of a shell), read-only."""

    def __init__(self, uri: str | None, readonly: bool = False, quiet: bool = False,
                 interactive: bool = False) -> None:
        self.uri = uri
        self.readonly = readonly
        self.quiet = quiet
        if quiet:
            from . import output
            output.QUIET = True
        self.interactive = interactive
        self.conn: Any = None
        self.done = False          # quit/exit asked the shell to end
        self.blocking = False      # the next connection may be the blocking one
        self.connect_failed = False

    @property
    def resolved_uri(self) -> str:
        return self.uri or default_uri()

    def connection(self) -> Any:
        if self.conn is None and self.blocking:
            self.conn = self._open_blocking()
        if self.conn is None:
            import pyvirt
            from pyvirt.authconf import TERMINAL_AUTH
            # as virsh: credentials from auth.conf, else asked on the terminal
            self.conn = pyvirt.openAuth(self.resolved_uri, TERMINAL_AUTH, 1 if self.readonly else 0)
        return self.conn

    def _open_blocking(self) -> Any:
        """The blocking connection to a daemon, or None where the full driver is needed."""
        import pyvirt
        return pyvirt._open_oneshot(self.resolved_uri, self.readonly)

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            from pyvirt.errors import libvirtError
            try:
                conn.close()
            except libvirtError:
                pass

    # -- running commands -------------------------------------------------
    @staticmethod
    def parse(words: list[str]) -> tuple[str, Any, argparse.Namespace]:
        """``words`` (command first) into its handler and arguments; argparse
        exits on bad options as before; an unknown command is virsh's error."""
        name = words[0]
        as_json = False
        if "--json" in words:           # the JSON module only when asked for
            from . import json_out
            words, as_json = json_out.strip_flag(name, words)
        found = parser_for(name)
        if found is None:
            raise UnknownCommand(f"unknown command: '{name}'")
        parser, handler = found
        args = parser.parse_args(words[1:])
        if getattr(args, "needs_domain", False) and not (args.domain or args.domain_opt):
            raise RefusedLine(f"command '{name}' requires <domain> option")   # virsh's option check
        if as_json:
            from . import json_out
            handler = json_out.handler(name, handler)
        return name, handler, args

    def run_parsed(self, name: str, handler: Any, args: argparse.Namespace) -> None:
        if name in SESSION_COMMANDS:
            handler(self, args)
        else:
            handler(self.connection(), args)

    def run_groups(self, groups: list[list[str]]) -> int:
        """Run commands as virsh does: all parsed first (a bad one runs nothing), then each
        in turn whether or not the one before failed, up to a quit or exit; the status is
        the last command's."""
        try:
            parsed = [self.parse(group) for group in groups]
        except RefusedLine as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        # one-shot calls of plain commands only: a shell may run anything later
        self.blocking = not self.interactive and all(name in BLOCKING_COMMANDS for name, _, _ in parsed)
        status, self.connect_failed = 0, False
        for name, handler, args in parsed:
            status = self.run_one(name, handler, args)
            if self.done or self.connect_failed:
                break     # virsh connects before it runs a command: without a host it runs none
        return status

    def run_one(self, name: str, handler: Any, args: argparse.Namespace) -> int:
        """One parsed command, its failure reported as virsh reports it: 0 or 1."""
        from pyvirt.errors import libvirtError
        try:
            self.run_parsed(name, handler, args)
            return 0
        except CommandError as exc:
            for line in str(exc).splitlines():
                print(f"error: {line}", file=sys.stderr)
            if isinstance(exc.__cause__, libvirtError):
                print(f"error: {exc.__cause__.get_error_message()}", file=sys.stderr)
                _print_hint(exc.__cause__)
            if not getattr(exc, "options_refused", False):   # virsh's option check runs nothing
                print()       # virsh ends every command it ran with a blank line, after a failure's error
            return 1
        except libvirtError as exc:
            self.connect_failed = self.conn is None
            if self.connect_failed:
                print("error: failed to connect to the hypervisor", file=sys.stderr)
            print(f"error: {exc.get_error_message()}", file=sys.stderr)
            _print_hint(exc)
            if self.conn is not None:
                print()
            return 1


def _print_hint(exc: BaseException) -> None:
    """A line in plain words after errors the user can act on (disk leases)."""
    from .hints import hint_for
    hint = hint_for(exc)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    opts = global_parser().parse_args(sys.argv[1:] if argv is None else argv)
    session = Session(opts.connect, opts.readonly, opts.quiet, interactive=not opts.words)
    try:
        if not opts.words:
            from . import shell
            return shell.run(session)
        status = session.run_groups(split_commands(opts.words))
        sys.stdout.flush()          # here, where a reader that went away can still be caught
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _end_as_sigpipe(session)
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        session.close()


def _end_as_sigpipe(session: Session) -> None:
    """The reader of our output went away (``pyvirt list | head -1``): end
    silently, killed by SIGPIPE, as virsh is (no traceback, the shell sees 141)."""
    import os
    import signal
    session.close()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())     # nothing left to flush at exit
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)


if __name__ == "__main__":
    sys.exit(main())
