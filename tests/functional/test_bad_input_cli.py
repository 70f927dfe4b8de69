"""Every careless config or command line: exit 2, one line that says what to fix, no
traceback, nothing written, and no secret echoed back."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLE = "https://tfhub.dev/google/model/1"


@dataclass
class Case:
    config: bytes | None  # the config file's bytes (None: the built-in default)
    argv: list[str]
    says: str  # what the one line must contain
    setup: Callable[[Path], None] = field(default=lambda tmp: None)


def _a_file(tmp: Path) -> None:
    (tmp / "afile").write_text("I am a file")


CASES = {
    "config not UTF-8": Case(b"[web]\nport = 8080\n# caf\xe9\n", ["pip-conf"], "not UTF-8 text"),
    "storage under a file": Case(
        b'[storage]\npath = "afile/store"\n', ["pip-conf"], "is a file, not a folder", _a_file
    ),
    "storage in /proc": Case(b'[storage]\npath = "/proc/tfmirror"\n', ["pip-conf"], "kernel"),
    "devpi serverdir in /sys": Case(
        b'[devpi]\nserverdir = "/sys/devpi"\n', ["pip-conf"], "kernel filesystem"
    ),
    "serve: unknown host": Case(
        None, ["serve", "--host", "no.such.host.invalid"], "cannot resolve host"
    ),
    "serve: port 99999": Case(None, ["serve", "--port", "99999"], "not a TCP port"),
    "serve: port not a number": Case(None, ["serve", "--port", "http"], "not a port number"),
    "timeout = inf": Case(b"[pypi]\ntimeout = inf\n", ["pip-conf"], "must be positive seconds"),
    "hub timeout = nan": Case(b"[hub]\ntimeout = nan\n", ["pip-conf"], "must be positive"),
    "retry_backoff = inf": Case(
        b"[schedule]\nretry_backoff = inf\n", ["pip-conf"], "retry_backoff = inf"
    ),
    "deadline = -1": Case(b"[hub]\ndeadline = -1\n", ["pip-conf"], "deadline = -1.0"),
    "gc --grace-hours -5": Case(None, ["gc", "--grace-hours", "-5"], "use 0 or more"),
    "gc --grace-hours nan": Case(None, ["gc", "--grace-hours", "nan"], "use 0 or more"),
    "handle segment of 300": Case(
        b'[hub]\nmodels = ["https://tfhub.dev/' + b"a" * 300 + b'/1"]\n',
        ["pip-conf"],
        "path segment over 200 characters",
    ),
    "handle with credentials": Case(
        b'[hub]\nmodels = ["https://me:hunter2@tfhub.dev/google/m/1"]\n',
        ["pip-conf"],
        "carries credentials",
    ),
    "hub source missing": Case(
        f'[[hub.models]]\nhandle = "{HANDLE}"\nsource = "nowhere.tar.gz"\n'.encode(),
        ["pip-conf"],
        "does not exist",
    ),
    "allow_hosts with a scheme": Case(
        b'[hub]\nallow_hosts = ["http://10.0.0.5"]\n', ["pip-conf"], "without scheme or port"
    ),
    "public_url with credentials": Case(
        b'[web]\npublic_url = "http://me:hunter2@mirror"\n', ["pip-conf"], "no credentials"
    ),
    "devpi --serverdir ''": Case(None, ["devpi", "--serverdir", ""], "--serverdir is empty"),
    "hub import /dev/zero": Case(
        None, ["hub", "import", "/dev/zero", "--handle", HANDLE], "not a regular file"
    ),
    "unknown subcommand": Case(None, ["sink"], "invalid choice"),
}


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def run(tmp: Path, case: Case) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tfmirror.cli"]
    if case.config is not None:
        (tmp / "tfmirror.toml").write_bytes(case.config)
        argv += ["--config", str(tmp / "tfmirror.toml")]
    return subprocess.run(
        [*argv, *case.argv], capture_output=True, text=True, cwd=tmp, timeout=120, check=False
    )


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], says: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and says in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    case.setup(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run(tmp_path, case)
    assert_one_clear_line(proc, case.says)
    after = sorted(p.name for p in tmp_path.iterdir() if p.name != "tfmirror.toml")
    assert after == before, "something was written"


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path, busy_port: int) -> None:
    config = f'[web]\nport = {busy_port}\n[storage]\npath = "store"\n'.encode()
    for argv in (["serve"], ["up"]):
        proc = run(tmp_path, Case(config, argv, ""))
        assert_one_clear_line(proc, f"127.0.0.1:{busy_port} is already in use")
        assert not (tmp_path / "store").exists()


def test_a_second_up_on_a_port_a_tfmirror_serves_says_so(tmp_path: Path) -> None:
    from mirror.core.config import parse_config
    from mirror.core.web_server import WebServer
    from testkit.servers import free_port
    from tfmirror.app import create_app

    port = free_port()
    config = f'[web]\nport = {port}\n[storage]\npath = "store"\n'.encode()
    running = parse_config({"web": {"port": port}, "storage": {"path": "first"}}, tmp_path)
    with WebServer(create_app(running), running.web.host, running.web.port):
        proc = run(tmp_path, Case(config, ["up"], ""))
    assert_one_clear_line(proc, f"another tfmirror already serves on 127.0.0.1:{port}")
    assert not (tmp_path / "store").exists()


def test_global_options_are_taken_after_the_command_too(tmp_path: Path) -> None:
    proc = run(tmp_path, Case(None, ["status", "--config", "missing.toml"], ""))
    assert_one_clear_line(proc, "missing.toml: cannot read config file")


@pytest.mark.parametrize(
    "argv, line",
    [
        (
            ["sink"],
            "tfmirror: error: argument COMMAND: invalid choice: 'sink' (choose from ",
        ),
        (["sync", "pip"], "tfmirror: error: argument side: invalid choice: 'pip' (choose from "),
        (["status", "--colour"], "tfmirror: error: unrecognized arguments: --colour"),
    ],
)
def test_a_usage_error_names_tfmirror_once_and_the_help_to_read(
    argv: list[str], line: str, tmp_path: Path
) -> None:
    # Before: "tfmirror: error: tfmirror: argument COMMAND: ..." (the prefix twice).
    proc = run(tmp_path, Case(None, argv, line))
    assert_one_clear_line(proc, line)
    said = proc.stderr.strip()
    assert said.startswith(line) and said.count("tfmirror:") == 1, said
    command = "tfmirror sync" if argv[0] == "sync" else "tfmirror"
    assert said.endswith(f"(see {command} --help)"), said
