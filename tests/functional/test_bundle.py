"""Signed, incremental bundles from an outer mirror to an inner one, through the CLI:
real devpi on both sides, pip on the inner side, every refusal with its reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mirror.app import create_app
from mirror.core.config import load_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.devpi.server import DevpiProcess
from mirror.proxy import entry_point
from tests.support.mirror_env import operator_config
from tests.support.servers import make_venv, pip_install
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec


def tfmirror(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mirror.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def manifests(config: Path) -> dict[str, bytes]:
    store = open_store(load_config(str(config)).storage)
    return {k: store.get(k) or b"" for k in store.list("manifests/")}


@pytest.fixture
def sides(tmp_path: Path, upstream: Upstream) -> tuple[Path, Path, Path]:
    """An outer mirror that synced alpha 1.0 (+ beta), an empty inner one, a key pair."""
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0", noise=200_000))
    (tmp_path / "outer").mkdir()
    (tmp_path / "inner").mkdir()
    outer = operator_config(tmp_path / "outer", upstream.index_url, ["alpha"])
    # The inner mirror has no way out: its upstream is a port nothing listens on.
    inner = operator_config(tmp_path / "inner", "http://127.0.0.1:9/simple/", ["alpha"])
    assert tfmirror(outer, "sync", "pypi").returncode == 0
    made = tfmirror(outer, "bundle", "keygen", "--out", str(tmp_path / "keys"))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "keys" / "bundle.key").stat().st_mode & 0o077 == 0
    return outer, inner, tmp_path / "keys"


def export(outer: Path, out: Path, key: Path, *args: str) -> str:
    done = tfmirror(
        outer, "bundle", "export", "--key", str(key / "bundle.key"), "-o", str(out), *args
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\t")[0]


def blob_items(bundle: Path) -> list[dict[str, object]]:
    index = json.loads((bundle / "bundle.json").read_text())
    return [i for i in index["items"] if i["kind"] == "blob"]


def test_full_then_incremental_bundles_bring_the_closure_and_pip_installs_inside(
    sides: tuple[Path, Path, Path], upstream: Upstream, tmp_path: Path
) -> None:
    outer, inner, keys = sides
    first = export(outer, tmp_path / "b1", keys, "--full", "--max-part-size", "1M")
    assert len(list((tmp_path / "b1").glob("part-*"))) >= 1
    upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
    assert tfmirror(outer, "sync", "pypi").returncode == 0
    second = export(outer, tmp_path / "b2", keys)
    # Only what came since: alpha 2.0's wheel and its METADATA, not beta's 200 KB again.
    new = upstream.files["alpha-2.0-py3-none-any.whl"]
    assert {i["sha256"] for i in blob_items(tmp_path / "b2")} == {new.sha256, new.metadata_sha256}
    assert json.loads((tmp_path / "b2" / "bundle.json").read_text())["follows"] == first

    trust = str(keys / "bundle.pub")
    for bundle in ("b1", "b2"):
        done = tfmirror(inner, "bundle", "import", str(tmp_path / bundle), "--trust", trust)
        assert done.returncode == 0, done.stderr
    assert f"imported {second}" in done.stdout
    assert manifests(inner) == manifests(outer)

    config = load_config(str(inner))
    venv = make_venv(tmp_path / "venv")
    front = WebServer(create_app(config), config.web.host, config.web.port)
    with front, DevpiProcess(config.devpi):
        pip = pip_install(venv, entry_point(config, proxied=False).index_url, "alpha")
    assert pip.returncode == 0, pip.stderr
    version = subprocess.run(
        [str(venv), "-c", "import alpha; print(alpha.VERSION)"], capture_output=True, text=True
    )
    assert version.stdout.strip() == "2.0"


def refused(inner: Path, bundle: Path, pub: Path) -> str:
    before = manifests(inner)
    done = tfmirror(inner, "bundle", "import", str(bundle), "--trust", str(pub))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert manifests(inner) == before  # nothing served changed
    return done.stderr


def test_each_bad_bundle_is_refused_with_its_reason_and_changes_nothing(
    sides: tuple[Path, Path, Path], upstream: Upstream, tmp_path: Path
) -> None:
    outer, inner, keys = sides
    pub = keys / "bundle.pub"
    export(outer, tmp_path / "full", keys, "--full", "--max-part-size", "1M")
    upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
    assert tfmirror(outer, "sync", "pypi").returncode == 0
    export(outer, tmp_path / "next", keys)

    # Out of order: the incremental one before the full one it follows.
    assert "import the bundles in order" in refused(inner, tmp_path / "next", pub)
    # Another key.
    assert tfmirror(outer, "bundle", "keygen", "--out", str(tmp_path / "other")).returncode == 0
    assert "does not verify with the trusted key" in refused(
        inner, tmp_path / "full", tmp_path / "other" / "bundle.pub"
    )
    # An index altered after signing.
    altered = tmp_path / "altered"
    subprocess.run(["cp", "-r", str(tmp_path / "full"), str(altered)], check=True)
    text = (altered / "bundle.json").read_text()
    (altered / "bundle.json").write_text(text.replace('"follows": null', '"follows": "x"'))
    assert "does not verify with the trusted key" in refused(inner, altered, pub)
    # A flipped byte in a part.
    flipped = tmp_path / "flipped"
    subprocess.run(["cp", "-r", str(tmp_path / "full"), str(flipped)], check=True)
    part = sorted(flipped.glob("part-*"))[-1]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    reason = refused(inner, flipped, pub)
    assert "arrived as other bytes" in reason or "does not hash" in reason, reason
    # A missing part.
    missing = tmp_path / "missing"
    subprocess.run(["cp", "-r", str(tmp_path / "full"), str(missing)], check=True)
    sorted(missing.glob("part-*"))[0].unlink()
    assert "is missing" in refused(inner, missing, pub)
    # The good ones, in order, still import.
    for bundle in ("full", "next"):
        ok = tfmirror(inner, "bundle", "import", str(tmp_path / bundle), "--trust", str(pub))
        assert ok.returncode == 0, ok.stderr
    assert manifests(inner) == manifests(outer)


def test_bad_key_and_part_size_are_usage_errors(
    sides: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    outer, _, keys = sides
    again = tfmirror(outer, "bundle", "keygen", "--out", str(keys))
    assert again.returncode == 2 and "never overwrites a key" in again.stderr
    not_a_key = tfmirror(
        outer, "bundle", "export", "--key", str(keys / "bundle.pub"), "-o", str(tmp_path / "x")
    )
    assert not_a_key.returncode == 2 and "not a readable ed25519 private key" in not_a_key.stderr
    tiny = tfmirror(
        outer,
        "bundle",
        "export",
        "--key",
        str(keys / "bundle.key"),
        "-o",
        str(tmp_path / "y"),
        "--max-part-size",
        "10K",
    )
    assert tiny.returncode == 2 and "under 1M" in tiny.stderr
