"""``pyvirtd``: the per-host daemon.

``pyvirtd -f FILE [--verbose]`` loads a libvirtd.conf-style file (which may
also hold qemu.conf's keys: :mod:`pyvirt.daemon.config`), starts the
QEMU driver on ``state_dir`` (adopting guests a previous daemon left
running), and serves libvirt's RPC protocol on the UNIX sockets
``unix_sock_dir/libvirt-sock`` (read-write) and ``libvirt-sock-ro``
(read-only) and, with ``listen_tcp = 1``, on TCP, and with ``listen_tls = 1``
(libvirtd's default with ``--listen``) on TLS.  SIGTERM or SIGINT stops
it cleanly: listeners close, clients are dropped, guests keep running.
``pyvirtd --check-config FILE`` only loads FILE and lists the settings it
would ignore.

Before anything else the daemon locks its state directory
(``state_dir/run/pyvirtd.pid``, :mod:`pyvirt.drivers.qemu.rootlock`): a
second pyvirtd on the same directory exits at once with status 1, naming
the running one's pid, without touching a guest.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import grp
import logging
import os
import signal
import sys
from pathlib import Path

from .. import locking
from .. import uri as urimod
from ..driver import ConnectionInfo, HypervisorConnection
from ..drivers.qemu.config import QemuConfig
from ..drivers.qemu.connection import QemuConnection
from ..drivers.qemu.driver import QemuDriver
from ..drivers.qemu.rootlock import acquire as lock_root
from ..drivers.qemu import netsource, storage_source
from ..drivers.storage import StorageDriver
from ..drivers.network.connection import NetworkConnection
from ..drivers.network.driver import NetworkDriver
from ..drivers.test import driver as test_driver
from ..enums import DriverFeature
from ..errors import ErrorDomain, ErrorNumber, error, libvirtError
from ..rpc import tlsconfig
from ..rpc.server import RPCServer
from . import sdnotify
from .auth import Authenticator
from .config import DaemonConfig, converge_settings, load_file
from .dispatch import Dispatcher

log = logging.getLogger("pyvirtd")
# libvirtd.conf's log_level → Python's levels
LOG_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
# How long a stopping daemon waits for the tasks still on its loop once cancelled.
SHUTDOWN_DRAIN = 10.0


async def connect_peer(uri: str) -> HypervisorConnection:
    """How this daemon reaches another host (peer-to-peer and tunnelled migration)."""
    from ..drivers.remote import driver as remote_driver
    conn = await remote_driver.open_connection(urimod.parse(uri), ConnectionInfo(uri=uri))
    conn.client.start_keepalive()   # a destination that vanishes silently must fail the migration
    return conn


def lock_manager(cfg: DaemonConfig) -> locking.LockPlugin:
    """pyvirtd.conf's lock_manager with its settings (lockd's keys and every lock_* key);
    the lock daemon's socket is in state_dir/run, its log in state_dir/log."""
    settings = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                if f.name.startswith("lock_") or f.name in ("auto_disk_leases", "require_lease_for_disks",
                                                              "host_uuid")}
    root = Path(cfg.state_dir)
    return locking.new_manager(cfg.lock_manager, settings, run_dir=root / "run", log_dir=root / "log")


