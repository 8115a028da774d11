"""The migration sequence with fake hosts (one layer under test): protocol
choice and the first-error rule, for both of its callers — the client
library (managed migration) and the peer-to-peer source daemon — which must
behave identically for every step and every kind of failure."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from pyvirt import migration
from pyvirt.refs import DomainRef
from pyvirt.drivers.qemu.migration import p2p
from pyvirt.drivers.qemu.migration.params import MigrationRequest
from pyvirt.enums import DomainState, DriverFeature as F, MigrateFlags
from pyvirt.errors import ErrorDomain, ErrorNumber, error, libvirtError

DOM = DomainRef("g", b"\x01" * 16, 3)


class FakeHost:
    def __init__(self, features=(F.MIGRATION_V2, F.MIGRATION_V3, F.MIGRATION_PARAMS, F.MIGRATE_CHANGE_PROTECTION,
                                 F.MIGRATION_P2P),
                 fail=(), crash=(), no_uri=False):
        self.features = set(features)
        self.fail = set(fail)          # steps that fail with a libvirt error
        self.crash = set(crash)        # steps that fail with any other exception
        self.no_uri = no_uri           # Prepare answers without a migration URI
        self.calls: list[tuple] = []
        self.closed = False

    async def connect_close(self):
        self.closed = True

    async def connect_supports_feature(self, feature):
        return int(feature in self.features)

    def _step(self, name, *args):
        self.calls.append((name, *args))
        if name in self.fail:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, f"{name} broke")
        if name in self.crash:
            raise RuntimeError(f"{name} crashed")

    async def domain_get_state(self, dom, flags):
        return (1, 1)

    async def domain_get_xml_desc(self, dom, flags):
        return "<domain/>"

    async def domain_migrate_begin3_params(self, dom, params, flags):
        self._step("begin", flags)
        return b"A", "<domain/>"

    async def domain_migrate_prepare3_params(self, params, cookie, flags):
        self._step("prepare", flags)
        return b"B", None if self.no_uri else "tcp:127.0.0.1:49152"

    async def domain_migrate_perform3_params(self, dom, dconnuri, params, cookie, flags):
        self._step("perform", flags, dict((p[0], p[2]) for p in params).get("migrate_uri"))
        return b"C"

    async def domain_migrate_finish3_params(self, params, cookie, flags, cancelled):
        self._step("finish", cancelled)
        if cancelled:
            raise error(ErrorNumber.MIGRATE_FINISH_OK, ErrorDomain.QEMU, "cancelled")
        return DomainRef("g", b"\x01" * 16, 7), b"D"

    async def domain_migrate_confirm3_params(self, dom, params, cookie, flags, cancelled):
        self._step("confirm", cancelled)

    async def domain_migrate_begin3(self, dom, xmlin, flags, dname, resource):
        self._step("begin", flags)
        return b"A", "<domain/>"

    async def domain_migrate_prepare3(self, cookie, uri_in, flags, dname, resource, xml):
        self._step("prepare", flags)
        return b"B", None if self.no_uri else "tcp:127.0.0.1:49152"

    async def domain_migrate_perform3(self, dom, xmlin, cookie, dconnuri, uri, flags, dname, resource):
        self._step("perform", flags, uri)
        return b"C"

    async def domain_migrate_finish3(self, dname, cookie, dconnuri, uri, flags, cancelled):
        return await self.domain_migrate_finish3_params([], cookie, flags, cancelled)

    async def domain_migrate_confirm3(self, dom, cookie, flags, cancelled):
        self._step("confirm", cancelled)

    async def domain_migrate_prepare2(self, uri, flags, dname, resource, xml):
        self._step("prepare2", flags)
        return b"", None if self.no_uri else "tcp:127.0.0.1:49152"

    async def domain_migrate_perform(self, dom, cookie, uri, flags, dname, resource):
        self._step("perform2", uri)

    async def domain_migrate_finish2(self, dname, cookie, uri, flags, retcode):
        self._step("finish2", retcode)
        if retcode:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, "finish2 after failure")
        return DomainRef("g", b"\x01" * 16, 7)


def run(src, dst, params=None, flags=MigrateFlags.LIVE):
    return asyncio.run(migration.migrate_managed(src, dst, DOM, params or {}, int(flags)))


def names(host):
    return [c[0] for c in host.calls]


def trace(host):
    """The steps a host saw; Finish and Confirm with what they were told (1 = cancelled)."""
    return [f"{c[0]}({c[-1]})" if c[0] in ("finish", "confirm", "finish2") else c[0] for c in host.calls]


def test_v3_params_sequence_and_flags():
    src, dst = FakeHost(), FakeHost()
    ddom = run(src, dst, {"bandwidth": 5})
    assert ddom.id == 7
    assert names(src) == ["begin", "perform", "confirm"] and names(dst) == ["prepare", "finish"]
    assert src.calls[0][1] & MigrateFlags.CHANGE_PROTECTION          # source gets change protection
    assert not dst.calls[0][1] & MigrateFlags.CHANGE_PROTECTION
    assert src.calls[1][2] == "tcp:127.0.0.1:49152"                   # Perform uses Prepare's URI
    assert src.calls[2][1] == 0                                         # confirmed, not cancelled


def test_plain_v3_when_a_host_lacks_params_and_v2_when_it_lacks_v3():
    src, dst = FakeHost(), FakeHost(features=(F.MIGRATION_V2, F.MIGRATION_V3))
    run(src, dst)
    assert names(dst) == ["prepare", "finish"]
    src, dst = FakeHost(), FakeHost(features=(F.MIGRATION_V2,))
    run(src, dst)
    assert names(src) == ["perform2"] and names(dst) == ["prepare2", "finish2"]
    with pytest.raises(libvirtError) as info:
        run(FakeHost(), FakeHost(features=(F.MIGRATION_V3,)), {"listen_address": "0.0.0.0"})
    assert info.value.get_error_code() == ErrorNumber.ARGUMENT_UNSUPPORTED


def test_perform_error_is_reported_finish_cancelled_confirm_skipped():
    src, dst = FakeHost(fail={"perform"}), FakeHost()
    with pytest.raises(libvirtError, match="perform broke"):
        run(src, dst)
    assert names(dst) == ["prepare", "finish"] and dst.calls[1][1] == 1   # Finish told it was cancelled
    assert "confirm" not in names(src)


def test_finish_error_wins_over_confirm_error_and_confirm_cancels():
    src, dst = FakeHost(fail={"confirm"}), FakeHost(fail={"finish"})
    with pytest.raises(libvirtError, match="finish broke"):
        run(src, dst)
    assert src.calls[-1] == ("confirm", 1)


def test_prepare_error_ends_the_source_job_and_is_reported():
    src, dst = FakeHost(fail={"confirm"}), FakeHost(fail={"prepare"})
    with pytest.raises(libvirtError, match="prepare broke"):
        run(src, dst)
    assert src.calls[-1] == ("confirm", 1)


def test_confirm_error_after_success_is_only_logged(caplog):
    src, dst = FakeHost(fail={"confirm"}), FakeHost()
    assert run(src, dst).id == 7
    assert "Confirm failed" in caplog.text


def test_v2_perform_error_wins():
    src, dst = FakeHost(features=(F.MIGRATION_V2,), fail={"perform2"}), FakeHost(features=(F.MIGRATION_V2,))
    with pytest.raises(libvirtError, match="perform2 broke"):
        run(src, dst)
    assert dst.calls[-1] == ("finish2", -1)


def test_bad_parameters_refused_before_anything_happens():
    src, dst = FakeHost(), FakeHost()
    with pytest.raises(libvirtError, match="not supported"):
        run(src, dst, {"no_such_param": 1})
    with pytest.raises(libvirtError, match="must be of type"):
        run(src, dst, {"bandwidth": "fast"})
    with pytest.raises(libvirtError):
        run(src, dst, flags=MigrateFlags.PEER2PEER)
    assert src.calls == [] and dst.calls == []


# -- the same sequence run by a peer-to-peer source daemon -----------------------------------
#
# The p2p code is the real one; only the QEMU driver's local source steps (Begin, Perform,
# Confirm of pyvirt.drivers.qemu.migration.source) are replaced by the fake source host, so
# both callers are driven against the same two fakes.

class FakeDriver:
    def __init__(self, src: FakeHost, dst: FakeHost, state=DomainState.RUNNING):
        obj = SimpleNamespace(state=state, live=SimpleNamespace(format=lambda **kw: "<domain/>"))
        self.domains = SimpleNamespace(by_ref=lambda dom: obj)
        self.src = src

        async def connector(uri):
            return dst
        self.connector = connector


@pytest.fixture
def local_source(monkeypatch):
    """Route the p2p source's local steps to ``drv.src`` (a FakeHost)."""
    async def begin(drv, conn, dom, req, xmlin):
        drv.src._step("begin", req.flags)
        return b"A", "<domain/>"

    async def perform(drv, conn, dom, req, cookie, uri, v3=True, peer=None, tunnel=None):
        assert peer is not None          # Perform watches the destination connection
        drv.src._step("perform", req.flags, uri)
        return b"C"

    async def confirm(drv, dom, req, cookie, cancelled):
        drv.src._step("confirm", int(cancelled))

    monkeypatch.setattr(p2p.source, "begin", begin)
    monkeypatch.setattr(p2p.source, "perform", perform)
    monkeypatch.setattr(p2p.source, "confirm", confirm)


