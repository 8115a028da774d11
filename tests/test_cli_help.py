"""``pyvirt help`` in virsh's layout, for every command; the static command
index and the generated man pages checked against what the table makes now."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guests import REPO

from pyvirt import manpages
from pyvirt.cli import help as helpmod, index, registry
from pyvirt.cli.groups import GROUP_OF

PYVIRT = str(Path(sys.executable).parent / "pyvirt")
VIRSH = shutil.which("virsh")
# commands whose options are exactly virsh's: the SYNOPSIS must be virsh's line
SAME_SYNOPSIS = ["attach-device", "autostart", "define", "detach-disk", "domblklist", "domid", "domiflist",
                 "dominfo", "dommemstat", "domstate", "domuuid", "managedsave", "nodeinfo", "reboot",
                 "resume", "save", "setmem", "shutdown", "suspend", "vcpuinfo", "quit", "pwd",
                 "save-image-define", "managedsave-dumpxml", "managedsave-define"]
# options pyvirt adds to a virsh 9.0 command (a later virsh's, or pyvirt's own), after virsh's
EXTRA_OPTIONS = {"save": " [--image-format <string>] [--compat <string>]"}


def run(*words: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYVIRT, *words], capture_output=True, text=True)


def virsh_help(*words: str) -> subprocess.CompletedProcess:
    return subprocess.run([VIRSH, "help", *words], capture_output=True, text=True)


def test_index_is_current():
    """pyvirt.cli.index must list every registered command (python -m pyvirt.cli.index rewrites it)."""
    assert index.generate() == Path(index.__file__).read_text(), \
        "the command index is stale: run python -m pyvirt.cli.index"


@pytest.mark.parametrize("page", sorted(manpages.PAGES))
def test_man_pages_are_current(page):
    committed = (REPO / "share" / "man" / page).read_text()
    assert committed == manpages.PAGES[page](), f"share/man/{page} is stale: run python -m pyvirt.manpages"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("page", sorted(manpages.PAGES))
def test_man_pages_render_without_warnings(page):
    out = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(REPO / "share" / "man" / page)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_every_command_has_help_with_every_option():
    table = registry.load_all()
    assert len(table) > 50
    for name in table:
        assert name in GROUP_OF, f"{name}: no help group (pyvirt/cli/groups.py)"
        text = helpmod.help_text(name)
        sections = [line.strip() for line in text.splitlines() if line.startswith("  ") and line.strip().isupper()]
        assert sections[:3] == ["NAME", "SYNOPSIS", "DESCRIPTION"], name
        assert text.splitlines()[1] == f"    {name} - {table[name][1]}"
        parser, _ = registry.parser_for(name)
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            spelling = max(action.option_strings, key=len) if action.option_strings \
                else f"[--{action.dest.replace('_', '-')}]"
            assert f"    {spelling}" in text, f"{name}: {spelling} missing from its help"


def test_one_command_from_the_command_line():
    out = run("help", "domstate")
    assert out.returncode == 0
    assert out.stdout == ("  NAME\n    domstate - domain state\n\n  SYNOPSIS\n    domstate <domain> [--reason] [--json]\n\n"
                          "  DESCRIPTION\n    Domain state.\n\n  OPTIONS\n"
                          "    [--domain] <string>  domain name, id or uuid\n"
                          "    --reason         also print reason for the state\n"
                          "    --json           print one JSON document instead (keys: pyvirt(1), JSON OUTPUT)\n\n")


def test_unknown_topic_is_virsh_s_error():
    out = run("help", "nosuch")
    assert out.returncode == 1
    assert "error: command or command group 'nosuch' doesn't exist" in out.stderr
    if VIRSH:
        assert "error: command or command group 'nosuch' doesn't exist" in virsh_help("nosuch").stderr


def test_grouped_listing_and_one_group():
    out = run("help").stdout
    assert out.startswith("Grouped commands:\n\n Domain Management (help keyword 'domain'):\n")
    assert " Domain Monitoring (help keyword 'monitor'):\n" in out
    assert "    dominfo                        domain information\n" in out
    group = run("help", "monitor").stdout
    assert group.startswith(" Domain Monitoring (help keyword 'monitor'):\n")
    assert "    top  " in group and "    list  " in group and "    start  " not in group


@pytest.mark.skipif(VIRSH is None, reason="virsh is not installed")
def test_layout_matches_virsh():
    table = registry.load_all()
    for name in table:
        theirs = virsh_help(name)
        if theirs.returncode != 0:          # pyvirt's own (top)
            continue
        ours = helpmod.help_text(name).splitlines()
        assert ours[1] == theirs.stdout.splitlines()[1], f"{name}: NAME line differs from virsh's"
    for name in SAME_SYNOPSIS:
        ours, theirs = helpmod.help_text(name).splitlines(), virsh_help(name).stdout.splitlines()
        synopsis = ours[4].replace(" [--json]", "").replace(EXTRA_OPTIONS.get(name, "\0"), "")
        assert synopsis == theirs[4], f"{name}: SYNOPSIS differs from virsh's"
        assert ours[0] == theirs[0] and ours[3] == theirs[3]


def test_help_needs_no_connection():
    out = subprocess.run([PYVIRT, "-c", "qemu+unix:///system?socket=/nonexistent/sock", "help", "list"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "list - list domains" in out.stdout and out.stderr == ""


def test_every_option_of_every_command_says_what_it_does():
    """virsh's help gives each option a line of text; so does pyvirt's (help, man page)."""
    from pyvirt.cli import registry
    bare = {}
    for name in registry.names():
        parser, _ = registry.parser_for(name)
        silent = [a.option_strings[-1] for a in parser._actions
                  if a.option_strings and a.help is None and a.dest != "help"]
        if silent:
            bare[name] = silent
    assert bare == {}
