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
from pyvirt.conf.status import STATUS_HEADER, AsyncJobType, JobPhase, JobRecord
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
                  extra={"autodestroy": "conn-7", "seclabels": "[]"},
                  job=JobRecord(AsyncJobType.MIGRATION_OUT, JobPhase.PERFORM3, was_running=True))
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
                           "  <job type='none' async='migration out' phase='perform3' wasRunning='yes'/>\n"
                           "  <pyvirt>\n"
                           "    <item name='autodestroy' value='conn-7'/>\n"
                           "    <item name='seclabels' value='[]'/>\n"
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
    status = sample(monitor_path=None, extra={}, job=None)
    text = status.format()
    assert "<monitor" not in text and "<pyvirt>" not in text and "<job" not in text
    assert parse_status(text) == status


# libvirt's phases of each job (qemuMigrationJobPhase); save and restore have none.
JOB_PHASES = {
    AsyncJobType.MIGRATION_OUT: [JobPhase.BEGIN3, JobPhase.PERFORM2, JobPhase.PERFORM3, JobPhase.PERFORM3_DONE,
                                 JobPhase.CONFIRM3_CANCELLED, JobPhase.CONFIRM3],
    AsyncJobType.MIGRATION_IN: [JobPhase.PREPARE, JobPhase.FINISH2, JobPhase.FINISH3],
    AsyncJobType.SAVE: [JobPhase.NONE],
    AsyncJobType.START: [JobPhase.NONE],
}


@pytest.mark.parametrize("job, phase", [(j, p) for j, phases in JOB_PHASES.items() for p in phases],
                         ids=lambda v: v.value.replace(" ", "-"))
@pytest.mark.parametrize("was_running", [True, False], ids=["was-running", "was-paused"])
def test_every_job_record_round_trips(job, phase, was_running):
    status = sample(job=JobRecord(job, phase, was_running))
    again = parse_status(status.format())
    assert again.job == status.job
    assert again == status


def test_job_element_in_libvirt_shape():
    text = sample(job=JobRecord(AsyncJobType.MIGRATION_IN, JobPhase.PREPARE)).format()
    assert "\n  <job type='none' async='migration in' phase='prepare'/>\n" in text
    text = sample(job=JobRecord(AsyncJobType.SAVE, was_running=True)).format()
    assert "\n  <job type='none' async='save' wasRunning='yes'/>\n" in text   # no phase: libvirt omits 'none'


def test_job_record_values_are_typed():
    record = JobRecord("migration out", "perform3_done")
    assert record.job is AsyncJobType.MIGRATION_OUT and record.phase is JobPhase.PERFORM3_DONE
    with pytest.raises(ValueError):
        JobRecord("dump")
    with pytest.raises(ValueError):
        JobRecord(AsyncJobType.MIGRATION_OUT, "perform4")


def test_a_job_element_without_async_job_is_no_record():
    body = domain("minimal").format()
    assert parse_status(f"<domstatus state='running' pid='7'><job type='none' async='none'/>{body}"
                        "</domstatus>").job is None


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
    assert status.monitor_path is None and status.extra == {} and status.job is None


def test_invalid_construction():
    with pytest.raises(ValueError, match="reason 99"):
        sample(reason=99)
    with pytest.raises(ValueError, match="pid"):
        sample(pid=-1)


@pytest.mark.parametrize("text, code, needle", [
    ("<domstatus state='running'", ErrorNumber.XML_DETAIL, "(domain_status):1:"),
    ("<domstatus state='sleeping' pid='1'><domain/></domstatus>", ErrorNumber.XML_DETAIL, "'sleeping'"),
    ("<domstatus state='running' reason='bored' pid='1'><domain/></domstatus>", ErrorNumber.XML_DETAIL,
     "'bored'"),
    ("<domstatus state='running' reason='booted'><domain/></domstatus>", ErrorNumber.XML_DETAIL, "pid"),
    ("<domstatus state='running' pid='x'><domain/></domstatus>", ErrorNumber.XML_DETAIL, "'x'"),
    ("<domstatus state='running' pid='1'/>", ErrorNumber.XML_DETAIL, "no <domain>"),
    ("<domstatus state='running' pid='1'><pyvirt><item value='v'/></pyvirt><domain/></domstatus>",
     ErrorNumber.XML_DETAIL, "<item> has no name"),
    ("<domstatus state='running' pid='1'><job async='dump'/><domain/></domstatus>",
     ErrorNumber.XML_DETAIL, "unknown async job 'dump'"),
    ("<domstatus state='running' pid='1'><job async='migration out' phase='warp'/><domain/></domstatus>",
     ErrorNumber.XML_DETAIL, "unknown job phase 'warp'"),
    ("<domstatus state='running' pid='1'><job async='save' wasRunning='maybe'/><domain/></domstatus>",
     ErrorNumber.XML_DETAIL, "'maybe' for wasRunning"),
])
def test_bad_status_files(text, code, needle):
    with pytest.raises(libvirtError) as info:
        parse_status(text)
    assert info.value.get_error_code() == code
    assert info.value.get_error_domain() == ErrorDomain.DOMAIN
    assert needle in info.value.get_error_message()


def test_status_file_of_another_root_is_refused_as_libvirts_parser_does():
    with pytest.raises(libvirtError) as info:
        parse_status("<domain type='kvm'/>")
    assert (info.value.get_error_code(), info.value.get_error_domain()) == (ErrorNumber.XML_ERROR, ErrorDomain.XML)
    assert info.value.get_error_message() == "XML error: expecting root element of 'domstatus', not 'domain'"


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
