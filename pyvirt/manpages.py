"""The man pages, written from the tables they describe: ``python -m
pyvirt.manpages`` rewrites ``share/man/`` (pyvirt.1 from the command line's
table, pyvirtd.8 from the daemon's); tests/test_cli_help.py checks the
committed pages are what this makes now, so they never drift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

SHARE_MAN = Path(__file__).resolve().parent.parent / "share" / "man"


def _pyvirt_1() -> str:
    from .cli.manpage import pyvirt_page
    return pyvirt_page()


def _pyvirtd_8() -> str:
    from .daemon.manpage import pyvirtd_page
    return pyvirtd_page()


PAGES: dict[str, Callable[[], str]] = {"pyvirt.1": _pyvirt_1, "pyvirtd.8": _pyvirtd_8}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyvirt.manpages", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(SHARE_MAN), help="where to write the pages")
    args = ap.parse_args(argv)
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, make in PAGES.items():
        (out / name).write_text(make(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
