"""Golden packets: representative messages as exact bytes in tests/data/rpc/NAME.bin.

Each case builds its packet from the facts in the wire doc, compares it with
the stored file, then frames and decodes the file, checks the fields, and
re-encodes the decoded values to the same bytes.  ``PYVIRT_REGENERATE=1``
rewrites the files; review the diff before committing.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyvirt.refs import DomainRef
from pyvirt.rpc import wire
from pyvirt.rpc.protocol import KEEPALIVE, PROGRAMS, REMOTE
from pyvirt.rpc.wire import Header, MessageType, Program, Status

DATA = Path(__file__).resolve().parent / "data" / "rpc"
REGENERATE = os.environ.get("PYVIRT_REGENERATE") == "1"

VM1 = DomainRef("vm1", uuid.UUID("c7a5fdbd-edaf-9455-926a-d65c16db1809").bytes, 1)
VM2 = DomainRef("vm2", uuid.UUID("c7a5fdbd-edaf-9455-926a-d65c16db1810").bytes, -1)


@dataclass(frozen=True)
class Case:
    name: str
    header: Header
    kind: str  # "args" (CALL/MESSAGE), "ret" (REPLY/OK), "error", "raw"
    value: Any
    hexdump: str | None = None  # bytes written out by hand from the doc, when short

    def build(self) -> bytes:
        prog = PROGRAMS[self.header.prog]
        if self.kind == "error":
            return wire.encode_error_reply(self.header, self.value)
        if self.kind == "raw":
            return wire.encode_message(self.header, self.value)
        proc = prog[self.header.proc]
        payload = proc.encode_args(self.value) if self.kind == "args" else proc.encode_ret(self.value)
        return wire.encode_message(self.header, payload)


def H(prog, proc, mtype, serial, status=Status.OK) -> Header:  # noqa: N802
    return Header(prog, 1, proc, mtype, serial, status)


CASES = [
    Case("connect_open_call", H(Program.REMOTE, 1, MessageType.CALL, 1), "args",
         ("qemu:///system", 0),
         "00000038" "20008086" "00000001" "00000001" "00000000" "00000001" "00000000"
         "00000001" "0000000e" + b"qemu:///system".hex() + "0000" "00000000"),
    Case("list_all_domains_reply", H(Program.REMOTE, 273, MessageType.REPLY, 5), "ret",
         ([VM1, VM2], 2)),
    Case("get_info_reply", H(Program.REMOTE, 16, MessageType.REPLY, 7), "ret",
         (1, 2097152, 1048576, 2, 123456789000),
         "0000003c" "20008086" "00000001" "00000010" "00000001" "00000007" "00000000"
         "00000001" "0000000000200000" "0000000000100000" "00000002" "0000001cbe991a08"),
    Case("node_get_info_reply", H(Program.REMOTE, 6, MessageType.REPLY, 9), "ret",
         ("x86_64", 16777216, 8, 2400, 1, 1, 4, 2)),
    Case("get_state_call", H(Program.REMOTE, 212, MessageType.CALL, 11), "args", (VM1, 0)),
    Case("unknown_procedure_reply", H(Program.REMOTE, 999, MessageType.REPLY, 3, Status.ERROR),
         "error", wire.unknown_procedure_error(999)),
    Case("lifecycle_event", H(Program.REMOTE, 318, MessageType.MESSAGE, 1), "args",
         (1, (VM1, 5, 1))),
    Case("keepalive_ping", H(Program.KEEPALIVE, 1, MessageType.MESSAGE, 0), "raw", b"",
         "0000001c" "6b656570" "00000001" "00000001" "00000002" "00000000" "00000000"),
    Case("stream_eof", H(Program.REMOTE, 215, MessageType.STREAM, 4, Status.CONTINUE), "raw", b"",
         "0000001c" "20008086" "00000001" "000000d7" "00000003" "00000004" "00000002"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Case):
    built = case.build()
    if case.hexdump is not None:
        assert built.hex() == case.hexdump
    path = DATA / f"{case.name}.bin"
    if REGENERATE:
        DATA.mkdir(parents=True, exist_ok=True)
        path.write_bytes(built)
    stored = path.read_bytes()
    assert stored == built, f"{path.name} differs; rerun with PYVIRT_REGENERATE=1 and review"

    framer = wire.Framer()
    framer.receive_data(stored)
    framer.receive_data(b"")
    msg = framer.next_message()
    assert framer.next_message() is wire.EOF
    assert msg.header == case.header

    if case.kind == "raw":
        assert msg.payload == case.value
        return
    if case.kind == "error":
        err = wire.decode_error_payload(msg.payload)
        assert err.err == case.value.err
        assert wire.encode_error_reply(msg.header, err) == stored
        return
    proc = PROGRAMS[msg.header.prog][msg.header.proc]
    decoded = proc.decode_args(msg.payload) if case.kind == "args" else proc.decode_ret(msg.payload)
    assert decoded == case.value
    payload = proc.encode_args(decoded) if case.kind == "args" else proc.encode_ret(decoded)
    assert wire.encode_message(msg.header, payload) == stored


def test_keepalive_ping_has_no_payload():
    assert KEEPALIVE[1].encode_args(()) == b""
    assert len((DATA / "keepalive_ping.bin").read_bytes()) == wire.FRAME_HEADER_SIZE


def test_golden_list_reply_layout():
    data = (DATA / "list_all_domains_reply.bin").read_bytes()
    payload = data[wire.FRAME_HEADER_SIZE:]
    assert payload[:4] == b"\0\0\0\x02"  # two domains
    assert payload[4:8] == b"\0\0\0\x03" and payload[8:11] == b"vm1"
    assert payload[-4:] == b"\0\0\0\x02"  # ret: count
    assert REMOTE[273].decode_ret(payload) == ([VM1, VM2], 2)
