"""pyvirt's net-* commands print what virsh 9.0 prints.

Unit part: each command's handler over networks whose every answer was read
with python3-libvirt from libvirt's own test driver (a node file with three
networks), its output diffed with stock virsh's on that same driver and state;
argument handling, the lease table, --xpath and net-edit from fixed records.
Integration part (tests/test_network_client.py's daemon): pyvirt's CLI and
stock virsh on the same pyvirtd.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from pyvirt.cli import network_cmds
from pyvirt.cli.registry import CommandError, parser_for
from pyvirt.errors import ErrorDomain, ErrorLevel, ErrorNumber, libvirtError

NODE = """<node>
  <network>
    <name>default</name>
    <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
    <forward mode='nat'/>
    <bridge name='virbr0' stp='on' delay='0'/>
    <ip address='192.168.122.1' netmask='255.255.255.0'>
      <dhcp>
        <range start='192.168.122.2' end='192.168.122.254'/>
        <host mac='52:54:00:00:00:07' name='seven' ip='192.168.122.7'/>
      </dhcp>
    </ip>
  </network>
  <network>
    <name>Isolated</name>
    <uuid>11111111-2222-3333-4444-555555555555</uuid>
    <bridge name='virbr7'/>
    <ip address='10.9.0.1' prefix='24'/>
  </network>
  <network>
    <name>apple</name>
    <uuid>aaaaaaaa-2222-3333-4444-555555555555</uuid>
    <bridge name='virbr8'/>
  </network>
</node>
"""
TRANSIENT = "<network><name>Tmp</name><uuid>99999999-2222-3333-4444-555555555555</uuid><bridge name='virbr9'/></network>"
# the state both sides start from: one network stopped, one autostarted, one transient
SETUP = "net-destroy apple; net-autostart Isolated; net-create {transient}"

SNAPSHOT = """
import json, sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
c = libvirt.open(sys.argv[1])
c.networkLookupByName("apple").destroy()
c.networkLookupByName("Isolated").setAutostart(1)
c.networkCreateXML(open(sys.argv[2]).read())
out = {"nets": [], "errors": {}}
for n in c.listAllNetworks(0):
    out["nets"].append({"name": n.name(), "uuid": n.UUIDString(), "active": n.isActive(),
                        "persistent": n.isPersistent(), "autostart": n.autostart(),
                        "bridge": n.bridgeName(), "xml": n.XMLDesc(0)})
for kind, call in (("name", lambda: c.networkLookupByName("nosuch")),
                   ("uuid", lambda: c.networkLookupByUUIDString("00000000-0000-0000-0000-000000000000"))):
    try:
        call()
    except libvirt.libvirtError as e:
        out["errors"][kind] = [e.get_error_code(), e.get_error_domain(), e.get_error_message()]
print(json.dumps(out))
"""

needs_virsh = pytest.mark.skipif(shutil.which("virsh") is None or subprocess.run(
    ["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode != 0,
    reason="stock virsh and python3-libvirt needed")


class RecordedNetwork:
    """A network answering as libvirt's test driver answered python3-libvirt."""

    def __init__(self, record: dict) -> None:
        self.record = record

    def name(self) -> str:
        return self.record["name"]

    def UUIDString(self) -> str:
        return self.record["uuid"]

    def isActive(self) -> int:
        return self.record["active"]

    def isPersistent(self) -> int:
        return self.record["persistent"]

    def autostart(self) -> int:
        return self.record["autostart"]

    def bridgeName(self) -> str:
        return self.record["bridge"]

    def XMLDesc(self, flags: int = 0) -> str:
        return self.record["xml"]

    # actions succeed here (their failures are the driver's, tested with the daemon)
    def create(self) -> int:
        return 0

    destroy = undefine = create

    def setAutostart(self, autostart: int) -> int:
        return 0


