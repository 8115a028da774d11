"""The interactive shell driven through a pseudo-terminal, as an operator
types: commands with one-shot output, TAB completion of commands, options
and domain names from the daemon, history across sessions, connect, quit."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from daemons import Pyvirtd
from guests import REPO

PYVIRT = str(Path(sys.executable).parent / "pyvirt")
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b[=>]|[\r\x07]")
PARTIAL = re.compile(r"\x1b(\[[0-9;?]*)?$")      # an escape sequence cut by the read


class Terminal:
    """A program on a pseudo-terminal: type into it, wait for what it prints."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO,
                                     start_new_session=True)
        os.close(slave)
        self.seen = ""          # everything printed, escapes removed
        self.mark = 0           # expect() searches from here
        self._held = ""         # the start of an escape sequence the next read completes

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, pattern: str, timeout: float = 30.0) -> str:
        """Wait until ``pattern`` (a regex) appears after the last match; the text up to it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout     # a bound on a hung shell, not a measurement
        while True:
            found = regex.search(self.seen, self.mark)
            if found:
                text = self.seen[self.mark:found.end()]
                self.mark = found.end()
                return text
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise AssertionError(f"{pattern!r} not printed; the terminal shows:\n{self.seen[self.mark:]}")
            try:
                chunk = os.read(self.master, 65536).decode(errors="replace")
            except OSError:        # the program exited and closed the terminal
                chunk = ""
            if not chunk:
                raise AssertionError(f"{pattern!r} not printed before exit:\n{self.seen[self.mark:]}")
            data = self._held + chunk
            cut = PARTIAL.search(data)
            self._held = data[cut.start():] if cut else ""
            self.seen += ANSI.sub("", data[:cut.start()] if cut else data)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    daemon = Pyvirtd(tmp_path_factory.mktemp("shell") / "host")
    try:
        daemon.start()
        import pyvirt
        from guests import tiny_xml
        conn = pyvirt.open(daemon.uri)
        for name in ("alpha", "beta"):
            conn.defineXML(tiny_xml(name, daemon.workdir / f"{name}.log"))
        conn.close()
        yield daemon
    finally:
        daemon.cleanup()


@pytest.fixture
def env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "INPUTRC")}
    return dict(env, HOME=str(tmp_path), TERM="xterm", INPUTRC="/dev/null", PYTHONPATH=str(REPO))


PROMPT = r"pyvirt # "


def one_shot(host: Pyvirtd, *words: str) -> str:
    return subprocess.run([PYVIRT, "-c", host.uri, *words], capture_output=True, text=True, check=True).stdout


def test_commands_completion_history_connect_quit(host, env, tmp_path):
    term = Terminal([PYVIRT, "-c", host.uri], env)
    try:
        term.expect("Welcome to pyvirt, the virtualization interactive terminal")
        term.expect(PROMPT)
        # a command prints what it prints one-shot (on a terminal the table is rich's,
        # piped it is virsh's: the same cells either way)
        term.send("list --all\n")
        shown = [" ".join(line.split()) for line in term.expect(PROMPT).splitlines()]
        for line in one_shot(host, "list", "--all").strip().splitlines():
            if not set(line) <= {"-"}:
                assert " ".join(line.split()) in shown
        # TAB completes a command, then a domain name the daemon has
        term.send("domin\t")
        term.expect(r"dominfo $")
        term.send("al\t")
        term.expect(r"alpha $")
        term.send("\n")
        shown = term.expect(PROMPT)
        assert re.search(r"Name:\s+alpha", shown)
        # an option
        term.send("list --ina\t")
        term.expect(r"list --inactive $")
        term.send("\x15")                  # ^U: clear the line
        # TAB TAB lists the choices
        term.send("dom\t\t")
        listing = term.expect(r"dom\n(.*\n)*.*" + PROMPT + "dom")      # the choices, then the line again
        assert {"dominfo", "domid", "domstate", "domuuid"} <= set(listing.split())
        term.send("\x15\n")
        term.expect(PROMPT)
        # a failing command reports as virsh does and the shell goes on
        term.send("dominfo nosuch\n")
        term.expect(r"error: failed to get domain 'nosuch'")
        term.expect(PROMPT)
        # several commands on one line, and the shell's own commands
        term.send("domstate alpha; echo done here\n")
        shown = term.expect(PROMPT)
        assert "shut off" in shown and "done here" in shown
        # history: ^P brings back the previous line
        term.send("\x10")
        term.expect(r"domstate alpha; echo done here$")
        term.send("\x15")
        # connect, read-only this time: virsh's read-only prompt
        term.send(f"connect {host.uri} --readonly\n")
        term.expect(r"pyvirt > ")
        term.send("undefine beta\n")
        term.expect(r"error: .*read.only", timeout=30)
        term.expect(r"pyvirt > ")
        term.send("quit\n")
        assert term.wait() == 0
    finally:
        term.close()
    history = (tmp_path / ".cache" / "pyvirt" / "history").read_text()
    assert "list --all" in history and "dominfo alpha" in history

    # a new session starts with that history
    term = Terminal([PYVIRT, "-q", "-c", host.uri], env)
    try:
        term.expect(PROMPT)
        term.send("\x10")
        term.expect(r"quit$")
        term.send("\x10")
        term.expect(r"undefine beta$")
        term.send("\x15")
        term.send("\x04")                  # ^D ends the shell as quit does
        assert term.wait() == 0
    finally:
        term.close()


def test_shell_without_a_daemon_still_starts(env, tmp_path):
    term = Terminal([PYVIRT, "-c", "qemu+unix:///system?socket=" + str(tmp_path / "none")], env)
    try:
        term.expect(r"error: failed to connect to the hypervisor")
        term.expect(PROMPT)
        term.send("help domstate\n")
        shown = term.expect(PROMPT)
        assert "SYNOPSIS" in shown and "domstate <domain>" in shown
        term.send("exit\n")
        assert term.wait() == 0
    finally:
        term.close()
