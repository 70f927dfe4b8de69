"""An upgrade in place: a store and a config written by the previous release keep
working, nothing is fetched again, and the manifests move to the new layout on first
start (tests/fixtures/release-0.1 is that release's own output)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from mirror.core.config import load_config
from mirror.core.storage import open_store
from testkit.servers import free_port
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tfmirror.app import create_app

RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "release-0.1"
TARGETS = ("py3.11-manylinux_2_28_x86_64", "py3.11-win_amd64")
PEP691 = "application/vnd.pypi.simple.v1+json"


def pages(config_path: Path) -> dict[str, bytes]:
    config = load_config(str(config_path))
    client = create_app(config, open_store(config.storage)).test_client()
    out = {}
    for project in ("alpha", "beta"):
        for kind, accept in (("json", PEP691), ("html", "text/html")):
            url = f"/fleet/pypi/+simple/{project}/"
            out[f"{project}.{kind}"] = client.get(url, headers={"Accept": accept}).data
    return out


def test_a_store_of_the_previous_release_serves_on_and_migrates_on_first_start(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(
        WheelSpec("alpha", "1.0", requires=["beta"]), uploaded="2024-03-01T10:00:00.000000Z"
    )
    upstream.add(WheelSpec("beta", "1.0"), uploaded="2023-05-01T00:00:00Z")
    data = tmp_path / "data"
    shutil.copytree(RELEASE / "store", data)
    for hosted in upstream.files.values():  # the fixture holds these very bytes
        blob = data / "blobs" / "sha256" / hosted.sha256[:2] / hosted.sha256
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == hosted.sha256
    # The previous release's config shape: top-level requirements and targets.
    config_path = tmp_path / "tfmirror.toml"
    config_path.write_text(f"""
[storage]
path = "data"

[devpi]
url = "http://127.0.0.1:{free_port()}"
index = "fleet/pypi"

[web]
port = {free_port()}

[proxy]
enabled = false

[pypi]
upstream = "{upstream.index_url}"
requirements = ["alpha"]
timeout = 2
retries = 1

[[pypi.targets]]
python = "3.11"
platform = "manylinux_2_28_x86_64"

[[pypi.targets]]
python = "3.11"
platform = "win_amd64"
""")
    served = {p.name: p.read_bytes() for p in (RELEASE / "pages").iterdir()}
    for name in ("alpha.json", "beta.json"):
        # The one change on purpose: PEP 658's JSON key, on which pip 22.3-23.0 crash.
        doc = json.loads(served[name])
        for entry in doc["files"]:
            del entry["dist-info-metadata"]
        served[name] = json.dumps(doc).encode()

    # Before anything runs: the new release serves the very pages the old one did.
    assert pages(config_path) == served

    sync = subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config_path), "sync", "pypi"],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert sync.returncode == 0, sync.stderr
    assert "0 new, 4 skipped, 0 failed" in sync.stdout
    assert upstream.file_hits() == 0  # nothing fetched again
    for target in TARGETS:
        assert (data / "manifests" / "pypi" / "default" / f"{target}.json").is_file()
        assert not (data / "manifests" / "pypi" / f"{target}.json").exists()
    assert pages(config_path) == served
