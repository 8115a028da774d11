"""QEMU processes: launch in named phases, watch, stop, adopt after a restart.

Start runs ``prepare_host → launch → connect_monitor``; the driver then
starts the CPUs (or not).  The monitor socket is created and listening
*before* QEMU starts and handed to it as a file descriptor, so connecting
never polls for a socket file to appear; our copy is closed right after
the fork, so a QEMU that dies early resets the connection instead of
leaving us waiting for a greeting.

Exit is noticed at once, never by polling: our own children through
asyncio's child watcher, a QEMU adopted after a restart through a pidfd.

QEMU runs as the security manager's user (libvirt-qemu by default), with
that user's groups and no capabilities at all — also none in the bounding
set, as libvirt drops them.  Where the ids are switched depends on the
loop, for the cheapest start: uvloop (pyvirtd) forks anyway, so a hook in
the child drops them before exec; asyncio's spawn would have to fork
instead of vfork for that hook (milliseconds for a big process), so there
util-linux's ``setpriv`` does it between its exec and QEMU's.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from ... import testhooks
from ...errors import ErrorDomain, ErrorNumber, error, libvirtError
from ...security import ProcessIds
from .command import opt_value
from .monitor import Monitor, MonitorCallbacks, listening_socket

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 5
_NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, start: int = 0) -> str:
    """The last lines QEMU wrote to its log (from byte ``start`` on)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


