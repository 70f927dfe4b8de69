"""What the tests of sites following a centre share: a centre made and synced, a
site's config, tfmirror commands as processes of their own, and the looks at a store
and a front the assertions make. `run` and `prefix` put a command inside a network
namespace (tests.functional.test_sites_netns); by default it runs here."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bundle.contents import read_manifests
from mirror.core.config import load_config
from mirror.core.storage import open_store
from testkit.mirror_env import operator_config
from testkit.servers import free_port
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.support.cli import tfmirror

ROOT = Path(__file__).resolve().parents[2]
HANDLE = "https://tfhub.dev/google/tfmirror-test/keras/1"
TOKEN = "follow-read-token-7c1e"

Run = Callable[..., "subprocess.CompletedProcess[str]"]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not answering (yet)


def wait_until(check: Any, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


@contextmanager
def running(
    config: Path, command: str, prefix: Sequence[str] = ()
) -> Iterator[subprocess.Popen[str]]:
    """`tfmirror COMMAND` in a process of its own (after `prefix`, e.g. `ip netns exec
    NS`) until the block ends, then SIGTERM; `up`'s output is read (its banner), a
    front's access log is not kept."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "tfmirror.cli", "--config", str(config), command],
        cwd=ROOT,
        stdout=subprocess.PIPE if command == "up" else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def held(config: Path) -> dict[str, bytes]:
    return read_manifests(open_store(load_config(str(config)).storage))


def make_centre(
    folder: Path,
    upstream: Upstream,
    models: Path,
    run: Run = tfmirror,
    extra: str = "",
    host: str = "127.0.0.1",
) -> Path:
    """A centre that synced alpha 1.0 (+ beta) and imported one model; `extra` is more
    TOML after its tables; its front listens on `host`."""
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0", noise=200_000))
    folder.mkdir(parents=True, exist_ok=True)
    config = operator_config(folder, upstream.index_url, ["alpha"], extra=extra)
    config.write_text(config.read_text().replace("[web]\n", f'[web]\nhost = "{host}"\n', 1))
    synced = run(config, "sync", "pypi")
    assert synced.returncode == 0, synced.stderr
    imported = run(config, "hub", "import", str(models / "keras"), "--handle", HANDLE)
    assert imported.returncode == 0, imported.stderr
    return config


def site_config(
    tmp_path: Path, centre_url: str, interval: int = 30, more: str = "", host: str = "127.0.0.1"
) -> Path:
    """A site: its own store, devpi and front (on `host`), no requirements or models of
    its own."""
    folder = tmp_path / "site"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tfmirror.toml"
    path.write_text(
        f'[storage]\npath = "data"\n'
        f'[devpi]\nurl = "http://127.0.0.1:{free_port()}"\nindex = "fleet/pypi"\n'
        f'[web]\nhost = "{host}"\nport = {free_port()}\n[proxy]\nenabled = false\n'
        f'[follow]\nurl = "{centre_url}"\ninterval = {interval}\n{more}'
    )
    return path


def runs(config: Path) -> list[dict[str, Any]]:
    store = open_store(load_config(str(config)).storage)
    keys = sorted(k for k in store.list("runs/follow/") if k.rsplit("/", 1)[-1][:1].isdigit())
    return [json.loads(store.get(k) or b"{}") for k in keys]


def blob_path(config: Path, sha256: str) -> Path:
    path = open_store(load_config(str(config)).storage).local_path(sha256)
    assert path is not None
    return path


def get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            doc: dict[str, Any] = json.loads(answer.read())
            return doc
    except OSError:
        return {}  # not answering (yet)


def page(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""
