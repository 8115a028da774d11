"""The test driver's domain checkpoints against libvirt 9.0's own: one walk, three runs,
compared step by step; virsh's checkpoint commands through pyvirtd; and the QEMU
driver's answer (libvirt's "not supported": pyvirt builds no QEMU checkpoints).

tests/data/testdriver/walk_checkpoints.py runs against libvirt 9.0's test driver through
/usr/bin/python3's libvirt (in process), against pyvirt in process, and with stock
python3-libvirt and pyvirt against pyvirtd's test driver.  Every step must give
libvirt's value, except those in KNOWN, where the test asserts both what libvirt
answers and the value pyvirt gives instead, with the reason.  (A checkpoint keeps a
copy of the running domain's definition: its IDE disk's drive address and IDE
controller are libvirt's post-parse's, tests/test_test_driver_fidelity_diff.py.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from typing import Any, Callable

import pytest

from daemons import Pyvirtd
from walkdiff import (LIBVIRT_PYTHON, WALKS, compare,
                      have_libvirt_test_driver, reference_walk, run_walk, walk_daemon)

WALK = WALKS / "walk_checkpoints.py"

# step -> (reason, what libvirt must answer, the value pyvirt gives instead: a value, or one made from libvirt's)
KNOWN: dict[str, tuple[str, Callable[[Any], bool], Any]] = {}


@pytest.fixture(scope="module")
def reference() -> list:
    return reference_walk(WALK)


@pytest.fixture(scope="module")
def test_daemon(tmp_path_factory):
    # the walk leaves the test host as it found it, so one daemon serves every remote run
    with walk_daemon(tmp_path_factory.mktemp("checkpoints") / "daemon") as daemon:
        yield daemon


def _walk(python: str, module: str, uri: str) -> list:
    return run_walk(WALK, python, module, uri)


def _compare(run: str, reference: list, got: list) -> None:
    compare(run, reference, got, KNOWN)


def test_reference_walk_did_its_work(reference):
    """The walk reached every part of the API (a walk that fails early proves nothing)."""
    values = dict((k, v) for k, v in reference)
    assert set(KNOWN) <= set(values)
    assert values["plain-name-is-time"] is True
    assert values["create-named"] == "c1" and values["redefine-from-dump-same"] is True
    assert values["branch-topological"] == ["d1", "d4", "d2", "d5", "d3"]
    assert values["err-inactive"][:2] == ["ERR", 84] and values["undefine-with-checkpoints"] == 0
    assert values["after-undefine"][:2] == ["ERR", 42]


def test_in_process_walk_matches_libvirt(reference):
    _compare("inproc", reference, _walk(sys.executable, "pyvirt", "test:///default"))


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_python3_libvirt_on_pyvirtd_matches_libvirt(reference, test_daemon, transport):
    uri = test_daemon.test_uri if transport == "tcp" else \
        f"test+unix:///default?socket={test_daemon.sock_dir}/libvirt-sock"
    _compare("pyvirtd-libvirt", reference, _walk(LIBVIRT_PYTHON, "libvirt", uri))


def test_pyvirt_on_pyvirtd_matches_libvirt(reference, test_daemon):
    _compare("pyvirtd-pyvirt", reference, _walk(sys.executable, "pyvirt", test_daemon.test_uri))


# virsh's checkpoint commands in one virsh process (libvirt's in-process test host lives as
# long as the connection); each command's output must be libvirt's, the clock's times masked.
VIRSH_SESSION = [
    "checkpoint-create-as test k1", "checkpoint-create-as test k2 --description second",
    "checkpoint-create-as test --name k3 --diskspec vda,checkpoint=bitmap,bitmap=bm3",
    "checkpoint-list test", "checkpoint-list test --name", "checkpoint-list test --parent",
    "checkpoint-list test --roots --name", "checkpoint-list test --leaves --name",
    "checkpoint-list test --no-leaves --name", "checkpoint-list test --tree", "checkpoint-list test --topological",
    "checkpoint-list test --from k1 --name", "checkpoint-list test --from k1 --descendants --name",
    "checkpoint-dumpxml test k2 --no-domain", "checkpoint-dumpxml test k3", "checkpoint-dumpxml test k3 --size",
    "checkpoint-parent test k2", "checkpoint-parent test k1", "checkpoint-info test k2",
    "checkpoint-delete test k2", "checkpoint-parent test k3", "checkpoint-delete test k1 --children",
    "checkpoint-list test --name", "checkpoint-dumpxml test nope", "checkpoint-delete test nope",
    "checkpoint-create-as test k4 --quiesce", "checkpoint-delete test k4 --metadata",
    "checkpoint-list test",
]
_TIMES = [re.compile(r"<creationTime>\d+</creationTime>"), re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}")]


def _virsh_session(uri: str) -> tuple[str, str, int]:
    out = subprocess.run(["virsh", "-c", uri, "; ".join(VIRSH_SESSION)], capture_output=True, text=True, timeout=120)
    text = out.stdout
    for pattern in _TIMES:
        text = pattern.sub("TIME", text)
    return text, out.stderr, out.returncode


def test_virsh_checkpoint_commands_as_on_libvirt(tmp_path):
    if shutil.which("virsh") is None:
        pytest.skip("stock virsh is not installed")
    want = _virsh_session("test:///default")
    assert "Domain checkpoint k3 created" in want[0] and "bitmap='bm3'" in want[0]    # the session did its work
    daemon = Pyvirtd(tmp_path / "daemon")
    daemon.start()
    try:
        got = _virsh_session(daemon.test_uri)
    finally:
        daemon.stop()
    assert got == want


def test_qemu_driver_answers_libvirts_no_support_through_pyvirtd(pyvirtd):
    """The QEMU driver has no checkpoints: stock python3-libvirt gets libvirt's NO_SUPPORT,
    from libvirt's checkpoint error domain, naming each call."""
    if not have_libvirt_test_driver():
        pytest.skip("python3-libvirt is not installed")
    code = f"""
import json, libvirt
libvirt.registerErrorHandler(lambda *args: None, None)
conn = libvirt.open({pyvirtd.uri!r})
dom = conn.defineXML("<domain type='qemu'><name>nochk</name><memory>65536</memory><os><type>hvm</type></os></domain>")
out = []
for call in (lambda: dom.checkpointCreateXML("<domaincheckpoint/>"), lambda: dom.listAllCheckpoints(),
             lambda: dom.checkpointLookupByName("c1")):
    try:
        call()
        out.append(None)
    except libvirt.libvirtError as exc:
        out.append([exc.get_error_code(), exc.get_error_domain(), exc.get_error_message()])
dom.undefine()
print(json.dumps(out))
"""
    run = subprocess.run([LIBVIRT_PYTHON, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    prefix = "this function is not supported by the connection driver: "
    assert json.loads(run.stdout) == [[3, 69, prefix + api] for api in (
        "virDomainCheckpointCreateXML", "virDomainListAllCheckpoints", "virDomainCheckpointLookupByName")]