class RecordedConnection:
    def __init__(self, snapshot: dict) -> None:
        self.nets = [RecordedNetwork(r) for r in snapshot["nets"]]
        self.errors = snapshot["errors"]

    def _error(self, kind: str, asked: str) -> libvirtError:
        code, domain, message = self.errors[kind]    # as recorded for the name or UUID asked then
        recorded = "nosuch" if kind == "name" else "00000000-0000-0000-0000-000000000000"
        return libvirtError(message.replace(recorded, asked), code, domain, ErrorLevel.ERROR)

    def listAllNetworks(self, flags: int = 0) -> list[RecordedNetwork]:
        def keep(n: RecordedNetwork) -> bool:
            pairs = ((1, 2, not n.isActive()), (4, 8, n.isPersistent()), (16, 32, n.autostart()))
            for yes, no, value in pairs:
                if flags & (yes | no) and not ((flags & yes and value) or (flags & no and not value)):
                    return False
            return True
        return [n for n in self.nets if keep(n)]

    def networkDefineXML(self, xml: str) -> RecordedNetwork:
        import re
        return RecordedNetwork({"name": re.search(r"<name>([^<]*)</name>", xml).group(1)})

    networkCreateXML = networkDefineXML

    def networkDefineXMLFlags(self, xml: str, flags: int) -> RecordedNetwork:
        assert flags == 1      # VIR_NETWORK_DEFINE_VALIDATE / _CREATE_VALIDATE
        return self.networkDefineXML(xml)

    networkCreateXMLFlags = networkDefineXMLFlags

    def networkLookupByName(self, name: str) -> RecordedNetwork:
        for n in self.nets:
            if n.name() == name:
                return n
        raise self._error("name", name)

    def networkLookupByUUIDString(self, text: str) -> RecordedNetwork:
        for n in self.nets:
            if n.UUIDString() == text:
                return n
        raise self._error("uuid", text)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    work = tmp_path_factory.mktemp("netref")
    (work / "node.xml").write_text(NODE)
    (work / "tmp.xml").write_text(TRANSIENT)
    (work / "new.xml").write_text("<network><name>fresh</name><bridge name='virbr5'/></network>")
    with open(work / "big.xml", "wb") as f:          # over virsh's 10 MiB for an XML file
        f.truncate(10 * 1024 * 1024 + 1)
    uri = f"test://{work}/node.xml"
    out = subprocess.run(["/usr/bin/python3", "-c", SNAPSHOT, uri, str(work / "tmp.xml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return uri, str(work / "tmp.xml"), json.loads(out.stdout)


def virsh_after_setup(uri: str, transient: str, command: str) -> tuple[str, str]:
    setup = SETUP.format(transient=transient)
    before = subprocess.run(["virsh", "-c", uri, setup], capture_output=True, text=True, timeout=60)
    after = subprocess.run(["virsh", "-c", uri, f"{setup}; {command}"], capture_output=True, text=True,
                           timeout=60)
    if not after.stdout and after.stderr.startswith("error: command "):
        return after.stdout, after.stderr       # refused while parsing the line: nothing ran
    assert after.stdout.startswith(before.stdout)
    return after.stdout[len(before.stdout):], after.stderr


def run_pyvirt(conn, words: list[str], capsys) -> tuple[str, list[str]]:
    """One command's handler on ``conn``: its stdout, and the error lines the CLI prints."""
    parser, handler = parser_for(words[0])
    capsys.readouterr()
    errors: list[str] = []
    try:
        handler(conn, parser.parse_args(words[1:]))
    except CommandError as exc:
        errors = [f"error: {exc}"]
        if isinstance(exc.__cause__, libvirtError):
            errors.append(f"error: {exc.__cause__.get_error_message()}")
        if not getattr(exc, "options_refused", False):
            print()
    except libvirtError as exc:
        errors = [f"error: {exc.get_error_message()}"]
        print()
    return capsys.readouterr().out, errors


COMMANDS = [
    "net-list", "net-list --all", "net-list --inactive", "net-list --all --table", "net-list --all --name",
    "net-list --all --uuid", "net-list --all --persistent", "net-list --transient",
    "net-list --all --autostart", "net-list --all --no-autostart", "net-list --inactive --autostart",
    "net-list --name --uuid", "net-info default", "net-info apple", "net-info Tmp",
    "net-info 11111111-2222-3333-4444-555555555555", "net-info --network Isolated", "net-info nosuch",
    "net-info 00000000-0000-0000-0000-000000000000", "net-info", "net-uuid default", "net-uuid nosuch",
    "net-uuid dd8fe884-6c02-601e-7551-cca97df1c5df", "net-name dd8fe884-6c02-601e-7551-cca97df1c5df",
    "net-name default", "net-dumpxml default", "net-dumpxml --network apple",
    "net-dumpxml default --xpath //host", "net-dumpxml default --xpath //range --wrap",
    "net-dumpxml default --xpath //@stp", "net-dumpxml default --xpath //ip|//name",
    "net-dumpxml default --xpath //nomatch", "net-dumpxml default --xpath //nomatch --wrap",
    "net-dumpxml default --xpath count(//ip)",
    "net-start apple", "net-destroy default", "net-destroy dd8fe884-6c02-601e-7551-cca97df1c5df",
    "net-undefine apple", "net-autostart default", "net-autostart --disable Isolated",
    "net-define {new}", "net-define --validate {new}", "net-create {new}", "net-create --file {new}",
    "net-define /nonexistent.xml", "net-start nosuch", "net-define /tmp", "net-create {big}",
    "net-event --list", "net-event", "net-event --event bogus", "net-event --event lifecycle --timeout 0",
    "net-event --event lifecycle --timeout abc",
]


@needs_virsh
@pytest.mark.parametrize("command", COMMANDS)
def test_output_matches_virsh_on_libvirt_s_test_driver(reference, command, capsys):
    uri, transient, snapshot = reference
    command = command.format(new=os.path.join(os.path.dirname(transient), "new.xml"),
                             big=os.path.join(os.path.dirname(transient), "big.xml"))
    theirs_out, theirs_err = virsh_after_setup(uri, transient, command)
    ours_out, ours_err = run_pyvirt(RecordedConnection(snapshot), command.split(), capsys)
    assert ours_out == theirs_out
    assert ours_err == theirs_err.strip().splitlines()


# -- units: flags, words, numbers ---------------------------------------------------

def _args(command: str) -> argparse.Namespace:
    words = command.split()
    parser, _handler = parser_for(words[0])
    return parser.parse_args(words[1:])


@pytest.mark.parametrize("command, flags", [
    ("net-list", 2), ("net-list --inactive", 1), ("net-list --all", 3), ("net-list --inactive --all", 3),
    ("net-list --persistent", 2 | 4), ("net-list --all --transient", 3 | 8),
    ("net-list --autostart --no-autostart", 2 | 16 | 32),
])
def test_net_list_flags_are_virsh_s(command, flags):
    assert network_cmds.list_flags(_args(command)) == flags


def test_update_words_and_numbers():
    assert [network_cmds.update_command(w) for w in ("modify", "delete", "add-last", "add", "add-first")] == \
        [1, 2, 3, 3, 4]
    assert network_cmds.update_section("ip-dhcp-host") == 4 and network_cmds.update_section("dns-srv") == 12
    for bad, message in ((lambda: network_cmds.update_command("none"), "unrecognized command name 'none'"),
                         (lambda: network_cmds.update_section("bogus"), "unrecognized section name 'bogus'")):
        with pytest.raises(CommandError, match=message):
            bad()
    assert network_cmds.parse_int(None, "parent-index", -1) == -1
    assert network_cmds.parse_int("2", "parent-index", -1) == 2
    for text in ("abc", "1.5", "4294967296", " 1"):
        with pytest.raises(CommandError) as exc:
            network_cmds.parse_int(text, "parent-index", -1)
        assert str(exc.value) == f"Numeric value '{text}' for <parent-index> option is malformed or out of range"


class UpdatingNetwork:
    def __init__(self, active: int) -> None:
        self.active = active
        self.calls: list[tuple] = []

    def name(self) -> str:
        return "n1"

    def isActive(self) -> int:
        return self.active

    def update(self, *args) -> int:
        self.calls.append(args)
        return 0


class OneNetwork:
    def __init__(self, net) -> None:
        self.net = net

    def networkLookupByName(self, name: str):
        return self.net


@pytest.mark.parametrize("options, active, flags, said", [
    ("--config --live", 1, 3, "Updated network n1 persistent config and live state"),
    ("--config", 1, 2, "Updated network n1 persistent config"),
    ("--live", 0, 1, "Updated network n1 live state"),
    ("", 1, 0, "Updated network n1 live state"),
    ("", 0, 0, "Updated network n1 persistent config"),
])
def test_net_update_calls_and_message(options, active, flags, said, capsys, tmp_path):
    net = UpdatingNetwork(active)
    element = tmp_path / "host.xml"
    element.write_text("<host mac='52:54:00:00:00:08' ip='10.9.0.8'/>")
    out, errors = run_pyvirt(OneNetwork(net), f"net-update n1 add ip-dhcp-host {element} {options}".split()
                             + ["--parent-index", "0"], capsys)
    assert errors == []
    assert net.calls == [(3, 4, 0, element.read_text(), flags)]
    assert out == said + "\n"      # virsh prints it without a newline of its own


def test_net_update_refusals(capsys):
    net = UpdatingNetwork(1)
    conn = OneNetwork(net)
    assert run_pyvirt(conn, "net-update n1 add".split(), capsys) == (
        "", ["error: command 'net-update' requires <section> option"])
    assert run_pyvirt(conn, "net-update n1 add ip --live --current <ip/>".split(), capsys)[1] == [
        "error: Options --current and --live are mutually exclusive"]
    assert run_pyvirt(conn, ["net-update", "n1", "add", "ip", "/nonexistent.xml"], capsys)[1] == [
        "error: Failed to open file '/nonexistent.xml': No such file or directory"]
    assert net.calls == []


# -- units: the lease table ---------------------------------------------------------

LEASES = [
    {"iface": "virbr9", "expirytime": 1700000000, "type": 0, "mac": "52:54:00:BB:00:02", "iaid": None,
     "ipaddr": "10.9.0.20", "prefix": 24, "hostname": None, "clientid": "01:52:54:00:bb:00:02"},
    {"iface": "virbr9", "expirytime": 1700003600, "type": 1, "mac": "52:54:00:aa:00:01", "iaid": "7",
     "ipaddr": "fd00::10", "prefix": 64, "hostname": "guest", "clientid": None},
]


def test_lease_rows_as_virsh(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    import time
    time.tzset()
    try:
        rows = network_cmds.lease_rows(LEASES)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert rows == [   # sorted by MAC ignoring case; absent values "-"
        ["2023-11-14 23:13:20", "52:54:00:aa:00:01", "ipv6", "fd00::10/64", "guest", "-"],
        ["2023-11-14 22:13:20", "52:54:00:BB:00:02", "ipv4", "10.9.0.20/24", "-", "01:52:54:00:bb:00:02"],
    ]


def test_dhcp_leases_table_and_failure(capsys):
    class LeasingNetwork:
        def __init__(self, leases):
            self.leases, self.asked = leases, []

        def DHCPLeases(self, mac=None, flags=0):
            self.asked.append(mac)
            if self.leases is None:
                raise libvirtError("Requested operation is not valid: network 'n1' is not active",
                                   ErrorNumber.OPERATION_INVALID, ErrorDomain.NETWORK)
            return self.leases

    net = LeasingNetwork([])
    out, errors = run_pyvirt(OneNetwork(net), "net-dhcp-leases n1 --mac 52:54:00:aa:00:01".split(), capsys)
    assert errors == [] and net.asked == ["52:54:00:aa:00:01"]
    assert out.splitlines()[0].split() == ["Expiry", "Time", "MAC", "address", "Protocol", "IP", "address",
                                           "Hostname", "Client", "ID", "or", "DUID"]
    assert out.endswith("-\n\n")
    out, errors = run_pyvirt(OneNetwork(LeasingNetwork(None)), "net-dhcp-leases n1".split(), capsys)
    assert errors == ["error: Failed to get leases info for n1",
                      "error: Requested operation is not valid: network 'n1' is not active"]


# -- units: net-edit ----------------------------------------------------------------

class EditableConnection(OneNetwork):
    def __init__(self, xml: str) -> None:
        super().__init__(self)
        self.xml, self.defined = xml, []

    def XMLDesc(self, flags: int = 0) -> str:
        assert flags == 1      # net-edit edits the persistent definition
        return self.xml

    def name(self) -> str:
        return "n1"

    def networkDefineXML(self, xml: str):
        if "<bad/>" in xml:
            raise libvirtError("XML error: bad", ErrorNumber.XML_ERROR, ErrorDomain.NETWORK)
        self.defined.append(xml)
        return self


def _editor(tmp_path, script: str) -> str:
    path = tmp_path / "editor.sh"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


def test_net_edit(tmp_path, monkeypatch, capsys):
    conn = EditableConnection("<network>\n  <name>n1</name>\n</network>\n")
    import tempfile
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "true"))
    assert run_pyvirt(conn, ["net-edit", "n1"], capsys) == ("Network n1 XML configuration not changed.\n\n", [])
    monkeypatch.setenv("EDITOR", _editor(tmp_path, "sed -i 's|</name>|</name><bridge name=\"b1\"/>|' \"$1\""))
    assert run_pyvirt(conn, ["net-edit", "n1"], capsys) == ("Network n1 XML configuration edited.\n\n", [])
    assert conn.defined == ["<network>\n  <name>n1</name><bridge name=\"b1\"/>\n</network>\n"]
    # VISUAL wins over EDITOR, and an editor command with arguments runs through sh
    breaking = _editor(tmp_path, 'echo "<bad/>" >> "$2"')
    monkeypatch.setenv("VISUAL", breaking + " unused")
    assert run_pyvirt(conn, ["net-edit", "n1"], capsys)[1] == ["error: Failed.", "error: XML error: bad"]
    monkeypatch.setenv("VISUAL", _editor(tmp_path, "exit 3"))
    errors = run_pyvirt(conn, ["net-edit", "n1"], capsys)[1]
    assert len(errors) == 1 and "command failed" in errors[0]
    assert len(conn.defined) == 1
    assert os.listdir(scratch) == []       # the temporary file is gone every time


def test_xpath_on_attributes_and_text():
    xml = "<network>\n  <name>a&amp;b</name>\n  <bridge name='x\"y' stp='on'/>\n</network>\n"
    assert network_cmds.xpath_lines(xml, "//@name", False) == ' name="x&quot;y"\n'
    assert network_cmds.xpath_lines(xml, "//name/text()", False) == "a&b\n"
    assert network_cmds.xpath_lines(xml, "//name", True) == "<nodes>\n  <name>a&amp;b</name>\n</nodes>\n"
    with pytest.raises(libvirtError, match="Incorrect xpath '//\\['"):
        network_cmds.xpath_lines(xml, "//[", False)


@needs_virsh
def test_json_net_list_keys(capsys, reference):
    from pyvirt.cli import json_out
    _uri, _transient, snapshot = reference
    parser, handler = parser_for("net-list")
    json_out.handler("net-list")(RecordedConnection(snapshot), parser.parse_args(["--all"]))
    doc = json.loads(capsys.readouterr().out)
    assert [n["name"] for n in doc] == ["apple", "default", "Isolated", "Tmp"]
    assert all(set(n) == set(json_out.KEYS["net-list"][1]) for n in doc)
    assert doc[2] == {"name": "Isolated", "uuid": "11111111-2222-3333-4444-555555555555", "active": True,
                      "persistent": True, "autostart": True, "bridge": "virbr7"}


# -- against a real pyvirtd: pyvirt's CLI and stock virsh on the same daemon ------------

from netns_daemon import has_network_driver, needs_netns, netns_pyvirtd  # noqa: E402

WALK_XML = """<network>
  <name>cliwalk</name>
  <uuid>6a1d2b1c-0000-4000-8000-0000000c1100</uuid>
  <bridge name='pvcli0'/>
  <mac address='52:54:00:78:00:01'/>
  <ip address='10.78.0.1' prefix='24'>
    <dhcp>
      <range start='10.78.0.10' end='10.78.0.99'/>
    </dhcp>
  </ip>
</network>
"""
TRANSIENT_XML = WALK_XML.replace("cliwalk", "clitmp").replace("c1100", "c1101").replace("pvcli0", "pvclitmp0") \
    .replace("10.78.", "10.79.").replace(":78:00:01", ":79:00:01")
HOST = "<host mac='52:54:00:00:78:01' name='h1' ip='10.78.0.50'/>"
CLI_WALK = [
    "net-define {xml}", "net-list --all", "net-list --all --name", "net-info cliwalk", "net-uuid cliwalk",
    "net-name 6a1d2b1c-0000-4000-8000-0000000c1100", "net-dumpxml cliwalk", "net-dumpxml --inactive cliwalk",
    "net-dumpxml cliwalk --xpath //range", "net-autostart cliwalk", "net-list --all --autostart",
    "net-autostart cliwalk --disable", "net-list --inactive --no-autostart", "net-start cliwalk",
    "net-list", "net-info 6a1d2b1c-0000-4000-8000-0000000c1100", "net-dhcp-leases cliwalk",
    "net-dhcp-leases cliwalk --mac 52:54:00:00:78:01", "net-start cliwalk",
    f"net-update cliwalk add ip-dhcp-host \"{HOST}\" --live --config", "net-dumpxml cliwalk --xpath //host",
    "net-destroy cliwalk", "net-destroy cliwalk", "net-edit cliwalk", "net-dumpxml cliwalk --xpath //bridge",
    "net-undefine cliwalk", "net-info cliwalk", "net-create {tmp}", "net-list --transient",
    "net-destroy clitmp", "net-list --all --uuid", "net-undefine nosuch",
]


@pytest.fixture(scope="module")
def cli_daemon(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    with netns_pyvirtd(tmp_path_factory.mktemp("netcli") / "host") as daemon:
        if not has_network_driver(daemon):
            pytest.skip("this pyvirtd has no network driver")
        yield daemon


@needs_netns
@needs_virsh
def test_cli_walk_matches_virsh_on_pyvirtd(cli_daemon, tmp_path):
    (tmp_path / "walk.xml").write_text(WALK_XML)
    (tmp_path / "tmp.xml").write_text(TRANSIENT_XML)
    editor = _editor(tmp_path, "sed -i \"s|<bridge name='pvcli0'|<bridge name='pvcli1'|\" \"$1\"")
    env = dict(os.environ, EDITOR=editor, TZ="UTC")
    env.pop("VISUAL", None)
    repo = os.path.dirname(os.path.dirname(__file__))

    def walk(argv: list[str]) -> list[tuple[int, str, str]]:
        results = []
        for template in CLI_WALK:
            command = template.format(xml=tmp_path / "walk.xml", tmp=tmp_path / "tmp.xml")
            out = subprocess.run(argv + ["-c", cli_daemon.uri, command], capture_output=True, text=True,
                                 timeout=120, env=dict(env, PYTHONPATH=repo))
            results.append((out.returncode, out.stdout, out.stderr))
        return results

    ours = walk([sys.executable, "-m", "pyvirt.cli"])
    theirs = walk(["virsh"])
    for command, mine, stock in zip(CLI_WALK, ours, theirs):
        assert mine == stock, command
    # the walk did what it says, so the equality above is about real output
    outputs = dict(zip(CLI_WALK, ours))
    assert outputs["net-list"][1].split("\n")[2].split()[:2] == ["cliwalk", "active"]
    assert outputs["net-destroy cliwalk"][0] == 1 or "destroyed" in outputs["net-destroy cliwalk"][1]
    assert "pvcli1" in outputs["net-dumpxml cliwalk --xpath //bridge"][1]
    assert outputs["net-info cliwalk"][0] == 1


LEASE_XML = """<network>
  <name>leasenet</name>
  <uuid>6a1d2b1c-0000-4000-8000-0000000c1180</uuid>
  <bridge name='pvlease0'/>
  <mac address='52:54:00:80:00:01'/>
  <ip address='10.80.0.1' prefix='24'>
    <dhcp>
      <range start='10.80.0.10' end='10.80.0.99'/>
    </dhcp>
  </ip>
</network>
"""
CLIENT_MAC = "52:54:00:00:80:01"
LEASES_JSON = """
import json, sys
if sys.argv[2] == "pyvirt":
    import pyvirt as libvirt
else:
    import libvirt
c = libvirt.open(sys.argv[1])
n = c.networkLookupByName("leasenet")
print(json.dumps([n.DHCPLeases(), n.DHCPLeases(sys.argv[3]), n.DHCPLeases("52:54:00:00:80:99")]))
"""


@needs_netns
@needs_virsh
@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox (udhcpc) not installed")
def test_dhcp_leases_of_a_real_client_match_virsh(cli_daemon, tmp_path):
    """A DHCP client in a second namespace, on a veth port of the network's bridge, gets a
    lease from the network's dnsmasq; net-dhcp-leases and DHCPLeases() show it as stock
    virsh and python3-libvirt do."""
    import secrets
    import time
    import pyvirt
    from netns_daemon import ns_run
    conn = pyvirt.open(cli_daemon.uri)
    net = conn.networkDefineXML(LEASE_XML)
    client = f"pyvirt-dhcp-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", client], check=True, timeout=30)
    try:
        net.create()
        ns_run(cli_daemon.netns, "ip", "link", "add", "vlh0", "type", "veth", "peer", "name", "vlg0",
               "netns", client)
        ns_run(cli_daemon.netns, "ip", "link", "set", "vlh0", "master", "pvlease0", "up")
        ns_run(client, "ip", "link", "set", "vlg0", "address", CLIENT_MAC)
        ns_run(client, "ip", "link", "set", "vlg0", "up")
        got = subprocess.run(["ip", "netns", "exec", client, "busybox", "udhcpc", "-i", "vlg0", "-f", "-q", "-n",
                              "-t", "20", "-T", "1", "-s", "/bin/true", "-x", "hostname:leasebox"],
                             capture_output=True, text=True, timeout=90)
        assert got.returncode == 0, got.stdout + got.stderr
        # dnsmasq has acknowledged; the daemon may learn of it a moment later (its lease
        # file or script): ask until it answers, within a bound
        deadline = time.monotonic() + 30
        while not net.DHCPLeases() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = dict(os.environ, TZ="UTC", PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
        for command in ("net-dhcp-leases leasenet", f"net-dhcp-leases leasenet --mac {CLIENT_MAC}",
                        "net-dhcp-leases --network leasenet --mac 52:54:00:00:80:99"):
            ours, theirs = (subprocess.run(argv + ["-c", cli_daemon.uri, command], capture_output=True, text=True,
                                           timeout=60, env=env)
                            for argv in ([sys.executable, "-m", "pyvirt.cli"], ["virsh"]))
            assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout,
                                                                   theirs.stderr), command
        row = ours.stdout  # the last (no such MAC): the header alone
        assert row.count("\n") == 3
        listed = subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", cli_daemon.uri, "net-dhcp-leases",
                                 "leasenet"], capture_output=True, text=True, timeout=60, env=env).stdout
        cells = listed.splitlines()[2].split()
        assert cells[2:4] == [CLIENT_MAC, "ipv4"] and cells[4].startswith("10.80.0.") and cells[4].endswith("/24")
        assert 10 <= int(cells[4].split("/")[0].rsplit(".", 1)[1]) <= 99
        assert cells[5] == "leasebox"
        libs = [subprocess.run([python, "-c", LEASES_JSON, cli_daemon.uri, lib, CLIENT_MAC], capture_output=True,
                               text=True, timeout=60, env=env)
                for python, lib in ((sys.executable, "pyvirt"), ("/usr/bin/python3", "libvirt"))]
        assert [r.returncode for r in libs] == [0, 0], [r.stderr for r in libs]
        mine, stock = (json.loads(r.stdout) for r in libs)
        assert mine == stock
        assert mine[0] == mine[1] and len(mine[0]) == 1 and mine[2] == []
        assert mine[0][0]["mac"] == CLIENT_MAC and mine[0][0]["iface"] == "pvlease0"
    finally:
        subprocess.run(["ip", "netns", "delete", client], timeout=30)
        try:
            if net.isActive():
                net.destroy()
        finally:
            net.undefine()
            conn.close()


