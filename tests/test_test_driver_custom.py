"""test:///PATH: a custom host file in libvirt's format lists what libvirt's test driver lists.

tests/data/testdriver/host/node.xml is a host written for these tests in the document
format libvirt's test driver reads (modelled on its examples/xml/test/ layout): domains
inline and in an included file, running, paused (``<test:runstate>``), shut off with a
managed-save image (``<test:hasmanagedsave>``) and transient (``<test:transient>``), with
tuning elements and a tree of snapshots (``<test:domainsnapshot>``, one current);
networks, pools with volumes (inline and included), interfaces, node devices, and the node's ``<cpu>``/``<memory>`` figures.  inline-host.xml adds the
corners (a pool whose included file drops its nested volumes, a paused transient domain).
Each is opened by libvirt's test driver (python3-libvirt, in process) and by pyvirt's,
and everything they list is compared: node info, capabilities, every object's state and
XML, interfaces, node devices, counts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyvirt
from daemons import Pyvirtd

DATA = Path(__file__).parent / "data" / "testdriver"
LISTER = DATA / "list_host.py"
LIBVIRT_PYTHON = "/usr/bin/python3"
# libvirt's own host files, as Debian's libvirt-doc ships them (make deps installs it):
# testnode.xml includes its domains, networks and pool from files beside it
LIBVIRT_EXAMPLES = Path("/usr/share/doc/libvirt-doc/examples/xml/test")
LIBVIRT_HOSTS = [LIBVIRT_EXAMPLES / "testnodeinline.xml"]
HOSTS = [DATA / "host" / "node.xml", DATA / "inline-host.xml", *LIBVIRT_HOSTS]
# Debian's package leaves out testdomfc5.xml, which testnode.xml includes: libvirt itself
# cannot open the shipped file (see test_libvirt_example_host_with_a_missing_include)
MISSING_INCLUDE = "testdomfc5.xml"


def _needs_examples() -> None:
    if not (LIBVIRT_EXAMPLES / "testnode.xml").exists():
        pytest.skip("libvirt-doc (libvirt's example host files) is not installed")


def _listing(python: str, module: str, uri: str) -> dict:
    out = subprocess.run([python, str(LISTER), module, uri], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def libvirt_available() -> None:
    if subprocess.run([LIBVIRT_PYTHON, "-c", "import libvirt"], capture_output=True).returncode:
        pytest.skip("python3-libvirt is not installed")


@pytest.mark.parametrize("host", HOSTS, ids=lambda p: p.name)
def test_custom_host_lists_as_in_libvirt(libvirt_available, host):
    if host in LIBVIRT_HOSTS:
        _needs_examples()
    _compare_listings(host)


def _compare_listings(host: Path) -> None:
    uri = f"test://{host}"
    want = _listing(LIBVIRT_PYTHON, "libvirt", uri)
    got = _listing(sys.executable, "pyvirt", uri)
    assert got["uri"] == want["uri"] == uri
    assert sorted(got) == sorted(want)
    for key in want:
        if key != "domains":
            assert got[key] == want[key], key
    assert sorted(got["domains"]) == sorted(want["domains"])
    for name, dom in want["domains"].items():
        assert got["domains"][name] == dom, name


def _open_error(python: str, module: str, uri: str) -> list:
    """(code, domain, message) of the error opening ``uri``, from a process of its own."""
    script = (f"import json, {module} as lv\n"
              f"try:\n    lv.open({uri!r})\n    print(json.dumps(None))\n"
              "except lv.libvirtError as e:\n"
              "    print(json.dumps([e.get_error_code(), e.get_error_domain(), e.get_error_message()]))\n")
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_libvirt_example_host_with_a_missing_include(libvirt_available):
    """The shipped testnode.xml names a file that is not there: both refuse it alike."""
    _needs_examples()
    assert not (LIBVIRT_EXAMPLES / MISSING_INCLUDE).exists()
    uri = f"test://{LIBVIRT_EXAMPLES / 'testnode.xml'}"
    want = _open_error(LIBVIRT_PYTHON, "libvirt", uri)
    assert want is not None and MISSING_INCLUDE in want[2]
    assert _open_error(sys.executable, "pyvirt", uri) == want


def test_libvirt_example_host_lists_as_in_libvirt(libvirt_available, tmp_path):
    """testnode.xml and the files it includes, less the include the package does not ship."""
    _needs_examples()
    copy = tmp_path / "test"
    shutil.copytree(LIBVIRT_EXAMPLES, copy)
    node = copy / "testnode.xml"
    text = node.read_text()
    include = f'<domain file="{MISSING_INCLUDE}"/>'
    assert include in text
    # the domain it names is not in the package: without it the rest of the host can load
    node.write_text(text.replace(include, ""))
    _compare_listings(node)


def test_host_file_errors_are_libvirts(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<node><domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                   "<name>x</name><memory>1024</memory><os><type>hvm</type></os>"
                   "<test:transient/><test:runstate>5</test:runstate></domain></node>")
    with pytest.raises(pyvirt.libvirtError) as info:
        pyvirt.open(f"test://{bad}")
    assert info.value.get_error_code() == pyvirt.VIR_ERR_XML_ERROR
    assert "transient domain cannot have runstate 'shutoff'" in info.value.get_error_message()
    with pytest.raises(pyvirt.libvirtError):
        pyvirt.open(f"test://{tmp_path}/missing.xml")


def test_each_connection_to_a_host_file_has_its_own_host():
    uri = f"test://{HOSTS[0]}"
    first, second = pyvirt.open(uri), pyvirt.open(uri)
    first.lookupByName("web").destroy()
    assert first.lookupByName("web").isActive() == 0
    assert second.lookupByName("web").isActive() == 1      # as libvirt: private per connection
    first.close()
    second.close()


def test_pyvirtd_reads_no_host_file_a_client_names(tmp_path):
    daemon = Pyvirtd(tmp_path / "daemon")
    daemon.start()
    try:
        with pytest.raises(pyvirt.libvirtError) as info:
            pyvirt.open(f"test+tcp://127.0.0.1:{daemon.tcp_port}{HOSTS[0]}")
        assert info.value.get_error_code() == pyvirt.VIR_ERR_NO_CONNECT
        assert "test:///default only" in info.value.get_error_message()
        conn = pyvirt.open(daemon.test_uri)      # the default host is still served
        assert conn.lookupByName("test").isActive() == 1
        conn.close()
    finally:
        daemon.stop()


def test_pyvirt_command_line_reads_a_host_file_in_process():
    """``pyvirt -c test:///PATH`` loads the file itself (no daemon) and lists as virsh does."""
    if shutil.which("virsh") is None:
        pytest.skip("stock virsh is not installed")
    uri = f"test://{HOSTS[0]}"
    commands = ("list --all; net-list --all; pool-list --all --details; vol-list images; vol-list archive; "
                "nodeinfo; dominfo backup; domstate web --reason; domstate db --reason; domstate backup --reason; "
                "snapshot-list web --tree; snapshot-current web --name")
    want = subprocess.run(["virsh", "-c", uri, commands], capture_output=True, text=True, timeout=60)
    got = subprocess.run([sys.executable, "-m", "pyvirt.cli", "-c", uri, commands],
                         capture_output=True, text=True, timeout=60)
    clock = re.compile(r"^CPU time:.*$", re.M)     # the test driver's CPU time is a clock reading
    assert (got.returncode, clock.sub("T", got.stdout), got.stderr) == \
        (want.returncode, clock.sub("T", want.stdout), want.stderr)
    assert "paused (unknown)" in want.stdout and "Managed save:   yes" in want.stdout
