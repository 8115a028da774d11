"""The command registry shared by the command modules and the entry point."""

from __future__ import annotations

import argparse
from typing import Callable

import pyvirt

Handler = Callable[[pyvirt.virConnect, argparse.Namespace], None]
Setup = Callable[[argparse.ArgumentParser], Handler]
_COMMANDS: dict[str, tuple[Setup, str]] = {}


class CommandError(Exception):
    """A failure the command itself reports (virsh's vshError); its cause, if
    a libvirtError, is printed on the next line as virsh does."""


def command(name: str, help: str) -> Callable[[Setup], Setup]:
    """Register command ``name``: the decorated function adds its arguments
    to the parser it is given and returns the handler."""
    def register(setup: Setup) -> Setup:
        _COMMANDS[name] = (setup, help)
        return setup
    return register