@needs_netns
@needs_virsh
def test_stock_virsh_sends_net_update_in_wire_order(cli_daemon, tmp_path):
    """pyvirtd reports VIR_DRV_FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER as libvirtd does, so
    libvirt 9.0's client sends command before section (its debug log says which)."""
    (tmp_path / "ord.xml").write_text(WALK_XML.replace("cliwalk", "ordnet").replace("c1100", "c1102")
                                      .replace("pvcli0", "pvord0").replace(":78:00:01", ":78:00:02"))
    env = dict(os.environ, LIBVIRT_LOG_FILTERS="1:libvirt", LIBVIRT_LOG_OUTPUTS="1:stderr")
    subprocess.run(["virsh", "-c", cli_daemon.uri, "net-define", str(tmp_path / "ord.xml")], check=True,
                   capture_output=True, timeout=60)
    try:
        out = subprocess.run(["virsh", "-c", cli_daemon.uri, "net-update", "ordnet", "add", "ip-dhcp-host",
                              "<host mac='52:54:00:00:78:09' ip='10.78.0.9'/>", "--config"],
                             capture_output=True, text=True, timeout=60, env=env)
        assert "Argument order feature detection returned: 1" in out.stderr
    finally:
        subprocess.run(["virsh", "-c", cli_daemon.uri, "net-undefine", "ordnet"], capture_output=True, timeout=60)