class Daemon:
    def __init__(self, cfg: DaemonConfig) -> None:
        self.cfg = cfg
        # First of all: the host UUID file, status files and guests under state_dir
        # are only ours once no other daemon (or embedded driver) manages them.
        self.root_lock = lock_root(cfg.state_dir, "pyvirtd")
        self.qemu = QemuDriver(QemuConfig(
            root=Path(cfg.state_dir), host_uuid=cfg.host_uuid,
            migration_address=cfg.migration_address, migration_host=cfg.migration_host,
            migration_port_min=cfg.migration_port_min, migration_port_max=cfg.migration_port_max,
            vnc_port_min=cfg.remote_display_port_min, vnc_port_max=cfg.remote_display_port_max,
            user=cfg.user, group=cfg.group, security_driver=cfg.security_driver,
            dynamic_ownership=bool(cfg.dynamic_ownership), remember_owner=bool(cfg.remember_owner),
            save_image_format=cfg.save_image_format, save_image_compat=cfg.save_image_compat,
            migrate_tls_x509_cert_dir=cfg.migrate_tls_x509_cert_dir,
            migrate_tls_x509_verify=None if cfg.migrate_tls_x509_verify < 0 else bool(cfg.migrate_tls_x509_verify),
            default_tls_x509_cert_dir=cfg.default_tls_x509_cert_dir,
            default_tls_x509_verify=None if cfg.default_tls_x509_verify < 0 else bool(cfg.default_tls_x509_verify),
            migrate_tls_force=bool(cfg.migrate_tls_force), converge=converge_settings(cfg)),
            connector=connect_peer, locks=lock_manager(cfg))
        self.networks = NetworkDriver(cfg.state_dir, default_network=bool(cfg.default_network))
        self.storage = StorageDriver(cfg.state_dir)
        storage_source.wire(self.qemu, self.storage)
        netsource.wire(self.qemu, self.networks)
        self.test_host = test_driver.TestHost()
        self.stopping = False
        self.auth = Authenticator(sasl_allowed_username_list=cfg.sasl_allowed_username_list,
                                  tcp_min_ssf=cfg.tcp_min_ssf)
        self.dispatcher = Dispatcher(self.open_driver, self.feature_override, lambda: self.stopping,
                                     max_requests=cfg.max_client_requests, authenticator=self.auth)
        self.server = RPCServer(self.dispatcher, max_clients=cfg.max_clients,
                                max_anonymous_clients=cfg.max_anonymous_clients,
                                max_queued_clients=cfg.max_queued_clients,
                                max_message=cfg.max_message_size,
                                keepalive_interval=cfg.keepalive_interval,
                                keepalive_count=cfg.keepalive_count,
                                frame_timeout=cfg.frame_timeout,
                                max_large_frame_bytes=cfg.max_large_frame_bytes,
                                max_client_output_bytes=cfg.max_client_output_bytes)
        self.tcp_port: int | None = None
        self.tls_port: int | None = None
        self._stop = asyncio.Event()

    async def open_driver(self, name: str, info: ConnectionInfo) -> HypervisorConnection:
        """Route CONNECT_OPEN's name to a driver, as libvirtd does for its URIs."""
        if not name:
            name = "qemu:///system"
        parsed = urimod.parse(name)
        if parsed.driver == "qemu" and parsed.path in ("/system", "/session", ""):
            conn = QemuConnection(info, self.qemu, uri=f"qemu://{parsed.path or '/system'}")
            conn.storage = self.storage.connect(info)
            conn.network = NetworkConnection(info, self.networks)
            return conn
        if parsed.driver == "test" and parsed.path in ("/default", ""):
            return test_driver.TestConnection(info, self.test_host)
        if parsed.driver == "test":
            # libvirtd reads test:///PATH for its root clients; pyvirtd reads no file a remote
            # client names (the host file is read in process by the client's own library)
            raise error(ErrorNumber.NO_CONNECT, ErrorDomain.NONE,
                        f"{name} (pyvirtd serves test:///default only; open a test host file in process)")
        raise error(ErrorNumber.NO_CONNECT, ErrorDomain.NONE, f"{name} (pyvirtd serves qemu:///system and test:///default)")

    def feature_override(self, feature: int) -> int | None:
        """Features the configuration turns off for tests and old clients."""
        if feature == DriverFeature.MIGRATION_PARAMS and not self.cfg.migration_params:
            return 0
        if feature == DriverFeature.MIGRATION_V3 and not self.cfg.migration_v3:
            return 0
        if feature == DriverFeature.REMOTE_EVENT_CALLBACK and not self.cfg.remote_event_callback:
            return 0   # as a daemon older than libvirt 1.2.1: clients use REGISTER_ANY
        return None

    async def start(self) -> None:
        # TLS files first, as libvirtd: a daemon that cannot serve TLS never listens at all.
        tls = self._tls_server() if self.cfg.listen_tls else None
        # Storage and networks first, as libvirtd's driver order: a guest the QEMU
        # driver brings up finds its pools and networks active.
        await self.storage.initialize()
        await self.networks.initialize()
        await self.qemu.initialize()
        await netsource.reattach(self.qemu)    # running guests' taps back on their bridges
        cfg = self.cfg
        rw_mode = int(cfg.unix_sock_rw_perms, 8)
        ro_mode = int(cfg.unix_sock_ro_perms, 8)
        gid = _group_id(cfg.unix_sock_group) if cfg.unix_sock_group else -1
        # The read-only socket's clients are read-only whatever its mode: the listener
        # marks them, and the dispatcher refuses every mutating call.
        for path, auth in ((cfg.rw_socket, cfg.auth_unix_rw), (cfg.ro_socket, cfg.auth_unix_ro)):
            self.auth.set_listener_auth(str(path), auth)
        await self.server.listen_unix(str(cfg.rw_socket), read_only=False, mode=rw_mode,
                                      auth_required=cfg.auth_unix_rw != "none")
        await self.server.listen_unix(str(cfg.ro_socket), read_only=True, mode=ro_mode,
                                      auth_required=cfg.auth_unix_ro != "none")
        if gid != -1:
            for sock in (cfg.rw_socket, cfg.ro_socket):
                os.chown(sock, -1, gid)
        if tls is not None:       # before TCP: whoever waits for the TCP port finds TLS up too
            self.auth.set_listener_auth(f"tls:{cfg.listen_addr}:{cfg.tls_port}", cfg.auth_tls)
            self.tls_port = await self.server.listen_tcp(cfg.listen_addr, cfg.tls_port, tls=tls,
                                                         auth_required=cfg.auth_tls != "none")
        if cfg.listen_tcp:
            self.auth.set_listener_auth(f"tcp:{cfg.listen_addr}:{cfg.tcp_port}", cfg.auth_tcp)
            self.tcp_port = await self.server.listen_tcp(cfg.listen_addr, cfg.tcp_port,
                                                         auth_required=cfg.auth_tcp != "none")
        log.info("pyvirtd ready: unix %s%s%s, state %s, host uuid %s", cfg.rw_socket,
                 f", tcp {cfg.listen_addr}:{self.tcp_port}" if self.tcp_port else "",
                 f", tls {cfg.listen_addr}:{self.tls_port}" if self.tls_port else "",
                 cfg.state_dir, self.qemu.cfg.host_uuid)

    def _tls_server(self) -> tlsconfig.ServerTLS:
        """The TLS listener's context, its files and checks as libvirtd takes them from libvirtd.conf."""
        cfg = self.cfg
        try:
            tls = tlsconfig.server_context(
                ca_file=cfg.ca_file, cert_file=cfg.cert_file, key_file=cfg.key_file, crl_file=cfg.crl_file,
                allowed_dns=cfg.tls_allowed_dn_list, priority=cfg.tls_priority or None,
                sanity=not cfg.tls_no_sanity_certificate, verify=not cfg.tls_no_verify_certificate,
                handshake_timeout=cfg.tls_handshake_timeout)
        except tlsconfig.TLSSetupError as exc:
            raise error(ErrorNumber.SYSTEM_ERROR, ErrorDomain.RPC, f"{exc} (listen_tls)") from None
        for text in tls.warnings:
            log.warning("%s", text)
        if cfg.tls_no_verify_certificate:
            log.warning("tls_no_verify_certificate = 1: any TLS client is admitted, certificate or not")
        return tls

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            await self.start()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            print("pyvirtd: ready", file=sys.stderr, flush=True)
            sdnotify.notify(f"READY=1\nSTATUS=serving {self.cfg.rw_socket}"
                            + (f", tcp {self.cfg.listen_addr}:{self.tcp_port}" if self.tcp_port else ""))
            await self._stop.wait()
            sdnotify.notify("STOPPING=1\nSTATUS=stopping; guests keep running")
            await self.stop()
            left = await drain_tasks()
        finally:
            self.root_lock.release()
        if left:
            # asyncio.run would wait for them without a bound: leave without them.
            logging.shutdown()
            os._exit(1)


    async def stop(self) -> None:
        """Stop serving; guests keep running for the next daemon to adopt."""
        self.stopping = True
        await self.server.close(drop_clients=True)
        await asyncio.sleep(0)   # let connection_lost callbacks run
        await self.qemu.close()
        await self.storage.close()
        await self.networks.close()
        await self.qemu.locks.close()      # the lock daemon and its leases stay
        log.info("pyvirtd stopped; guests left running")


