"""pyvirt's virNetwork and virConnect's network methods.

Unit part: the calls each method makes (procedure, arguments in wire order) and
what it returns, over a recording driver; errors compared with python3-libvirt's.
Integration part: pyvirt's library against a real pyvirtd (with its network driver)
inside a network namespace the test creates, its answers compared with stock
python3-libvirt's on the same daemon.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

import pyvirt
from pyvirt.api.network import LEASE_KEYS, lease_dict, virNetwork
from pyvirt.connection import virConnect
from pyvirt.refs import NetworkRef

NET_UUID = uuid.UUID("dd8fe884-6c02-601e-7551-cca97df1c5df").bytes
REF = NetworkRef("default", NET_UUID)
LEASE = ("virbr9", 1700000000, 0, "52:54:00:aa:bb:01", None, "192.168.150.10", 24, "guest", "01:52:54:00:aa:bb:01")


class RecordingDriver:
    """A driver connection that records each call and answers from ``answers``."""

    closed = False
    read_only = False

    def __init__(self, answers: dict, methods: set[str] | None = None) -> None:
        self.calls: list[tuple] = []
        self.answers = answers
        self.methods = methods

    def __getattr__(self, name: str):
        if name.startswith("_") or (self.methods is not None and name not in self.methods):
            raise AttributeError(name)

        async def method(*args):
            self.calls.append((name, *args))
            answer = self.answers.get(name)
            return answer(*args) if callable(answer) else answer
        return method


def connect(answers: dict, methods: set[str] | None = None) -> tuple[virConnect, RecordingDriver]:
    drv = RecordingDriver(answers, methods)
    return virConnect(drv, "qemu:///system"), drv


def test_handle_identity_and_queries_use_the_network_procedures():
    conn, drv = connect({"network_lookup_by_name": REF, "network_get_xml_desc": "<network/>",
                         "network_get_bridge_name": "virbr9", "network_get_autostart": 1,
                         "network_is_active": 0, "network_is_persistent": 1})
    net = conn.networkLookupByName("default")
    assert isinstance(net, virNetwork) and isinstance(net, pyvirt.virNetwork)
    assert (net.name(), net.UUID(), net.UUIDString()) == (
        "default", NET_UUID, "dd8fe884-6c02-601e-7551-cca97df1c5df")
    assert net.connect() is conn
    assert net.XMLDesc(1) == "<network/>"
    assert (net.bridgeName(), net.autostart(), net.isActive(), net.isPersistent()) == ("virbr9", 1, 0, 1)
    assert drv.calls == [("network_lookup_by_name", "default"), ("network_get_xml_desc", REF, 1),
                         ("network_get_bridge_name", REF), ("network_get_autostart", REF),
                         ("network_is_active", REF), ("network_is_persistent", REF)]


def test_actions_return_zero_as_libvirt_python():
    conn, drv = connect({})
    net = virNetwork(conn, REF)
    assert [net.create(), net.destroy(), net.setAutostart(True), net.undefine()] == [0, 0, 0, 0]
    assert drv.calls == [("network_create", REF), ("network_destroy", REF),
                         ("network_set_autostart", REF, 1), ("network_undefine", REF)]


def test_lists_counts_and_lookups():
    other = NetworkRef("isolated", bytes(range(16)))
    conn, drv = connect({"connect_list_all_networks": ([REF, other], 2), "connect_num_of_networks": 1,
                         "connect_num_of_defined_networks": 1, "connect_list_networks": ["default"],
                         "connect_list_defined_networks": ["isolated"], "network_lookup_by_uuid": other})
    nets = conn.listAllNetworks(3)
    assert [n.name() for n in nets] == ["default", "isolated"]
    assert (conn.listNetworks(), conn.listDefinedNetworks()) == (["default"], ["isolated"])
    assert (conn.numOfNetworks(), conn.numOfDefinedNetworks()) == (1, 1)
    assert conn.networkLookupByUUIDString("00010203-0405-0607-0809-0a0b0c0d0e0f").name() == "isolated"
    assert conn.networkLookupByUUID(bytes(range(16))).UUID() == bytes(range(16))
    assert ("connect_list_all_networks", 1, 3) in drv.calls      # need_results, flags
    # libvirt-python asks for the count, then for that many names
    assert drv.calls[1:5] == [("connect_num_of_networks",), ("connect_list_networks", 1),
                              ("connect_num_of_defined_networks",), ("connect_list_defined_networks", 1)]
    assert drv.calls[-2:] == [("network_lookup_by_uuid", bytes(range(16)))] * 2


def test_define_and_create_with_and_without_flags():
    conn, drv = connect({name: REF for name in ("network_define_xml", "network_define_xml_flags",
                                                "network_create_xml", "network_create_xml_flags")})
    for api in (conn.networkDefineXML, conn.networkCreateXML):
        assert api("<network/>").name() == "default"
    conn.networkDefineXMLFlags("<network/>", 1)
    conn.networkCreateXMLFlags("<network/>", 1)
    assert [c[0] for c in drv.calls] == ["network_define_xml", "network_create_xml",
                                         "network_define_xml_flags", "network_create_xml_flags"]
    assert drv.calls[2] == ("network_define_xml_flags", "<network/>", 1)


def test_flags_calls_on_a_driver_without_them():
    """A daemon without libvirt 7.8's _FLAGS procedures: no flag asked for is the plain call,
    a flag is NO_SUPPORT (never a Python error)."""
    conn, drv = connect({"network_define_xml": REF, "network_create_xml": REF},
                        methods={"network_define_xml", "network_create_xml"})
    assert conn.networkDefineXMLFlags("<network/>", 0).name() == "default"
    assert conn.networkCreateXMLFlags("<network/>").name() == "default"
    assert [c[0] for c in drv.calls] == ["network_define_xml", "network_create_xml"]
    with pytest.raises(pyvirt.libvirtError) as exc:
        conn.networkDefineXMLFlags("<network/>", 1)
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_NO_SUPPORT
    assert exc.value.get_error_domain() == pyvirt.VIR_FROM_NETWORK


@pytest.mark.parametrize("correct_order", [1, 0])
def test_update_sends_command_and_section_as_libvirt_s_client(correct_order):
    """libvirt 9.0's virNetworkUpdate swaps command and section for a driver that does not
    report VIR_DRV_FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER (16): stock virsh does so
    against a daemon answering 0 ("Argument order feature detection returned: 0")."""
    conn, drv = connect({"connect_supports_feature": lambda feature: correct_order if feature == 16 else 0})
    assert virNetwork(conn, REF).update(3, 4, -1, "<host/>", 2) == 0
    first, second = (3, 4) if correct_order else (4, 3)
    assert drv.calls == [("connect_supports_feature", 16),
                         ("network_update", REF, first, second, -1, "<host/>", 2)]


def test_dhcp_leases_are_libvirt_python_dicts():
    conn, drv = connect({"network_get_dhcp_leases": ([LEASE], 1)})
    leases = virNetwork(conn, REF).DHCPLeases("52:54:00:aa:bb:01")
    assert drv.calls == [("network_get_dhcp_leases", REF, "52:54:00:aa:bb:01", 1, 0)]
    assert leases == [dict(zip(LEASE_KEYS, LEASE))]
    assert list(leases[0]) == ["iface", "expirytime", "type", "mac", "iaid", "ipaddr", "prefix",
                               "hostname", "clientid"]
    assert virNetwork(conn, REF).DHCPLeases() == leases and drv.calls[-1][2] is None

    class Record:          # a driver may hand a record instead of the wire tuple
        def __init__(self):
            for key, value in zip(LEASE_KEYS, LEASE):
                setattr(self, key, value)
    assert lease_dict(Record()) == leases[0]


def test_network_ports_are_no_support():
    conn, drv = connect({})
    net = virNetwork(conn, REF)
    for call, api in ((lambda: net.listAllPorts(), "virNetworkListAllPorts"),
                      (lambda: net.portCreateXML("<networkport/>"), "virNetworkPortCreateXML"),
                      (lambda: net.portLookupByUUIDString(str(uuid.UUID(bytes=NET_UUID))),
                       "virNetworkPortLookupByUUID")):
        with pytest.raises(pyvirt.libvirtError) as exc:
            call()
        assert exc.value.get_error_code() == pyvirt.VIR_ERR_NO_SUPPORT
        assert exc.value.get_error_message() == f"this function is not supported by the connection driver: {api}"
    assert drv.calls == []


def test_read_only_connection_refuses_define_but_lists():
    conn, drv = connect({"connect_list_all_networks": ([], 0)})
    drv.read_only = True
    assert conn.listAllNetworks() == []
    with pytest.raises(pyvirt.libvirtError) as exc:
        conn.networkDefineXML("<network/>")
    assert exc.value.get_error_code() == pyvirt.VIR_ERR_OPERATION_DENIED


REFERENCE = """
import json, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
c = libvirt.open("test:///default")
try:
    c.networkLookupByUUIDString({text!r})