def run_p2p(src, dst, flags=MigrateFlags.LIVE | MigrateFlags.PEER2PEER):
    drv = FakeDriver(src, dst)
    req = MigrationRequest(flags=int(flags))
    try:
        asyncio.run(p2p.perform(drv, None, DOM, req, "qemu+tcp://b/system"))
    finally:
        assert dst.closed                # the destination connection is always closed


def outcome(caller, src, dst):
    """(error message or 'ok', source steps, destination steps) of one migration."""
    try:
        caller(src, dst)
        result = "ok"
    except libvirtError as exc:
        result = exc.get_error_message()
    except RuntimeError as exc:
        result = str(exc)
    return result, trace(src), trace(dst)


STEPS = ["begin", "prepare", "perform", "finish", "confirm"]
HOST_OF = {"begin": "src", "prepare": "dst", "perform": "src", "finish": "dst", "confirm": "src"}
# What every caller must do when one step fails, whatever the kind of failure:
# (reported error, source steps, destination steps).
EXPECTED = {
    "begin": ("{begin}", ["begin"], []),
    "prepare": ("{prepare}", ["begin", "confirm(1)"], ["prepare"]),
    "perform": ("{perform}", ["begin", "perform"], ["prepare", "finish(1)"]),
    "finish": ("{finish}", ["begin", "perform", "confirm(1)"], ["prepare", "finish(0)"]),
    "confirm": ("ok", ["begin", "perform", "confirm(0)"], ["prepare", "finish(0)"]),
}
MESSAGES = {"fail": "operation failed: {} broke", "crash": "{} crashed"}


