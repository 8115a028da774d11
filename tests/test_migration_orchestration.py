"""The client's migration sequence with fake hosts (one layer under test):
protocol choice and the first-error rule."""

from __future__ import annotations

import asyncio

import pytest

from pyvirt import migration
from pyvirt.driver import DomainRef
from pyvirt.enums import DriverFeature as F, MigrateFlags
from pyvirt.errors import ErrorDomain, ErrorNumber, error, libvirtError

DOM = DomainRef("g", b"\x01" * 16, 3)


class FakeHost:
    def __init__(self, features=(F.MIGRATION_V2, F.MIGRATION_V3, F.MIGRATION_PARAMS, F.MIGRATE_CHANGE_PROTECTION),
                 fail=()):
        self.features = set(features)
        self.fail = set(fail)
        self.calls: list[tuple] = []

    async def connect_supports_feature(self, feature):
        return int(feature in self.features)

    def _step(self, name, *args):
        self.calls.append((name, *args))
        if name in self.fail:
            raise error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, f"{name} broke")

    async def domain_get_state(self, dom, flags):
        return (1, 1)

    async def domain_get_xml_desc(self, dom, flags):
        return "<domain/>"

    async def domain_migrate_begin3_params(self, dom, params, flags):
        self._step("begin", flags)
        return b"A", "<domain/>"

    async def domain_migrate_prepare3_params(self, params, cookie, flags):
        self._step("prepare", flags)
        return b"B", "tcp:127.0.0.1:49152"

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
        return b"B", "tcp:127.0.0.1:49152"

    async def domain_migrate_perform3(self, dom, xmlin, cookie, dconnuri, uri, flags, dname, resource):
        self._step("perform", flags, uri)
        return b"C"

    async def domain_migrate_finish3(self, dname, cookie, dconnuri, uri, flags, cancelled):
        return await self.domain_migrate_finish3_params([], cookie, flags, cancelled)

    async def domain_migrate_confirm3(self, dom, cookie, flags, cancelled):
        self._step("confirm", cancelled)

    async def domain_migrate_prepare2(self, uri, flags, dname, resource, xml):
        self._step("prepare2", flags)
        return b"", "tcp:127.0.0.1:49152"

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