async def drain_tasks(bound: float = SHUTDOWN_DRAIN) -> int:
    """Cancel what is left on the loop and wait ``bound`` s for it; the number
    still pending, each logged (a shutdown never waits unboundedly)."""
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    if not left:
        return 0
    for task in left:
        task.cancel()
    _, pending = await asyncio.wait(left, timeout=bound)
    for task in pending:
        log.error("shutdown: task %s still pending after %.0fs: %r", task.get_name(), bound,
                  task.get_coro())
    if pending:
        log.error("shutdown: exiting with %d tasks pending", len(pending))
    return len(pending)


def _group_id(name: str) -> int:
    """A group name, or "+N" for a numeric id, as libvirt's virGetGroupID takes it."""
    if name.startswith("+") and name[1:].isdigit():
        return int(name[1:])
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isdigit():
            return int(name)
        raise error(ErrorNumber.CONF_SYNTAX, ErrorDomain.CONF,
                    f"unix_sock_group: failed to find group record for name '{name}'") from None


def log_ignored(cfg: DaemonConfig, path: str) -> None:
    """Each setting the configuration holds that pyvirtd does not act on, once."""
    for item in cfg.ignored:
        log.warning("%s:%d: ignoring '%s': %s", path, item.line, item.key, item.why)


def check_config(path: str) -> int:
    """``--check-config FILE``: load it, list what would be ignored, start nothing."""
    try:
        cfg = load_file(path)
    except libvirtError as exc:
        print(f"pyvirtd: error: {exc.get_error_message()}", file=sys.stderr)
        return 1
    print(f"{path}: loads; {len(cfg.ignored) or 'no'} setting{'' if len(cfg.ignored) == 1 else 's'} ignored")
    for item in cfg.ignored:
        print(f"{path}:{item.line}: {item.key}: ignored: {item.why}")
    return 0


