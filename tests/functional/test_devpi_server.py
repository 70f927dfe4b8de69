"""tfmirror's own devpi-server: first start and the credentials it keeps."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest
import requests

from mirror.core.config import DevpiConfig
from mirror.devpi import server as devpi_server
from mirror.devpi.server import CREDENTIALS, DevpiProcess
from testkit.servers import free_port


def test_first_start_with_a_generated_password_that_looks_like_an_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # token_urlsafe() starts with "-" once in 64 draws; devpi-init must still take it.
    password = "-looks-like-an-option-" + "x" * 40  # long enough for the secret file too
    monkeypatch.setattr(devpi_server.secrets, "token_urlsafe", lambda n: password)
    config = DevpiConfig(url=f"http://127.0.0.1:{free_port()}", serverdir=tmp_path / "devpi")

    with DevpiProcess(config, log=tmp_path / "devpi.log"):
        login = requests.post(
            f"{config.url}/+login",
            json={"user": "root", "password": password},
            headers={"Accept": "application/json"},
            timeout=10,
        )

    assert login.status_code == 200, login.text
    creds = tmp_path / "devpi" / CREDENTIALS
    assert json.loads(creds.read_text())["root_password"] == password
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600


def test_root_password_is_never_on_a_command_line(tmp_path: Path) -> None:
    """Any local user can read /proc/<pid>/cmdline; poll it while devpi-init runs."""
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if "devpi-init" in text:
                    seen.append(text)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        creds = devpi_server.initialise(tmp_path / "devpi")
    finally:
        done.set()
        watcher.join()
    assert seen, "devpi-init ran too briefly to be seen; the check proved nothing"
    assert not any(creds.root_password in line for line in seen), seen[0]
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers == ["devpi"], leftovers  # the private config file is gone


def test_devpis_records_are_readable_by_the_mirrors_user_alone(tmp_path: Path) -> None:
    # The release before left devpi-init's sqlite world-readable: a start tightens it.
    serverdir = tmp_path / "devpi"
    devpi_server.initialise(serverdir)
    (serverdir / ".sqlite").chmod(0o644)
    serverdir.chmod(0o755)
    config = DevpiConfig(url=f"http://127.0.0.1:{free_port()}", serverdir=serverdir)
    with DevpiProcess(config, log=tmp_path / "devpi.log"):
        requests.get(f"{config.url}/+api", timeout=10).raise_for_status()
    modes = {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in [serverdir, *serverdir.glob(".sqlite*")]
    }
    assert ".sqlite" in modes
    assert {name: f"{mode:o}" for name, mode in modes.items() if mode & 0o077} == {}
