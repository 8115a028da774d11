"""RPC streams: every piece of stream code, in one package.

* :mod:`.state` — sans-I/O: the packets of one stream and the rules that
  order them (data, holes, finish, abort, acknowledgement, failure) with
  libvirt's stream statuses (``VIR_NET_CONTINUE``/``OK``/``ERROR``).
  Importing this package gives these names and nothing that does I/O.
* :mod:`.pump` — the hot path: threads that move a stream's payload between
  a pipe and the RPC socket with ``splice``, never through Python, with
  backpressure from the pipe or the socket.
* :mod:`.incoming` — the server's ends: a client→server stream into the
  driver's pipe, a descriptor's (console, screenshot), and a storage
  volume's (within the call's length, holes as STREAM_HOLE packets on a
  sparse stream); the daemon hands over the descriptor and they do the rest.
* :mod:`.outgoing` — the client's ends: data from a file descriptor or
  the caller (holes too on a sparse stream), then finish or abort; and a
  download's, queued with read backpressure that never holds up a reply.
"""

from .state import (
    TRANSITIONS,
    Abort,
    Ack,
    Data,
    Direction,
    EndOfData,
    Event,
    Failed,
    Finish,
    Hole,
    LocalStreamError,
    RemoteStreamError,
    Role,
    Stream,
    StreamError,
    StreamState,
)

__all__ = [
    "Role", "Direction", "StreamState", "Stream", "TRANSITIONS",
    "Data", "Hole", "EndOfData", "Finish", "Abort", "Ack", "Failed", "Event",
    "StreamError", "LocalStreamError", "RemoteStreamError",
]