def _run(coro) -> None:
    """Run on uvloop when it is installed: the RPC hot path spends much of its
    time in the event loop's transport code, which uvloop does in C."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    if os.environ.get("PYVIRTD_LOOP") == "asyncio":
        asyncio.run(coro)
        return
    uvloop.run(coro)


# Requests and error texts of a few MiB (a client may send 32 MiB frames) would otherwise
# be carved out of glibc's heap, whose mmap threshold rises with every such block freed:
# the heap then keeps what a burst of large calls left behind (RSS crept up over a
# million fuzzed calls and levelled off with a fixed threshold).  A fixed 1 MiB threshold
# gives those blocks back when they are freed; stream packets (256 KiB) stay on the heap.
_MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3          # glibc's mallopt parameter number


def _return_large_blocks() -> None:
    try:
        import ctypes
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    except (OSError, AttributeError):   # not glibc: its own allocator's policy stands
        pass


def build_parser() -> argparse.ArgumentParser:
    """pyvirtd's options (also the source of its man page)."""
    ap = argparse.ArgumentParser(prog="pyvirtd", description=__doc__.splitlines()[0])
    ap.add_argument("-f", "--config", metavar="FILE", help="configuration file (libvirtd.conf syntax)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    ap.add_argument("-l", "--listen", action="store_true",
                    help="listen for TCP/TLS connections: listen_tls (default 1 with --listen) and listen_tcp")
    ap.add_argument("--check-config", metavar="FILE",
                    help="load FILE, list the settings pyvirtd would ignore, and exit (0: it loads)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check_config:
        return check_config(args.check_config)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_file(args.config) if args.config else DaemonConfig()
        if cfg.listen_tls is None:      # libvirtd: listen_tls = 1 by default, and only with --listen
            cfg.listen_tls = int(args.listen)
        level = logging.DEBUG if args.verbose else LOG_LEVELS[cfg.log_level]
        logging.getLogger().setLevel(level)
        for noisy in ("qemu.qmp", "asyncio"):
            logging.getLogger(noisy).setLevel(level if args.verbose else max(level, logging.WARNING))
        log_ignored(cfg, args.config)
        _return_large_blocks()
        _run(Daemon(cfg).run())
    except libvirtError as exc:
        print(f"pyvirtd: error: {exc.get_error_message()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pyvirtd: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
