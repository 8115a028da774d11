"""The test host's jobs: job info/stats/abort, the migration steps and block jobs, in memory.

libvirt's test driver keeps no real job running; these answer as it does.
"""

from __future__ import annotations


class JobsAPI:
    """Mixed into TestConnection (self.host is the shared TestHost)."""
