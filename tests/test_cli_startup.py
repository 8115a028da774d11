"""What one ``pyvirt`` call loads: only the module of its command, no event
loop for plain commands (the blocking connection), the full remote driver
where a command needs it — and the same output either way.  Start-up time
itself is measured by bench/cli.py, not asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemons import Pyvirtd
from guests import REPO, tiny_xml

PYVIRT = str(Path(sys.executable).parent / "pyvirt")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    daemon = Pyvirtd(tmp_path_factory.mktemp("startup") / "host")
    try:
        daemon.start()
        import pyvirt
        conn = pyvirt.open(daemon.uri)
        conn.defineXML(tiny_xml("quiet", daemon.workdir / "quiet.log"))
        conn.close()
        yield daemon
    finally:
        daemon.cleanup()


def imported(*argv: str) -> tuple[set[str], str]:
    """The modules a pyvirt call imports (from -X importtime) and its output."""
    out = subprocess.run([sys.executable, "-X", "importtime", PYVIRT, *argv], capture_output=True, text=True,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr
    mods = {line.split("|")[2].strip() for line in out.stderr.splitlines()
            if line.startswith("import time:") and "self [us]" not in line}
    return mods, out.stdout


@pytest.mark.parametrize("words", [["list", "--all"], ["dominfo", "quiet"], ["domstate", "quiet"], ["nodeinfo"],
                                   ["domstats", "quiet"], ["domjobinfo", "quiet"]])
def test_plain_commands_load_no_event_loop_and_no_other_command(host, words):
    mods, _ = imported("-c", host.uri, *words)
    assert "pyvirt.drivers.remote.blocking" in mods
    for heavy in ("asyncio", "pyvirt.rpc.client", "pyvirt.drivers.remote.driver", "lxml.etree", "rich",
                  "ssl", "pyvirt.rpc.sasl", "pyvirt.cli.console_cmds", "pyvirt.cli.devices_cmds",
                  "pyvirt.cli.json_out",
                  # what only error paths, other commands or other layers need
                  "logging", "dataclasses", "inspect", "shutil", "urllib.parse", "xml.etree.ElementTree",
                  "uuid", "pyvirt.enums_more"):
        assert heavy not in mods, f"{' '.join(words)} imported {heavy}"
    if words[0] != "domjobinfo":
        assert "pyvirt.cli.migrate_cmds" not in mods
    assert "typing" not in mods, f"{' '.join(words)} imported typing at run time"


def test_every_constant_is_still_there_and_made_on_first_use():
    """pyvirt.enums makes the rest of its classes (pyvirt.enums_more) only when
    asked: every name is still there, with libvirt's values."""
    out = subprocess.run([sys.executable, "-c", """if True:
        import sys
        import pyvirt.enums as enums
        assert "pyvirt.enums_more" not in sys.modules
        from pyvirt.enums import JobType
        assert "pyvirt.enums_more" in sys.modules and enums.JobType is JobType
        import pyvirt
        print(pyvirt.VIR_DOMAIN_JOB_UNBOUNDED, pyvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE,
              pyvirt.VIR_DOMAIN_RUNNING, len(enums.PUBLIC_PREFIXES) > 50, "JobType" in dir(enums))
        """], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "2", "1", "True", "True"]


def test_help_loads_no_client_at_all():
    mods, out = imported("help", "domstate")
    assert "domstate <domain>" in out
    assert "pyvirt.connection" not in mods and "asyncio" not in mods


def test_blocking_and_full_driver_print_the_same(host):
    """The same words one-shot (blocking connection) and through the shell (full driver)."""
    for words in (["list", "--all"], ["dominfo", "quiet"], ["domstate", "--reason", "quiet"], ["nodeinfo"],
                  ["list", "--all", "--json"]):
        one_shot = subprocess.run([PYVIRT, "-q", "-c", host.uri, *words], capture_output=True, text=True, check=True)
        shell = subprocess.run([PYVIRT, "-q", "-c", host.uri], input=" ".join(words) + "\nquit\n",
                               capture_output=True, text=True, check=True)
        assert one_shot.stdout in shell.stdout, words


def test_commands_needing_events_or_streams_use_the_full_driver(host):
    mods, _ = imported("-c", host.uri, "list; event --list")
    assert "pyvirt.drivers.remote.driver" in mods and "pyvirt.drivers.remote.blocking" not in mods


def test_errors_are_the_same_as_the_full_driver_s(tmp_path):
    uri = f"qemu+unix:///system?socket={tmp_path}/none"
    ours = subprocess.run([PYVIRT, "-c", uri, "list"], capture_output=True, text=True)
    full = subprocess.run([PYVIRT, "-c", uri, "list; event --list"], capture_output=True, text=True)
    assert ours.returncode == full.returncode == 1
    assert ours.stderr == full.stderr
    assert "error: failed to connect to the hypervisor" in ours.stderr


def test_blocking_connection_refuses_events_and_streams_loudly(host):
    import pyvirt
    conn = pyvirt._open_oneshot(host.uri)
    drv = conn._drv
    try:
        assert [d.name() for d in conn.listAllDomains(0)] == ["quiet"]
        with pytest.raises(pyvirt.libvirtError, match="full remote driver") as exc:
            conn.domainEventRegisterAny(None, pyvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda *a: None, None)
        assert exc.value.get_error_code() == pyvirt.VIR_ERR_NO_SUPPORT
        with pytest.raises(pyvirt.libvirtError, match="full remote driver"):
            drv.domain_open_console(None, None, 0)
    finally:
        conn.close()
    assert not conn.isAlive()
