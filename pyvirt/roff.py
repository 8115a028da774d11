"""roff for the man pages: escaping, and an argparse parser's options as a
``.TP`` list (pyvirt.1 and pyvirtd.8 both list their options from their parsers)."""

from __future__ import annotations

import argparse


def esc(text: str) -> str:
    """Text safe in roff: backslashes, hyphens as minus signs, no control lines."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def option_rows(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        flags = ", ".join(f"\\fB{esc(o)}\\fR" for o in action.option_strings)
        if action.nargs != 0:
            flags += f" \\fI{esc(action.metavar or action.dest.upper())}\\fR"
        out += [".TP", flags, esc((action.help or "").replace("%(default)s", str(action.default)))]
    return out
