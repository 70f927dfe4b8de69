"""Environments: each a set of pins with its own targets and its own index, so a serving
node cannot drift to the TensorFlow another environment pins. Real devpi, a local
upstream, the real pip and uv through the fronts' pages."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from mirror.core.config import Config, DevpiConfig, load_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.pypi.manifest import load_all, load_manifest
from mirror.pypi.sync import PypiSync
from testkit.servers import free_port, make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.support.runner import runner_over
from tfmirror.app import create_app
from tfmirror.cli import main
from tfmirror.services import services_for_sync
from verify.run import run_verify

PEP691 = "application/vnd.pypi.simple.v1+json"
LINUX_ID = "py3.11-manylinux_2_28_x86_64"


def publish(up: Upstream) -> None:
    up.add(WheelSpec("alpha", "1.0", requires=["beta<2"]))
    up.add(WheelSpec("alpha", "2.0", requires=["beta>=2"]))
    up.add(WheelSpec("beta", "1.0"))
    up.add(WheelSpec("beta", "2.0"))
    up.add(WheelSpec("gamma", "1.0", requires=["alpha>=2"]))


def write_config(tmp: Path, up: Upstream, devpi: DevpiConfig, environments: str) -> Path:
    path = tmp / "tfmirror.toml"
    path.write_text(f"""
[storage]
path = "{tmp / "store"}"

[devpi]
url = "{devpi.url}"
index = "fleet{free_port()}/pypi"
serverdir = ""

[web]
port = {free_port()}

[proxy]
enabled = false

[pypi]
upstream = "{up.index_url}"
timeout = 2
retries = 1
build_backends = []
{environments}""")
    return path


TWO = """
[pypi.environments.training]
requirements = ["alpha==2.0"]
targets = [{python = "3.11", platform = "manylinux_2_28_x86_64"},
           {python = "3.11", platform = "win_amd64"}]

