"""``pyvirt help [COMMAND|GROUP]`` in virsh's layout, from the command table.

The same description of a command (synopsis and options, read off its
argparse parser) feeds this help and the man page (:mod:`pyvirt.cli.manpage`),
so neither can fall behind the parser.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from .groups import GROUP_OF, GROUPS
from .registry import CommandError, command, load_all, parser_for


@dataclass
class Option:
    synopsis: str        # "<domain>", "[<domain>]...", "[--all]", "[--timeout <number>]"
    spelling: str        # the OPTIONS column: "[--domain] <string>", "--timeout <number>", "--all"
    help: str


@dataclass
class CommandDoc:
    name: str
    summary: str
    description: str
    options: list[Option]

    @property
    def synopsis(self) -> str:
        return " ".join([self.name] + [opt.synopsis for opt in self.options])


def _value_word(action: argparse.Action) -> str:
    # metavar NUMBER: an integer option whose parsing (and virsh's error for it) is the command's own
    return "<number>" if action.type in (int, float) or action.metavar == "NUMBER" else "<string>"


def _option(action: argparse.Action, hidden: set[str]) -> Option:
    text = (action.help or "").replace("%(default)s", str(action.default))
    if not action.option_strings:               # a positional argument
        word = (action.metavar or action.dest).lower().replace("_", "-")
        # a positional with a hidden --WORD twin is virsh's "[--domain] <string>": required
        twin = f"--{action.dest.replace('_', '-')}" in hidden
        if action.nargs in ("*", "+"):
            syn = f"<{word}>..." if action.nargs == "+" else f"[<{word}>]..."
        elif action.nargs is None or twin:
            syn = f"<{word}>"
        else:
            syn = f"[<{word}>]"
        spelling = f"[--{action.dest.replace('_', '-')}] {_value_word(action)}"
        return Option(syn, spelling, text)
    flag = max(action.option_strings, key=len)
    spelling = flag if action.nargs == 0 else f"{flag} {_value_word(action)}"
    return Option(spelling if action.required else f"[{spelling}]", spelling, text)


def describe(name: str) -> CommandDoc:
    """A command's documentation, read from its parser (which must exist)."""
    found = parser_for(name)
    assert found is not None, name
    parser, _ = found
    hidden = {opt for a in parser._actions if a.help == argparse.SUPPRESS for opt in a.option_strings}
    options = [_option(a, hidden) for a in parser._actions
               if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS]
    from .json_out import KEYS
    if name in KEYS:       # beyond virsh: the option the entry point takes for these commands
        options.append(Option("[--json]", "--json", "print one JSON document instead (keys: pyvirt(1), JSON OUTPUT)"))
    summary = parser.description or ""
    description = summary[:1].upper() + summary[1:]
    if description and not description.endswith("."):
        description += "."
    return CommandDoc(name, summary, description, options)


def command_help(name: str) -> str:
    doc = describe(name)
    lines = ["  NAME", f"    {doc.name} - {doc.summary}", "", "  SYNOPSIS", f"    {doc.synopsis}", "",
             "  DESCRIPTION", f"    {doc.description}", ""]
    if doc.options:
        lines.append("  OPTIONS")
        for opt in doc.options:
            # virsh: the spelling in 15 columns, then two spaces
            lines.append(f"    {opt.spelling:<15}  {opt.help}".rstrip())
        lines.append("")
    return "\n".join(lines) + "\n"


def grouped(table: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(keyword, title, commands) for every group with a pyvirt command, in virsh's order;
    a command virsh does not know is in the "pyvirt" group."""
    out = []
    for keyword, title, _ in GROUPS:
        names = sorted(n for n in table if GROUP_OF.get(n, "pyvirt") == keyword)
        if names:
            out.append((keyword, title, names))
    return out


def group_help(keyword: str, title: str, names: list[str], table: dict[str, Any]) -> str:
    lines = [f" {title} (help keyword '{keyword}'):"]
    lines += [f"    {name:<30} {table[name][1]}" for name in names]
    return "\n".join(lines) + "\n\n"


def all_help() -> str:
    table = load_all()
    return "Grouped commands:\n\n" + "".join(group_help(k, t, n, table) for k, t, n in grouped(table))


def help_text(topic: str | None) -> str:
    """What ``pyvirt help [TOPIC]`` prints; CommandError for an unknown topic."""
    if not topic:
        return all_help()
    table = load_all()
    if topic in table:
        return command_help(topic)
    for keyword, title, names in grouped(table):
        if topic == keyword:
            return group_help(keyword, title, names, table)
    raise CommandError(f"command or command group '{topic}' doesn't exist")


@command("help", "print help", session=True)
def _help(p: argparse.ArgumentParser) -> Any:
    p.add_argument("command", nargs="?", metavar="COMMAND", help="Prints global help, command specific "
                   "help, or help for a group of related commands")
    p.add_argument("--command", dest="command_opt", help=argparse.SUPPRESS)

    def run(session: Any, args: argparse.Namespace) -> None:
        sys.stdout.write(help_text(args.command_opt or args.command))
    return run
