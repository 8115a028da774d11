"""The test driver's virNetworkUpdate sections (DHCP host and range, DNS host, TXT and SRV,
portgroup, forward interface, the refused ones) and its node-device events against libvirt 9.0's own: one walk, four runs,
compared step by step.

tests/data/testdriver/walk_netdev.py runs against libvirt 9.0's test driver through
/usr/bin/python3's libvirt (in process), against pyvirt in process, and with stock
python3-libvirt and pyvirt against pyvirtd's test driver.  Every step must give
libvirt's value, field by field (codes, domains, messages, the network's XML after
each step, the events in order), except those in KNOWN, where the test asserts both
what libvirt answers and the value pyvirt gives instead, with the reason.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import pytest

from walkdiff import LIBVIRT_PYTHON, WALKS, compare, reference_walk, run_walk, walk_daemon

WALK = WALKS / "walk_netdev.py"

UNESCAPED_NAME = ("libvirt 9.0 writes a portgroup's name unescaped (a libvirt bug pyvirt does not copy), so its "
                  "own format/parse check refuses a name with '&'; pyvirt writes it escaped and keeps the portgroup")
UNESCAPED_PROFILE = ("libvirt 9.0 writes a virtualport's profileid unescaped, so an '&' makes its XML ill-formed "
                     "(a libvirt bug pyvirt does not copy); pyvirt writes it escaped")
REMOTE_CLIENT = ("libvirt's own remote client checks a callback id itself, in its own words (as it does against "
                 "libvirtd): nothing the daemon answers; pyvirt's API gives the in-process words on every connection")
PYTHON_GLUE = ("libvirt-python's C glue refuses an event id it has no callback type for and raises with no "
               "error set (a binding bug pyvirt does not copy); pyvirt's API gives libvirt's own argument check")


def _err(code: int, domain: int, message: str) -> Callable[[Any], bool]:
    return lambda want: want == ["ERR", code, domain, message]


def _xml_with(extra: str) -> Callable[[Any], Any]:
    """libvirt's network XML with ``extra`` written before </network>."""
    return lambda want: want.replace("</network>\n", extra + "</network>\n")


NOT_FOUND = "Requested operation is not valid: couldn't find a portgroup entry in network 'default' matching "
# step -> (reason, what libvirt must answer, the value pyvirt gives instead: a value, or one made from
# libvirt's; a fourth item, when there is one, names the runs it applies to)
KNOWN: dict[str, tuple] = {
    "portgroup-add-odd-default": (UNESCAPED_NAME, lambda want: want[:3] == ["ERR", 35, 19]
                                  and "EntityRef: expecting ';'" in want[3], 0),
    "portgroup-add-odd-default-xml": (UNESCAPED_NAME, lambda want: "r&" not in want,
                                      _xml_with("  <portgroup name='r&amp;d'>\n  </portgroup>\n")),
    "portgroup-delete-odd": (UNESCAPED_NAME, _err(55, 19, NOT_FOUND + "<portgroup name='r&d'>"), 0),
    **{f"netdev-{where}-vp-ampersand": (UNESCAPED_PROFILE, lambda want: "profileid='a&b'" in want,
                                        lambda want: want.replace("profileid='a&b'", "profileid='a&amp;b'"))
       for where in ("net", "portgroup")},
    "nodedev-register-bad-id": (PYTHON_GLUE, lambda want: want == ["ERR", None, None, None],
                                ["ERR", 8, 0, "invalid argument: eventID in virConnectNodeDeviceEventRegisterAny "
                                              "must be less than 2"], {"inproc", "pyvirtd-pyvirt"}),
    "nodedev-register-negative-id": (PYTHON_GLUE, lambda want: want == ["ERR", None, None, None],
                                     ["ERR", 8, 0, "invalid argument: eventID in "
                                                   "virConnectNodeDeviceEventRegisterAny must be non-negative"],
                                     {"inproc", "pyvirtd-pyvirt"}),
    "nodedev-deregister-one-again": (REMOTE_CLIENT,
                                     _err(8, 0, "invalid argument: could not find event callback ID for deletion"),
                                     ["ERR", 8, 0, "invalid argument: event callback id ID not registered"],
                                     {"pyvirtd-libvirt"}),
}


@pytest.fixture(scope="module")
def reference() -> list:
    return reference_walk(WALK)


@pytest.fixture(scope="module")
def test_daemon(tmp_path_factory):
    # the walk leaves the test host as it found it, so one daemon serves every remote run
    with walk_daemon(tmp_path_factory.mktemp("netdev") / "daemon") as daemon:
        yield daemon


def _walk(python: str, module: str, uri: str) -> list:
    return run_walk(WALK, python, module, uri)


def _compare(run: str, reference: list, got: list) -> None:
    compare(run, reference, got, KNOWN)


def test_reference_walk_covers_every_section_and_command(reference):
    steps = dict(reference)
    assert set(KNOWN) <= set(steps)
    for prefix in ("dhcphost", "dhcprange", "dnshost", "txt", "srv", "portgroup", "fwdif"):
        names = [k for k in steps if k.startswith(prefix + "-") and not k.endswith("-xml")]

        def answered(word: str, value: Any) -> bool:
            return any(word in n and (steps[n] == value if value == 0 else
                                      isinstance(steps[n], list) and steps[n][1] == value) for n in names)
        # each section: an add and a delete worked; a duplicate, a missing entry, malformed XML and
        # an unknown command were refused with libvirt's codes
        assert answered("add", 0) and answered("delete", 0)
        assert answered("duplicate", 55) and answered("missing", 55)
        assert answered("malformed", 35) and answered("bad-command", 84)
    # each of <bandwidth>, <vlan> and <virtualport>, on a network and on a portgroup: some definitions
    # kept and written back with it, some refused
    for where in ("net", "portgroup"):
        for kind, tag in (("bw", "<bandwidth>"), ("vlan", "<vlan"), ("vp", "<virtualport")):
            answers = [v for k, v in steps.items() if k.startswith(f"netdev-{where}-{kind}-") or
                       k == f"netdev-{where}-{kind}"]
            assert any(isinstance(v, str) and tag in v for v in answers)
            assert any(isinstance(v, list) and v[0] == "ERR" for v in answers)
    events = steps["nodedev-events"]
    # CREATED and DELETED, for every device and for the one device while it was registered
    assert ["all", "scsi_host12", 0, 0] in events and ["one", "scsi_host12", 1, 0] in events
    assert not any(e[0] == "update" for e in events)      # libvirt 9.0's test driver sends no UPDATE


def test_in_process_walk_matches_libvirt(reference):
    _compare("inproc", reference, _walk(sys.executable, "pyvirt", "test:///default"))


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_python3_libvirt_on_pyvirtd_matches_libvirt(reference, test_daemon, transport):
    uri = test_daemon.test_uri if transport == "tcp" else \
        f"test+unix:///default?socket={test_daemon.sock_dir}/libvirt-sock"
    _compare("pyvirtd-libvirt", reference, _walk(LIBVIRT_PYTHON, "libvirt", uri))


def test_pyvirt_on_pyvirtd_matches_libvirt(reference, test_daemon):
    _compare("pyvirtd-pyvirt", reference, _walk(sys.executable, "pyvirt", test_daemon.test_uri))
