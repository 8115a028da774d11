"""The man pages pyvirt.1 and pyvirtd.8, generated from the command table
(:mod:`pyvirt.cli.help` reads each parser), the ``--json`` key table, pyvirtd's
option parser and its configuration key tables — no second copy to keep in
sync.  ``python -m pyvirt.cli.manpage`` rewrites ``share/man/``;
tests/test_cli_help.py checks the committed pages are what this makes now.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from .groups import GROUPS

SHARE_MAN = Path(__file__).resolve().parent.parent.parent / "share" / "man"


def esc(text: str) -> str:
    """Text safe in roff: backslashes, hyphens as minus signs, no control lines."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        flags = ", ".join(f"\\fB{esc(o)}\\fR" for o in action.option_strings)
        if action.nargs != 0:
            flags += f" \\fI{esc(action.metavar or action.dest.upper())}\\fR"
        out += [".TP", flags, esc((action.help or "").replace("%(default)s", str(action.default)))]
    return out


def pyvirt_page() -> str:
    from . import help as helpmod
    from .json_out import KEYS
    from .main import global_parser
    from .registry import load_all
    table = load_all()
    import pyvirt
    lines = [f'.TH PYVIRT 1 "" "pyvirt {pyvirt.__version__}" "pyvirt manual"',
             ".SH NAME", "pyvirt \\- virsh\\-compatible management of pyvirt and libvirt hosts",
             ".SH SYNOPSIS", ".B pyvirt", "[\\fIOPTION\\fR]... [\\fICOMMAND\\fR [\\fIARG\\fR]...]",
             ".SH DESCRIPTION",
             esc("pyvirt runs virsh's commands, with virsh's options and output layouts, against a pyvirtd or "
                 "libvirtd (any libvirt URI) or an embedded driver. Several commands may be given in one "
                 "argument, separated by ';'. Without a command it opens an interactive shell (prompt "
                 "'pyvirt # ', 'pyvirt > ' read-only) that keeps one connection, with line editing, history "
                 "and TAB completion of commands, options and domain names."),
             ".SH OPTIONS", *_option_rows(global_parser()),
             ".SH COMMANDS",
             esc("'pyvirt help' lists the commands by group, 'pyvirt help GROUP' one group, 'pyvirt help "
                 "COMMAND' one command.")]
    for keyword, title, names in helpmod.grouped(table):
        lines.append(f'.SS "{esc(title)} (help keyword \'{keyword}\')"')
        for name in names:
            doc = helpmod.describe(name)
            lines += [".TP", f"\\fB{esc(doc.synopsis)}\\fR", esc(doc.description)]
            if doc.options:
                lines.append(".RS")
                for opt in doc.options:
                    lines += [".TP", f"\\fB{esc(opt.spelling)}\\fR", esc(opt.help)]
                lines.append(".RE")
    lines += [".SH JSON OUTPUT",
              esc("With --json these commands print one JSON document instead of their table; its keys "
                  "are stable (keys may be added, never renamed or removed):")]
    for name, (shape, keys) in KEYS.items():
        lines += [".TP", f"\\fB{esc(name)}\\fR ({esc(shape)})", ".RS"]
        for key, meaning in keys.items():
            lines += [".TP", f"\\fI{esc(key)}\\fR", esc(meaning)]
        lines.append(".RE")
    lines += [".SH ENVIRONMENT",
              ".TP", "\\fBPYVIRT_DEFAULT_URI\\fR, \\fBLIBVIRT_DEFAULT_URI\\fR",
              esc("the URI used without -c (in this order), else qemu:///system"),
              ".TP", "\\fBXDG_CACHE_HOME\\fR", esc("where the shell keeps its history (default ~/.cache)"),
              ".SH FILES",
              ".TP", esc("~/.cache/pyvirt/history"), esc("the interactive shell's history"),
              ".TP", esc("~/.config/libvirt/auth.conf, /etc/libvirt/auth.conf"),
              esc("credentials, as virsh reads them"),
              ".SH EXIT STATUS", esc("0 on success, 1 when a command failed (its error on stderr, as "
                                     "virsh prints it), 2 for options a command does not take."),
              ".SH SEE ALSO", "\\fBpyvirtd\\fR(8), \\fBvirsh\\fR(1)", ""]
    return "\n".join(lines)