except libvirt.libvirtError as e:
    print(json.dumps([e.get_error_code(), e.get_error_domain(), e.get_error_message()]))
"""


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3") or subprocess.run(
    ["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode != 0,
    reason="python3-libvirt not installed")
@pytest.mark.parametrize("text", ["zz", "dd8fe884-6c02-601e-7551-cca97df1c5dX", ""])
def test_bad_uuid_string_is_libvirt_s_error(text):
    theirs = json.loads(subprocess.run(["/usr/bin/python3", "-c", REFERENCE.format(text=text)],
                                       capture_output=True, text=True, timeout=60).stdout)
    conn, drv = connect({})
    with pytest.raises(pyvirt.libvirtError) as exc:
        conn.networkLookupByUUIDString(text)
    assert [exc.value.get_error_code(), exc.value.get_error_domain(), exc.value.get_error_message()] == theirs
    assert drv.calls == []


CONSTANTS = """
import json, libvirt
prefixes = ("VIR_CONNECT_LIST_NETWORKS_", "VIR_NETWORK_XML_", "VIR_NETWORK_UPDATE_", "VIR_NETWORK_SECTION_",
            "VIR_NETWORK_CREATE_", "VIR_NETWORK_DEFINE_", "VIR_IP_ADDR_TYPE_")
