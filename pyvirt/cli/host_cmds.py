"""Host commands: uri, version, hostname, nodeinfo, capabilities, domcapabilities, sysinfo,
nodememstats, nodecpustats, freecell, maxvcpus, cpu-models — virsh's options and layouts."""

from __future__ import annotations

import argparse
import time

import pyvirt

from .registry import CommandError, Handler, command
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
        print()
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
        model, memory_kib, cpus, mhz, nodes, sockets, cores, threads = conn._node_info_kib()
        fields = [("CPU model", model), ("CPU(s)", str(cpus))]
        if mhz:                                  # virsh leaves an unknown frequency out
            fields.append(("CPU frequency", f"{mhz} MHz"))
        fields += [("CPU socket(s)", str(sockets)), ("Core(s) per socket", str(cores)),
                   ("Thread(s) per core", str(threads)), ("NUMA cell(s)", str(nodes))]
        fields.append(("Memory size", f"{memory_kib} KiB"))
        print_fields(fields, width=21)
    return run


def _failed(what: str, exc: pyvirt.libvirtError) -> CommandError:
    err = CommandError(what)
    err.__cause__ = exc
    return err


@command("sysinfo", "print the hypervisor sysinfo")
def _sysinfo(p: argparse.ArgumentParser) -> Handler:
    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        try:
            text = conn.getSysinfo(0)
        except pyvirt.libvirtError as exc:
            raise _failed("failed to get sysinfo", exc)
        print(text)
    return run


@command("domcapabilities", "domain capabilities")
def _domcapabilities(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--virttype", help="virtualization type (/domain/@type)")
    p.add_argument("--emulatorbin", help="path to emulator binary (/domain/devices/emulator)")
    p.add_argument("--arch", help="domain architecture (/domain/os/type/@arch)")
    p.add_argument("--machine", help="machine type (/domain/os/type/@machine)")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        try:
            caps = conn.getDomainCapabilities(args.emulatorbin, args.arch, args.machine, args.virttype, 0)
        except pyvirt.libvirtError as exc:
            raise _failed("failed to get emulator capabilities", exc)
        print(caps)
        print()
    return run


@command("maxvcpus", "connection vcpu maximum")
def _maxvcpus(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--type", help="domain type")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        vcpus = -1
        try:          # as virsh: the domain capabilities' <vcpu max>, else virConnectGetMaxVcpus
            caps = conn.getDomainCapabilities(None, None, None, args.type, 0)
            import xml.etree.ElementTree as ET    # only where XML is read: start-up time
            vcpu = ET.fromstring(caps).find("vcpu")
            if vcpu is not None and vcpu.get("max", "").isdigit():
                vcpus = int(vcpu.get("max", "-1"))
        except pyvirt.libvirtError:
            pass
        if vcpus < 0:
            vcpus = conn.getMaxVcpus(args.type)
        print(f"{vcpus}\n")
    return run


@command("nodememstats", "Prints memory stats of the node.")
def _nodememstats(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--cell", type=int, default=pyvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS,
                   help="prints specified cell statistics only.")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        try:
            stats = conn.getMemoryStats(args.cell, 0)
        except pyvirt.libvirtError as exc:
            raise _failed("Unable to get number of memory stats", exc)
        for field, value in stats.items():
            print(f"{field:<7}: {value:>20} KiB")
        print()
    return run


# virsh's nodecpustats lines: libvirt field -> label, in virsh's order
_CPU_LABELS = (("user", "user:"), ("kernel", "system:"), ("idle", "idle:"), ("iowait", "iowait:"),
               ("intr", "intr:"))


@command("nodecpustats", "Prints cpu stats of the node.")
def _nodecpustats(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--cpu", type=int, default=pyvirt.VIR_NODE_CPU_STATS_ALL_CPUS,
                   help="prints specified cpu statistics only.")
    p.add_argument("--percent", action="store_true", help="prints by percentage during 1 second.")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        try:
            first = conn.getCPUStats(args.cpu, 0)
        except pyvirt.libvirtError as exc:
            raise _failed("Unable to get node cpu stats", exc)
        if not args.percent:
            for field, label in _CPU_LABELS:
                if field in first:
                    print(f"{label:<15} {first[field]:>20}")
            print()
            return
        time.sleep(1)                  # virsh's interval between the two samples
        try:
            second = conn.getCPUStats(args.cpu, 0)
        except pyvirt.libvirtError as exc:
            raise _failed("Unable to get node cpu stats", exc)
        delta = {f: second[f] - first[f] for f, _l in _CPU_LABELS if f in first and f in second}
        total = float(sum(delta.values())) or 1.0
        usage = (delta.get("user", 0) + delta.get("kernel", 0)) / total * 100
        print(f"{'usage:':<15} {usage:5.1f}%")
        for field, label in _CPU_LABELS:
            if field in delta:
                print(f"{label:<15} {delta[field] / total * 100:5.1f}%")
        print()
    return run


@command("freecell", "NUMA free memory")
def _freecell(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("--cellno", type=int, help="NUMA cell number")
    p.add_argument("--all", action="store_true", help="show free memory for all NUMA cells")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        if args.all and args.cellno is not None:
            raise CommandError("Options --all and --cellno are mutually exclusive")
        if args.all:
            import xml.etree.ElementTree as ET
            try:
                caps = ET.fromstring(conn.getCapabilities())
            except (pyvirt.libvirtError, ET.ParseError):
                raise CommandError("unable to get node capabilities") from None
            ids = [int(c.get("id", "0")) for c in caps.findall("./host/topology/cells/cell")]
            total = 0
            for cell in ids:
                try:
                    free = conn.getCellsFreeMemory(cell, 1)[0]
                except pyvirt.libvirtError as exc:
                    raise _failed(f"failed to get free memory for NUMA node number: {cell}", exc)
                total += free
                print(f"{cell:>5}: {free // 1024:>10} KiB")
            print("--------------------")
            print(f"{'Total':>5}: {total // 1024:>10} KiB\n")
        elif args.cellno is not None:
            free = conn.getCellsFreeMemory(args.cellno, 1)[0]
            print(f"{args.cellno}: {free // 1024} KiB\n")
        else:
            print(f"Total: {conn.getFreeMemory() // 1024} KiB\n")
    return run


@command("cpu-models", "CPU models")
def _cpu_models(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("arch", nargs="?", metavar="ARCH", help="architecture")
    p.add_argument("--arch", dest="arch_opt", metavar="ARCH", help=argparse.SUPPRESS)

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        arch = args.arch_opt or args.arch
        if not arch:
            raise CommandError("command 'cpu-models' requires <arch> option")
        try:
            models = conn.getCPUModelNames(arch, 0)
        except pyvirt.libvirtError as exc:
            raise _failed("failed to get CPU model names", exc)
        if not models:
            print("all CPU models are accepted")
        for name in models:
            print(name)
        print()
    return run