def pyvirtd_page() -> str:
    import pyvirt
    from pyvirt.daemon import main as daemon_main
    from pyvirt.daemon.config import DaemonConfig
    from pyvirt.daemon.conf_keys import LIBVIRTD_KEYS, PYVIRT_KEYS, QEMU_KEYS, source_of, value_type
    doc = (daemon_main.__doc__ or "").strip().split("\n\n")
    lines = [f'.TH PYVIRTD 8 "" "pyvirt {pyvirt.__version__}" "pyvirt manual"',
             ".SH NAME", "pyvirtd \\- libvirt\\-compatible QEMU/KVM host daemon",
             ".SH SYNOPSIS", ".B pyvirtd", "[\\fIOPTION\\fR]...",
             ".SH DESCRIPTION"]
    for paragraph in doc:
        text = re.sub(r":[a-z]+:`([^`]+)`", r"\1", paragraph.replace("``", ""))   # reST roles
        lines += [esc(" ".join(text.split())), ".PP"]
    lines.pop()
    lines += [".SH OPTIONS", *_option_rows(daemon_main.build_parser()), ".SH CONFIGURATION",
              esc("The configuration file has libvirtd.conf's syntax and may also hold qemu.conf's keys, "
                  "each with libvirt's value type. A key either file documents that pyvirtd does not act on "
                  "is logged once as ignored; any other key, or a value of the wrong type, is an error "
                  "naming its line."),
              ".SS Settings pyvirtd acts on"]
    acted = []
    for f in dataclasses.fields(DaemonConfig):
        kind = value_type(f.name)
        if kind is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        acted.append(f.name)
        shown = "unset" if default is None else repr(default).replace("'", '"')
        lines += [".TP", f"\\fB{esc(f.name)}\\fR ({esc(str(source_of(f.name)))}, {esc(kind.value)})",
                  esc(f"default {shown}")]
    own = sorted(k for k in PYVIRT_KEYS if k not in acted)
    if own:
        lines += [".SS pyvirt's own settings", esc(", ".join(own))]
    ignored = sorted(k for k in {**LIBVIRTD_KEYS, **QEMU_KEYS} if k not in acted)
    lines += [".SS Accepted and ignored", esc(", ".join(ignored))]
    lines += [".SH SIGNALS", ".TP", "\\fBSIGTERM\\fR, \\fBSIGINT\\fR",
              esc("stop: listeners close, clients are dropped, guests keep running and the next start "
                  "adopts them."),
              ".SH ENVIRONMENT", ".TP", "\\fBNOTIFY_SOCKET\\fR",
              esc("set by systemd for Type=notify: pyvirtd sends READY=1 once it serves and STOPPING=1 "
                  "when it stops."),
              ".SH FILES", ".TP", esc("/etc/pyvirt/pyvirtd.conf"), esc("the configuration the unit file names"),
              ".TP", esc("pyvirtd.service"), esc("the systemd unit make install writes (Type=notify, "
                                                 "KillMode=process)"),
              ".SH SEE ALSO", "\\fBpyvirt\\fR(1), \\fBlibvirtd\\fR(8), \\fBsystemd.service\\fR(5)", ""]
    return "\n".join(lines)


PAGES = {"pyvirt.1": pyvirt_page, "pyvirtd.8": pyvirtd_page}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyvirt.cli.manpage", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(SHARE_MAN), help="where to write the pages")
    args = ap.parse_args(argv)
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, make in PAGES.items():
        (out / name).write_text(make(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