@needs_netns
def test_completion_offers_network_names(cli_daemon, tmp_path):
    import pyvirt
    conn = pyvirt.open(cli_daemon.uri)
    net = conn.networkDefineXML(WALK_XML.replace("cliwalk", "compnet").replace("c1100", "c1103")
                                .replace("pvcli0", "pvcomp0").replace(":78:00:01", ":78:00:03"))
    try:
        def complete(*words: str) -> list[str]:
            out = subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", cli_daemon.uri, "complete", "--", *words],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            return out.stdout.split()
        names = sorted(n.name() for n in conn.listAllNetworks(0))
        assert "compnet" in names
        assert complete("net-info", "") == names
        assert complete("net-start", "comp") == ["compnet"]
        assert complete("net-dumpxml", "--network", "comp") == ["compnet"]
        assert complete("net-autostart", "compnet", "--d") == ["--disable"]
        assert complete("net-list", "--js") == ["--json"]
        assert {"net-list", "net-info", "net-dhcp-leases", "net-update"} <= set(complete("net-"))
    finally:
        net.undefine()
        conn.close()


# -- against libvirtd 9.0: its test driver over RPC, pyvirt's CLI beside stock virsh -------

@pytest.fixture(scope="module")
def libvirtd_test_uri(tmp_path_factory):
    from netns_daemon import libvirtd_test_driver
    with libvirtd_test_driver(tmp_path_factory.mktemp("netlibvirtd")) as uri:
        yield uri


