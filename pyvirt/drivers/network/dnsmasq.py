"""dnsmasq for one network: its configuration, start, stop and the leases it hands out.

libvirt runs one dnsmasq per network with a configuration file of its own
(``strict-order``, ``bind-dynamic`` on the bridge only, the DHCP ranges, a
hosts file for ``<dhcp><host>`` and one for ``<dns><host>``).  pyvirt writes
the same options into ``run/network/NAME.conf`` and lets dnsmasq keep its
leases in ``run/network/NAME.leases`` (``dhcp-leasefile``), which
``network_get_dhcp_leases`` reads.  dnsmasq daemonizes itself and writes its
pid file; it is not our child, so it outlives a daemon restart and the next
daemon adopts it by that pid file (checked against the process's command line).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from ...conf.fileutil import write_atomic
from ...conf.network import NetworkDef
from .netdev import system_error

DNSMASQ = "/usr/sbin/dnsmasq"
STOP_WAIT = 10.0      # seconds dnsmasq gets to leave after SIGTERM before SIGKILL


class Files:
    """The files of one network's dnsmasq, under the driver's run directory."""

    def __init__(self, run_dir: Path, name: str) -> None:
        self.conf = run_dir / f"{name}.conf"
        self.pid = run_dir / f"{name}.pid"
        self.leases = run_dir / f"{name}.leases"
        self.hostsfile = run_dir / f"{name}.hostsfile"
        self.addnhosts = run_dir / f"{name}.addnhosts"

    def remove(self, keep_leases: bool = False) -> None:
        for path in (self.conf, self.pid, self.hostsfile, self.addnhosts) + (() if keep_leases else (self.leases,)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def needed(net: NetworkDef) -> bool:
    """libvirt starts dnsmasq for a virtual network with an IPv4 address (DNS at least)."""
    return net.virtual and net.ipv4() is not None


def config_text(net: NetworkDef, files: Files) -> str:
    ip = net.ipv4()
    assert ip is not None and net.bridge is not None
    lines = [
        "##WARNING:  THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE",
        "##OVERWRITTEN AND LOST.  Changes to this configuration should be made using:",
        f"##    virsh net-edit {net.name}",
        "## or other application using the libvirt API.",
        "##",
        "## dnsmasq conf file created by pyvirt",
        "strict-order",
        f"pid-file={files.pid}",
        "except-interface=lo",
        "bind-dynamic",
        f"interface={net.bridge}",
    ]
    if net.domain:
        lines += [f"domain={net.domain}", "expand-hosts"]
        if net.domain_local_only == "yes":
            lines.append(f"local=/{net.domain}/")
    if net.dns_enable == "no":
        lines.append("port=0")
    else:
        lines += dns_record_lines(net)
    for start, end in ip.ranges:
        lines.append(f"dhcp-range={start},{end},{ip.netmask}")
    if ip.ranges:
        lines += ["dhcp-no-override", "dhcp-authoritative",
                  f"dhcp-lease-max={ip.dhcp_size()}",
                  f"dhcp-leasefile={files.leases}"]
    elif ip.hosts:
        lines.append(f"dhcp-range={ip.network.network_address},static")
        lines.append(f"dhcp-leasefile={files.leases}")
    lines.append(f"dhcp-hostsfile={files.hostsfile}")
    lines.append(f"addn-hosts={files.addnhosts}")
    return "\n".join(lines) + "\n"


def dns_record_lines(net: NetworkDef) -> list[str]:
    """``<dns><txt>`` and ``<dns><srv>`` as dnsmasq's txt-record= and srv-host= lines."""
    lines = [f"txt-record={t.name},{t.value}" for t in net.dns_txts]
    for srv in net.dns_srvs:
        # RFC 2782 names: _service._protocol[.domain]; no domain means the network's own
        line = f"srv-host=_{srv.service}._{srv.protocol}" + (f".{srv.domain}" if srv.domain else "")
        # an empty or "." target says the service is not offered here: no port, priority or weight
        if srv.target and srv.target != ".":
            line += f",{srv.target}"
            # each field is known by its place, so a later one given needs the earlier ones written
            if srv.port or srv.priority or srv.weight:
                line += f",{srv.port or 1}"          # dnsmasq's default port
            if srv.priority or srv.weight:
                line += f",{srv.priority}"
            if srv.weight:
                line += f",{srv.weight}"
        lines.append(line)
    return lines


