"""A SASL setup for tests, as an operator makes one for libvirtd: a sasldb
written by ``saslpasswd2 -a libvirt``, a ``libvirt.conf`` (mech_list, sasldb_path)
in a directory given to the daemon as SASL_CONF_PATH, and auth.conf files
for the clients.  Plus a pyvirtd whose listeners ask for SASL."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from daemons import Pyvirtd

# user → password in the sasldb; "carol" is outside the allowed list the daemons use
USERS = {"alice": "alice-secret", "alfred": "alfred-secret", "carol": "carol-secret"}
ALLOWED = ["al*"]


@dataclass
class SaslSetup:
    root: Path

    @property
    def conf_dir(self) -> Path:
        return self.root / "sasl2"

    @property
    def db(self) -> Path:
        return self.root / "passwd.db"

    mechs: str = "scram-sha-256"

    def make(self) -> "SaslSetup":
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        for user, password in USERS.items():
            subprocess.run(["saslpasswd2", "-a", "libvirt", "-f", str(self.db), "-c", "-p", user],
                           input=password.encode(), check=True)
        (self.conf_dir / "libvirt.conf").write_text(f"mech_list: {self.mechs}\nsasldb_path: {self.db}\n")
        return self

    @property
    def no_auth_file(self) -> Path:
        """An empty auth.conf: nothing from a file, so the client must ask."""
        path = self.root / "empty-auth.conf"
        path.touch()
        return path

    def auth_file(self, user: str, password: str, host: str = "localhost") -> Path:
        """An auth.conf giving ``user``/``password`` for ``host`` (libvirt's keys: authname, password)."""
        path = self.root / f"auth-{user}-{password}-{host}.conf"
        path.write_text(f"[credentials-test]\nauthname={user}\npassword={password}\n\n"
                        f"[auth-libvirt-{host}]\ncredentials=test\n")
        return path


@dataclass
class SaslPyvirtd(Pyvirtd):
    """A pyvirtd whose TCP listener (and the listeners ``auth`` names) ask for SASL."""

    sasl: SaslSetup | None = None
    auth: dict[str, str] = field(default_factory=lambda: {"auth_tcp": "sasl", "auth_unix_rw": "sasl"})
    allowed: list[str] | None = field(default_factory=lambda: list(ALLOWED))

    def write_config(self) -> Path:
        path = super().write_config()
        text = path.read_text().replace('auth_tcp = "none"\n', "")
        keys = "".join(f'{key} = "{value}"\n' for key, value in self.auth.items())
        if self.allowed is not None:
            keys += "sasl_allowed_username_list = [" + ", ".join(f'"{u}"' for u in self.allowed) + "]\n"
        path.write_text(keys + text)
        return path

    def start(self, timeout: float = 30.0) -> "SaslPyvirtd":
        assert self.sasl is not None
        self.extra_env = dict(self.extra_env, SASL_CONF_PATH=str(self.sasl.conf_dir))
        super().start(timeout)
        return self

    @property
    def rw_socket(self) -> Path:
        return self.sock_dir / "libvirt-sock"

    @property
    def ro_socket(self) -> Path:
        return self.sock_dir / "libvirt-sock-ro"

    def unix(self, driver: str = "qemu", read_only: bool = False) -> str:
        path = "/default" if driver == "test" else "/system"
        return f"{driver}+unix://{path}?socket={self.ro_socket if read_only else self.rw_socket}"
