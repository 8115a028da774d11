"""``pyvirt``: virsh's commands and options over pyvirt's client API.

Usage: ``pyvirt [-c URI] [-r] COMMAND [ARGS]``.  Output follows virsh's
layouts so scripts that parse virsh keep working; errors print as virsh
does (``error: ...``) and exit 1.  Commands are registered by the modules
in this package through :func:`command`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import pyvirt
from pyvirt.authconf import TERMINAL_AUTH
from pyvirt.enums import ConnectFlags
from pyvirt.errors import libvirtError

from .registry import _COMMANDS, CommandError, Handler


def default_uri() -> str:
    return os.environ.get("PYVIRT_DEFAULT_URI") or os.environ.get("LIBVIRT_DEFAULT_URI") or "qemu:///system"


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, dict[str, Handler]]:
    """The global-options parser, the per-command parser, and the handlers."""
    from . import (console_cmds, devices_cmds, domain_cmds, host_cmds, lifecycle_cmds,  # noqa: F401
                   migrate_cmds, save_cmds, stats_cmds)  # (registration side effect)
    top = argparse.ArgumentParser(prog="pyvirt", description="virsh-compatible management of pyvirt hosts",
                                  epilog="commands: " + ", ".join(sorted(_COMMANDS)))
    top.add_argument("-c", "--connect", metavar="URI", help="hypervisor connection URI")
    top.add_argument("-r", "--readonly", action="store_true", help="connect read-only")
    top.add_argument("-q", "--quiet", action="store_true", help="quiet mode")
    top.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND [ARGS]")
    cmd = argparse.ArgumentParser(prog="pyvirt")
    sub = cmd.add_subparsers(dest="command", metavar="COMMAND", required=True)
    handlers: dict[str, Handler] = {}
    for name, (setup, help_text) in sorted(_COMMANDS.items()):
        handlers[name] = setup(sub.add_parser(name, help=help_text, description=help_text))
    return top, cmd, handlers


def split_commands(words: list[str]) -> list[list[str]]:
    """virsh accepts several commands in one argument: ``"define f; start d"``."""
    if len(words) == 1 and (";" in words[0] or " " in words[0].strip()):
        lexer = shlex.shlex(words[0], posix=True, punctuation_chars=";")
        lexer.whitespace_split = True
        groups: list[list[str]] = [[]]
        for token in lexer:
            if token == ";":
                groups.append([])
            else:
                groups[-1].append(token)
        return [g for g in groups if g]
    return [words]


def main(argv: list[str] | None = None) -> int:
    top, cmd, handlers = build_parser()
    opts = top.parse_args(sys.argv[1:] if argv is None else argv)
    if not opts.words:
        top.print_help()
        return 0
    groups = [cmd.parse_args(group) for group in split_commands(opts.words)]
    uri = opts.connect or default_uri()
    conn = None
    try:
        # as virsh: credentials from auth.conf, else asked on the terminal
        conn = pyvirt.openAuth(uri, TERMINAL_AUTH, ConnectFlags.RO if opts.readonly else 0)
        for args in groups:
            handlers[args.command](conn, args)
        return 0
    except CommandError as exc:
        print()       # virsh ends every command it ran with a blank line, a failed one too
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        if isinstance(exc.__cause__, libvirtError):
            print(f"error: {exc.__cause__.get_error_message()}", file=sys.stderr)
        return 1
    except libvirtError as exc:
        if conn is None:
            print("error: failed to connect to the hypervisor", file=sys.stderr)
        else:
            print()
        print(f"error: {exc.get_error_message()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if conn is not None:
            try:
                conn.close()
            except libvirtError:
                pass


if __name__ == "__main__":
    sys.exit(main())