LIBVIRTD_WALK = [
    "net-list --all", "net-info default", "net-dumpxml default", "net-define {xml}", "net-list --all",
    "net-list --inactive --name", "net-info cliwalk", "net-autostart cliwalk", "net-list --all --autostart",
    "net-autostart --disable cliwalk", "net-start cliwalk", "net-start cliwalk", "net-list --uuid",
    "net-dhcp-leases cliwalk", f"net-update cliwalk add ip-dhcp-host \"{HOST}\" --live --config",
    "net-dumpxml cliwalk --xpath //host", "net-update cliwalk bogus ip-dhcp-host x",
    f"net-update cliwalk delete ip-dhcp-host \"{HOST}\"", "net-dumpxml --inactive cliwalk --xpath //host",
    "net-destroy cliwalk", "net-destroy cliwalk", "net-edit cliwalk", "net-dumpxml cliwalk --xpath //bridge",
    "net-undefine cliwalk", "net-undefine cliwalk", "net-create {tmp}", "net-list --transient", "net-info clitmp",
    "net-destroy clitmp", "net-info clitmp", "net-name nosuch", "net-uuid 6a1d2b1c-0000-4000-8000-0000000c1100",
    "net-define /nonexistent.xml",
]


@pytest.mark.libvirtd
@needs_virsh
def test_cli_walk_matches_virsh_on_libvirtd(libvirtd_test_uri, tmp_path):
    (tmp_path / "walk.xml").write_text(WALK_XML)
    (tmp_path / "tmp.xml").write_text(TRANSIENT_XML)
    editor = _editor(tmp_path, "sed -i \"s|<bridge name='pvcli0'|<bridge name='pvcli1'|\" \"$1\"")
    env = dict(os.environ, EDITOR=editor, TZ="UTC", PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
    env.pop("VISUAL", None)

    def walk(argv: list[str]) -> list[tuple[int, str, str]]:
        results = []
        for template in LIBVIRTD_WALK:
            command = template.format(xml=tmp_path / "walk.xml", tmp=tmp_path / "tmp.xml")
            out = subprocess.run(argv + ["-c", libvirtd_test_uri, command], capture_output=True, text=True,
                                 timeout=120, env=env)
            results.append((out.returncode, out.stdout, out.stderr))
        return results

    ours = walk([sys.executable, "-m", "pyvirt.cli"])
    theirs = walk(["virsh"])
    for command, mine, stock in zip(LIBVIRTD_WALK, ours, theirs):
        assert mine == stock, command
    said = dict(zip(LIBVIRTD_WALK, ours))
    assert "10.78.0.50" in said["net-dumpxml cliwalk --xpath //host"][1]
    assert said["net-start cliwalk"][0] == 1 and "pvcli1" in said["net-dumpxml cliwalk --xpath //bridge"][1]


@needs_netns
@needs_virsh
def test_read_only_connection_like_virsh(cli_daemon, tmp_path):
    """On the read-only socket the queries answer and every change is refused, in virsh's words."""
    (tmp_path / "ro.xml").write_text("<network><name>ro1</name><bridge name='pvro0'/></network>")
    import pyvirt
    conn = pyvirt.open(cli_daemon.uri)
    net = conn.networkDefineXML(WALK_XML.replace("cliwalk", "ronet").replace("c1100", "c1104")
                                .replace("pvcli0", "pvro1").replace(":78:00:01", ":78:00:04"))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
    try:
        for command in (f"net-define {tmp_path / 'ro.xml'}", f"net-create {tmp_path / 'ro.xml'}", "net-start ronet",
                        "net-autostart ronet", "net-undefine ronet", "net-destroy ronet",
                        "net-update ronet add ip-dhcp-host <host/>", "net-info ronet", "net-list --all --name",
                        "net-dumpxml ronet"):
            ours, theirs = (subprocess.run(argv + ["-r", "-c", cli_daemon.unix_ro_uri, command], capture_output=True,
                                           text=True, timeout=60, env=env)
                            for argv in ([sys.executable, "-m", "pyvirt.cli"], ["virsh"]))
            assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout,
                                                                   theirs.stderr), command
            if command.startswith(("net-info", "net-list", "net-dumpxml")):
                assert ours.returncode == 0 and "ronet" in ours.stdout
            else:
                assert ours.returncode == 1 and "read only access prevents virNetwork" in ours.stderr
        assert net.isPersistent() and not net.isActive()
    finally:
        net.undefine()
        conn.close()


