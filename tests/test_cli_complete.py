"""Completion from the command table: ``pyvirt complete -- WORDS`` (what the
shell's TAB and the bash script ask), and the bash script itself under a real
interactive bash on a pseudo-terminal, completing names from the daemon."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemons import Pyvirtd
from guests import REPO, tiny_xml
from test_cli_shell import Terminal

BIN = Path(sys.executable).parent
SCRIPT = REPO / "share" / "bash-completion" / "completions" / "pyvirt"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    daemon = Pyvirtd(tmp_path_factory.mktemp("complete") / "host")
    try:
        daemon.start()
        import pyvirt
        conn = pyvirt.open(daemon.uri)
        for name in ("web1", "web2", "db"):
            conn.defineXML(tiny_xml(name, daemon.workdir / f"{name}.log"))
        conn.close()
        yield daemon
    finally:
        daemon.cleanup()


def complete(host: Pyvirtd | None, *words: str) -> list[str]:
    uri = ["-c", host.uri] if host else ["-c", "qemu+unix:///system?socket=/nonexistent/sock"]
    out = subprocess.run([str(BIN / "pyvirt"), *uri, "complete", "--", *words], capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


def test_commands(host):
    assert complete(host, "") == sorted(complete(host, ""))
    assert {"list", "dominfo", "migrate", "top", "help", "quit"} <= set(complete(host, ""))
    assert complete(host, "domst") == ["domstate", "domstats"]
    assert complete(host, "nosuchcommand") == []


def test_options(host):
    assert complete(host, "list", "--a") == ["--all"]
    assert "--json" in complete(host, "dominfo", "db", "--") and "--json" not in complete(host, "domid", "db", "--")
    assert "--inactive" in complete(host, "list", "--")
    assert "--all" not in complete(host, "list", "--all", "--")      # given already
    assert complete(host, "nosuchcommand", "--") == []
    # hidden spellings (--domain beside the positional) are not offered
    assert "--domain" not in complete(host, "dominfo", "db", "--")


def test_domain_names_come_from_the_daemon(host):
    assert complete(host, "dominfo", "") == ["db", "web1", "web2"]
    assert complete(host, "start", "web") == ["web1", "web2"]
    assert complete(host, "dominfo", "--domain", "w") == ["web1", "web2"]
    # the domain given, the next word is no domain
    assert complete(host, "dominfo", "db", "") == ["--json"]      # only the options are left
    assert complete(host, "domid", "db", "") == []
    # several domains: every word is one
    assert complete(host, "domstats", "db", "web") == ["web1", "web2"]


def test_no_daemon_means_no_names_not_an_error():
    assert complete(None, "domid", "") == []
    assert complete(None, "dominfo", "") == ["--json"]
    assert complete(None, "li") == ["list"]


def test_bash_script_under_interactive_bash(host, tmp_path):
    """Type into bash, press TAB, read what bash puts on the line."""
    env = {k: v for k, v in os.environ.items() if k != "BASH_ENV"}
    env.update(HOME=str(tmp_path), TERM="xterm", INPUTRC="/dev/null", PS1="bash$ ",
               PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}")
    term = Terminal(["bash", "--norc", "--noprofile", "-i"], env)
    try:
        term.expect(r"bash\$ ")
        term.send(f"source {SCRIPT}; echo sourced\n")
        term.expect(r"\nsourced\n")
        term.expect(r"bash\$ ")
        # a command, past a URI full of ':' (bash's word breaks)
        term.send(f"pyvirt -c {host.uri} domstat\t\t")
        listing = term.expect(r"domstats")
        assert "domstate" in listing
        term.send("\x15")                             # ^U
        term.send(f"pyvirt -c {host.uri} domstat")
        term.send("e\t")
        term.expect(r"domstate $")
        # a domain name the daemon has
        term.send("d\t")
        term.expect(r"db $")
        term.send("\x15")
        term.send(f"pyvirt --connect {host.uri} list --ina\t")
        term.expect(r"--inactive $")
        term.send("\x15")
        # global options
        term.send("pyvirt --read\t")
        term.expect(r"--readonly $")
        term.send("\x15exit\n")
        assert term.wait() == 0
    finally:
        term.close()
