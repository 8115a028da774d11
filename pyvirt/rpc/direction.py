"""Which way a stream carries data: its own leaf module, so the procedure
tables (and with them a one-shot CLI call) do not load the stream machinery."""

from __future__ import annotations

from enum import IntFlag


class Direction(IntFlag):
    """Who carries data.  Tunnelled migration and upload: UPLOAD; console: BOTH."""

    UPLOAD = 1  # client -> server
    DOWNLOAD = 2  # server -> client
    BOTH = 3