@needs_netns
@needs_virsh
def test_net_list_json_agrees_with_virsh_table(cli_daemon):
    """``net-list --all --json``: the documented keys, values equal to virsh's table and net-info."""
    from pyvirt.cli.json_out import KEYS
    import pyvirt
    conn = pyvirt.open(cli_daemon.uri)
    net = conn.networkDefineXML(WALK_XML.replace("cliwalk", "jsonnet").replace("c1100", "c1105")
                                .replace("pvcli0", "pvjson0").replace(":78:00:01", ":78:00:05"))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
    try:
        net.setAutostart(1)
        doc = json.loads(subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", cli_daemon.uri, "net-list", "--all",
                                         "--json"], capture_output=True, text=True, timeout=60, env=env, check=True).stdout)
        table = subprocess.run(["virsh", "-c", cli_daemon.uri, "net-list", "--all"], capture_output=True, text=True,
                               timeout=60, check=True).stdout.splitlines()[2:-1]
        assert [[n["name"], "active" if n["active"] else "inactive", "yes" if n["autostart"] else "no",
                 "yes" if n["persistent"] else "no"] for n in doc] == [row.split() for row in table]
        assert all(set(n) == set(KEYS["net-list"][1]) for n in doc)
        mine = [n for n in doc if n["name"] == "jsonnet"][0]
        assert mine == {"name": "jsonnet", "uuid": "6a1d2b1c-0000-4000-8000-0000000c1105", "active": False,
                        "persistent": True, "autostart": True, "bridge": "pvjson0"}
    finally:
        net.undefine()
        conn.close()