print(json.dumps({n: getattr(libvirt, n) for n in dir(libvirt) if n.startswith(prefixes)}))
"""


@pytest.mark.skipif(subprocess.run(["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode,
                    reason="python3-libvirt not installed")
def test_network_constants_are_libvirt_python_s():
    theirs = json.loads(subprocess.run(["/usr/bin/python3", "-c", CONSTANTS], capture_output=True, text=True,
                                       timeout=60).stdout)
    assert len(theirs) > 30
    assert {name: getattr(pyvirt, name, None) for name in theirs} == theirs


def test_exported_names():
    assert "virNetwork" in pyvirt.__all__
    assert pyvirt.virNetwork is virNetwork


# -- against a real pyvirtd, beside stock python3-libvirt ----------------------------

from netns_daemon import has_network_driver, libvirtd_test_driver, needs_netns, netns_pyvirtd  # noqa: E402

needs_python3_libvirt = pytest.mark.skipif(subprocess.run(
    ["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode != 0,
    reason="python3-libvirt not installed")

# One walk through the network API; run once with ``import pyvirt as libvirt`` and once
# with python3-libvirt on the same daemon, it must print the same record.  It leaves
# the daemon as it found it.
WALK = r'''
import json, sys
LIB = sys.argv[2]
if LIB == "pyvirt":
    import pyvirt as libvirt
else:
    import libvirt
    libvirt.registerErrorHandler(lambda *a: None, None)
XML = """<network>
  <name>walk</name>
  <uuid>6a1d2b1c-0000-4000-8000-00000000c0de</uuid>
  <bridge name='pvwalk0'/>
  <ip address='10.77.0.1' prefix='24'/>