@dataclass
class QemuProcess:
    """A running QEMU: its pid, its monitor, and a future set when it is gone."""

    pid: int
    monitor: Monitor
    exited: "asyncio.Future[int | None]"
    child: asyncio.subprocess.Process | None = None   # None when adopted
    started: float = field(default_factory=time.time)

    _stat_fd: int = -1

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    def cpu_time_ns(self) -> int:
        """QEMU's user+system CPU time.  dom.info() asks for it on every call, so
        /proc/PID/stat stays open and is re-read with pread (no open/close, no pathlib)."""
        try:
            if self._stat_fd < 0:
                self._stat_fd = os.open(f"/proc/{self.pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(self._stat_fd, 1024, 0)
        except OSError:
            return 0
        fields = data[data.rindex(b")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) * _NS_PER_TICK

    def close_stat(self) -> None:
        if self._stat_fd >= 0:
            os.close(self._stat_fd)
            self._stat_fd = -1

    def signal(self, signum: int) -> None:
        if self.exited.done():
            return
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns once it is gone."""
        if self.exited.done():
            return
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), grace)
            return
        except asyncio.TimeoutError:
            log.warning("QEMU pid %d ignored SIGTERM for %.1fs; killing it", self.pid, grace)
        self.signal(signal.SIGKILL)
        await asyncio.shield(self.exited)


def _watch_child(child: asyncio.subprocess.Process) -> "asyncio.Future[int | None]":
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int | None] = loop.create_future()

    async def wait() -> None:
        try:
            code = await child.wait()
        except asyncio.CancelledError:
            # The loop is being torn down: nobody will report this exit any more.
            # Waiters must wake (cancelled) rather than wait for it forever.
            if not fut.done():
                fut.cancel()
            raise
        if not fut.done():
            fut.set_result(code)

    loop.create_task(wait(), name=f"qemu-wait-{child.pid}")
    return fut


def watch_pid(pid: int) -> "asyncio.Future[int | None]":
    """A future set when a process we did not start exits (pidfd readability)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int | None] = loop.create_future()
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        fut.set_result(None)
        return fut

    def gone() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not fut.done():
            fut.set_result(None)

    def cancelled(f: "asyncio.Future[int | None]") -> None:
        if f.cancelled():            # nobody watches any more: release the pidfd
            loop.remove_reader(pidfd)
            os.close(pidfd)

    loop.add_reader(pidfd, gone)
    fut.add_done_callback(cancelled)
    return fut


def pid_is_ours(pid: int, name: str, uuid: str) -> bool:
    """True if ``pid`` is a QEMU started for this domain (its command line
    names the guest and its UUID), so a recycled pid is never adopted."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"guest={opt_value(name)},".encode() in b" ".join(args) and uuid.encode() in args


def orphans_of(name: str, uuid: str, log_path: Path) -> list[int]:
    """QEMUs started for this domain by this host's daemon whose pid it never
    recorded (it died between spawning QEMU and writing the status file).

    Besides the guest's name and UUID on the command line (which a second
    daemon on the same machine, the other end of a migration, shares), such a
    QEMU writes its stderr into this host's log of the domain: that ties it to
    this state directory and no other."""
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or not pid_is_ours(int(entry), name, uuid):
            continue
        try:
            if os.readlink(f"/proc/{entry}/fd/2") == str(log_path):
                found.append(int(entry))
        except OSError:
            continue
    return found


# Found where util-linux installs it even when $PATH is kept narrow (helper_path).
_SETPRIV = shutil.which("setpriv") or shutil.which("setpriv", path="/usr/bin:/bin")
_PR_CAPBSET_DROP = 24


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 63


_LAST_CAP = _last_cap()
_LIBC = ctypes.CDLL(None, use_errno=True)


def _drop_ids(ids: ProcessIds):
    """A hook for the child, before exec: no capabilities in the bounding set
    (while we still may drop them), then the groups, group and user, which
    clears every other capability."""
    def switch() -> None:
        for cap in range(_LAST_CAP + 1):
            if _LIBC.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
                raise OSError(ctypes.get_errno(), "cannot drop capabilities from the bounding set")
        os.setgroups(list(ids.groups))
        os.setgid(ids.gid)
        os.setuid(ids.uid)
    return switch


def _hook_is_cheaper() -> bool:
    """uvloop forks for every spawn anyway; asyncio would fork instead of vfork for a hook."""
    return not isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop)


def _as_user(argv: list[str], ids: ProcessIds | None) -> tuple[list[str], dict]:
    """``argv`` and the spawn options that run it as ``ids`` (None: as we run)."""
    if ids is None or (ids.uid, ids.gid) == (os.geteuid(), os.getegid()):
        return argv, {}
    if _SETPRIV is None or _hook_is_cheaper():
        return argv, {"preexec_fn": _drop_ids(ids)}
    if not os.access(argv[0], os.X_OK):      # setpriv would only say so in the log
        code = errno.EACCES if os.path.exists(argv[0]) else errno.ENOENT
        raise OSError(code, os.strerror(code))
    groups = ",".join(str(g) for g in ids.groups) if ids.groups else None
    wrap = [_SETPRIV, f"--reuid={ids.uid}", f"--regid={ids.gid}",
            f"--groups={groups}" if groups else "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--"]
    return wrap + argv, {}


async def launch(argv: list[str], monitor_path: Path, log_path: Path, name: str,
                 callbacks: MonitorCallbacks, extra_fds: tuple[int, ...] = (),
                 monitor_fd_placeholder: str = "@MONITOR_FD@",
                 timeout: float = 30.0, ids: ProcessIds | None = None) -> QemuProcess:
    """Start QEMU with ``argv`` as ``ids`` and connect to its monitor.

    ``argv`` names the monitor socket's descriptor with a placeholder that
    is replaced here, once the socket exists.  On any failure QEMU is
    killed and the error quotes the end of its log.
    """
    try:
        monitor_path.unlink()
    except FileNotFoundError:
        pass
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sock = listening_socket(str(monitor_path))
    fd = sock.fileno()
    argv = [arg.replace(monitor_fd_placeholder, str(fd)) for arg in argv]
    logfd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(logfd, f"{time.strftime('%Y-%m-%d %H:%M:%S')}: starting up\n{' '.join(argv)}\n".encode())
        log_start = os.lseek(logfd, 0, os.SEEK_END)   # what QEMU itself writes starts here
        spawn_argv, as_user = _as_user(argv, ids)
        child = await asyncio.create_subprocess_exec(
            *spawn_argv, stdin=asyncio.subprocess.DEVNULL, stdout=logfd, stderr=logfd,
            pass_fds=(fd, *extra_fds), start_new_session=True, **as_user)
    except OSError as exc:
        raise error(ErrorNumber.INTERNAL_ERROR, ErrorDomain.QEMU,
                    f"cannot execute '{argv[0]}': {exc.strerror}") from exc
    finally:
        os.close(logfd)
        sock.close()   # QEMU has its own copy; ours would keep a dead QEMU's socket listening

    exited = _watch_child(child)
    monitor = Monitor(name, callbacks)
    qp = QemuProcess(child.pid, monitor, exited, child)
    connect: asyncio.Future[None] | None = None
    try:
        await testhooks.reach("qemu-launched", name)
        connect = asyncio.ensure_future(monitor.connect(str(monitor_path)))
        done, _ = await asyncio.wait({connect, exited}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if connect in done and connect.exception() is None:
            return qp
        if exited.done():
            await asyncio.sleep(0)   # let the log be flushed by the exit
            raise _start_error(name, log_path, log_start, f"QEMU exited with status {exited.result()}")
        if connect.done():
            raise _start_error(name, log_path, log_start, str(connect.exception()))
        raise _start_error(name, log_path, log_start, f"no monitor greeting within {timeout:.0f}s")
    except BaseException:
        if connect is not None and not connect.done():
            # Let qemu.qmp unwind its own cancelled handshake before we disconnect
            # (a disconnect racing it is what qemu.qmp calls a bug of its own).
            connect.cancel()
            await asyncio.wait({connect})
        await qp.stop(1.0)
        await monitor.close()
        raise


def _start_error(name: str, log_path: Path, start: int, what: str) -> libvirtError:
    tail = log_tail(log_path, start=start)
    detail = f"QEMU for domain '{name}' failed to start: {what}"
    if tail:
        detail += f": {tail}"
    return error(ErrorNumber.OPERATION_FAILED, ErrorDomain.QEMU, detail)


async def adopt(pid: int, monitor_path: Path, name: str, callbacks: MonitorCallbacks,
                timeout: float = 10.0) -> QemuProcess:
    """Reconnect to a QEMU that outlived a previous manager.

    Bounded: a monitor that never greets (held by someone else, QEMU stuck)
    fails the adoption instead of stalling the manager's start-up.
    """
    exited = watch_pid(pid)
    monitor = Monitor(name, callbacks)
    try:
        await asyncio.wait_for(monitor.connect(str(monitor_path)), timeout)
    except BaseException as exc:
        if not exited.done():
            exited.cancel()          # stops watching the pidfd (see watch_pid)
        await monitor.close()
        if isinstance(exc, asyncio.TimeoutError):
            raise error(ErrorNumber.OPERATION_TIMEOUT, ErrorDomain.QEMU,
                        f"the monitor of '{name}' did not answer within {timeout:.0f}s") from None
        raise
    return QemuProcess(pid, monitor, exited, None)


def kill_pid(pid: int) -> None:
    """SIGKILL a QEMU we cannot manage (through a pidfd, so a recycled pid is never hit)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)
