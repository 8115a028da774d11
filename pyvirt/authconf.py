"""Client credentials: libvirt's ``auth.conf`` and openAuth's callback.

When a daemon asks for SASL, the remote driver needs a user name and a
password.  As libvirt's client does, it first looks in the auth.conf file
(``LIBVIRT_AUTH_FILE``, else the URI's ``?authfile=``, else
``$XDG_CONFIG_HOME/libvirt/auth.conf`` — ``~/.config`` by default — else
``/etc/libvirt/auth.conf``)::

    [credentials-admin]
    authname=alice
    password=secret

    [auth-libvirt-host.example.com]      # auth-SERVICE-HOSTNAME, or auth-libvirt-default
    credentials=admin

and asks the application's callback (``openAuth``: a list of
``[type, prompt, challenge, defresult, result]`` whose results it fills,
returning 0) for whatever the file did not give.
"""

from __future__ import annotations

import configparser
import getpass
import os
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import ErrorDomain, ErrorNumber, error

# virConnectCredentialType
CRED_USERNAME, CRED_AUTHNAME, CRED_LANGUAGE, CRED_CNONCE, CRED_PASSPHRASE = 1, 2, 3, 4, 5
CRED_ECHOPROMPT, CRED_NOECHOPROMPT, CRED_REALM, CRED_EXTERNAL = 6, 7, 8, 9
# the auth.conf key for each credential type libvirt looks up there
CONF_KEYS = {CRED_AUTHNAME: "authname", CRED_USERNAME: "username", CRED_PASSPHRASE: "password"}
# (prompt, challenge) as libvirt's client fills them for SASL's requests
PROMPTS = {CRED_AUTHNAME: ("Please enter your authentication name", "Authentication Name"),
           CRED_USERNAME: ("Please enter your username", "Username"),
           CRED_PASSPHRASE: ("Please enter your password", "Password")}
SYSTEM_FILE = "/etc/libvirt/auth.conf"

Callback = Callable[[list[list[Any]], Any], int]


def auth_file(authfile_param: str | None = None) -> Path | None:
    """The auth.conf to read, in libvirt's order (virAuthGetConfigFilePathURI)."""
    env = os.environ.get("LIBVIRT_AUTH_FILE")
    if env:
        return Path(env)
    if authfile_param:
        return Path(authfile_param)
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path(config_home) / "libvirt" / "auth.conf", Path(SYSTEM_FILE)):
        if candidate.is_file():
            return candidate
    return None


class AuthConfig:
    """One parsed auth.conf (GKeyFile syntax: ``[group]``, ``key=value``, ``#`` comments)."""

    def __init__(self, text: str, path: str = "<auth.conf>") -> None:
        self.path = path
        parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",),
                                           comment_prefixes=("#",), default_section="\0none")
        parser.optionxform = str      # type: ignore[assignment,method-assign]  # keys keep their case
        try:
            parser.read_string(text, path)
        except configparser.Error as exc:
            raise error(ErrorNumber.CONF_SYNTAX, ErrorDomain.CONF, f"{path}: {exc}") from None
        self.parser = parser

    @classmethod
    def load(cls, path: Path) -> "AuthConfig":
        try:
            text = path.read_text()
        except OSError as exc:
            raise error(ErrorNumber.AUTH_FAILED, ErrorDomain.CONF,
                        f"cannot read the auth file {path}: {exc.strerror}") from None
        return cls(text, str(path))

    def lookup(self, service: str, hostname: str, key: str) -> str | None:
        """``key`` from the credentials group that ``auth-SERVICE-HOSTNAME`` (else
        ``auth-SERVICE-default``) names; None when nothing applies."""
        parser = self.parser
        for group in (f"auth-{service}-{hostname}", f"auth-{service}-default"):
            if parser.has_section(group):
                break
        else:
            return None
        name = parser.get(group, "credentials", fallback=None)
        if not name:
            return None
        creds = f"credentials-{name}"
        if not parser.has_section(creds):
            raise error(ErrorNumber.CONF_SYNTAX, ErrorDomain.CONF,
                        f"{self.path}: missing credentials group '{creds}' named by '{group}'")
        return parser.get(creds, key, fallback=None)


def collect(wanted: list[int], hostname: str, *, authfile_param: str | None = None,
            auth: list[Any] | None = None, service: str = "libvirt") -> dict[int, str]:
    """Credential type → value for each of ``wanted``: auth.conf first, then the callback.

    Blocking (the callback may prompt): run it off the event loop."""
    found: dict[int, str] = {}
    path = auth_file(authfile_param)
    if path is not None:
        config = AuthConfig.load(path)
        for kind in wanted:
            key = CONF_KEYS.get(kind)
            value = config.lookup(service, hostname, key) if key else None
            if value is not None:
                found[kind] = value
    missing = [kind for kind in wanted if kind not in found]
    if missing and auth:
        kinds, callback, cbdata = (list(auth) + [None, None, None])[:3]
        asked = [kind for kind in missing if not kinds or kind in kinds]
        if asked and callback is not None:
            creds = [[kind, *PROMPTS.get(kind, ("Credential", "")), None, None] for kind in asked]
            try:
                rc = callback(creds, cbdata)
            except Exception as exc:
                raise error(ErrorNumber.AUTH_FAILED, ErrorDomain.REMOTE,
                            f"the credential callback failed: {exc}") from None
            if rc is not None and rc < 0:
                raise error(ErrorNumber.AUTH_CANCELLED, ErrorDomain.REMOTE, "Failed to collect auth credentials")
            for kind, *_rest, result in creds:
                if result is not None:
                    found[kind] = str(result)
    return found


def prompt_on_terminal(creds: list[list[Any]], _cbdata: Any = None) -> int:
    """A callback for a person at a terminal, as virsh's default (passwords not echoed)."""
    if not sys.stdin.isatty():
        return -1
    for cred in creds:
        kind, prompt = cred[0], cred[1]
        if kind in (CRED_PASSPHRASE, CRED_NOECHOPROMPT):
            cred[4] = getpass.getpass(f"{prompt}: ")
        else:
            print(f"{prompt}: ", end="", file=sys.stderr, flush=True)
            cred[4] = sys.stdin.readline().rstrip("\n")
    return 0


TERMINAL_AUTH: list[Any] = [[CRED_AUTHNAME, CRED_USERNAME, CRED_PASSPHRASE, CRED_ECHOPROMPT,
                             CRED_NOECHOPROMPT], prompt_on_terminal, None]
"""openAuth's ``auth`` argument for interactive programs (libvirt's virConnectAuthPtrDefault)."""