def hosts_failing(step, kind, features=None):
    bad = {kind: {step}}
    kw = {} if features is None else {"features": features}
    src = FakeHost(**kw, **(bad if HOST_OF[step] == "src" else {}))
    dst = FakeHost(**kw, **(bad if HOST_OF[step] == "dst" else {}))
    return src, dst


@pytest.mark.parametrize("features", [None, (F.MIGRATION_V3, F.MIGRATION_P2P)], ids=["params", "plain-v3"])
@pytest.mark.parametrize("kind", ["fail", "crash"])
@pytest.mark.parametrize("step", STEPS)
def test_every_step_and_failure_kind_same_for_client_and_p2p(local_source, step, kind, features):
    message, src_steps, dst_steps = EXPECTED[step]
    expected = (message.format(**{step: MESSAGES[kind].format(step)}), src_steps, dst_steps)
    client = outcome(run, *hosts_failing(step, kind, features))
    peer = outcome(run_p2p, *hosts_failing(step, kind, features))
    assert client == expected
    assert peer == expected


@pytest.mark.parametrize("caller", [run, run_p2p], ids=["client", "p2p"])
def test_no_uri_from_prepare_cancels_through_finish_and_confirm(local_source, caller):
    result, src_steps, dst_steps = outcome(caller, FakeHost(), FakeHost(no_uri=True))
    assert result == "internal error: domainMigratePrepare3 did not set uri"
    assert src_steps == ["begin", "confirm(1)"] and dst_steps == ["prepare", "finish(1)"]


