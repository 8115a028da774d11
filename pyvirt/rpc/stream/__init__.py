"""RPC streams: every piece of stream code, in one package.

* :mod:`.state` — sans-I/O: the packets of one stream and the rules that
  order them (data, holes, finish, abort, acknowledgement, failure) with
  libvirt's stream statuses (``VIR_NET_CONTINUE``/``OK``/``ERROR``).
  Importing this package gives these names and nothing that does I/O.
* :mod:`.pump` — the hot path: threads that move a stream's payload between
  a pipe and the RPC socket with ``splice``, never through Python, with
  backpressure from the pipe or the socket.
* :mod:`.incoming` — the server's end of a client→server stream: the
  daemon hands it the driver's pipe and it does the rest.
* :mod:`.outgoing` — the client's end: data from a file descriptor, then
  finish or abort.
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
