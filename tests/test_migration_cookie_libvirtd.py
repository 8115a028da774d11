"""Cookies a real libvirtd 9.0 sent, read by pyvirt as the next step reads them.

The files in tests/data/cookie/libvirtd/ come from a real run (see the README
there and tests/test_crossmigrate.py).  Each is read with what pyvirt's
receiving step accepts (libvirt's own table), every part it carries is
understood, and pyvirt writes the same cookie back byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyvirt import conf
from pyvirt.drivers.qemu.migration import destination, source
from pyvirt.drivers.qemu.migration.cookie import STEP_ACCEPTS, CookieCpu, CookieFlags, parse_cookie
from pyvirt.errors import libvirtError

CAPTURED = Path(__file__).resolve().parent / "data" / "cookie" / "libvirtd"
READER = "00000000-0000-4000-8000-000000000001"     # the host reading them: not the sender
# the pyvirt step that reads each libvirtd step's cookie, and what it accepts
READ_BY = {"begin": destination.PREPARE_ACCEPTS, "perform": destination.FINISH_ACCEPTS,
           "prepare": source.PERFORM_ACCEPTS, "finish": source.CONFIRM_ACCEPTS}


def read(step: str, accepted=None):
    data = (CAPTURED / f"{step}.xml").read_bytes() + b"\0"
    return data, parse_cookie(data, local_host_uuid=READER, expect_name=None, expect_uuid=None,
                              accepted=READ_BY[step] if accepted is None else accepted)


def test_every_step_was_captured():
    assert {p.stem for p in CAPTURED.glob("*.xml")} == set(READ_BY)


@pytest.mark.parametrize("step", sorted(READ_BY))
def test_pyvirt_writes_libvirts_cookie_back_unchanged(step):
    data, cookie = read(step)
    assert cookie.format() == data


def test_pyvirts_steps_accept_what_libvirts_accept():
    assert destination.PREPARE_ACCEPTS & STEP_ACCEPTS["prepare"] == STEP_ACCEPTS["prepare"]
    assert destination.FINISH_ACCEPTS == STEP_ACCEPTS["finish"]
    assert source.PERFORM_ACCEPTS == STEP_ACCEPTS["perform"]
    assert source.CONFIRM_ACCEPTS == STEP_ACCEPTS["confirm"]


def test_begin():
    """lockstate mandatory without an element (no lock manager), the guest CPU
    libvirt expanded, and the source's capabilities with pause-before-switchover automatic."""
    _, cookie = read("begin")
    assert cookie.mandatory == CookieFlags.LOCKSTATE and cookie.lockstate is None
    assert cookie.flags == CookieFlags.CPU | CookieFlags.CAPS
    assert cookie.cpu == CookieCpu(mode="custom", match="exact", check="full", model="qemu64",
                                   fallback="forbid", features=(("require", "hypervisor"), ("require", "lahf_lm")))
    caps = dict(cookie.capabilities)
    assert caps["pause-before-switchover"] is True and not any(v for k, v in caps.items()
                                                               if k != "pause-before-switchover")
    assert "events" not in caps


def test_begin_refused_by_a_step_that_does_not_know_lockstate():
    with pytest.raises(libvirtError, match="Unsupported migration cookie feature lockstate"):
        read("begin", accepted=STEP_ACCEPTS["finish"])


def test_prepare():
    """The destination's SPICE display (no TLS: tlsPort -1) and its capabilities, with
    late-block-activate automatic."""
    _, cookie = read("prepare")
    assert cookie.mandatory == CookieFlags(0) and cookie.flags == CookieFlags.GRAPHICS | CookieFlags.CAPS
    assert (cookie.graphics.type, cookie.graphics.listen, cookie.graphics.tls_port) == ("spice", "127.0.0.1", -1)
    assert cookie.graphics.port > 0 and cookie.graphics.tls_subject is None
    caps = dict(cookie.capabilities)
    assert caps["late-block-activate"] is True and caps["pause-before-switchover"] is False


def test_perform_carries_a_definition_pyvirt_parses():
    _, cookie = read("perform")
    assert cookie.mandatory == CookieFlags.PERSISTENT
    assert cookie.flags == CookieFlags.PERSISTENT | CookieFlags.STATS
    assert cookie.statistics["memory_total"] > 0 and cookie.statistics["stopped"] >= cookie.statistics["started"]
    definition = conf.parse(cookie.persistent_xml, inactive=True)
    assert (definition.name, definition.uuid) == (cookie.name, cookie.uuid)


def test_finish():
    _, cookie = read("finish")
    assert cookie.flags == CookieFlags.STATS and cookie.mandatory == CookieFlags(0)
    assert cookie.statistics["time_elapsed"] >= 0 and "downtime" in cookie.statistics


def test_same_host_refused_in_libvirts_words():
    data, cookie = read("begin")
    with pytest.raises(libvirtError) as info:
        parse_cookie(data, local_host_uuid=cookie.hostuuid, expect_name=None, expect_uuid=None,
                     accepted=destination.PREPARE_ACCEPTS)
    assert info.value.get_error_message() == (
        f"internal error: Attempt to migrate guest to the same host {cookie.hostuuid}")
