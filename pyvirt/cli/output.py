"""Output in virsh's layouts: plain text when piped, a rich table on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time (start-up time)
if TYPE_CHECKING:
    from typing import TextIO


QUIET = False
"""``pyvirt -q``: tables without their header, rule and closing blank line, as ``virsh -q``."""


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], header: bool = True) -> list[str]:
    """virsh's vshTable layout: a leading space, columns 3 spaces apart,
    the last column unpadded, and a dash rule two wider than the widest line.
    Without the header the widths come from the rows alone, as virsh's."""
    if not header:
        widths = [max([0] + [len(r[i]) for r in rows]) for i in range(len(headers))]
    else:
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths[:-1])] + [cells[-1]]
        return " " + "   ".join(padded)

    if not header:
        return [line(r) for r in rows]
    rule = "-" * (1 + sum(widths) + 3 * (len(widths) - 1) + 2)
    return [line(headers), rule] + [line(r) for r in rows]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if QUIET:
        for text in table_lines(headers, rows, header=False):
            print(text, file=out)
        return
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, box=None, header_style="bold")
        for row in rows:
            table.add_row(*row)
        Console(file=out).print(table)
        print(file=out)
        return
    for text in table_lines(headers, rows):
        print(text, file=out)
    print(file=out)


def print_fields(pairs: Sequence[tuple[str, str]], width: int = 16, out: TextIO | None = None) -> None:
    """virsh's "Label:   value" blocks (dominfo, nodeinfo), followed by a blank line."""
    out = out or sys.stdout
    for label, value in pairs:
        print(f"{label + ':':<{width}}{value}", file=out)
    print(file=out)
