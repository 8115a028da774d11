"""Host commands: uri, version, hostname, nodeinfo, capabilities."""

from __future__ import annotations

import argparse

import pyvirt

from .registry import Handler, command
from .output import print_fields


def version_text(version: int) -> str:
    major, rest = divmod(version, 1000000)
    minor, micro = divmod(rest, 1000)
    return f"{major}.{minor}.{micro}"


def _plain(name: str, help_text: str, method: str) -> None:
    @command(name, help_text)
    def setup(p: argparse.ArgumentParser) -> Handler:
        def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
            print(f"{getattr(conn, method)()}\n")
        return run


_plain("uri", "print the hypervisor canonical URI", "getURI")
_plain("hostname", "print the hypervisor hostname", "getHostname")


@command("capabilities", "capabilities")
def _capabilities(p: argparse.ArgumentParser) -> Handler:
    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        print(conn.getCapabilities())
    return run


@command("version", "show version")
def _version(p: argparse.ArgumentParser) -> Handler:
    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        lib = version_text(conn.getLibVersion())
        hv_type = conn.getType()
        print(f"Compiled against library: pyvirt {pyvirt.__version__} (libvirt {lib} API)")
        print(f"Using library: pyvirt {pyvirt.__version__}")
        print(f"Using API: {hv_type} {lib}")
        print(f"Running hypervisor: {hv_type} {version_text(conn.getVersion())}\n")
    return run


@command("nodeinfo", "node information")
def _nodeinfo(p: argparse.ArgumentParser) -> Handler:
    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
        print_fields([("CPU model", model), ("CPU(s)", str(cpus)), ("CPU frequency", f"{mhz} MHz"),
                      ("CPU socket(s)", str(sockets)), ("Core(s) per socket", str(cores)),
                      ("Thread(s) per core", str(threads)), ("NUMA cell(s)", str(nodes)),
                      ("Memory size", f"{memory_mib * 1024} KiB")], width=21)
    return run
