"""The command registry shared by the command modules and the entry point.

Parsing one command must not import every command module (each pulls in
its own libraries), so :mod:`pyvirt.cli.index` maps every command name to
the module that registers it; :func:`load` imports only that module.  The
index is generated from this registry (``python -m pyvirt.cli.index``) and
a test checks the two agree.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:       # the client API is imported only when a command runs
    from typing import Any
    import pyvirt

Handler = Callable[["pyvirt.virConnect", argparse.Namespace], None]
Setup = Callable[[argparse.ArgumentParser], Handler]
_COMMANDS: dict[str, tuple[Setup, str]] = {}
# Commands whose handler takes the session (connection state) instead of a
# connection: connect, quit, help, ... — they must work without one.
SESSION_COMMANDS: set[str] = set()

# Every module that registers commands, in the order help lists nothing by
# (help sorts); load_all() imports them all.
COMMAND_MODULES = ("domain_cmds", "lifecycle_cmds", "devices_cmds", "console_cmds", "host_cmds",
                   "stats_cmds", "migrate_cmds", "save_cmds", "top", "help", "complete",
                   "shell", "network_cmds", "snapshot_cmds", "storage_cmds", "volume_cmds", "blockjob_cmds",
                   "checkpoint_cmds")


class Formatter(argparse.HelpFormatter):
    """argparse's help formatter, its width found without shutil: argparse makes
    one for every add_argument, and shutil (with the compression modules it
    imports) costs a command-line call more than parsing does."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_columns() - 2 if width is None else width)


def terminal_columns() -> int:
    """shutil.get_terminal_size's columns: $COLUMNS, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class CommandError(Exception):
    """A failure the command itself reports (virsh's vshError); its cause, if
    a libvirtError, is printed on the next line as virsh does."""


def command(name: str, help: str, session: bool = False) -> Callable[[Setup], Setup]:
    """Register command ``name``: the decorated function adds its arguments
    to the parser it is given and returns the handler.  ``session=True``:
    the handler is called with the session rather than a connection."""
    def register(setup: Setup) -> Setup:
        _COMMANDS[name] = (setup, help)
        if session:
            SESSION_COMMANDS.add(name)
        return setup
    return register


def _import(module: str) -> None:
    importlib.import_module(f"{__package__}.{module}")


def load_all() -> dict[str, tuple[Setup, str]]:
    """Import every command module; the full table (help, man pages, index)."""
    for module in COMMAND_MODULES:
        _import(module)
    return _COMMANDS


def load(name: str) -> tuple[Setup, str] | None:
    """The registration of command ``name``, importing only its module when
    the index knows it (every module otherwise); None for an unknown name."""
    if name not in _COMMANDS:
        from .index import INDEX
        module = INDEX.get(name)
        if module is not None:
            _import(module)
        if name not in _COMMANDS:   # the index is stale or the name unknown
            load_all()
    return _COMMANDS.get(name)


def names() -> list[str]:
    """Every command name, from the index (no command module imported)."""
    from .index import INDEX
    return sorted(set(INDEX) | set(_COMMANDS))


class CommandParser(argparse.ArgumentParser):
    """A command's parser refusing options in virsh's words and with its status 1 (virsh
    prints no usage text): an unknown option, or a word no option takes."""

    def error(self, message: str) -> "NoReturn":  # noqa: F821 - typing is not imported at run time
        name = self.prog.split()[-1]
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            first = message[len(prefix):].split()[0]
            message = (f"command '{name}' doesn't support option {first.split('=', 1)[0]}"
                       if first.startswith("-")
                       else f"unexpected data '{first}'")
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


def parser_for(name: str) -> tuple[argparse.ArgumentParser, Any] | None:
    """A parser for command ``name`` alone and its handler (None if unknown)."""
    entry = load(name)
    if entry is None:
        return None
    setup, help_text = entry
    parser = CommandParser(prog=f"pyvirt {name}", description=help_text, formatter_class=Formatter)
    return parser, setup(parser)
