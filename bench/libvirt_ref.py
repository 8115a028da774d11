"""Real libvirt 9.0 (Debian 12's libvirtd) as local reference "hosts" for benchmarks.

Benchmarks compare pyvirt with stock libvirtd on the same machine in the
same run.  ``LibvirtHost`` stands one libvirtd up as a separate "host":

* its own mount and UTS namespace (``unshare --mount --uts``), in which
  per-host directories under ``workdir`` are bind-mounted over
  ``/run/libvirt``, ``/var/lib/libvirt``, ``/etc/libvirt``,
  ``/var/log/libvirt`` and ``/var/cache/libvirt``, and its own hostname;
  a standard path that does not exist on this machine is made to exist
  inside the namespace only (an overlay with a tmpfs upper layer over its
  parent), so nothing is written outside ``workdir``;
* TCP on 127.0.0.1 with ``auth_tcp = "none"``, its own port and host UUID,
  its own migration port range, a qemu.conf without cgroups, security
  drivers, virtlogd or ownership changes;
* under a small subreaper parent (``_SUBREAPER``, a tiny Python program) that
  sets ``PR_SET_CHILD_SUBREAPER`` and reaps every child the moment it
  exits, as systemd does on a real host; otherwise a slowly reaping PID 1
  would slow down libvirt's teardown of every QEMU.  SIGTERM to the
  subreaper stops libvirtd and then every QEMU it left running.

Usage::

    with LibvirtHost(workdir, tcp_port=16509) as host:
        host.virsh("create", "guest.xml")
        print(host.uri, host.rss_kib())

Needs root and the Debian packages libvirt-daemon, libvirt-daemon-driver-qemu,
libvirt-clients and qemu-system-x86.  The Debian libvirtd refuses to start
without the system user ``libvirt-qemu``; ``start()`` creates it once when it
is missing.  Stdlib only, runnable with any Python >= 3.11.

Self-check: ``python bench/libvirt_ref.py [--workdir DIR]`` starts two hosts,
prints their URIs and a virsh round trip, and stops them.
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

# Debian's standard locations (the only absolute paths this module uses).
LIBVIRTD = "/usr/sbin/libvirtd"
VIRSH = "/usr/bin/virsh"
UNSHARE = "/usr/bin/unshare"
SETPRIV = "/usr/bin/setpriv"
MOUNT = "/usr/bin/mount"
HOSTNAME = "/usr/bin/hostname"
QEMU = "/usr/bin/qemu-system-x86_64"
SH = "/bin/sh"

QEMU_USER = "libvirt-qemu"

# per-host directory under workdir -> the system path it is mounted over
HOST_DIRS = {
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "etc": "/etc/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
PID_FILE = "/run/libvirt/libvirtd.pid"  # default would be /run/libvirtd.pid, shared by all hosts
SIGNATURE_MOUNT = "/var/lib/libvirt"    # the mount that marks a process as this host's

FIRST_START_TIMEOUT = 90.0  # a first start probes QEMU's capabilities: seconds


# ---------------------------------------------------------------- helpers ---

def libvirt_available() -> tuple[bool, str]:
    """Whether a libvirtd can be stood up here; the reason when not."""
    return _available()


_AVAILABLE: tuple[bool, str] | None = None


def _available() -> tuple[bool, str]:
    global _AVAILABLE
    if _AVAILABLE is not None:
        return _AVAILABLE
    if sys.platform != "linux":
        _AVAILABLE = (False, "libvirtd reference hosts need Linux")
        return _AVAILABLE
    if os.geteuid() != 0:
        _AVAILABLE = (False, "libvirtd reference hosts need root (mount namespaces, bind mounts)")
        return _AVAILABLE
    missing = [p for p in (LIBVIRTD, VIRSH, UNSHARE, SETPRIV, MOUNT, HOSTNAME, QEMU, SH)
               if not os.access(p, os.X_OK)]
    if missing:
        _AVAILABLE = (False, "missing: " + ", ".join(missing) + " (apt-get install libvirt-daemon "
                      "libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 util-linux)")
        return _AVAILABLE
    try:
        version = subprocess.run([LIBVIRTD, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
        probe = subprocess.run([UNSHARE, "--mount", "--uts", "--propagation", "private", "true"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        _AVAILABLE = (False, f"cannot run libvirtd/unshare: {exc}")
        return _AVAILABLE
    if probe.returncode != 0:
        _AVAILABLE = (False, f"cannot create mount/UTS namespaces: {probe.stderr.strip()}")
        return _AVAILABLE
    _AVAILABLE = (True, version or "libvirtd")
    return _AVAILABLE


def ensure_qemu_user() -> None:
    """Create the ``libvirt-qemu`` system user/group Debian's libvirtd insists on, once."""
    import grp
    import pwd
    try:
        pwd.getpwnam(QEMU_USER)
        return
    except KeyError:
        pass
    try:
        grp.getgrnam(QEMU_USER)
    except KeyError:
        subprocess.run(["groupadd", "--system", QEMU_USER], check=True, capture_output=True)
    try:
        grp.getgrnam("kvm")
        group = "kvm"
    except KeyError:
        group = QEMU_USER
    subprocess.run(["useradd", "--system", "--no-create-home", "--gid", group,
                    "--shell", "/usr/sbin/nologin", QEMU_USER], check=True, capture_output=True)


