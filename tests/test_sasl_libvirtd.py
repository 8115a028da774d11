"""Before authentication pyvirtd answers byte for byte as libvirtd 9.0 does: the same
AUTH_LIST, the same "authentication required" replies (VIR_ERR_RPC, not AUTH_FAILED) for
calls of every kind, undecodable ones included — checked against a real libvirtd with
auth_unix_rw = "sasl" in the same run."""

from __future__ import annotations

import asyncio
import sys

import pytest

from guests import REPO
from pyvirt.rpc.client import RPCClient
from pyvirt.rpc.protocol import QEMU, REMOTE
from pyvirt.rpc.wire import Program
from saslenv import SaslPyvirtd, SaslSetup

sys.path.insert(0, str(REPO / "bench"))

import libvirt_ref  # noqa: E402
from libvirt_ref import LibvirtHost, pick_free_ports  # noqa: E402

AVAILABLE, WHY = libvirt_ref.libvirt_available()
pytestmark = [pytest.mark.libvirtd,
              pytest.mark.skipif(not AVAILABLE, reason=f"libvirtd not available: {WHY}")]

SASL_UNIX = 'listen_tls = 0\nauth_unix_rw = "sasl"'


@pytest.fixture(scope="module")
def libvirtd_sasl(tmp_path_factory):
    base = tmp_path_factory.mktemp("libvirtd-sasl")
    # the first of repeated keys applies in libvirt: these lines come before the defaults
    host = LibvirtHost(base / "host", pick_free_ports(1)[0], cache_dir=base / "cache", tls_config=SASL_UNIX)
    host.start()
    try:
        yield host
    finally:
        leaked = host.stop()
    assert not leaked


@pytest.fixture(scope="module")
def pyvirtd_sasl(tmp_path_factory):
    setup = SaslSetup(tmp_path_factory.mktemp("sasl")).make()
    d = SaslPyvirtd(tmp_path_factory.mktemp("pyvirtd-sasl") / "host", sasl=setup)
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


CALLS = [
    ("AUTH_LIST", Program.REMOTE, REMOTE.by_name["AUTH_LIST"].number, b""),
    ("CONNECT_OPEN", Program.REMOTE, REMOTE.by_name["CONNECT_OPEN"].number,
     REMOTE.by_name["CONNECT_OPEN"].encode_args(("qemu:///system", 0))),
    ("CONNECT_SUPPORTS_FEATURE", Program.REMOTE, REMOTE.by_name["CONNECT_SUPPORTS_FEATURE"].number,
     REMOTE.by_name["CONNECT_SUPPORTS_FEATURE"].encode_args((10,))),
    ("CONNECT_LIST_ALL_DOMAINS", Program.REMOTE, REMOTE.by_name["CONNECT_LIST_ALL_DOMAINS"].number,
     REMOTE.by_name["CONNECT_LIST_ALL_DOMAINS"].encode_args((1, 0))),
    ("undecodable arguments", Program.REMOTE, REMOTE.by_name["CONNECT_LIST_ALL_DOMAINS"].number, b"\xff" * 3),
    ("DOMAIN_GET_INFO without a domain", Program.REMOTE, REMOTE.by_name["DOMAIN_GET_INFO"].number, b""),
    ("QEMU program", Program.QEMU, QEMU.by_name["DOMAIN_MONITOR_COMMAND"].number, b""),
    ("unknown procedure", Program.REMOTE, 9999, b""),
]


async def _answers(path: str) -> list[tuple[int, bytes]]:
    client = await RPCClient.connect_unix(path)
    try:
        return [await client.call_raw(prog, proc, payload) for _, prog, proc, payload in CALLS]
    finally:
        client.close()


def test_unauthenticated_answers_match_libvirtd(libvirtd_sasl, pyvirtd_sasl):
    theirs = asyncio.run(_answers(str(libvirtd_sasl.host_path("/run/libvirt/libvirt-sock"))))
    ours = asyncio.run(_answers(str(pyvirtd_sasl.rw_socket)))
    for (name, *_), mine, ref in zip(CALLS, ours, theirs):
        assert mine == ref, f"{name}: pyvirtd {mine!r} libvirtd {ref!r}"
    assert theirs[0] == (0, b"\x00\x00\x00\x01\x00\x00\x00\x01")      # AUTH_LIST: [REMOTE_AUTH_SASL]
    assert b"authentication required" in theirs[3][1]
