"""An upstream with a login (an Artifactory: `http://user:password@host/simple/`, pages
that link files relatively, with an api_key on each): the mirror syncs from it, stores
neither the password nor the key anywhere, and fetches again later with the login from
the config. A store written by the release that stored them loses them on first start,
and nothing is fetched again.

The real CLI, a local upstream that answers 401 without the login."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

from mirror.core.config import load_config
from mirror.core.snapshots import load_snapshot
from mirror.core.storage import LocalStore, open_store
from mirror.pypi.lag import LAG_STATE
from mirror.pypi.manifest import load_all
from mirror.pypi.stored_urls import scrub_credentials
from testkit.mirror_env import operator_config
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_bundle import tfmirror
from verify.references import referenced
from verify.scrub import BlobProblem, repair, repair_policy

PASSWORD = "pw-Zq81-secret"
KEY = "k3y-5ad9e1"


def holding_secrets(store: Path) -> list[str]:
    """Every file in the store whose bytes hold the password or the key, in any form."""
    login = base64.b64encode(f"fleet:{PASSWORD}".encode())
    secrets = (PASSWORD.encode(), KEY.encode(), login)
    return sorted(
        str(p.relative_to(store))
        for p in store.rglob("*")
        if p.is_file() and any(s in p.read_bytes() for s in secrets)
    )


def stored_urls(config_path: Path) -> list[str]:
    store = open_store(load_config(str(config_path)).storage)
    return sorted(w.url for m in load_all(store) for w in m.files)


def config_with_login(upstream: Upstream, tmp_path: Path) -> Path:
    """An operator's config whose upstream carries the login; the upstream wants it."""
    upstream.login = ("fleet", PASSWORD)
    upstream.link_query = f"api_key={KEY}"
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    path = operator_config(tmp_path, upstream.index_url_with_login(), ["alpha"])
    # A shared, loaded test machine: devpi's answers are held to this timeout too.
    path.write_text(path.read_text().replace("timeout = 2\n", "timeout = 20\n"))
    return path


def test_a_sync_from_an_upstream_with_a_login_stores_no_credential_and_fetches_with_the_configs(
    upstream: Upstream, tmp_path: Path
) -> None:
    path = config_with_login(upstream, tmp_path)
    config = load_config(str(path))

    first = tfmirror(path, "sync", "pypi")
    assert first.returncode == 0, first.stderr
    assert "2 new" in first.stdout, first.stdout
    files = f"{upstream.url}/files"
    assert stored_urls(path) == [
        f"{files}/alpha-1.0-py3-none-any.whl",
        f"{files}/beta-1.0-py3-none-any.whl",
    ]
    assert holding_secrets(tmp_path / "data") == []
    lag = json.loads((tmp_path / "data" / LAG_STATE).read_text())
    assert lag["upstream"] == upstream.index_url

    # A later sync downloads what is new ...
    upstream.add(WheelSpec("alpha", "1.1", requires=["beta"]))
    second = tfmirror(path, "sync", "pypi")
    assert second.returncode == 0, second.stderr
    assert "1 new" in second.stdout, second.stdout
    assert upstream.hits["alpha-1.1-py3-none-any.whl"] == 1
    # ... and a repair fetches a lost blob from its stored URL, which has no login: the
    # config's goes with it, to the upstream's host and port only.
    store = open_store(config.storage)
    beta = next(w for m in load_all(store) for w in m.files if w.project == "beta")
    store.delete_blob(beta.sha256)
    problem = BlobProblem(beta.sha256, "missing", "gone", [beta.filename])
    repair(store, problem, referenced(config, store)[beta.sha256], repair_policy(config))
    assert problem.repaired, problem.repair_error
    assert store.has_blob(beta.sha256) and upstream.hits["beta-1.0-py3-none-any.whl"] == 2
    assert holding_secrets(tmp_path / "data") == []


def test_a_store_that_holds_credentials_loses_them_on_first_start_and_fetches_nothing(
    upstream: Upstream, tmp_path: Path
) -> None:
    path = config_with_login(upstream, tmp_path)
    assert tfmirror(path, "sync", "pypi").returncode == 0
    assert tfmirror(path, "snapshot", "create", "before").returncode == 0
    # As the release before wrote them: each file's URL joined to the configured
    # upstream, login and key in it, in the manifests (and the snapshots made of them)
    # and the upstream, login in it, in the lag record.
    data = tmp_path / "data"
    with_login_url = upstream.url.replace("://", f"://fleet:{PASSWORD}@")

    def as_written_before(text: str) -> str:
        doc = json.loads(text)
        for entry in doc["files"]:
            entry["url"] = entry["url"].replace(upstream.url, with_login_url) + f"?api_key={KEY}"
        return json.dumps(doc, indent=1, sort_keys=True)

    for manifest in (data / "manifests" / "pypi").rglob("*.json"):
        manifest.write_text(as_written_before(manifest.read_text()))
    snapshot = data / "snapshots" / "before.json"
    doc = json.loads(snapshot.read_text())
    doc["manifests"] = {k: as_written_before(t) for k, t in doc["manifests"].items()}
    snapshot.write_text(json.dumps(doc, indent=1, sort_keys=True))
    lag = json.loads((data / LAG_STATE).read_text())
    (data / LAG_STATE).write_text(json.dumps({**lag, "upstream": upstream.index_url_with_login()}))
    held = sorted(holding_secrets(data))
    assert held == [
        "manifests/pypi/default/py3.11-manylinux_2_28_x86_64.json",
        "snapshots/before.json",
        LAG_STATE,
    ], held
    hits = upstream.file_hits()

    # What `tfmirror up` runs at start, on a copy: each such document written once.
    copy = LocalStore(tmp_path / "copy")
    shutil.copytree(data, copy.root, dirs_exist_ok=True)
    assert sorted(scrub_credentials(copy)) == [
        "manifests/pypi/default/py3.11-manylinux_2_28_x86_64.json",
        "snapshots/before.json",
        LAG_STATE,
    ]
    assert holding_secrets(copy.root) == []
    assert scrub_credentials(copy) == []

    # The first sync of the new release, on the store itself.
    started = tfmirror(path, "sync", "pypi")

    assert started.returncode == 0, started.stderr
    assert "0 new, 2 skipped, 0 failed" in started.stdout, started.stdout
    assert upstream.file_hits() == hits  # nothing fetched again
    assert holding_secrets(data) == []
    assert stored_urls(path) == [
        f"{upstream.url}/files/alpha-1.0-py3-none-any.whl",
        f"{upstream.url}/files/beta-1.0-py3-none-any.whl",
    ]
    store = open_store(load_config(str(path)).storage)
    kept = load_snapshot(store, "before")
    assert kept is not None and f"{upstream.url}/files/beta-1.0-py3-none-any.whl" in str(
        kept.manifests
    )
