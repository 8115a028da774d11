"""pyvirt.conf.status and pyvirt.conf.fileutil: the running-domain status file.

``tests/data/status/NAME.xml`` are golden files; regenerate them with
``PYVIRT_REGENERATE=1`` (see tests/test_conf_domain.py) and review the diff.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pyvirt.conf import DomainStatus, parse, parse_status
from pyvirt.conf import fileutil
from pyvirt.conf.status import STATUS_HEADER
from pyvirt.enums import REASON_NAMES, DomainState, PausedReason, RunningReason
from pyvirt.errors import ErrorDomain, ErrorNumber, libvirtError

DATA = Path(__file__).parent / "data"
GOLDEN = sorted((DATA / "status").glob("*.xml"))
REGENERATE = os.environ.get("PYVIRT_REGENERATE") == "1"


def domain(name: str = "graphics"):
    return parse((DATA / "domain" / f"{name}.xml").read_text())


def sample(**overrides) -> DomainStatus:
    fields = dict(state=DomainState.RUNNING, reason=RunningReason.BOOTED, pid=4242,
                  monitor_path="/run/pyvirt/qemu/graphics.qmp", domain=domain(),
                  extra={"autodestroy": "conn-7", "job_phase": "perform3"})
    fields.update(overrides)
    return DomainStatus(**fields)


def test_golden_files_exist():
    assert GOLDEN


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_round_trip(path: Path):
    expected = path.read_text()
    actual = parse_status(expected).format()
    if REGENERATE:
        path.write_text(actual)
        return
    assert actual == expected


def test_format_layout():
    text = sample().format()
    assert text.startswith(STATUS_HEADER)
    assert STATUS_HEADER.startswith("<!--\n") and STATUS_HEADER.endswith("-->\n\n")
    body = text[len(STATUS_HEADER):]
    assert body.startswith("<domstatus state='running' reason='booted' pid='4242'>\n"
                           "  <monitor path='/run/pyvirt/qemu/graphics.qmp' type='unix'/>\n"
                           "  <pyvirt>\n"
                           "    <item name='autodestroy' value='conn-7'/>\n"
                           "    <item name='job_phase' value='perform3'/>\n"
                           "  </pyvirt>\n"
                           "  <domain type='kvm' id='9'>\n"
                           "    <name>graphics</name>\n")
    assert body.endswith("  </domain>\n</domstatus>\n")


def test_round_trip_keeps_everything():
    status = sample()
    again = parse_status(status.format())
    assert again == status
    assert again.domain.devices.graphics[0].passwd == "s3cr't"   # secrets survive a daemon restart
    assert again.domain.id == 9 and again.domain.devices.graphics[0].port == 5901


def test_extra_values_round_trip_exactly():
    extra = {"padded": "  spaced  ", "odd": "a&b <c> 'd' \"e\"", "lines": "one\ntwo\r\nthree\tfour",
             "empty": "", "was_running": "1"}
    assert parse_status(sample(extra=extra).format()).extra == extra


def test_optional_parts_may_be_absent():
    status = sample(monitor_path=None, extra={})
    text = status.format()
    assert "<monitor" not in text and "<pyvirt>" not in text
    assert parse_status(text) == status


@pytest.mark.parametrize("state", list(DomainState))
def test_every_state_and_reason_round_trips(state):
    for reason in range(len(REASON_NAMES[state])):
        status = sample(state=state, reason=reason)
        again = parse_status(status.format())
        assert (again.state, again.reason) == (state, reason)


def test_names_match_libvirt_spelling():
    text = sample(state=DomainState.PAUSED, reason=PausedReason.MIGRATION).format()
    assert "<domstatus state='paused' reason='migration' pid='4242'>" in text


def test_old_file_without_reason_or_extras_loads():
    old = ("<domstatus state='running' pid='77'>\n  <taint flag='high-privileges'/>\n"
           + domain("minimal").format() + "</domstatus>\n")
    status = parse_status(old)
    assert (status.state, status.reason, status.pid) == (DomainState.RUNNING, 0, 77)
    assert status.monitor_path is None and status.extra == {}


def test_invalid_construction():
    with pytest.raises(ValueError, match="reason 99"):
        sample(reason=99)
    with pytest.raises(ValueError, match="pid"):
        sample(pid=-1)


@pytest.mark.parametrize("text, code, needle", [
    ("<domain type='kvm'/>", ErrorNumber.XML_ERROR, "expecting <domstatus>"),
    ("<domstatus state='running'", ErrorNumber.XML_DETAIL, "(domain_status):1:"),
    ("<domstatus state='sleeping' pid='1'><domain/></domstatus>", ErrorNumber.XML_DETAIL, "'sleeping'"),
    ("<domstatus state='running' reason='bored' pid='1'><domain/></domstatus>", ErrorNumber.XML_DETAIL,
     "'bored'"),
    ("<domstatus state='running' reason='booted'><domain/></domstatus>", ErrorNumber.XML_DETAIL, "pid"),
    ("<domstatus state='running' pid='x'><domain/></domstatus>", ErrorNumber.XML_DETAIL, "'x'"),
    ("<domstatus state='running' pid='1'/>", ErrorNumber.XML_DETAIL, "no <domain>"),
    ("<domstatus state='running' pid='1'><pyvirt><item value='v'/></pyvirt><domain/></domstatus>",
     ErrorNumber.XML_DETAIL, "<item> has no name"),
])
def test_bad_status_files(text, code, needle):
    with pytest.raises(libvirtError) as info:
        parse_status(text)
    assert info.value.get_error_code() == code
    assert info.value.get_error_domain() == ErrorDomain.DOMAIN
    assert needle in info.value.get_error_message()


# -- write_atomic ----------------------------------------------------------------

def test_write_atomic_creates_and_replaces(tmp_path):
    target = tmp_path / "demo.xml"
    fileutil.write_atomic(target, "one\n")
    assert target.read_text() == "one\n"
    fileutil.write_atomic(str(target), "two\n")
    assert target.read_text() == "two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.xml"]


def test_write_atomic_mode(tmp_path):
    target = tmp_path / "public.xml"
    fileutil.write_atomic(target, "x", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_write_atomic_failure_keeps_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "demo.xml"
    target.write_text("old\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileutil.os, "replace", broken_replace)
    with pytest.raises(libvirtError) as info:
        fileutil.write_atomic(target, "new\n")
    assert info.value.get_error_code() == ErrorNumber.SYSTEM_ERROR
    assert str(target) in info.value.get_error_message()
    assert "No space left" in info.value.get_error_message()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.xml"]


def test_write_atomic_missing_directory(tmp_path):
    with pytest.raises(libvirtError) as info:
        fileutil.write_atomic(tmp_path / "nope" / "demo.xml", "x")
    assert info.value.get_error_code() == ErrorNumber.SYSTEM_ERROR
    assert "nope" in info.value.get_error_message()


def test_status_written_atomically_reads_back(tmp_path):
    status = sample()
    fileutil.write_atomic(tmp_path / "graphics.xml", status.format())
    assert parse_status((tmp_path / "graphics.xml").read_bytes()) == status
