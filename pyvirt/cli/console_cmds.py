"""virsh's commands for console and graphics: console, screenshot, domdisplay, send-key."""

from __future__ import annotations

import argparse
import os
import select
import sys
import termios
import threading
import time
import tty
import urllib.parse
from typing import Any

from lxml import etree

import pyvirt
from pyvirt import keycodes
from pyvirt.errors import libvirtError

from .domain_cmds import add_domain_arg, lookup
from .registry import CommandError, Handler, command

ESCAPE = b"\x1d"                 # ^], virsh's default escape character
_MIME_EXT = {"image/x-portable-pixmap": ".ppm", "image/png": ".png"}


def _failed(what: str, exc: libvirtError) -> CommandError:
    err = CommandError(what)
    err.__cause__ = exc
    return err


# -- console -----------------------------------------------------------------------------

@command("console", "connect to the guest console")
def _console(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--devname", help="character device name")
    p.add_argument("--force", action="store_true", help="force console connection (disconnect already connected sessions)")
    p.add_argument("--safe", action="store_true", help="only connect if safe console handling is supported")
    p.add_argument("--resume", action="store_true", help="resume a paused guest after connecting to console")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        if dom.state()[0] == pyvirt.VIR_DOMAIN_SHUTOFF:
            raise CommandError("The domain is not running")
        if not os.isatty(sys.stdin.fileno()):
            raise CommandError("Cannot run interactive console without a controlling TTY")
        flags = (pyvirt.VIR_DOMAIN_CONSOLE_FORCE if args.force else 0) | \
            (pyvirt.VIR_DOMAIN_CONSOLE_SAFE if args.safe else 0)
        print(f"Connected to domain '{dom.name()}'")
        print("Escape character is ^] (Ctrl + ])", flush=True)
        stream = conn.newStream(0)
        try:
            dom.openConsole(args.devname, stream, flags)
        except libvirtError as exc:
            raise _failed("Failed to get console", exc)
        if args.resume and dom.state()[0] == pyvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        _run_console(stream)
    return run


def _run_console(stream: Any) -> None:
    """Guest output to stdout on a thread; the terminal, raw, into the stream until ^] or the end."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(stdin)
    done = threading.Event()
    failure: list[BaseException] = []

    def pump_out() -> None:
        try:
            while not done.is_set():
                data = stream.recv(4096)
                if not data:
                    break
                os.write(stdout, data)
        except BaseException as exc:    # the stream ended with an error (taken over, daemon gone)
            if not done.is_set():
                failure.append(exc)
        finally:
            done.set()

    reader = threading.Thread(target=pump_out, name="console-output", daemon=True)
    wake_r, wake_w = os.pipe()
    # wakes the terminal loop when the guest's side ends first
    waker = threading.Thread(target=lambda: (done.wait(), os.write(wake_w, b"x")), daemon=True)
    try:
        tty.setraw(stdin)
        reader.start()
        waker.start()
        while not done.is_set():
            ready = select.select([stdin, wake_r], [], [])[0]
            if stdin not in ready:
                continue
            data = os.read(stdin, 1024)
            if not data or ESCAPE in data:
                before = data.split(ESCAPE, 1)[0]
                if before:
                    stream.send(before)
                break
            stream.send(data)
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        ended_by_us = not done.is_set()
        done.set()
        if waker.is_alive():
            waker.join()        # it writes into wake_w: never after that is closed
        for fd in (wake_r, wake_w):
            os.close(fd)
    print()
    if failure and not ended_by_us:
        exc = failure[0]
        if isinstance(exc, libvirtError):
            raise _failed("Disconnected from the console", exc)
        raise CommandError(f"Disconnected from the console: {exc}")
    try:
        stream.abort() if ended_by_us else stream.finish()
    except libvirtError:
        pass


# -- screenshot ------------------------------------------------------------------------------

@command("screenshot", "take a screenshot of a current domain console and store it into a file")
def _screenshot(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("file", nargs="?", help="where to store the screenshot")
    p.add_argument("--file", dest="file_opt", help=argparse.SUPPRESS)
    p.add_argument("--screen", type=int, default=0, help="ID of a screen to take screenshot of")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        if args.screen < 0:
            raise CommandError("invalid value of --screen")
        stream = conn.newStream(0)
        try:
            mime = dom.screenshot(stream, args.screen, 0)
        except libvirtError as exc:
            raise _failed(f"could not take a screenshot of {dom.name()}", exc)
        path = args.file_opt or args.file
        generated = path is None
        if generated:
            path = f"{dom.name()}-{time.strftime('%Y-%m-%d-%H:%M:%S')}{_MIME_EXT.get(mime or '', '')}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if generated else os.O_TRUNC), 0o666)
        except OSError:
            stream.abort()
            raise CommandError(f"cannot create file {path}") from None
        try:
            stream.recvAll(lambda _s, data, _o: os.write(fd, data), None)
            stream.finish()
        except libvirtError as exc:
            os.close(fd)
            os.unlink(path)
            raise _failed(f"could not receive data from domain {dom.name()}", exc)
        os.close(fd)
        print(f"Screenshot saved to {path}, with type of {mime}")
    return run


# -- domdisplay --------------------------------------------------------------------------------

@command("domdisplay", "domain display connection URI")
def _domdisplay(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--include-password", action="store_true", help="includes the password into the connection URI if available")
    p.add_argument("--type", help="select particular graphical display (e.g. \"vnc\", \"spice\", \"rdp\")")
    p.add_argument("--all", action="store_true", help="show all possible graphical displays")

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        dom = lookup(conn, args)
        if not dom.isActive():
            raise CommandError("Domain is not running")
        xml = dom.XMLDesc(pyvirt.VIR_DOMAIN_XML_SECURE if args.include_password else 0)
        uris = display_uris(xml, conn.getURI(), args.include_password, args.type)
        if not uris:
            raise CommandError(f"No graphical display with type '{args.type}' found" if args.type
                               else "No graphical display found")
        for uri in uris if args.all else uris[:1]:
            print(uri)
    return run


def display_uris(xml: str, conn_uri: str, include_password: bool, only: str | None) -> list[str]:
    """The URIs virsh's domdisplay builds from a running domain's <graphics>."""
    root = etree.fromstring(xml.encode())
    out: list[str] = []
    for scheme in ("vnc", "spice", "rdp"):
        if only and only != scheme:
            continue
        g = root.find(f"devices/graphics[@type='{scheme}']")
        if g is None:
            continue
        port, tls_port = _int(g.get("port")), _int(g.get("tlsPort"))
        listen = g.find("listen")
        sockpath = g.get("socket") or (listen.get("socket") if listen is not None and
                                       listen.get("type") == "socket" else None)
        if not port and not tls_port and not sockpath:
            continue
        host = g.get("listen")
        if host in (None, "", "0.0.0.0", "::", "[::]"):
            # no address, or every address: the host the connection went to (localhost if local)
            host = urllib.parse.urlsplit(conn_uri).hostname or None
        passwd = g.get("passwd") if include_password else None
        uri = f"{scheme}+unix://" if sockpath else f"{scheme}://"
        if scheme == "vnc" and passwd:
            uri += f":{passwd}@"
        if sockpath:
            uri += sockpath
        elif not host:
            uri += "localhost"
        else:
            uri += f"[{host}]" if ":" in host else host
        if port and not sockpath:
            uri += f":{port - 5900 if scheme == 'vnc' else port}"
        if tls_port:
            uri += f"?tls-port={tls_port}"
        if scheme == "spice" and passwd:
            uri += f"{'&' if tls_port else '?'}password={passwd}"
        out.append(uri)
    return out


def _int(text: str | None) -> int:
    try:
        value = int(text) if text else 0
    except ValueError:
        return 0
    return max(value, 0)


# -- send-key ----------------------------------------------------------------------------------

@command("send-key", "Send keycodes to the guest")
def _send_key(p: argparse.ArgumentParser) -> Handler:
    add_domain_arg(p)
    p.add_argument("--codeset", default="linux", help="the codeset of keycodes, default:linux")
    p.add_argument("--holdtime", type=int, default=0, help="the time (in milliseconds) how long the keys will be held")
    p.add_argument("keycode", nargs="*", help="the key code")
    # virsh takes options between the keycodes (send-key DOM --codeset xt 1 2): parse intermixed
    plain = p.parse_known_args

    def intermixed(args=None, namespace=None):  # type: ignore[no-untyped-def]
        p.parse_known_args = plain          # (the intermixed parse calls parse_known_args itself)
        try:
            return p.parse_known_intermixed_args(args, namespace)
        finally:
            p.parse_known_args = intermixed
    p.parse_known_args = intermixed  # type: ignore[method-assign]

    def run(conn: pyvirt.virConnect, args: argparse.Namespace) -> None:
        codeset = keycodes.CODESET_NAMES.get(args.codeset)
        if codeset is None:
            raise CommandError(f"unknown codeset: '{args.codeset}'")
        if args.holdtime < 0:
            raise CommandError("invalid value of --holdtime")
        if not args.keycode:
            raise CommandError("command 'send-key' requires <keycode> option")
        codes = []
        for word in args.keycode:
            if len(codes) == keycodes.SEND_KEY_MAX_KEYS:
                raise CommandError("too many keycodes")
            code = _keycode_number(word)
            if code is None:
                code = keycodes.from_name(codeset, word)
            if code is None:
                raise CommandError(f"invalid keycode: '{word}'")
            codes.append(code)
        dom = lookup(conn, args)
        dom.sendKey(int(codeset), args.holdtime, codes, len(codes), 0)
        print()
    return run


def _keycode_number(word: str) -> int | None:
    """virsh's virshKeyCodeGetInt: a number (any base) in 0..0xffff."""
    try:
        value = int(word, 0)
    except ValueError:
        return None
    return value if 0 <= value <= 0xFFFF else None
