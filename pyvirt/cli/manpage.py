"""pyvirt.1, generated from the command table (:mod:`pyvirt.cli.help` reads
each parser), the ``--json`` key table and the entry point's options — no
second copy to keep in sync.  :mod:`pyvirt.manpages` writes it.
"""

from __future__ import annotations

from pyvirt.roff import esc, option_rows


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
             ".SH OPTIONS", *option_rows(global_parser()),
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
