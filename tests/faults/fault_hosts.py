"""Two pyvirtd hosts with hook sockets, a link proxy and one heartbeat guest, reused across cells."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import pyvirt
from daemons import Pyvirtd, qemu_pid, running_copies
from fault_hooks import HookServer
from fault_proxy import PROXY_HOST, LinkProxy
from guests import kill_qemus_under, tiny_xml, wait_for, wait_for_text

NAME = "fault"
# 128 MiB, 16 MiB of it rewritten at 2 MiB/s: at 8 MiB/s Perform lasts about two
# seconds, so "early" (nothing sent) and "late" (data sent, not done) differ.
CMDLINE = "dirty=16:2"
BANDWIDTH = "8"


def _port_range(daemon: Pyvirtd) -> range:
    text = (daemon.workdir / "pyvirtd.conf").read_text()
    lo = int(re.search(r"migration_port_min = (\d+)", text).group(1))
    hi = int(re.search(r"migration_port_max = (\d+)", text).group(1))
    return range(lo, hi + 1)


_TAKEN: set[int] = set()      # ports the proxies of this session forward


class Hosts:
    """Hosts 'a' and 'b' offering one migration protocol; the guest starts on either."""

    def __init__(self, root: Path, proto: str):
        self.root = root
        self.proto = proto
        self.sockdir = Path(tempfile.mkdtemp(prefix="pvhooks-"))    # short: sun_path is 108 bytes
        extra = f'migration_host = "{PROXY_HOST}"\n'
        if proto == "v2":
            extra += "migration_params = 0\nmigration_v3 = 0\n"
        for attempt in range(5):       # ports another pair (or process) holds: choose again
            self.hooks: dict[str, HookServer] = {}
            self.daemons: list[Pyvirtd] = []
            for n in "ab":
                hooks = HookServer(self.sockdir / f"{n}.sock")
                d = Pyvirtd(root / n, extra_config=extra, extra_env={"PYVIRT_TEST_HOOKS": str(hooks.path)})
                self.hooks[d.uri] = hooks
                self.daemons.append(d)
            for d in self.daemons:
                d.write_config()
            ports = [p for d in self.daemons for p in (d.tcp_port, *_port_range(d))]
            if len(set(ports)) == len(ports) and not set(ports) & _TAKEN:
                try:
                    self.proxy = LinkProxy(ports)
                    _TAKEN.update(ports)
                    break
                except OSError:
                    if attempt == 4:
                        raise
            for hooks in self.hooks.values():
                hooks.close()
        self.uuid = str(uuid.uuid4())
        self.log = root / f"{NAME}.log"
        for d in self.daemons:
            d.start()

    # -- the guest --------------------------------------------------------------------------

    def boot(self) -> None:
        """A fresh guest on host a (after one was lost)."""
        self.log.unlink(missing_ok=True)
        conn = pyvirt.open(self.daemons[0].uri)
        try:
            conn.createXML(tiny_xml(NAME, self.log, cmdline=CMDLINE, memory_mib=128, uuid=self.uuid), 0)
        finally:
            conn.close()
        wait_for_text(self.log, "PYVIRT-HEARTBEAT 1")

    def heartbeat(self) -> int:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        beats = re.findall(r"PYVIRT-HEARTBEAT (\d+)", text)
        return int(beats[-1]) if beats else 0

    def where(self) -> dict[str, int]:
        """{daemon uri: libvirt state} for every live daemon that has the guest active."""
        found = {}
        for d in self.daemons:
            if not d.alive:
                continue
            conn = pyvirt.open(d.uri)
            try:
                dom = conn.lookupByUUIDString(self.uuid)
                if dom.isActive():
                    found[d.uri] = dom.state()[0]
            except pyvirt.libvirtError as exc:
                if exc.get_error_code() != pyvirt.VIR_ERR_NO_DOMAIN:
                    raise
            finally:
                conn.close()
        return found

    def daemon(self, uri: str) -> Pyvirtd:
        return next(d for d in self.daemons if d.uri == uri)

    def running(self) -> int:
        return running_copies(self.daemons, self.uuid)

    def source(self) -> Pyvirtd:
        """The host the guest runs on now (booting it on a when it runs nowhere)."""
        running = [uri for uri, state in self.where().items() if state == pyvirt.VIR_DOMAIN_RUNNING]
        if not running:
            self.boot()
            return self.daemons[0]
        return self.daemon(running[0])

    def other(self, d: Pyvirtd) -> Pyvirtd:
        return self.daemons[1] if d is self.daemons[0] else self.daemons[0]

    def dest_uri(self, d: Pyvirtd) -> str:
        """The destination as the client and a peer-to-peer source reach it: through the link."""
        return f"qemu+tcp://{PROXY_HOST}:{d.tcp_port}/system"

    def qemu_pid(self, d: Pyvirtd) -> int | None:
        return qemu_pid(d, NAME)

    def migrate(self, src: Pyvirtd, dst: Pyvirtd, options: list[str], bandwidth: str | None = None,
                ) -> subprocess.Popen:
        argv = ["virsh", "-c", src.uri, "migrate", "--live", *options]
        if bandwidth:
            argv += ["--bandwidth", bandwidth]
        return subprocess.Popen(argv + [NAME, self.dest_uri(dst)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def ports_busy(self) -> list[int]:
        """Migration ports of either host still listened on or connected (TIME-WAIT is the
        kernel's, not a leak: the daemon's own port choice steps over it)."""
        ranges = [_port_range(d) for d in self.daemons]
        out = subprocess.run(["ss", "-Htan"], capture_output=True, text=True, check=True).stdout
        busy = set()
        for line in out.splitlines():
            fields = line.split()
            if len(fields) < 4 or fields[0] not in ("LISTEN", "ESTAB"):
                continue
            host, _, port = fields[3].rpartition(":")
            if host == "127.0.0.1" and any(int(port) in r for r in ranges):
                busy.add(int(port))
        return sorted(busy)

    def port_holders(self) -> str:
        """`ss` lines of the busy migration ports (for a failure message)."""
        busy = self.ports_busy()
        out = subprocess.run(["ss", "-tanp"], capture_output=True, text=True).stdout
        return "\n".join(line for line in out.splitlines() if any(f":{p} " in line for p in busy))

    # -- after a failed cell: a clean start for the next ------------------------------------

    def reset(self) -> None:
        self.proxy.heal()
        for hooks in self.hooks.values():
            hooks.disarm()
        for d in self.daemons:
            if not d.alive:
                d.stop()
                d.start()
            d.destroy_all()
        for d in self.daemons:
            kill_qemus_under(d.workdir)

    def close(self) -> list[int]:
        for hooks in self.hooks.values():
            hooks.close()
        leaked = []
        for d in self.daemons:
            d.destroy_all()
        for d in self.daemons:
            leaked += d.cleanup()
        self.proxy.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)
        return leaked + kill_qemus_under(self.root)


def stop_daemon(d: Pyvirtd, sig: int, release) -> None:
    """Signal the daemon, let its held hook go (a SIGTERMed daemon may wait for its
    calls), and wait for it to exit."""
    assert d.proc is not None
    d.proc.send_signal(sig)
    release()
    try:
        d.proc.wait(15)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait()
        raise AssertionError(f"pyvirtd did not exit within 15 s of signal {signal.Signals(sig).name}")
    d.proc = None
