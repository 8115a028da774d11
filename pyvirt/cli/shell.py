"""The interactive shell: ``pyvirt`` (or ``pyvirt -c URI``) with no command.

As virsh's: a ``pyvirt # `` prompt (``pyvirt > `` read-only), one
connection kept across commands, GNU readline line editing and history
(``~/.cache/pyvirt/history``, or under ``$XDG_CACHE_HOME``), TAB completion
of commands, options and names (:mod:`pyvirt.cli.complete`), and the shell's
own commands ``connect``, ``quit``/``exit``, ``cd``, ``pwd``, ``echo``.  Each
line runs exactly as the same words would one-shot.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from .registry import command

BANNER = """Welcome to pyvirt, the virtualization interactive terminal.

Type:  'help' for help with commands
       'quit' to quit
"""
HISTORY_LENGTH = 500      # virsh keeps 500 lines too


def history_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyvirt", "history")


def _line_words(line: str) -> list[str]:
    """The words of the last command on a partial line (shell quoting, an
    unfinished quote tolerated); a trailing space starts a new, empty word."""
    text = line.rsplit(";", 1)[-1]
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    words: list[str] = []
    try:
        for token in lexer:
            words.append(token)
    except ValueError:          # an open quote: the rest is the word being typed
        words.append(lexer.token)
    if not text.strip() or text[-1:].isspace():
        words.append("")
    return words


class Completer:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.matches: list[str] = []

    def __call__(self, text: str, state: int) -> str | None:
        import readline
        if state == 0:
            from .complete import candidates
            line = readline.get_line_buffer()[:readline.get_begidx()] + text
            try:
                self.matches = candidates(_line_words(line), self.session.connection)
            except Exception:      # completion must never end the shell
                self.matches = []
        return self.matches[state] + " " if state < len(self.matches) else None


def _setup_readline(session: Any) -> Any:
    try:
        import readline
    except ImportError:          # no line editing; the shell still works
        return None
    readline.set_completer_delims(" \t\n;")
    readline.set_completer(Completer(session))
    readline.parse_and_bind("tab: complete")
    readline.set_history_length(HISTORY_LENGTH)
    try:
        readline.read_history_file(history_path())
    except OSError:
        pass
    return readline


def _save_history(readline: Any) -> None:
    if readline is None:
        return
    path = history_path()
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        readline.write_history_file(path)
    except OSError:
        pass


def run(session: Any) -> int:
    """The read-eval loop; returns the status of the last command."""
    from pyvirt.errors import libvirtError
    readline = _setup_readline(session)
    if not session.quiet:
        print(BANNER)
    try:
        session.connection()
    except libvirtError as exc:       # virsh starts the shell anyway; 'connect' may fix it
        print("error: failed to connect to the hypervisor", file=sys.stderr)
        print(f"error: {exc.get_error_message()}", file=sys.stderr)
    from .main import split_line
    status = 0
    try:
        while not session.done:
            try:
                line = input("pyvirt > " if session.readonly else "pyvirt # ")
            except EOFError:
                print()
                break
            except KeyboardInterrupt:
                print()
                continue
            try:
                groups = split_line(line)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                status = 1
                continue
            for group in groups:
                try:
                    status = session.run_groups([group])
                except SystemExit as exc:        # argparse refused the options; keep the shell
                    status = exc.code if isinstance(exc.code, int) else 1
                except KeyboardInterrupt:
                    print()
                    status = 130
                sys.stdout.flush()
                if status or session.done:
                    break
    finally:
        _save_history(readline)
    return status


@command("quit", "quit this interactive terminal", session=True)
def _quit(p: argparse.ArgumentParser) -> Any:
    def run(session: Any, args: argparse.Namespace) -> None:
        session.done = True
    return run


@command("exit", "quit this interactive terminal", session=True)
def _exit(p: argparse.ArgumentParser) -> Any:
    return _quit(p)


@command("connect", "(re)connect to hypervisor", session=True)
def _connect(p: argparse.ArgumentParser) -> Any:
    p.add_argument("name", nargs="?", metavar="URI", help="hypervisor connection URI")
    p.add_argument("--readonly", action="store_true", help="read-only connection")

    def run(session: Any, args: argparse.Namespace) -> None:
        session.close()
        if args.name:
            session.uri = args.name
        session.readonly = args.readonly
        session.connection()
    return run


@command("pwd", "print the current directory", session=True)
def _pwd(p: argparse.ArgumentParser) -> Any:
    def run(session: Any, args: argparse.Namespace) -> None:
        print(os.getcwd())
    return run


@command("cd", "change the current directory", session=True)
def _cd(p: argparse.ArgumentParser) -> Any:
    p.add_argument("dir", nargs="?", metavar="DIR", help="directory to switch to (default: home or else root)")

    def run(session: Any, args: argparse.Namespace) -> None:
        from .registry import CommandError
        target = args.dir or os.path.expanduser("~") or "/"
        try:
            os.chdir(target)
        except OSError:
            raise CommandError(f"cannot chdir to {target}") from None
    return run


@command("echo", "echo arguments. Used for internal testing.", session=True)
def _echo(p: argparse.ArgumentParser) -> Any:
    p.add_argument("string", nargs="*", metavar="STRING", help="arguments to echo")
    p.add_argument("--shell", action="store_true", help="escape for shell use")

    def run(session: Any, args: argparse.Namespace) -> None:
        words = [shlex.quote(w) for w in args.string] if args.shell else args.string
        print(" ".join(words))
    return run
