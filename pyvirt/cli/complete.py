"""Completion from the command table: commands, options, and domain (pool,
network) names asked of the daemon.

One function serves the interactive shell's TAB and ``pyvirt complete --
WORDS`` (virsh's ``complete`` command, which the bash completion script
calls): the last word is the one being completed, possibly empty.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from .registry import command, names, parser_for

# argparse destinations whose values are names a connection can list, and how
# to list them (pool and network commands will bring the commands; the
# completers are ready and skip a connection without the call).
NAME_LISTERS: dict[str, Callable[[Any], list[str]]] = {
    "domain": lambda conn: [d.name() for d in conn.listAllDomains(0)],
    "domains": lambda conn: [d.name() for d in conn.listAllDomains(0)],
    "domain_opt": lambda conn: [d.name() for d in conn.listAllDomains(0)],
    "pool": lambda conn: [p.name() for p in conn.listAllStoragePools(0)],
    "pool_opt": lambda conn: [p.name() for p in conn.listAllStoragePools(0)],
    "inputpool": lambda conn: [p.name() for p in conn.listAllStoragePools(0)],
    "vol": lambda conn: _volume_names(conn),
    "vol_opt": lambda conn: _volume_names(conn),
    "backing_vol": lambda conn: _volume_names(conn),
    "network": lambda conn: [n.name() for n in conn.listAllNetworks(0)],
    "network_opt": lambda conn: [n.name() for n in conn.listAllNetworks(0)],
}


def _volume_names(conn: Any) -> list[str]:
    """The volumes of every active pool (virsh completes a volume without knowing its pool too)."""
    names: set[str] = set()
    for pool in conn.listAllStoragePools(2):      # VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE
        names.update(vol.name() for vol in pool.listAllVolumes(0))
    return sorted(names)


def _visible_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction)]


def _names_for(dest: str, connection: Callable[[], Any]) -> list[str]:
    lister = NAME_LISTERS.get(dest)
    if lister is None:
        return []
    from pyvirt.errors import libvirtError
    try:
        return sorted(lister(connection()))
    except (libvirtError, AttributeError):   # no daemon, or a call the connection lacks
        return []


def candidates(words: list[str], connection: Callable[[], Any]) -> list[str]:
    """What may replace ``words[-1]`` on a command line whose words are ``words``
    (command first).  ``connection()`` gives the connection for name lookups."""
    if len(words) <= 1:
        prefix = words[0] if words else ""
        return [n for n in names() if n.startswith(prefix)]
    found = parser_for(words[0])
    if found is None:
        return []
    parser, _ = found
    cur, before = words[-1], words[1:-1]
    by_flag = {flag: a for a in parser._actions for flag in a.option_strings}
    # an option's value?
    if before and before[-1] in by_flag and by_flag[before[-1]].nargs != 0:
        return [v for v in _names_for(by_flag[before[-1]].dest, connection) if v.startswith(cur)]
    used: set[str] = set()
    positional = 0
    skip = False
    for word in before:
        if skip:
            skip = False
        elif word in by_flag:
            used.add(by_flag[word].dest)
            skip = by_flag[word].nargs != 0
        elif not word.startswith("-"):
            positional += 1
    options = [max(a.option_strings, key=len) for a in _visible_options(parser) if a.dest not in used]
    from .json_out import KEYS
    if words[0] in KEYS and "--json" not in before:
        options.append("--json")
    if cur.startswith("-"):
        return [o for o in options if o.startswith(cur)]
    slots = [a for a in parser._actions if not a.option_strings]
    slot = None
    for action in slots:
        if action.nargs in ("*", "+"):
            slot = action
            break
        if positional == 0:
            slot = action
            break
        positional -= 1
    if slot is not None and f"{slot.dest}_opt" not in used:
        values = _names_for(slot.dest, connection)
        if values or cur:
            return [v for v in values if v.startswith(cur)]
    return options if not cur else []


@command("complete", "internal command for autocompletion", session=True)
def _complete(p: argparse.ArgumentParser) -> Any:
    p.add_argument("words", nargs="*", metavar="WORD", help="partial string to autocomplete")

    def run(session: Any, args: argparse.Namespace) -> None:
        for value in candidates(list(args.words), session.connection):
            sys.stdout.write(value + "\n")
    return run
