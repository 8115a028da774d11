"""``--json``: every document has exactly the keys pyvirt.cli.json_out.KEYS
documents (the README's table), with values equal to what virsh prints for
the same daemon and guests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemons import Pyvirtd
from guests import tiny_xml

from pyvirt.cli.json_out import BUILDERS, KEYS

PYVIRT = str(Path(sys.executable).parent / "pyvirt")
VIRSH = shutil.which("virsh")
pytestmark = pytest.mark.skipif(VIRSH is None, reason="stock virsh is the reference")


@pytest.fixture(scope="module")
def host(tmp_path_factory, guests_built):
    daemon = Pyvirtd(tmp_path_factory.mktemp("json") / "host")
    try:
        daemon.start()
        import pyvirt
        conn = pyvirt.open(daemon.uri)
        for name in ("run1", "off1"):
            conn.defineXML(tiny_xml(name, daemon.workdir / f"{name}.log"))
        conn.lookupByName("run1").create()
        conn.close()
        yield daemon
    finally:
        leaked = daemon.cleanup()
    assert not leaked


def as_json(host: Pyvirtd, *words: str):
    out = subprocess.run([PYVIRT, "-c", host.uri, *words, "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def virsh(host: Pyvirtd, *words: str) -> str:
    return subprocess.run([VIRSH, "-c", host.uri, *words], capture_output=True, text=True, check=True).stdout


def fields(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines() if ":" in line)}


def check_keys(command: str, doc) -> None:
    shape, keys = KEYS[command]
    items = doc if shape in ("list", "records") else [doc]
    assert isinstance(doc, list) == (shape != "object")
    for item in items:
        assert set(item) == set(keys), f"{command}: keys {sorted(item)} are not the documented {sorted(keys)}"


def test_every_json_command_is_documented():
    assert set(BUILDERS) == set(KEYS)
    assert {"list", "dominfo", "domstate", "domstats", "domjobinfo", "nodeinfo"} <= set(KEYS)


def test_list(host):
    doc = as_json(host, "list", "--all")
    check_keys("list", doc)
    by_name = {d["name"]: d for d in doc}
    assert set(by_name) == {"run1", "off1"}
    rows = {line.split()[1]: line.split() for line in virsh(host, "list", "--all").splitlines()[2:] if line.strip()}
    assert by_name["run1"]["id"] == int(rows["run1"][0])
    assert by_name["off1"]["id"] is None and rows["off1"][0] == "-"
    assert by_name["run1"]["state"] == "running" and by_name["off1"]["state"] == "shut off"
    assert by_name["run1"]["reason"] == "booted" and by_name["run1"]["state_code"] == 1
    assert by_name["run1"]["uuid"] == virsh(host, "domuuid", "run1").strip()
    assert [d["name"] for d in as_json(host, "list")] == ["run1"]            # active only, as virsh
    assert [d["name"] for d in as_json(host, "list", "--inactive")] == ["off1"]


@pytest.mark.parametrize("name", ["run1", "off1"])
def test_dominfo(host, name):
    doc = as_json(host, "dominfo", name)
    check_keys("dominfo", doc)
    theirs = fields(virsh(host, "dominfo", name))
    assert doc["name"] == theirs["Name"] and doc["uuid"] == theirs["UUID"]
    assert doc["id"] == (None if theirs["Id"] == "-" else int(theirs["Id"]))
    assert doc["state"] == theirs["State"] and doc["os_type"] == theirs["OS Type"]
    assert f"{doc['max_memory_kib']} KiB" == theirs["Max memory"]
    assert doc["persistent"] is (theirs["Persistent"] == "yes")
    assert doc["autostart"] is (theirs["Autostart"] == "enable")
    assert doc["managed_save"] is (theirs["Managed save"] == "yes")
    assert (doc["cpu_time_ns"] is None) == (name == "off1")


def test_domstate(host):
    doc = as_json(host, "domstate", "run1")
    check_keys("domstate", doc)
    assert f"{doc['state']} ({doc['reason']})" == virsh(host, "domstate", "--reason", "run1").strip()
    doc = as_json(host, "domstate", "off1")
    assert f"{doc['state']} ({doc['reason']})" == virsh(host, "domstate", "--reason", "off1").strip()


def test_domstats(host):
    doc = as_json(host, "domstats", "--state", "--balloon")
    check_keys("domstats", doc)
    assert {d["name"] for d in doc} == {"run1", "off1"}
    text = virsh(host, "domstats", "--state", "--balloon", "run1")
    theirs = dict(re.findall(r"^\s+(\S+)=(\S+)$", text, re.M))
    ours = next(d["stats"] for d in doc if d["name"] == "run1")
    assert set(ours) == set(theirs)
    for key in ("state.state", "state.reason", "balloon.maximum"):
        assert str(ours[key]) == theirs[key]
    one = as_json(host, "domstats", "--state", "off1")
    assert [d["name"] for d in one] == ["off1"] and one[0]["stats"]["state.state"] == 5


def test_domjobinfo_without_a_job(host):
    doc = as_json(host, "domjobinfo", "run1")
    check_keys("domjobinfo", doc)
    assert doc["type"] == "None" and doc["type_code"] == 0 and doc["operation"] is None
    assert fields(virsh(host, "domjobinfo", "run1"))["Job type"] == "None"


def test_nodeinfo(host):
    doc = as_json(host, "nodeinfo")
    check_keys("nodeinfo", doc)
    theirs = fields(virsh(host, "nodeinfo"))
    assert doc["cpu_model"] == theirs["CPU model"] and doc["cpus"] == int(theirs["CPU(s)"])
    assert doc["sockets"] == int(theirs["CPU socket(s)"]) and doc["cores"] == int(theirs["Core(s) per socket"])
    assert doc["threads"] == int(theirs["Thread(s) per core"]) and doc["numa_cells"] == int(theirs["NUMA cell(s)"])
    assert f"{doc['memory_kib']} KiB" == theirs["Memory size"]


def test_errors_stay_virsh_s(host):
    out = subprocess.run([PYVIRT, "-c", host.uri, "dominfo", "nosuch", "--json"], capture_output=True, text=True)
    assert out.returncode == 1 and "error: failed to get domain 'nosuch'" in out.stderr and out.stdout.strip() == ""
    # a command without a JSON form refuses the option as any unknown one
    out = subprocess.run([PYVIRT, "-c", host.uri, "domid", "run1", "--json"], capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr == "error: command 'domid' doesn't support option --json\n"
