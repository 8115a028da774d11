"""The ssh transport (``qemu+ssh://``): RPC over the stdin/stdout of an ``ssh`` child.

Built as libvirt 9.0's client builds it, so an operator's ssh setup (keys,
agent, ``~/.ssh/config``, known hosts) works the same for pyvirt and virsh:

* the child: ``ssh [-p PORT] [-l USER] [-i KEYFILE] -T -e none
  [-o BatchMode=yes] [-o StrictHostKeyChecking=no] -- HOST COMMAND``
  (``no_tty=1`` gives BatchMode, ``no_verify=1`` StrictHostKeyChecking=no,
  ``command=`` another ssh binary), with libvirt's short list of environment
  variables, talking through one end of a socketpair (so a tunnelled
  migration can still ``splice`` into the connection);
* COMMAND: a ``sh -c '...'`` snippet that relays to the daemon's UNIX socket
  through ``virt-ssh-helper URI`` when the remote host has it, else through
  ``nc -U SOCKET`` (``proxy=auto``); ``proxy=netcat`` or ``netcat=PATH`` or
  ``socket=PATH`` force nc, ``proxy=native`` forces virt-ssh-helper.

When the connection ends, the child is reaped: terminated at once when we
closed it (libvirt aborts its child the same way), given a moment to exit
by itself when it went first, so that what it printed on stderr ("Host key
verification failed.", "Connection refused", nc's complaint about the
socket) is complete.  That text, and the transport, are in the error every
pending call gets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..uri import URI
from .client import RPCClient

log = logging.getLogger(__name__)

PROXIES = ("auto", "netcat", "native")
# libvirt's build default (RUNSTATEDIR is /var/run), as Debian's virsh sends it.
DEFAULT_SOCKET_DIR = "/var/run/libvirt"
# libvirt's virCommandAddEnvPassCommon, plus the variables its ssh child also gets.
PASSED_ENV = ("LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "HOME", "USER", "LOGNAME", "TMPDIR",
              "XDG_RUNTIME_DIR", "KRB5CCNAME", "SSH_AUTH_SOCK", "SSH_ASKPASS", "OPENSSL_CONF",
              "DISPLAY", "XAUTHORITY")
EXIT_GRACE = 5.0        # s a child that closed the connection gets to exit (and finish its stderr)
TERM_GRACE = 2.0        # s between SIGTERM and SIGKILL
STDERR_KEPT = 4096      # bytes of the child's stderr kept for the error message (the last ones)

# libvirt's virBufferEscapeShell quotes only text holding one of these.
_SHELL_SPECIAL = frozenset("\r\t\n !\"#$&'()*;<>?[\\]^`{|}~")


def _invalid(detail: str) -> libvirtError:
    return error(ErrorNumber.INVALID_ARG, ErrorDomain.REMOTE, detail)


def shell_escape(text: str) -> str:
    """One level of POSIX shell quoting, as libvirt's virBufferEscapeShell does it."""
    if text and not _SHELL_SPECIAL.intersection(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _double_escape(text: str) -> str:
    # The remote login shell runs our command, which runs sh -c again: two levels.
    return shell_escape(shell_escape(text))


def helper_command(proxy: str, netcat: str | None, socket_path: str, driver_uri: str,
                   read_only: bool) -> str:
    """The remote command: libvirt 9.0's virNetClientSSHHelperCommand, text for text."""
    if proxy not in PROXIES:
        # libvirt's message, spelling included
        raise _invalid(f"Unnkown proxy type '{proxy}'")
    if proxy == "auto" and netcat is not None:
        proxy = "netcat"            # a netcat path asks for the legacy relay
    nc = _double_escape(netcat or "nc")
    # libvirt leaves the socket path as it is; quoted here only when it needs it
    # (never for an ordinary path, so the command stays libvirt's).
    sock = socket_path if not _SHELL_SPECIAL.intersection(socket_path) else f"'{_double_escape(socket_path)}'"
    nccmd = (f"if '{nc}' -q 2>&1 | grep \"requires an argument\" >/dev/null 2>&1; then "
             "ARG=-q0;"
             "else "
             "ARG=;"
             "fi;"
             f"'{nc}' $ARG -U {sock}")
    helper = f"virt-ssh-helper{' -r ' if read_only else ' '}'{_double_escape(driver_uri)}'"
    if proxy == "auto":
        return ("sh -c 'which virt-ssh-helper 1>/dev/null 2>&1; "
                "if test $? = 0; then "
                f"    {helper}; "
                "else"
                f"    {nccmd}; "
                "fi'")
    if proxy == "netcat":
        return f"sh -c '{nccmd}'"
    if netcat:
        raise _invalid("netcat path not valid with native proxy mode")
    return f"sh -c '{helper}'"


def ssh_argv(host: str, command: str, *, binary: str | None = None, port: int | None = None,
             user: str | None = None, keyfile: str | None = None, no_tty: bool = False,
             no_verify: bool = False) -> list[str]:
    """libvirt 9.0's virNetSocketNewConnectSSH argument list."""
    argv = [binary or "ssh"]
    if port is not None:
        argv += ["-p", str(port)]
    if user:
        argv += ["-l", user]
    if keyfile:
        argv += ["-i", keyfile]
    argv += ["-T", "-e", "none"]
    if no_tty:
        argv += ["-o", "BatchMode=yes"]
    if no_verify:
        argv += ["-o", "StrictHostKeyChecking=no"]
    return argv + ["--", host, command]


@dataclass(frozen=True)
class SSHPlan:
    """What a ``qemu+ssh://`` URI asks for: the child's argv and environment, and
    how errors name the transport."""

    argv: list[str]
    env: dict[str, str]
    label: str


def plan(uri: URI, read_only: bool) -> SSHPlan:
    """The ssh child for ``uri`` (libvirt's doRemoteOpen rules for the ssh transport)."""
    socket_path = uri.param("socket")
    proxy = uri.param("proxy")
    if proxy is None:
        # An explicit socket means nc (virt-ssh-helper finds its socket itself); a
        # session daemon's socket cannot be guessed from here, so the helper must.
        proxy = "netcat" if socket_path else "native" if uri.path == "/session" else "auto"
    if not socket_path:
        socket_path = f"{DEFAULT_SOCKET_DIR}/libvirt-sock{'-ro' if read_only else ''}"
    name = uri.param("name")
    driver_uri = name if name is not None else uri.open_name(keep=frozenset({"mode", "socket"}))
    command = helper_command(proxy, uri.param("netcat"), socket_path, driver_uri, read_only)
    host = uri.host or "localhost"
    argv = ssh_argv(host, command, binary=uri.param("command"), port=uri.port, user=uri.user,
                    keyfile=uri.param("keyfile"), no_tty=uri.flag("no_tty"), no_verify=uri.flag("no_verify"))
    env = {"LC_ALL": "C"}
    env.update((k, os.environ[k]) for k in PASSED_ENV if k in os.environ)
    target = (f"{uri.user}@" if uri.user else "") + host + (f":{uri.port}" if uri.port is not None else "")
    return SSHPlan(argv, env, f"{uri.scheme} to {target}")


class SSHClient(RPCClient):
    """An RPC client whose bytes go through an ssh child; the child goes with it."""

    def __init__(self, process: asyncio.subprocess.Process, label: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.process = process
        self.label = label
        self._stderr = bytearray()
        self._stderr_task = asyncio.get_running_loop().create_task(self._read_stderr(), name="ssh-stderr")
        self._closing = False
        self._lost_exc: Exception | None = None
        self._reaper: asyncio.Task[None] | None = None     # held: the loop keeps only weak references

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while chunk := await stream.read(4096):
            log.debug("ssh (%s): %s", self.label, chunk.decode(errors="replace").rstrip())
            self._stderr += chunk
            del self._stderr[:-STDERR_KEPT]

    def stderr_text(self) -> str:
        return self._stderr.decode(errors="replace").strip()

    def lost_error(self) -> libvirtError:
        """libvirt's "End of file while reading data: <ssh's stderr>", naming the transport."""
        said = self.stderr_text()
        detail = f"{said} ({self.label})" if said else f"({self.label})"
        return error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC,
                     f"End of file while reading data: {detail}: Input/output error")

    def close(self) -> None:
        self._closing = True
        super().close()

    def connection_lost(self, exc: Exception | None) -> None:
        # Pending calls fail (and ``closed`` is set) only once the child is reaped
        # and its last words read: they explain the failure.
        self._lost_exc = exc
        self._reaper = asyncio.get_running_loop().create_task(self._reap_then_report(),
                                                              name=f"ssh-reap-{self.pid}")

    async def _reap_then_report(self) -> None:
        try:
            await reap(self.process, grace=0.0 if self._closing else EXIT_GRACE)
            try:
                await asyncio.wait_for(asyncio.shield(self._stderr_task), TERM_GRACE)
            except asyncio.TimeoutError:      # a grandchild still holds stderr open
                self._stderr_task.cancel()
        finally:
            RPCClient.connection_lost(self, self._lost_exc)
        if self.process.returncode not in (0, None, -signal.SIGTERM):
            log.info("ssh (%s) exited with status %s", self.label, self.process.returncode)


async def reap(process: asyncio.subprocess.Process, grace: float) -> None:
    """Wait ``grace`` seconds for ``process`` to exit, then SIGTERM, then SIGKILL; always reaped."""
    waiting = asyncio.ensure_future(process.wait())
    try:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, TERM_GRACE)):
            if wait > 0:
                try:
                    await asyncio.wait_for(asyncio.shield(waiting), wait)
                    return
                except asyncio.TimeoutError:
                    pass
            if process.returncode is None:
                try:
                    process.send_signal(sig)
                except ProcessLookupError:
                    pass
        await waiting
    finally:
        if not waiting.done():
            waiting.cancel()


async def connect(plan: SSHPlan, **kw: Any) -> SSHClient:
    """Spawn the ssh child and speak RPC through it."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    binary = plan.argv[0]
    try:
        try:
            process = await asyncio.create_subprocess_exec(
                *plan.argv, stdin=theirs.fileno(), stdout=theirs.fileno(),
                stderr=asyncio.subprocess.PIPE, env=plan.env)
        except FileNotFoundError:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC,
                        f"Cannot find '{binary}' in path: No such file or directory ({plan.label})") from None
        except OSError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC,
                        f"cannot execute '{binary}': {exc.strerror} ({plan.label})") from exc
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    factory: Callable[[], SSHClient] = lambda: SSHClient(process, plan.label, **kw)  # noqa: E731
    try:
        _, client = await loop.create_unix_connection(factory, sock=ours)
    except BaseException:
        ours.close()
        await reap(process, grace=0.0)
        raise
    return client


__all__ = ["SSHClient", "SSHPlan", "connect", "helper_command", "plan", "shell_escape", "ssh_argv"]