</network>
"""
c = libvirt.open(sys.argv[1])
out = []

def err(call):
    try:
        call()
        out.append("no error")
    except libvirtError as e:
        out.append([e.get_error_code(), e.get_error_domain(), e.get_error_message()])

libvirtError = libvirt.libvirtError

def val(call):
    try:
        return call()
    except libvirtError as e:
        return [e.get_error_code(), e.get_error_domain(), e.get_error_message()]

net = c.networkDefineXML(XML)
out.append([type(net).__name__, net.name(), net.UUIDString(), net.UUID().hex()])
out.append([net.isActive(), net.isPersistent(), net.autostart(), net.bridgeName()])
out.append(sorted(n.name() for n in c.listAllNetworks(0)))
out.append(sorted(n.name() for n in c.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_INACTIVE)))
out.append([c.numOfNetworks(), c.numOfDefinedNetworks(), "walk" in c.listDefinedNetworks()])
out.append([c.networkLookupByName("walk").name(), c.networkLookupByUUIDString(net.UUIDString()).name(),
            c.networkLookupByUUID(net.UUID()).name()])
out.append(net.XMLDesc(0).startswith("<network"))
err(lambda: net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))    # libvirt's test driver refuses the flag
out.append([net.setAutostart(1), net.autostart(),
            [n.name() for n in c.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART)],
            net.setAutostart(0), net.autostart()])
err(lambda: c.networkLookupByName("nosuch"))
err(lambda: c.networkLookupByUUIDString("6a1d2b1c-0000-4000-8000-00000000dead"))
err(lambda: c.networkLookupByUUIDString("not-a-uuid"))
err(lambda: net.destroy())
out.append(net.create())
out.append([net.isActive(), "walk" in c.listNetworks(), c.numOfNetworks() >= 1])
out.append(sorted(n.name() for n in c.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)))
out.append(val(lambda: net.DHCPLeases()))
out.append(val(lambda: net.DHCPLeases("52:54:00:00:00:01")))
err(lambda: net.create())
def define_clash():                      # the same bridge as an active network
    other = c.networkDefineXML(XML.replace("walk", "walk2").replace("c0de", "c0df"))
    other.undefine()                     # (leave the daemon as found, whatever happens)
err(define_clash)
out.append(net.destroy())
out.append(net.isActive())
out.append(net.undefine())
err(lambda: net.isActive())
tmp = c.networkCreateXML(XML.replace("walk", "tmpwalk").replace("c0de", "c0d1").replace("pvwalk0", "pvtmp0"))
out.append([tmp.name(), tmp.isActive(), tmp.isPersistent(),
            [n.name() for n in c.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_TRANSIENT)]])
out.append(tmp.destroy())
err(lambda: c.networkLookupByName("tmpwalk"))
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def netdaemon(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    with netns_pyvirtd(tmp_path_factory.mktemp("netclient") / "host") as daemon:
        if not has_network_driver(daemon):
            pytest.skip("this pyvirtd has no network driver")
        yield daemon


def _walk(python: str, lib: str, uri: str) -> list:
    out = subprocess.run([python, "-c", WALK, uri, lib], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__))))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_netns
@needs_python3_libvirt
def test_library_walk_matches_python3_libvirt(netdaemon):
    import sys
    ours = _walk(sys.executable, "pyvirt", netdaemon.uri)
    theirs = _walk("/usr/bin/python3", "libvirt", netdaemon.uri)
    ours[0][0] = theirs[0][0]     # the class: pyvirt.virNetwork vs libvirt.virNetwork, same name
    assert ours == theirs
    assert ours[0][:2] == ["virNetwork", "walk"] and ours[1] == [0, 1, 0, "pvwalk0"]
    assert [43, 19, "Network not found: no network with matching name 'nosuch'"] in ours


VIRT_MANAGER = r'''
import json, re, sys
if sys.argv[2] == "pyvirt":
    import pyvirt as libvirt
else:
    import libvirt
c = libvirt.open(sys.argv[1])
# what virt-manager's connection polling asks of networks and pools
nets = [[n.name(), n.UUIDString(), n.isActive(), n.isPersistent(), n.autostart(), n.XMLDesc(0)]
        for n in c.listAllNetworks(0)]
pools = []
for p in c.listAllStoragePools(0):
    vols = []
    if p.isActive():
        p.refresh(0)
        vols = sorted([v.name(), v.key(), v.path(), v.info(), v.XMLDesc(0)] for v in p.listAllVolumes(0))
    # (a dir pool's allocation and free space are its filesystem's, changing under other work)
    pools.append([p.name(), p.UUIDString(), p.isActive(), p.isPersistent(), p.autostart(), p.info()[:2],
                  re.sub(r"<(allocation|available)[^>]*>\d+</(allocation|available)>", "", p.XMLDesc(0)),
                  p.numOfVolumes() if p.isActive() else None, sorted(p.listVolumes()) if
                  p.isActive() else None, vols])
default_net = [c.networkLookupByName("vmnet").bridgeName()]
print(json.dumps({"nets": sorted(nets), "pools": sorted(pools), "vmnet": default_net}))
'''


@needs_netns
@needs_python3_libvirt
def test_virt_manager_style_listing_with_pyvirt_as_libvirt(netdaemon, tmp_path):
    """``import pyvirt as libvirt``: a virt-manager-style listing of networks and pools
    gives what python3-libvirt gives on the same daemon."""
    import sys
    conn = pyvirt.open(netdaemon.uri)
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    made = []
    try:
        pool = conn.storagePoolDefineXML(f"<pool type='dir'><name>vmpool</name><target><path>{pool_dir}</path>"
                                         "</target></pool>", 0)
        made.append(pool.undefine)
        pool.create(0)
        made.append(pool.destroy)
        vol = pool.createXML("<volume><name>disk1.qcow2</name><capacity unit='MiB'>4</capacity>"
                             "<target><format type='qcow2'/></target></volume>", 0)
        made.append(lambda: vol.delete(0))
        net = conn.networkDefineXML("<network><name>vmnet</name><bridge name='pvvm0'/>"
                                    "<mac address='52:54:00:76:00:01'/><ip address='10.76.0.1' prefix='24'/></network>")
        made.append(net.undefine)
        net.create()
        made.append(net.destroy)
        _compare_listing(netdaemon, sys.executable)
    finally:
        for undo in reversed(made):
            undo()
        conn.close()


def _compare_listing(netdaemon, python: str) -> None:
    import sys
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
    runs = [subprocess.run([python, "-c", VIRT_MANAGER, netdaemon.uri, lib], capture_output=True, text=True,
                           timeout=120, env=env) for python, lib in ((sys.executable, "pyvirt"),
                                                                      ("/usr/bin/python3", "libvirt"))]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    ours, theirs = (json.loads(r.stdout) for r in runs)
    assert ours == theirs
    assert "vmnet" in [n[0] for n in ours["nets"]] and ours["vmnet"] == ["pvvm0"]
    vmpool = [p for p in ours["pools"] if p[0] == "vmpool"][0]
    assert vmpool[2] == 1 and vmpool[8] == ["disk1.qcow2"] and vmpool[9][0][0] == "disk1.qcow2"


@pytest.fixture(scope="module")
def libvirtd_test_uri(tmp_path_factory):
    with libvirtd_test_driver(tmp_path_factory.mktemp("netlibvirtd")) as uri:
        yield uri


@pytest.mark.libvirtd
@needs_python3_libvirt
def test_library_walk_matches_python3_libvirt_on_libvirtd(libvirtd_test_uri):
    """The same walk against libvirtd 9.0's own network code (its test driver): pyvirt's
    client decodes what a real libvirtd sends exactly as python3-libvirt does."""
    import sys
    ours = _walk(sys.executable, "pyvirt", libvirtd_test_uri)
    theirs = _walk("/usr/bin/python3", "libvirt", libvirtd_test_uri)
    ours[0][0] = theirs[0][0]
    assert ours == theirs
    assert ours[0][:2] == ["virNetwork", "walk"]
    assert [43, 12, "Network not found: no network with matching name 'nosuch'"] in ours    # VIR_FROM_TEST


NAMES = """
import json, libvirt
print(json.dumps({"net": [n for n in dir(libvirt.virNetwork) if not n.startswith("_")],
                  "conn": [n for n in dir(libvirt.virConnect) if "etwork" in n and not n.startswith("_")]}))