def hostsfile_text(net: NetworkDef) -> str:
    ip = net.ipv4()
    out = []
    for host in (ip.hosts if ip else []):
        out.append(",".join(part for part in (host.mac, host.ip, host.name) if part))
    return "".join(line + "\n" for line in out)


def addnhosts_text(net: NetworkDef) -> str:
    return "".join(f"{h.ip}\t{' '.join(h.hostnames)}\n" for h in net.dns_hosts)


def write_hosts(net: NetworkDef, files: Files) -> None:
    write_atomic(files.hostsfile, hostsfile_text(net), mode=0o644)
    write_atomic(files.addnhosts, addnhosts_text(net), mode=0o644)


async def start(net: NetworkDef, files: Files) -> int:
    """Write the configuration, run dnsmasq (it forks and returns once serving); its pid."""
    write_atomic(files.conf, config_text(net, files), mode=0o600)
    write_hosts(net, files)
    try:
        files.pid.unlink()
    except FileNotFoundError:
        pass
    try:
        proc = await asyncio.create_subprocess_exec(
            DNSMASQ, f"--conf-file={files.conf}", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
    except OSError as exc:
        raise system_error(f"Cannot find '{DNSMASQ}' in path: {exc.strerror}") from exc
    if proc.returncode != 0:
        text = (err or out).decode(errors="replace").strip()
        raise system_error(f"Child process ({DNSMASQ} --conf-file={files.conf}) unexpected exit "
                           f"status {proc.returncode}: {text}")
    pid = running_pid(files)
    if pid is None:
        raise system_error(f"dnsmasq for network '{net.name}' started but wrote no pid file {files.pid}")
    return pid


def running_pid(files: Files) -> int | None:
    """The pid in the pid file if that process is our dnsmasq for this configuration."""
    try:
        pid = int(files.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if f"--conf-file={files.conf}".encode() not in cmdline:
        return None       # a recycled pid: not ours
    return pid


async def stop(files: Files) -> None:
    """SIGTERM our dnsmasq (by its pid), wait until it is gone, SIGKILL if it lingers."""
    pid = running_pid(files)
    if pid is None:
        return
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return            # already gone
    try:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not await _wait_pidfd(pidfd, STOP_WAIT):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            await _wait_pidfd(pidfd, STOP_WAIT)
    finally:
        os.close(pidfd)


async def _wait_pidfd(pidfd: int, timeout: float) -> bool:
    """Wait until the process behind ``pidfd`` has exited (the fd turns readable)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(pidfd, lambda: done.done() or done.set_result(True))
    try:
        await asyncio.wait_for(done, timeout)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        loop.remove_reader(pidfd)


async def reload_hosts(files: Files) -> None:
    """SIGHUP makes dnsmasq re-read its hosts files (after a network update)."""
    pid = running_pid(files)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)


def read_leases(files: Files) -> list[tuple[int, str, str, str | None, str | None]]:
    """dnsmasq's lease file: (expiry, mac, ip, hostname, client id) per IPv4 lease."""
    try:
        text = files.leases.read_text()
    except OSError:
        return []
    leases = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[0] == "duid":
            continue
        expiry, mac, address, hostname, clientid = parts[:5]
        if ":" in address:
            continue        # IPv6 (pyvirt's networks are IPv4)
        try:
            expiry_time = int(expiry)
        except ValueError:
            continue
        leases.append((expiry_time, mac, address, None if hostname == "*" else hostname,
                       None if clientid == "*" else clientid))
    return leases