@needs_netns
def test_shell_completes_network_names(cli_daemon, tmp_path):
    """In the interactive shell, TAB completes net-* commands and the daemon's network names."""
    from test_cli_shell import PROMPT, PYVIRT, Terminal
    import pyvirt
    conn = pyvirt.open(cli_daemon.uri)
    net = conn.networkDefineXML(WALK_XML.replace("cliwalk", "shellnet").replace("c1100", "c1106")
                                .replace("pvcli0", "pvshell0").replace(":78:00:01", ":78:00:06"))
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "INPUTRC")}
    env.update(HOME=str(tmp_path), TERM="xterm", INPUTRC="/dev/null",
               PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
    term = Terminal([PYVIRT, "-c", cli_daemon.uri], env)
    try:
        term.expect(PROMPT)
        term.send("net-inf\t")
        term.expect(r"net-info $")
        term.send("shell\t")
        term.expect(r"shellnet $")
        term.send("\n")
        assert re.search(r"Bridge:\s+pvshell0", term.expect(PROMPT))
        term.send("net-list --ina\t")
        term.expect(r"net-list --inactive $")
        term.send("\n")
        assert "shellnet" in term.expect(PROMPT)
        term.send("quit\n")
        assert term.wait() == 0
    finally:
        term.close()
        net.undefine()
        conn.close()


@needs_netns
@needs_virsh
def test_net_event_prints_lifecycle_events_like_virsh(cli_daemon, tmp_path):
    """``net-event --loop``: pyvirt's and stock virsh's watchers print the same lines for a
    network defined, started, stopped and undefined; ^C ends both loops with the count."""
    from test_events import Watcher
    import pyvirt
    uri = cli_daemon.uri
    watchers = [Watcher([sys.executable, "-m", "pyvirt.cli", "-c", uri, "net-event", "--event", "lifecycle",
                         "--loop"]),
                Watcher(["virsh", "-c", uri, "net-event", "--event", "lifecycle", "--loop"])]
    conn = pyvirt.open(uri)
    probes = iter(range(1000))

    def probe() -> None:        # virsh says nothing once registered: an event shows it is
        net = conn.networkDefineXML(f"<network><name>probe{next(probes)}</name><bridge name='pvprobe0'/></network>")
        net.undefine()
    try:
        for w in watchers:
            w.probe_until(probe, lambda line: line.startswith("event 'lifecycle' for network probe"), what="a probe")
        net = conn.networkDefineXML(WALK_XML.replace("cliwalk", "evnet").replace("c1100", "c1107")
                                    .replace("pvcli0", "pvev0").replace(":78:00:01", ":78:00:07"))
        net.create()
        net.destroy()
        net.undefine()
        for w in watchers:
            w.wait_for(lambda line: line == "event 'lifecycle' for network evnet: Undefined", what="Undefined")
    finally:
        for w in watchers:
            w.stop()
        conn.close()
    ours, theirs = ([line for line in w.lines if "evnet" in line] for w in watchers)
    assert ours == theirs == [f"event 'lifecycle' for network evnet: {word}"
                              for word in ("Defined", "Started", "Stopped", "Undefined")]
    for w in watchers:
        assert w.lines[-3] == "event loop interrupted" and w.lines[-2].startswith("events received: ")
        assert w.lines[-1] == ""
    assert [w.proc.returncode for w in watchers] == [0, 0]


@needs_netns
@needs_virsh
def test_net_event_one_shot_and_filter(cli_daemon):
    """Without --loop the first event ends the wait; --network filters (virsh's output)."""
    from test_events import Watcher
    import pyvirt
    conn = pyvirt.open(cli_daemon.uri)
    target = conn.networkDefineXML(WALK_XML.replace("cliwalk", "onenet").replace("c1100", "c1108")
                                   .replace("pvcli0", "pvone0").replace(":78:00:01", ":78:00:08"))
    watcher = Watcher([sys.executable, "-m", "pyvirt.cli", "-c", cli_daemon.uri, "net-event", "--event",
                       "lifecycle", "--network", "onenet", "--timestamp"])
    try:
        probes = iter(range(1000))
        # other networks' events are filtered out; the target's own start ends the wait
        for n in probes:
            other = conn.networkDefineXML(f"<network><name>other{n}</name><bridge name='pvoth0'/></network>")
            other.undefine()
            if n == 3:
                break
        # registration is silent: start/stop the target until the one-shot watcher has printed
        while watcher.proc.poll() is None:
            target.create()
            target.destroy()
            try:
                watcher.proc.wait(0.3)
            except subprocess.TimeoutExpired:
                pass
        watcher.stop()
    finally:
        watcher.stop()
        target.undefine()
        conn.close()
    assert watcher.proc.returncode == 0
    assert len(watcher.lines) == 3 and watcher.lines[1:] == ["events received: 1", ""]
    stamp, text = watcher.lines[0].split(": ", 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+0000", stamp)
    assert text in ("event 'lifecycle' for network onenet: Started", "event 'lifecycle' for network onenet: Stopped")


@needs_netns
@needs_virsh
def test_files_that_are_not_xml_or_not_utf8(cli_daemon, tmp_path):
    """A binary file, a Latin-1 one, a directory, one over 10 MiB: pyvirt says what stock
    virsh says on the same daemon, and defines nothing."""
    (tmp_path / "latin.xml").write_bytes(b"<network><name>caf\xe9</name><bridge name='pvlat0'/></network>")
    with open(tmp_path / "big.xml", "wb") as f:
        f.truncate(10 * 1024 * 1024 + 1)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
    for command in ("net-define /bin/true", f"net-define {tmp_path / 'latin.xml'}",
                    f"net-create --validate {tmp_path / 'latin.xml'}", f"net-define {tmp_path}",
                    f"net-define {tmp_path / 'big.xml'}"):
        ours, theirs = (subprocess.run(argv + ["-c", cli_daemon.uri, command], capture_output=True, text=True,
                                       errors="replace", timeout=60, env=env)
                        for argv in ([sys.executable, "-m", "pyvirt.cli"], ["virsh"]))
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), \
            command
        assert ours.returncode == 1
    import pyvirt
    conn = pyvirt.open(cli_daemon.uri)
    try:
        assert not [n.name() for n in conn.listAllNetworks(0) if n.name().startswith("caf")]
    finally:
        conn.close()


NET_COMMANDS = ["net-list", "net-info", "net-define", "net-create", "net-start", "net-destroy", "net-undefine",
                "net-autostart", "net-dumpxml", "net-edit", "net-uuid", "net-name", "net-dhcp-leases", "net-update",
                "net-event"]


@pytest.mark.skipif(shutil.which("virsh") is None, reason="stock virsh needed")
@pytest.mark.parametrize("command", NET_COMMANDS)
def test_help_synopsis_and_options_are_virsh_s(command):
    """``pyvirt help net-X`` has virsh 9.0's SYNOPSIS and OPTIONS (net-list adds --json)."""
    def sections(argv: list[str]) -> tuple[str, list[str]]:
        text = subprocess.run(argv + ["help", command], capture_output=True, text=True, timeout=60).stdout
        lines = text.splitlines()
        synopsis = lines[lines.index("  SYNOPSIS") + 1].strip()
        options = [line.split()[0] for line in lines[lines.index("  OPTIONS") + 1:] if line.strip()]
        return synopsis, options
    ours = sections([sys.executable, "-m", "pyvirt.cli"])
    theirs = sections(["virsh"])
    if command == "net-list":
        ours = (ours[0].replace(" [--json]", ""), [o for o in ours[1] if o != "--json"])
    assert ours == theirs
