"""Real servers for functional tests: moto_server (S3 over HTTP), devpi-server, and the
loopback HTTP server the fake upstreams are built on."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import requests

# Below Linux's ephemeral range (32768-60999): a port picked now is bound later by a
# child (a devpi, a front), and meanwhile any outgoing connection could be given it as
# its own local port (one was: a site's devpi failed with "Address already in use").
_PORTS = range(20000, 32000)
_PICK = random.Random()


def free_port() -> int:
    for _ in range(200):
        port = _PICK.choice(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # that range all taken: any port the kernel gives
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """Nothing answers on 127.0.0.1:port."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


class LoopbackHttpServer:
    """A threaded HTTP/1.1 server on a free loopback port, quiet, whose GETs go to
    `_handle`; `with` starts and stops it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner._handle(self)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


class MotoServer:
    """`moto_server -p PORT` as a child process; boto3 talks real HTTP to it."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [tool("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_http(self.url, self.proc)

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self._log.close()


def aws_test_credentials() -> None:
    # moto accepts any credentials; real ones must never be used by tests.
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)


def clean_pip_env() -> dict[str, str]:
    """The environment for a pip that sees only the index we name: machine config off
    (the same one the air-gap proof uses)."""
    from verify.airgap import pip_env

    return pip_env()


def make_venv(path: Path, system_site_packages: bool = False) -> Path:
    """A venv's python; with `system_site_packages` it also sees this Python's packages
    (TensorFlow and the test extra), and what pip installs into it comes first."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    if system_site_packages:
        # Not venv's --system-site-packages: run from a venv (as CI runs the tests), that
        # shares the base interpreter's packages, not this environment's.
        shared = sorted({sysconfig.get_paths()[key] for key in ("purelib", "platlib")})
        own = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        Path(own, "tfmirror-shared-site.pth").write_text("\n".join(shared) + "\n")
    return python


def pip_install(venv_python: Path, index_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real pip in a venv, with the index we name as its only source."""
    return subprocess.run(
        [str(venv_python), "-m", "pip", "install", "--index-url", index_url, *args],
        capture_output=True,
        text=True,
        env=clean_pip_env(),
        timeout=300,
    )


def read_banner(proc: subprocess.Popen[str], seconds: float = 120) -> str:
    """What `tfmirror up` printed until its banner's last line ("entry point: ..."), or
    until it ended or `seconds` passed."""
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("entry point:") or not line:
            break
    return "".join(lines)