[pypi.environments.serving]
requirements = ["alpha"]
constraints = ["alpha<2"]
targets = [{python = "3.11", platform = "manylinux_2_28_x86_64"}]
"""

BROKEN = """
[pypi.environments.broken]
requirements = ["alpha==1.0", "gamma"]
targets = [{python = "3.11", platform = "manylinux_2_28_x86_64"}]
"""


def sync(config: Config) -> PypiSync:
    store = open_store(config.storage)
    with services_for_sync(config, store) as devpi:
        sync = PypiSync(config, store, devpi)
        sync.report = sync.run()  # type: ignore[attr-defined]
    return sync


@pytest.fixture
def front(tmp_path: Path, upstream: Upstream, devpi: DevpiConfig) -> Iterator[tuple[Config, Path]]:
    publish(upstream)
    path = write_config(tmp_path, upstream, devpi, TWO + BROKEN)
    config = load_config(str(path))
    with WebServer(create_app(config), config.web.host, config.web.port):
        yield config, path


def index(config: Config, name: str) -> str:
    return f"{config.web.base_url}/{config.devpi.user}/{name}/+simple/"


def versions(config: Config, name: str, project: str) -> list[str]:
    page = requests.get(f"{index(config, name)}{project}/", headers={"Accept": PEP691}, timeout=10)
    return page.json()["versions"] if page.status_code == 200 else []


def cli(path: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--config", str(path), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_each_environment_has_its_own_closure_and_index(
    front: tuple[Config, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, path = front
    report = sync(config).report  # type: ignore[attr-defined]

    # A conflict inside one environment fails it alone, in one line that names it.
    (failure,) = report.failures
    assert failure.name == f"broken/{LINUX_ID}"
    assert "gamma" in failure.reason and "alpha" in failure.reason
    assert "\n" not in failure.reason
    store = open_store(config.storage)
    assert load_manifest(store, "broken", LINUX_ID) is None
    serving = load_manifest(store, "serving", LINUX_ID)
    training = load_manifest(store, "training", LINUX_ID)
    assert serving is not None and training is not None
    assert {(w.project, w.version) for w in serving.files} == {("alpha", "1.0"), ("beta", "1.0")}
    assert {(w.project, w.version) for w in training.files} == {("alpha", "2.0"), ("beta", "2.0")}
    assert serving.constraints == ("alpha<2",)
    assert load_manifest(store, "training", "py3.11-win_amd64") is not None
    # A file two environments share is fetched once (none here: conflicting pins).
    assert report.new == 4

    # Each environment's index offers its own versions only; the union both.
    assert versions(config, "serving", "alpha") == ["1.0"]
    assert versions(config, "training", "alpha") == ["2.0"]
    assert versions(config, "pypi", "alpha") == ["1.0", "2.0"]
    assert versions(config, "broken", "alpha") == []
    assert requests.get(index(config, "nosuch"), timeout=10).status_code == 404

    # pip through an environment's index gets that environment's TensorFlow, whatever
    # is newest elsewhere; a pin from another environment is not there at all.
    venv = make_venv(tmp_path / "serving-node")
    installed = pip_install(venv, index(config, "serving"), "alpha")
    assert installed.returncode == 0, installed.stderr
    shown = subprocess.run(
        [str(venv), "-c", "import alpha, beta; print(alpha.VERSION, beta.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.split() == ["1.0", "1.0"]
    assert pip_install(venv, index(config, "serving"), "alpha==2.0").returncode != 0

    # The CLI: the index per environment, a lock that installs with --require-hashes.
    code, out, _ = cli(path, "pip-conf", "--env", "serving", capsys=capsys)
    assert code == 0 and f"index-url = {index(config, 'serving')}" in out
    code, _, err = cli(path, "lock", capsys=capsys)
    assert code == 2 and "several environments are configured: pass --env" in err
    code, _, err = cli(path, "lock", "--env", "training", capsys=capsys)
    assert code == 2 and "pass --target, one of" in err
    lock = tmp_path / "serving.txt"
    code, _, _ = cli(path, "lock", "--env", "serving", "-o", str(lock), capsys=capsys)
    assert code == 0 and "alpha==1.0" in lock.read_text() and "alpha==2.0" not in lock.read_text()
    assert f"--index-url {index(config, 'serving')}" in lock.read_text()
    node = make_venv(tmp_path / "ci-image")
    pinned = pip_install(node, index(config, "serving"), "--require-hashes", "-r", str(lock))
    assert pinned.returncode == 0, pinned.stderr
    code, out, _ = cli(path, "targets", capsys=capsys)
    assert code == 0
    assert out.index("training\t") < out.index("  py3.11-win_amd64\t") < out.index("serving\t")
    assert f"  {LINUX_ID}\tnot synced yet" in out.split("broken\t")[1]

    # Status: a row per environment, each target's last outcome; metrics by label.
    status = requests.get(f"{config.web.base_url}/api/status", timeout=10).json()
    rows = {e["name"]: e for e in status["inventory"]["environments"]}
    assert list(rows) == ["training", "serving", "broken"]
    assert rows["serving"]["index_url"].endswith(f"/{config.devpi.user}/serving/+simple/")
    assert [t["last_sync"] for t in rows["broken"]["targets"]] == ["failed"]
    assert [t["last_sync"] for t in rows["training"]["targets"]] == ["committed", "committed"]
    metrics = requests.get(f"{config.web.base_url}/metrics", timeout=10).text
    assert f'tfmirror_target_files{{environment="serving",target="{LINUX_ID}"}} 2.0' in metrics
    assert (
        f'tfmirror_target_last_sync_ok{{environment="broken",target="{LINUX_ID}"}} 0.0' in metrics
    )
    page = requests.get(f"{config.web.base_url}/", timeout=10).text
    assert 'data-environment="serving"' in page and "alpha&lt;2" in page
    record = json.loads(store.get("runs/pypi/latest.json") or b"{}")
    assert record["environments"]["serving"] == {LINUX_ID: "committed"}


def test_an_environment_taken_out_of_the_config_leaves_every_index(
    front: tuple[Config, Path], upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    config, _ = front
    sync(config)
    (tmp_path / "later").mkdir()
    only_training = TWO.split("[pypi.environments.serving]")[0]
    later = load_config(str(write_config(tmp_path / "later", upstream, devpi, only_training)))
    # The same store, devpi index and port: only the environments changed.
    later = replace(later, storage=config.storage, devpi=config.devpi, web=config.web)

    report = sync(later).report  # type: ignore[attr-defined]

    # "broken" never committed a manifest: only serving's goes.
    assert report.ok and report.dropped == [f"serving/{LINUX_ID}"]
    store = open_store(config.storage)
    assert {m.environment for m in load_all(store)} == {"training"}
    pages = create_app(later, store).test_client()
    union = pages.get(f"/{config.devpi.index}/+simple/alpha/", headers={"Accept": PEP691})
    assert union.get_json()["versions"] == ["2.0"]
    assert pages.get(f"/{config.devpi.user}/serving/+simple/").status_code == 404


def test_verify_proves_each_environment_the_ways_nodes_install(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    # `needy` imports a module that only `provider` 1.x ships, as tensorflow_hub imports
    # pkg_resources, which setuptools 82 dropped; its wheel has no top_level.txt and a
    # numpy-2 style `needy.libs` folder beside the package.
    upstream.add(
        WheelSpec(
            "needy",
            "1.0",
            requires=["provider"],
            source="import legacy_api\n",
            extra_files={"needy.libs/libfoo.so.1": "not python"},
        )
    )
    upstream.add(WheelSpec("provider", "1.0", extra_files={"legacy_api.py": "X = 1\n"}))
    upstream.add(WheelSpec("provider", "2.0"))
    environments = """
[pypi.environments.loose]
requirements = ["needy"]
targets = [{python = "3.11", platform = "manylinux_2_28_x86_64"}]

[pypi.environments.held]
requirements = ["needy"]
constraints = ["provider<2"]
targets = [{python = "3.11", platform = "manylinux_2_28_x86_64"}]
"""
    config = load_config(str(write_config(tmp_path, upstream, devpi, environments)))
    assert sync(config).report.ok  # type: ignore[attr-defined]
    store = open_store(config.storage)

    report = run_verify(config, store, services_for_sync, runner_over(store, config).keeping_out)

    proofs = {p.target: p for p in report.targets}
    held, loose = proofs[f"held/{LINUX_ID}"], proofs[f"loose/{LINUX_ID}"]
    assert held.ok, held.detail
    assert "lock --require-hashes into a bare venv" in held.how and "uv pip install" in held.how
    assert "through a web front" in held.how
    assert held.detail.endswith("imported needy in both venvs")  # not needy.libs
    assert not loose.ok
    assert "import needy: ModuleNotFoundError: No module named 'legacy_api'" in loose.detail
    assert f"target loose/{LINUX_ID}: " in " ".join(report.problems)
    assert sys.executable  # the proofs ran with this Python's pip and uv