"""


@needs_python3_libvirt
def test_every_libvirt_python_network_method_exists():
    names = json.loads(subprocess.run(["/usr/bin/python3", "-c", NAMES], capture_output=True, text=True,
                                      timeout=60).stdout)
    assert [n for n in names["net"] if not hasattr(pyvirt.virNetwork, n)] == ["c_pointer"]   # a C pointer
    assert [n for n in names["conn"] if not hasattr(pyvirt.virConnect, n)] == []
    assert len(names["net"]) > 15 and len(names["conn"]) > 10


BAD_CALLS = [     # (label, expression over c: a connection, n: a network handle)
    ("lookup None", "c.networkLookupByName(None)"), ("lookup int", "c.networkLookupByName(5)"),
    ("define None", "c.networkDefineXML(None)"), ("define flags None", "c.networkDefineXMLFlags(None, 0)"),
    ("create None", "c.networkCreateXML(None)"), ("uuidstr None", "c.networkLookupByUUIDString(None)"),
    ("update None", "n.update(1, 4, -1, None, 0)"), ("update str", "n.update('a', 4, -1, '<x/>')"),
    ("xml flags str", "n.XMLDesc('x')"), ("autostart huge", "n.setAutostart(2 ** 40)"),
    ("autostart str", "n.setAutostart('x')"), ("leases mac int", "n.DHCPLeases(5)"),
    ("list flags str", "c.listAllNetworks('x')"),
]
BAD_REFERENCE = """
import json, sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
c = libvirt.open("test:///default")
n = c.networkLookupByName("default")
out = {}
for label, expr in json.loads(sys.argv[1]):
    try:
        eval(expr, {"c": c, "n": n})
        out[label] = "no error"
    except libvirt.libvirtError as e:
        out[label] = ["libvirtError", e.get_error_code(), e.get_error_domain(), e.get_error_message()]
    except Exception as e:
        out[label] = [type(e).__name__, str(e)]
print(json.dumps(out))
"""


@needs_python3_libvirt
def test_bad_arguments_fail_as_in_libvirt_python():
    """Wrong types and NULLs fail in the client, before any call, as libvirt-python fails them."""
    theirs = json.loads(subprocess.run(["/usr/bin/python3", "-c", BAD_REFERENCE, json.dumps(BAD_CALLS)],
                                       capture_output=True, text=True, timeout=60).stdout)
    conn, drv = connect({"connect_supports_feature": 1})
    net = virNetwork(conn, REF)
    ours = {}
    for label, expr in BAD_CALLS:
        try:
            eval(expr, {"c": conn, "n": net})
            ours[label] = "no error"
        except pyvirt.libvirtError as e:
            ours[label] = ["libvirtError", e.get_error_code(), e.get_error_domain(), e.get_error_message()]
        except Exception as e:
            ours[label] = [type(e).__name__, str(e)]
    assert ours == theirs
    assert [c for c in drv.calls if c[0] != "connect_supports_feature"] == []