@pytest.mark.parametrize("caller", [run, run_p2p], ids=["client", "p2p"])
@pytest.mark.parametrize("first, later", [("prepare", "confirm"), ("perform", "finish"), ("finish", "confirm")])
def test_the_first_error_wins_over_a_later_one(local_source, caller, first, later):
    src = FakeHost(fail={s for s in (first, later) if HOST_OF[s] == "src"})
    dst = FakeHost(crash={s for s in (first, later) if HOST_OF[s] == "dst"})
    result, _src_steps, _dst_steps = outcome(caller, src, dst)
    assert result == MESSAGES["fail" if HOST_OF[first] == "src" else "crash"].format(first)


@pytest.mark.parametrize("caller", [run, run_p2p], ids=["client", "p2p"])
def test_confirm_error_after_success_is_logged_for_both(local_source, caller, caplog):
    result, src_steps, _ = outcome(caller, FakeHost(crash={"confirm"}), FakeHost())
    assert result == "ok" and src_steps[-1] == "confirm(0)"
    assert "probably left in 'paused' state" in caplog.text


@pytest.mark.parametrize("caller", [run, run_p2p], ids=["client", "p2p"])
def test_paused_source_arrives_paused_and_source_only_flags_stay_home(local_source, caller):
    flags = MigrateFlags.LIVE | MigrateFlags.AUTO_CONVERGE | (MigrateFlags.PEER2PEER if caller is run_p2p else 0)
    src, dst = FakeHost(), FakeHost()

    async def paused_state(dom, flags):
        return (int(DomainState.PAUSED), 1)
    src.domain_get_state = paused_state

    def go(s, d):
        if caller is run:
            return asyncio.run(migration.migrate_managed(s, d, DOM, {}, int(flags)))
        drv = FakeDriver(s, d, state=DomainState.PAUSED)
        return asyncio.run(p2p.perform(drv, None, DOM, MigrationRequest(flags=int(flags)), "qemu+tcp://b/system"))
    go(src, dst)
    prepare_flags = dst.calls[0][1]
    assert prepare_flags & MigrateFlags.PAUSED and not prepare_flags & MigrateFlags.AUTO_CONVERGE


V2 = (F.MIGRATION_V2, F.MIGRATION_P2P)


@pytest.mark.parametrize("caller", [run, run_p2p], ids=["client", "p2p"])
@pytest.mark.parametrize("failing, host, message, dst_steps", [
    ("prepare2", "dst", "operation failed: prepare2 broke", ["prepare2"]),
    ("perform2", "src", "operation failed: perform2 broke", ["prepare2", "finish2(-1)"]),
    ("finish2", "dst", "operation failed: finish2 broke", ["prepare2", "finish2(0)"]),
])
def test_v2_first_error_same_for_client_and_p2p(local_source, monkeypatch, caller, failing, host, message,
                                                 dst_steps):
    src = FakeHost(features=V2, fail={failing} if host == "src" else ())
    dst = FakeHost(features=V2, fail={failing} if host == "dst" else ())
    if caller is run_p2p:   # the p2p source performs locally (v3-style, kept until Finish2 answers)
        async def perform(drv, conn, dom, req, cookie, uri, v3=True, peer=None, tunnel=None):
            drv.src._step("perform2", uri)
        monkeypatch.setattr(p2p.source, "perform", perform)
    result, _src_steps, got_dst = outcome(caller, src, dst)
    assert (result, got_dst) == (message, dst_steps)
