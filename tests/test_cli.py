"""The pyvirt command line prints what virsh prints, checked against stock
virsh on the same test-driver walk-through."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

URI = "test:///default"
FOO = "<domain type='test'><name>foo</name><uuid>0f0f0f0f-1111-2222-3333-444444444444</uuid><memory>1024</memory><os><type>hvm</type></os></domain>"
WALK = ("define {f}; list --all; start foo; list; domstate foo --reason; suspend foo; "
        "domstate --reason foo; resume foo; dominfo foo; destroy foo; domstate --reason foo; "
        "undefine foo; list --all --name; nodeinfo; uri")


def pyvirt_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", URI, *args],
                          capture_output=True, text=True, timeout=60)


def virsh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60)


needs_virsh = pytest.mark.skipif(shutil.which("virsh") is None, reason="virsh (libvirt-clients) not installed")


def _drop_unstable(text: str) -> str:
    # CPU time and the security lines depend on the driver's bookkeeping, not the CLI.
    skip = ("CPU time:", "Security model:", "Security DOI:", "Security label:", "OS Type:")
    return "\n".join(line for line in text.splitlines() if not line.startswith(skip))


@needs_virsh
def test_walkthrough_output_matches_virsh(tmp_path):
    xml = tmp_path / "foo.xml"
    xml.write_text(FOO)
    ours, theirs = pyvirt_cli(WALK.format(f=xml)), virsh(WALK.format(f=xml))
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert _drop_unstable(ours.stdout) == _drop_unstable(theirs.stdout)


@needs_virsh
@pytest.mark.parametrize("command", ["domstate nosuch", "start test", "dominfo 42"])
def test_errors_print_like_virsh(command):
    ours, theirs = pyvirt_cli(command), virsh(command)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr.strip() == theirs.stderr.strip()


def test_define_error_names_file_and_cause(tmp_path):
    xml = tmp_path / "lxc.xml"
    xml.write_text("<domain type='lxc'><name>x</name><memory>1024</memory><os><type>exe</type></os></domain>")
    out = pyvirt_cli("define", str(xml))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[0] == f"error: Failed to define domain from {xml}"
    assert lines[1].startswith("error: unsupported configuration:") and "'lxc'" in lines[1]


def test_missing_file_is_reported():
    out = pyvirt_cli("define", "/nonexistent/dom.xml")
    assert out.returncode == 1
    assert out.stderr.strip() == "error: Failed to open file '/nonexistent/dom.xml': No such file or directory"


def test_table_layout_is_virsh_s():
    from pyvirt.cli.output import table_lines
    assert table_lines(["Id", "Name", "State"], [["1", "test", "running"], ["-", "foo", "shut off"]]) == [
        " Id   Name   State", "-----------------------", " 1    test   running", " -    foo    shut off"]


def _interleaved(argv: list[str]) -> bytes:
    """stdout and stderr on one pipe: what an operator's terminal shows, in its order."""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60).stdout


@needs_virsh
@pytest.mark.parametrize("words", [["dominfo", "nosuch"], ["domstate", "nosuch", "--reason"],
                                   ["list --all; dominfo nosuch"]])
def test_a_failure_prints_its_error_before_the_closing_blank_line(words):
    ours = _interleaved([sys.executable, "-m", "pyvirt.cli", "-c", URI, *words])
    theirs = _interleaved(["virsh", "-c", URI, *words])
    assert ours == theirs
    assert ours.endswith(b"error: failed to get domain 'nosuch'\n\n")


@needs_virsh
@pytest.mark.parametrize("words", [["setmem", "test"], ["setmaxmem", "test"], ["setvcpus", "test"],
                                   ["attach-disk", "test", "/x.img"], ["detach-disk", "test"],
                                   ["attach-device", "test"], ["domif-setlink", "test", "eth0"],
                                   ["attach-interface", "test", "network"], ["change-media", "test"]])
def test_a_missing_required_option_is_named_as_virsh_names_it(words):
    """(It was a traceback: the message read a command name the arguments did not carry.)"""
    ours, theirs = pyvirt_cli(*words), virsh(*words)
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)
    assert theirs.stderr.startswith(f"error: command '{words[0]}' requires ")


@needs_virsh
@pytest.mark.parametrize("words", [["domstate", "test", "--bogus"], ["domstate", "test", "--reason", "--x=1"],
                                   ["dominfo", "test", "extra"], ["list", "--nosuch"]])
def test_a_refused_option_is_virsh_s_error_and_status(words):
    ours, theirs = pyvirt_cli(*words), virsh(*words)
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr) == \
        (1, "", theirs.stderr)
    assert "usage:" not in ours.stderr


@needs_virsh
def test_an_unreachable_migration_destination_is_reported_as_virsh_reports_it():
    words = ["migrate", "test", "qemu+tcp://127.0.0.1:1/system"]    # nothing listens on port 1
    ours, theirs = pyvirt_cli(*words), virsh(*words)
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)
    assert theirs.stderr.startswith("error: unable to connect to server at '127.0.0.1:1'")


@needs_virsh
@pytest.mark.parametrize("line", ["dominfo nosuch; list --name; domstate nosuch2",
                                  "dominfo nosuch; list --name", "list --name; dominfo nosuch; domstate test",
                                  "list --name; quit; list --name", "dominfo nosuch; exit",
                                  "domstate test; list --nosuch", "domstate test; nosuchcommand",
                                  "list --name; dominfo; list --name", "dominfo"])
def test_a_line_of_commands_runs_on_after_a_failure_as_virsh_does(line):
    """virsh runs every command of the line (unless one does not parse: then none runs, or
    up to a quit), and ends with the last one's status."""
    ours = subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", URI, line],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    theirs = subprocess.run(["virsh", "-c", URI, line], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)
