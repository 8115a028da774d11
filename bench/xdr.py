"""Micro-benchmark of the RPC codec on the daemon's hot path.

Prints microseconds per operation for the GET_INFO call and reply (what
python3-libvirt's ``dom.info()`` costs the daemon) and for a
LIST_ALL_DOMAINS reply with 100 domains.  Run: ``python bench/xdr.py``.
"""

from __future__ import annotations

import timeit
import uuid

from pyvirt.refs import DomainRef
from pyvirt.rpc import wire
from pyvirt.rpc.protocol import REMOTE

N = 200_000


def us(fn, number: int = N) -> float:
    fn()  # compile on first use, outside the timing
    best = min(timeit.repeat(fn, number=number, repeat=5))
    return best / number * 1e6


def main() -> None:
    get_info = REMOTE[16]
    list_all = REMOTE[273]
    dom = DomainRef("guest-01", uuid.UUID(int=1).bytes, 7)
    args = get_info.encode_args((dom,))
    info = (1, 2097152, 2097152, 2, 123456789012)
    ret = get_info.encode_ret(info)
    call = wire.encode_call(wire.Program.REMOTE, 16, 42, args)
    doms = [DomainRef(f"guest-{n:03d}", uuid.UUID(int=n).bytes, n) for n in range(100)]
    list_ret = list_all.encode_ret((doms, 100))

    def dispatch_round_trip() -> bytes:
        framer = wire.Framer()
        framer.receive_data(call)
        msg = framer.next_message()
        (d,) = get_info.decode_args(msg.payload)  # type: ignore[union-attr]
        return wire.encode_reply(msg.header, get_info.encode_ret(info))  # type: ignore[union-attr]

    rows = [
        ("GET_INFO args decode", us(lambda: get_info.decode_args(args))),
        ("GET_INFO args encode", us(lambda: get_info.encode_args((dom,)))),
        ("GET_INFO ret encode", us(lambda: get_info.encode_ret(info))),
        ("GET_INFO ret decode", us(lambda: get_info.decode_ret(ret))),
        ("GET_INFO frame+decode+encode+frame", us(dispatch_round_trip)),
        ("LIST_ALL_DOMAINS(100) ret encode", us(lambda: list_all.encode_ret((doms, 100)), N // 50)),
        ("LIST_ALL_DOMAINS(100) ret decode", us(lambda: list_all.decode_ret(list_ret), N // 50)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:8.2f} us")


if __name__ == "__main__":
    main()