def pick_free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that are free right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def pick_free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for a libvirtd ``tcp_port``)."""
    return pick_free_ports(1)[0]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _conf_str(value: str) -> str:
    if any(c in value for c in '"\\\n'):
        raise ValueError(f"unsupported character in config value {value!r}")
    return f'"{value}"'


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _descendants(root: int) -> list[int]:
    """Live descendants of ``root`` (from /proc's ppid links)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None and st[0] not in ("Z", "X"):
            children.setdefault(st[1], []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _mount_signature(pid: int, mountpoint: str) -> tuple[str, str, str] | None:
    """(device, root, mount point) of ``mountpoint`` as ``pid`` sees it."""
    try:
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        f = line.split()
        if len(f) > 4 and f[4] == mountpoint:
            found = (f[2], f[3], f[4])  # the last one is the visible one
    return found


def _has_mount(pid: int, signature: tuple[str, str, str]) -> bool:
    return _mount_signature(pid, signature[2]) == signature


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------- subreaper ---

# The parent of one libvirtd, run as ``python -I -S -c _SUBREAPER --parent PID
# -- COMMAND...`` (a separate program so that it starts in ~40 ms, not the
# ~130 ms importing this module costs).  It becomes a child subreaper, so the
# QEMUs libvirtd daemonizes are reparented to it, and reaps every child the
# moment it exits.  It writes the command's pid on stdout, then points stdout
# at stderr (the host's log).  On SIGTERM/SIGINT/SIGHUP, or when its own parent
# dies (PR_SET_PDEATHSIG), or when libvirtd exits, it stops libvirtd (SIGTERM,
# SIGKILL after 15 s), then everything left below it (QEMU: SIGTERM, SIGKILL
# after 3 s), and exits.
_SUBREAPER = r"""
import ctypes, os, signal, sys, time

def prctl(option, arg):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(%d)" % option)

def children():
    # zombies included: a multi-threaded QEMU shows "Z" before it can be reaped
    kids = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            raw = open("/proc/%s/stat" % e).read()
        except OSError:
            continue
        kids.setdefault(int(raw.rsplit(")", 1)[1].split()[1]), []).append(int(e))
    return kids

def descendants(root):
    kids, out, todo = children(), [], [root]
    while todo:
        for c in kids.get(todo.pop(), ()):
            out.append(c)
            todo.append(c)
    return out

def kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass

def log(msg):
    os.write(2, ("subreaper[%d]: %s\n" % (os.getpid(), msg)).encode())

argv = sys.argv[1:]
parent = int(argv[argv.index("--parent") + 1])
command = argv[argv.index("--") + 1:]
prctl(36, 1)                   # PR_SET_CHILD_SUBREAPER
prctl(1, signal.SIGTERM)       # PR_SET_PDEATHSIG: the benchmark died, tear down
if os.getppid() != parent:
    sys.exit(1)
stops = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
watched = stops | {signal.SIGCHLD}
signal.pthread_sigmask(signal.SIG_BLOCK, watched)
main = os.posix_spawn(command[0], command, os.environ,
                      file_actions=[(os.POSIX_SPAWN_DUP2, 2, 1)], setsigmask=set(),
                      setsigdef={signal.SIGPIPE, signal.SIGXFSZ} | watched)
os.write(1, b"%d\n" % main)
os.dup2(2, 1)
status = []

def reap():
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == main:
            status.append(st)

def wait_until(pred, timeout):
    deadline = time.monotonic() + timeout
    while True:
        reap()
        if pred():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        signal.sigtimedwait({signal.SIGCHLD}, min(left, 0.05))

requested = False
while not status:
    info = signal.sigwaitinfo(watched)
    reap()
    if info.si_signo in stops:
        requested = True
        break
if not status:                 # libvirtd first: it leaves its QEMUs running
    kill(main, signal.SIGTERM)
    if not wait_until(lambda: bool(status), 15.0):
        log("libvirtd ignored SIGTERM for 15 s; SIGKILL")
        kill(main, signal.SIGKILL)
        wait_until(lambda: bool(status), 5.0)
elif not requested:
    log("libvirtd exited by itself: %d" % os.waitstatus_to_exitcode(status[0]))
me = os.getpid()
left = descendants(me)         # QEMUs, reparented to us
if left:
    log("stopping %d leftover process(es): %s" % (len(left), left))
    for pid in left:
        kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not descendants(me), 3.0):
        for pid in descendants(me):
            kill(pid, signal.SIGKILL)
        wait_until(lambda: not descendants(me), 5.0)
reap()
if not status:
    sys.exit(1)
code = os.waitstatus_to_exitcode(status[0])
if requested and code in (0, -signal.SIGTERM):
    code = 0
sys.exit(code if code >= 0 else 128 - code)
"""


# ------------------------------------------------------------ the host ---

_RUNNING: "weakref.WeakSet[LibvirtHost]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for host in list(_RUNNING):
        try:
            host.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


@dataclass
class StartTiming:
    seconds: float           # start() call until `virsh version` answered
    capabilities_probed: bool  # no usable capability cache: QEMU was probed


class LibvirtHost:
    """One libvirtd 9.0 "host", reachable at ``uri`` over TCP on 127.0.0.1.

    ``workdir`` holds everything of this host (its run/lib/etc/log/cache
    directories and ``libvirtd.log``); it may be reused, which keeps the
    QEMU capability cache (a first start probes QEMU for seconds, later
    ones take a few hundred ms) and persistent domain definitions; the run
    directory is cleared on start.  ``cache_dir`` replaces ``workdir/cache``
    (several hosts may share one once it is populated: start the first host
    alone).  The migration port range defaults to 16 ports derived from
    ``tcp_port``; give hosts that migrate to each other explicit ranges.
    ``hostname`` should contain a dot (libvirt resolves a bare name).
    """

    def __init__(self, workdir: Path | str, tcp_port: int, migration_port_min: int | None = None,
                 migration_port_max: int | None = None, host_uuid: str | uuid.UUID | None = None,
                 hostname: str | None = None, save_image_format: str | None = None, *,
                 cache_dir: Path | str | None = None,
                 start_timeout: float = FIRST_START_TIMEOUT, tls_config: str = "") -> None:
        self.workdir = Path(workdir).resolve()
        # libvirtd.conf lines of a TLS listener (listen_tls, tls_port, the files); "": none
        self.tls_config = tls_config
        self.tcp_port = int(tcp_port)
        if migration_port_min is None:
            # above Linux's ephemeral range, away from libvirt's/pyvirt's 49152..
            migration_port_min = 61000 + (self.tcp_port % 280) * 16
        if migration_port_max is None:
            migration_port_max = migration_port_min + 15
        if not 0 < migration_port_min <= migration_port_max < 65536:
            raise ValueError("bad migration port range")
        self.migration_port_min = migration_port_min
        self.migration_port_max = migration_port_max
        self.host_uuid = str(uuid.UUID(str(host_uuid))) if host_uuid else str(uuid.uuid4())
        # A dot keeps libvirt from resolving the name (a DNS round trip on start).
        self.hostname = hostname or f"libvirt-ref-{self.tcp_port}.test"
        self.save_image_format = save_image_format
        self.cache_dir = Path(cache_dir).resolve() if cache_dir else self.workdir / "cache"
        self.start_timeout = start_timeout
        self.log_path = self.workdir / "libvirtd.log"
        self.timing: StartTiming | None = None
        self._wrapper: subprocess.Popen | None = None
        self._pid: int | None = None
        self._mnt_ns: str | None = None
        self._signature: tuple[str, str, str] | None = None
        self._lock_fd: int | None = None
        self._active = False  # started since the last stop()

    # -- public --------------------------------------------------------------

    @property
    def uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.tcp_port}/system"

    @property
    def pid(self) -> int | None:
        """libvirtd's pid while it runs."""
        return self._pid

    @property
    def wrapper_pid(self) -> int | None:
        """The subreaper parent's pid while it runs."""
        return self._wrapper.pid if self._wrapper else None

    @property
    def running(self) -> bool:
        return self._pid is not None and pid_alive(self._pid)

    def host_path(self, system_path: str) -> Path:
        """Where a path inside the host's namespace (e.g. /run/libvirt/qemu) lives in workdir."""
        for name, target in HOST_DIRS.items():
            if system_path == target or system_path.startswith(target + "/"):
                base = self.cache_dir if name == "cache" else self.workdir / name
                return base / system_path[len(target):].lstrip("/")
        raise ValueError(f"{system_path} is not one of the per-host directories")

    def rss_kib(self) -> int:
        """Resident set size of libvirtd, KiB."""
        if self._pid is None:
            raise RuntimeError("libvirtd is not running")
        for line in Path(f"/proc/{self._pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS for libvirtd")

    def domain_pid(self, name: str) -> int | None:
        """The QEMU pid of a running domain (from libvirt's pid file)."""
        try:
            return int(self.host_path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def virsh(self, *args: str, check: bool = True, timeout: float = 120.0,
              input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``virsh -c URI ARGS...``; raise with virsh's message on failure."""
        proc = subprocess.run([VIRSH, "-q", "-c", self.uri, *args], capture_output=True, text=True,
                              timeout=timeout, input=input, env=_virsh_env())
        if check and proc.returncode != 0:
            raise RuntimeError(f"virsh {' '.join(args)} failed ({proc.returncode}): "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def processes(self) -> list[int]:
        """Live pids of this host: libvirtd and every QEMU/helper it started."""
        me = os.getpid()
        found: set[int] = set()
        if self._wrapper is not None and self._wrapper.poll() is None:
            found.update(_descendants(self._wrapper.pid))
        if self._mnt_ns or self._signature:
            for pid in _all_pids():
                if pid == me or pid in found or not pid_alive(pid):
                    continue
                if self._mnt_ns and _mnt_ns(pid) == self._mnt_ns:
                    found.add(pid)
                elif self._signature and _has_mount(pid, self._signature):
                    found.add(pid)  # a QEMU in libvirt's per-domain mount namespace
        if self._wrapper is not None:
            found.discard(self._wrapper.pid)
        return sorted(p for p in found if pid_alive(p))

    def start(self) -> "LibvirtHost":
        """Start libvirtd and wait until ``virsh -c URI version`` answers."""
        if self._wrapper is not None:
            raise RuntimeError("already started")
        ok, why = libvirt_available()
        if not ok:
            raise RuntimeError(f"libvirtd cannot run here: {why}")
        t0 = time.monotonic()
        ensure_qemu_user()
        self._prepare()
        if not _port_free(self.tcp_port):
            self._unlock()
            raise RuntimeError(f"127.0.0.1:{self.tcp_port} is in use")
        probed = not any(self.cache_dir.glob("qemu/capabilities/*.xml"))
        try:
            self._spawn()
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.timing = StartTiming(time.monotonic() - t0, probed)
        return self

    def stop(self, timeout: float = 20.0) -> list[int]:
        """Stop libvirtd and every QEMU it started; return pids that had to be swept.

        Asks the subreaper to tear down (SIGTERM), kills it if it does not
        finish within ``timeout``, then kills by pid whatever of this host is
        still alive.  Raises when something survives SIGKILL.
        """
        swept: list[int] = []
        try:
            if self._wrapper is not None and self._wrapper.poll() is None:
                self._wrapper.send_signal(signal.SIGTERM)
                try:
                    self._wrapper.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._wrapper.kill()
                    self._wrapper.wait()
            left = self.processes() if self._active else []
            if left:
                swept = sorted(left)
                for pid in swept:
                    _kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5.0
                while any(pid_alive(p) for p in swept) and time.monotonic() < deadline:
                    time.sleep(0.01)
                survivors = [p for p in swept if pid_alive(p)]
                if survivors:
                    raise RuntimeError(f"processes of {self.uri} survived SIGKILL: {survivors}")
        finally:
            if self._wrapper is not None and self._wrapper.stdout:
                self._wrapper.stdout.close()
            self._wrapper = None
            self._pid = None
            self._active = False
            self._mnt_ns = None  # namespace ids are recycled; the mount signature is per workdir
            _RUNNING.discard(self)
            self._unlock()
        return swept

    def __enter__(self) -> "LibvirtHost":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LibvirtHost {self.uri} pid={self._pid} {self.workdir}>"

    # -- internals -----------------------------------------------------------

    def _prepare(self) -> None:
        if any(c in str(self.workdir) for c in ",:\n"):
            raise ValueError(f"workdir must not contain ',', ':' or newlines: {self.workdir}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock()
        for name in HOST_DIRS:
            (self.cache_dir if name == "cache" else self.workdir / name).mkdir(
                parents=True, exist_ok=True)
        (self.workdir / "ns").mkdir(exist_ok=True)
        run = self.workdir / "run"
        for entry in run.iterdir():  # runtime state of a previous start
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        etc = self.workdir / "etc"
        (etc / "libvirtd.conf").write_text(self._libvirtd_conf())
        (etc / "qemu.conf").write_text(self._qemu_conf())

    def _libvirtd_conf(self) -> str:
        return "\n".join([
            "# written by pyvirt's bench/libvirt_ref.py",
            self.tls_config.strip() or "listen_tls = 0",
            "listen_tcp = 1",
            'listen_addr = "127.0.0.1"',
            f'tcp_port = "{self.tcp_port}"',
            'auth_tcp = "none"',
            'auth_unix_ro = "none"',
            'auth_unix_rw = "none"',
            'unix_sock_group = "root"',
            f'host_uuid = "{self.host_uuid}"',
            "",
        ])

    def _qemu_conf(self) -> str:
        lines = [
            "# written by pyvirt's bench/libvirt_ref.py",
            'user = "root"',
            'group = "root"',
            'security_driver = "none"',
            "dynamic_ownership = 0",
            'stdio_handler = "file"',
            "cgroup_controllers = [ ]",
            f"migration_port_min = {self.migration_port_min}",
            f"migration_port_max = {self.migration_port_max}",
        ]
        if self.save_image_format:
            lines.append(f"save_image_format = {_conf_str(self.save_image_format)}")
        return "\n".join(lines + [""])

    def _namespace_script(self) -> str:
        """Shell run inside the new namespace: mounts, hostname, exec libvirtd."""
        q = shlex.quote
        cmds = ["set -e"]
        missing = [t for t in HOST_DIRS.values() if not os.path.isdir(t)]
        if missing:
            # Make the missing mount points exist in this namespace only: an
            # overlay (tmpfs upper layer) over their nearest existing parent.
            ns = self.workdir / "ns"
            cmds.append(f"{MOUNT} -t tmpfs -o size=1m,mode=0700 libvirt-ref {q(str(ns))}")
            parents = set()
            for target in missing:
                parent = os.path.dirname(target)
                while not os.path.isdir(parent):
                    parent = os.path.dirname(parent)
                parents.add(parent)
            for i, parent in enumerate(sorted(parents, key=len)):
                up, wk = ns / f"{i}.upper", ns / f"{i}.work"
                cmds.append(f"mkdir {q(str(up))} {q(str(wk))}")
                cmds.append(f"{MOUNT} -t overlay libvirt-ref "
                            f"-o {q(f'lowerdir={parent},upperdir={up},workdir={wk}')} {q(parent)}")
            cmds.append("mkdir -p " + " ".join(q(t) for t in missing))
        for name, target in HOST_DIRS.items():
            src = self.cache_dir if name == "cache" else self.workdir / name
            cmds.append(f"{MOUNT} --bind {q(str(src))} {q(target)}")
        cmds.append(f"{HOSTNAME} {q(self.hostname)}")
        cmds.append(f"exec {LIBVIRTD} --listen -f /etc/libvirt/libvirtd.conf -p {PID_FILE}")
        return "\n".join(cmds)

    def _spawn(self) -> None:
        command = [UNSHARE, "--mount", "--uts", "--propagation", "private", "--",
                   SETPRIV, "--pdeathsig", "TERM", "--",
                   SH, "-c", self._namespace_script()]
        wrapper = [sys.executable, "-I", "-S", "-c", _SUBREAPER,
                   "--parent", str(os.getpid()), "--", *command]
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {time.strftime('%Y-%m-%d %H:%M:%S')} {self.uri}\n".encode())
            log.flush()
            self._wrapper = subprocess.Popen(wrapper, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=log,
                                             start_new_session=True, env=_daemon_env())
        self._active = True
        _RUNNING.add(self)
        line = _read_line(self._wrapper.stdout, 10.0)
        if not line:
            raise RuntimeError(f"the subreaper did not start libvirtd{self._log_tail()}")
        self._pid = int(line)

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.start_timeout
        while True:
            if self._wrapper.poll() is not None or not pid_alive(self._pid):
                raise RuntimeError(f"libvirtd exited during start{self._log_tail()}")
            if self._mnt_ns is None and _exe_is(self._pid, os.path.realpath(LIBVIRTD)):
                self._mnt_ns = _mnt_ns(self._pid)
                self._signature = _mount_signature(self._pid, SIGNATURE_MOUNT)
            if self._mnt_ns is not None and _port_open(self.tcp_port):
                proc = subprocess.run([VIRSH, "-c", self.uri, "version"], capture_output=True,
                                      text=True, timeout=30, env=_virsh_env())
                if proc.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"libvirtd at {self.uri} not ready after "
                                   f"{self.start_timeout:.0f} s{self._log_tail()}")
            time.sleep(0.02)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "; libvirtd.log:\n  " + "\n  ".join(tail) if tail else ""

    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.workdir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"{self.workdir} is in use by another libvirtd host") from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _exe_is(pid: int, path: str) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/exe") == path
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _read_line(stream, timeout: float) -> str:
    import select
    fd = stream.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        chunk = os.read(fd, 64)
        if not chunk:
            break
        buf += chunk
    return buf.decode().strip()


def _daemon_env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "TZ")}
    keep.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    keep["LC_ALL"] = "C"
    return keep


def _virsh_env() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env.pop("LIBVIRT_DEFAULT_URI", None)
    return env


# ------------------------------------------------------------ self-check ---

def _self_check(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="Start two libvirtd 9.0 hosts, time a virsh round "
                                             "trip, stop them.")
    ap.add_argument("--workdir", type=Path, help="directory for both hosts (default: a temporary "
                                                 "one, removed afterwards)")
    ap.add_argument("--port", type=int, default=0, help="first TCP port (default: free ports)")
    args = ap.parse_args(argv)
    ok, why = libvirt_available()
    if not ok:
        print(f"libvirt not available: {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="libvirt-ref-") as tmp:
        base = (args.workdir or Path(tmp)).resolve()
        ports = [args.port, args.port + 1] if args.port else pick_free_ports(2)
        cache = base / "cache"
        hosts = [LibvirtHost(base / f"host{i}", port, cache_dir=cache)
                 for i, port in enumerate(ports)]
        try:
            for host in hosts:  # one after the other: the first fills the shared cache
                host.start()
                print(f"{host.uri}  pid {host.pid}  start {host.timing.seconds:.2f} s"
                      f"{' (capabilities probed)' if host.timing.capabilities_probed else ''}"
                      f"  rss {host.rss_kib() / 1024:.1f} MiB  uuid {host.host_uuid}")
            for host in hosts:
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    host.virsh("version")
                    times.append(time.perf_counter() - t)
                times.sort()
                print(f"{host.uri}  'virsh version' round trip: median {times[2] * 1e3:.1f} ms "
                      f"(min {times[0] * 1e3:.1f} ms, 5 runs, incl. virsh process start)")
        finally:
            for host in hosts:
                t = time.perf_counter()
                swept = host.stop()
                print(f"{host.uri}  stopped in {time.perf_counter() - t:.2f} s"
                      f"{f', swept {swept}' if swept else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(_self_check(sys.argv[1:]))
