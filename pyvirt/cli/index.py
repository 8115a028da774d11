"""Which module registers each command: parsing one command imports only its
module.  Generated from the registry — ``python -m pyvirt.cli.index`` rewrites
this file after a command is added; tests/test_cli_help.py checks it is current.
"""

from __future__ import annotations

INDEX: dict[str, str] = {
    "attach-device": "devices_cmds",
    "attach-disk": "devices_cmds",
    "attach-interface": "devices_cmds",
    "autostart": "domain_cmds",
    "capabilities": "host_cmds",
    "cd": "shell",
    "change-media": "devices_cmds",
    "complete": "complete",
    "connect": "shell",
    "console": "console_cmds",
    "cpu-models": "host_cmds",
    "cpu-stats": "stats_cmds",
    "create": "domain_cmds",
    "define": "domain_cmds",
    "desc": "lifecycle_cmds",
    "destroy": "domain_cmds",
    "detach-device": "devices_cmds",
    "detach-device-alias": "devices_cmds",
    "detach-disk": "devices_cmds",
    "detach-interface": "devices_cmds",
    "domblkerror": "stats_cmds",
    "domblkinfo": "stats_cmds",
    "domblklist": "devices_cmds",
    "domblkstat": "stats_cmds",
    "domcapabilities": "host_cmds",
    "domdisplay": "console_cmds",
    "domid": "domain_cmds",
    "domif-getlink": "devices_cmds",
    "domif-setlink": "devices_cmds",
    "domiflist": "devices_cmds",
    "domifstat": "stats_cmds",
    "dominfo": "domain_cmds",
    "domjobabort": "migrate_cmds",
    "domjobinfo": "migrate_cmds",
    "dommemstat": "stats_cmds",
    "domstate": "domain_cmds",
    "domstats": "stats_cmds",
    "domuuid": "domain_cmds",
    "dumpxml": "domain_cmds",
    "echo": "shell",
    "event": "lifecycle_cmds",
    "exit": "shell",
    "freecell": "host_cmds",
    "help": "help",
    "hostname": "host_cmds",
    "list": "domain_cmds",
    "managedsave": "save_cmds",
    "managedsave-remove": "save_cmds",
    "maxvcpus": "host_cmds",
    "metadata": "lifecycle_cmds",
    "migrate": "migrate_cmds",
    "migrate-getmaxdowntime": "migrate_cmds",
    "migrate-getspeed": "migrate_cmds",
    "migrate-setmaxdowntime": "migrate_cmds",
    "migrate-setspeed": "migrate_cmds",
    "net-autostart": "network_cmds",
    "net-create": "network_cmds",
    "net-define": "network_cmds",
    "net-destroy": "network_cmds",
    "net-dhcp-leases": "network_cmds",
    "net-dumpxml": "network_cmds",
    "net-edit": "network_cmds",
    "net-info": "network_cmds",
    "net-list": "network_cmds",
    "net-name": "network_cmds",
    "net-start": "network_cmds",
    "net-undefine": "network_cmds",
    "net-update": "network_cmds",
    "net-uuid": "network_cmds",
    "nodecpustats": "host_cmds",
    "nodeinfo": "host_cmds",
    "nodememstats": "host_cmds",
    "pwd": "shell",
    "quit": "shell",
    "reboot": "lifecycle_cmds",
    "reset": "lifecycle_cmds",
    "restore": "save_cmds",
    "resume": "domain_cmds",
    "save": "save_cmds",
    "save-image-dumpxml": "save_cmds",
    "screenshot": "console_cmds",
    "send-key": "console_cmds",
    "setmaxmem": "devices_cmds",
    "setmem": "devices_cmds",
    "setvcpus": "devices_cmds",
    "shutdown": "lifecycle_cmds",
    "start": "domain_cmds",
    "suspend": "domain_cmds",
    "sysinfo": "host_cmds",
    "top": "top",
    "undefine": "domain_cmds",
    "update-device": "devices_cmds",
    "uri": "host_cmds",
    "vcpucount": "devices_cmds",
    "vcpuinfo": "stats_cmds",
    "version": "host_cmds",
}


def generate() -> str:
    """This file's text for the registry as it is now."""
    from . import registry
    table = registry.load_all()
    head, _, rest = open(__file__, encoding="utf-8").read().partition("INDEX: dict[str, str] = {\n")
    _, _, tail = rest.partition("}\n")
    rows = "".join(f'    "{name}": "{setup.__module__.rsplit(".", 1)[1]}",\n' for name, (setup, _) in sorted(table.items()))
    return f"{head}INDEX: dict[str, str] = {{\n{rows}}}\n{tail}"


if __name__ == "__main__":
    text = generate()
    with open(__file__, "w", encoding="utf-8") as f:
        f.write(text)
