"""Running devpi-server ourselves: initialise the serverdir once, keep credentials, start,
stop. A fixed secret file keeps login tokens valid across restarts; the generated
passwords live in the serverdir (mode 0600) and are never printed or logged."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from mirror.core.children import private_server, python_module, scrubbed_env
from mirror.core.config import DevpiConfig
from mirror.devpi.errors import DevpiStartError

CREDENTIALS = "tfmirror-credentials.json"
# devpi sends a file from a worker thread that blocks once 16 MB wait for a slow client:
# its default of 50 threads let a few dozen nodes on a thin link lock everyone else out.
# This holds 200 slow downloads beside idle connections (measured; see the fleet tests).
# Its connections are bounded by mirror.devpi.launch (below the open-files limit). nginx
# in front is still the answer for a fleet: it holds a slow client for a few KB, not a
# thread.
THREADS = 256
SECRET = "tfmirror-secret"
ENV_PASSWORD = "TFMIRROR_DEVPI_PASSWORD"


def _tool(name: str) -> str:
    """The devpi script next to this interpreter, so a venv's devpi is used even off PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


@dataclass(frozen=True)
class DevpiPasswords:
    root_password: str
    user_password: str


def initialise(serverdir: Path) -> DevpiPasswords:
    """devpi-init on first use (no root/pypi: this index must never reach the internet)."""
    serverdir.mkdir(parents=True, exist_ok=True)
    creds_path = serverdir / CREDENTIALS
    if creds_path.exists():
        doc = json.loads(creds_path.read_text())
        creds = DevpiPasswords(doc["root_password"], doc["user_password"])
    else:
        creds = DevpiPasswords(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    if not (serverdir / ".nodeinfo").exists():
        _init(serverdir, creds.root_password)
    if not creds_path.exists():
        _write_private(creds_path, json.dumps(creds.__dict__))
    secret = serverdir / SECRET
    if not secret.exists():
        _write_private(secret, secrets.token_urlsafe(48))
    _tighten(serverdir)
    return creds


def _tighten(serverdir: Path) -> None:
    """Only the owner may read the serverdir: devpi-init made its sqlite 0644, and the
    release before left it so (nginx, which sends files from here, runs as the owner)."""
    serverdir.chmod(0o700)
    for path in serverdir.glob(".sqlite*"):
        path.chmod(0o600)


def _init(serverdir: Path, root_password: str) -> None:
    """devpi-init, with root's password in a private config file that is removed after:
    on argv any local user could read it in /proc/<pid>/cmdline while devpi-init runs."""
    with tempfile.TemporaryDirectory(prefix=".tfmirror-init-", dir=serverdir.parent) as tmp:
        config = Path(tmp) / "devpi-init.yml"  # the folder is 0700: only we can read it
        _write_private(config, f'devpi-server:\n  root-passwd: "{root_password}"\n')
        proc = subprocess.run(
            [
                _tool("devpi-init"),
                "-c",
                str(config),
                "--serverdir",
                str(serverdir),
                "--no-root-pypi",
            ],
            capture_output=True,
            text=True,
            check=False,
            env=scrubbed_env(),
        )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise DevpiStartError(f"devpi-init in {serverdir} failed: {' '.join(tail)}")


def user_password(config: DevpiConfig) -> str:
    """TFMIRROR_DEVPI_PASSWORD, else the password tfmirror generated for its own devpi."""
    env = os.environ.get(ENV_PASSWORD)
    if env:
        return env
    if config.serverdir is not None:
        return initialise(config.serverdir).user_password
    raise DevpiStartError(
        f"[devpi] url {config.url} is an external devpi: set {ENV_PASSWORD} "
        f"to the password of user {config.user!r}"
    )


LAUNCH_TAG = "devpi-server"  # mirror.devpi.launch drops it before devpi reads its argv


def command(config: DevpiConfig, listen: str | None = None) -> list[str]:
    """devpi-server's command line; `listen` overrides the address it binds (e.g. 0.0.0.0
    in a container whose [devpi] url names the service)."""
    assert config.serverdir is not None
    host, port = config.host_port
    host = listen or host
    return [
        # devpi-server's own command line, served by our waitress setup (poll(), limits);
        # its name stays in the command line, where `ps | grep devpi-server` looks.
        *python_module("mirror.devpi.launch"),
        LAUNCH_TAG,
        "--serverdir",
        str(config.serverdir),
        "--host",
        host,
        "--port",
        str(port),
        "--secretfile",
        str(config.serverdir / SECRET),
        "--threads",
        str(THREADS),
    ]


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DevpiStartError(f"devpi-server exited with code {proc.returncode} at start")
        try:
            if requests.get(f"{url}/+api", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise DevpiStartError(f"devpi-server did not answer at {url} within {timeout:.0f} s")


class DevpiProcess:
    """devpi-server as a child process; a context manager that stops it on exit."""

    def __init__(self, config: DevpiConfig, log: Path | None = None) -> None:
        if config.serverdir is None:
            raise DevpiStartError("[devpi] serverdir is not set: this devpi is external")
        self.config = config
        self.log = log or config.serverdir.parent / "devpi-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DevpiProcess:
        assert self.config.serverdir is not None
        initialise(self.config.serverdir)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                command(self.config),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=scrubbed_env(),  # network-facing: none of our secrets
                preexec_fn=private_server,
                # A terminal's Ctrl-C is for tfmirror, which records the run as
                # interrupted and then stops devpi: reaching devpi first, it cut the
                # pulls under way and the run was recorded failed, one error a file.
                start_new_session=True,
            )
        try:
            wait_ready(self.config.url, self.proc)
        except DevpiStartError as exc:
            self.stop()
            raise DevpiStartError(f"{exc}; see {self.log}") from None
        return self

    def down(self) -> str | None:
        """Why devpi-server stopped serving on its own (it exited), or None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"devpi-server exited with code {self.proc.returncode}; see {self.log}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> DevpiProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
