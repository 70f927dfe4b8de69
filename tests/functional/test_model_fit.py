"""Which model loads where: real TensorFlow and tensorflow-text wheels from PyPI in the
mirror, each environment's runtime built from them, a model that uses a tensorflow-text
op (made in the runtime that has it) and a plain Keras model; the matrix, the hub sync's
gate, `hub prefetch --env`, `verify --deep` in the runtimes, and a TF Serving
repository whose models.config parses with tensorflow-serving-api's own protos.

Two environments share TensorFlow 2.21.0: "text" adds tensorflow-text, "serving" adds
tensorflow-serving-api (the client protos, as a serving image has them) and no op library.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests

from hub_cache.models import load_model
from mirror.core.config import Config, load_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from testkit.servers import free_port
from tests.functional.test_bundle import tfmirror
from tfmirror.app import create_app
from verify.compat import check_matrix
from verify.runtimes import Runtime, existing_runtime

ROOT = Path(__file__).resolve().parents[2]
TEXT_OP = "RegexSplitWithOffsets"
SETUP = """
[storage]
path = "store"

[web]
port = {port}

[pypi]
upstream = "https://pypi.org/simple/"
build_backends = []

[pypi.environments.text]
requirements = ["tensorflow==2.21.0", "tensorflow-text==2.21.1"]
targets = [{{ python = "3.11", platform = "manylinux_2_28_x86_64" }}]

[pypi.environments.serving]
requirements = ["tensorflow==2.21.0", "tensorflow-serving-api==2.21.0"]
targets = [{{ python = "3.11", platform = "manylinux_2_28_x86_64" }}]
"""

pytestmark = pytest.mark.live


def tarball(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=".")
    return out


def in_runtime(rt: Runtime, code: str, *args: str) -> str:
    proc = subprocess.run(
        [str(rt.python), "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, saved_models: tuple[Path, dict[str, Any]]
) -> dict[str, Any]:
    """The mirror with both environments synced from PyPI, both runtimes built, and the
    two models as tarballs."""
    work = tmp_path_factory.mktemp("fit")
    path = work / "tfmirror.toml"
    path.write_text(SETUP.format(port=free_port()))
    synced = tfmirror(path, "sync", "pypi", "--no-devpi")
    assert synced.returncode == 0, synced.stderr[-2000:]
    built = tfmirror(path, "hub", "check")  # no models yet: builds the runtimes
    assert built.returncode == 0 and "no models mirrored yet" in built.stdout, built.stderr
    config = load_config(str(path))
    store = open_store(config.storage)
    runtimes = {env: existing_runtime(config, store, env) for env in ("text", "serving")}
    text, serving = runtimes["text"], runtimes["serving"]
    assert isinstance(text, Runtime) and isinstance(serving, Runtime), runtimes
    assert text.providers.get(TEXT_OP) == "tensorflow-text" and TEXT_OP not in serving.ops
    make = "import runpy; runpy.run_module('tests.support.make_text_model', run_name='__main__')"
    in_runtime(text, make, str(work / "text-model"))
    models, _ = saved_models
    return {
        "path": path,
        "config": config,
        "work": work,
        "text": text,
        "serving": serving,
        "plain_tar": tarball(models / "keras", work / "plain.tar.gz"),
        "text_tar": tarball(work / "text-model", work / "text.tar.gz"),
    }


def with_models(fleet: dict[str, Any], models: str, name: str) -> Path:
    """The fleet's config plus a [hub] models list, in a file of its own."""
    path = fleet["work"] / f"{name}.toml"
    path.write_text(fleet["path"].read_text() + f"\n[hub]\nmodels = [\n{models}\n]\n")
    return path


def test_the_matrix_names_the_missing_op_and_the_package_that_provides_it(
    fleet: dict[str, Any],
) -> None:
    path = fleet["path"]
    for handle, tar in (("fit/plain/1", "plain_tar"), ("fit/text/1", "text_tar")):
        done = tfmirror(
            path, "hub", "import", str(fleet[tar]), "--handle", f"https://tfhub.dev/m/{handle}"
        )
        assert done.returncode == 0, done.stderr
    checked = tfmirror(path, "hub", "check", "--json")
    assert checked.returncode == 1  # an incompatible pair
    pairs = {(p["model"].split("/m/")[1], p["environment"]): p for p in json.loads(checked.stdout)}
    assert pairs[("fit/text/1", "serving")]["status"] == "incompatible"
    assert pairs[("fit/text/1", "serving")]["missing_ops"] == [TEXT_OP]
    assert pairs[("fit/text/1", "serving")]["provided_by"] == ["tensorflow-text"]
    assert pairs[("fit/text/1", "text")]["status"] == "ok"
    assert pairs[("fit/plain/1", "serving")]["status"] == "ok"
    assert pairs[("fit/plain/1", "text")]["status"] == "ok"
    # The runtimes were built once, for these closures: checking again builds nothing.
    stamp = (fleet["serving"].folder / "runtime.json").stat().st_mtime_ns
    shown = tfmirror(path, "hub", "check", "--env", "serving").stdout
    assert (fleet["serving"].folder / "runtime.json").stat().st_mtime_ns == stamp
    assert f"INCOMPATIBLE (TensorFlow 2.21.0): needs tensorflow-text for {TEXT_OP}" in shown

    config = fleet["config"]
    with WebServer(create_app(config), config.web.host, config.web.port):
        base = config.web.base_url
        status = requests.get(f"{base}/api/status").json()
        rows = {
            (p["model"].split("/m/")[1], p["environment"]): p["status"] for p in status["model_fit"]
        }
        assert rows[("fit/text/1", "serving")] == "incompatible"
        metrics = requests.get(f"{base}/metrics").text
        assert 'tfmirror_model_environment_pairs{status="incompatible"} 1.0' in metrics
        assert "does not load</span>: needs tensorflow-text" in requests.get(f"{base}/").text
        # hub prefetch --env refuses what that environment cannot load, in one line.
        cache = fleet["work"] / "cache"

        def prefetch_for(env: str) -> subprocess.CompletedProcess[str]:
            text_model = "https://tfhub.dev/m/fit/text/1"
            return tfmirror(
                path, "hub", "prefetch", text_model, "--cache-dir", str(cache), "--env", env
            )

        refused = prefetch_for("serving")
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
        assert (
            f"environment serving cannot load it: needs tensorflow-text for {TEXT_OP}"
            in refused.stderr
        )
        fits = prefetch_for("text")
        assert fits.returncode == 0, fits.stderr


def test_a_version_an_environment_cannot_load_does_not_replace_the_served_one(
    fleet: dict[str, Any],
) -> None:
    handle = "https://tfhub.dev/m/fit/guarded/1"
    first = with_models(
        fleet,
        f'{{ handle = "{handle}", source = "{fleet["plain_tar"]}", environments = ["serving"] }}',
        "guard1",
    )
    assert tfmirror(first, "sync", "hub").returncode == 0
    store = open_store(fleet["config"].storage)
    served = load_model(store, "m/fit/guarded/1")
    assert served is not None
    # Upstream republishes the handle with a model that needs tensorflow-text.
    second = with_models(
        fleet,
        f'{{ handle = "{handle}", source = "{fleet["text_tar"]}", environments = ["serving"] }}',
        "guard2",
    )
    refused = tfmirror(second, "sync", "hub")
    assert refused.returncode == 1
    said = refused.stderr
    assert "environment serving (TensorFlow 2.21.0) cannot load it" in said, said
    assert f"needs tensorflow-text for {TEXT_OP}" in said and "stays served" in said
    after = load_model(store, "m/fit/guarded/1")
    assert after is not None and after.sha256 == served.sha256
    # An environment that has the op library takes it.
    third = with_models(
        fleet,
        f'{{ handle = "{handle}", source = "{fleet["text_tar"]}", environments = ["text"] }}',
        "guard3",
    )
    assert tfmirror(third, "sync", "hub").returncode == 0
    bad = with_models(fleet, f'{{ handle = "{handle}", environments = ["nope"] }}', "guard4")
    wrong = tfmirror(bad, "hub", "check")
    assert wrong.returncode == 2 and "names environment 'nope'" in wrong.stderr


def test_deep_verify_loads_each_model_in_the_runtimes_that_have_its_ops(
    fleet: dict[str, Any],
) -> None:
    from verify.models import check_models

    config: Config = fleet["config"]
    store = open_store(config.storage)
    for handle, tar in (("deep/plain/1", "plain_tar"), ("deep/text/1", "text_tar")):
        tfmirror(
            fleet["path"],
            "hub",
            "import",
            str(fleet[tar]),
            "--handle",
            f"https://tfhub.dev/m/{handle}",
        )
    checks = {
        c.handle.split("/m/")[1]: c
        for c in check_models(config, store, check_matrix(config, store))
    }
    text, plain = checks["deep/text/1"], checks["deep/plain/1"]
    assert text.ok and "loads in text;" in text.detail, text.detail
    assert "serving_default called on zeros in text" in text.detail
    assert plain.ok and "loads in serving, text;" in plain.detail, plain.detail


def test_export_serving_writes_versions_whole_and_a_config_tf_serving_parses(
    fleet: dict[str, Any],
) -> None:
    path = fleet["path"]
    for handle, tar in (
        ("tfs/keras/1", "plain_tar"),
        ("tfs/keras/2", "plain_tar"),
        ("tfs/text/1", "text_tar"),
    ):
        tfmirror(
            path, "hub", "import", str(fleet[tar]), "--handle", f"https://tfhub.dev/m/{handle}"
        )
    repo = fleet["work"] / "serving-repo"
    args = ["hub", "export-serving", str(repo), "--env", "serving", "--keep", "1", "--models"]
    models = ["m/tfs/keras/1", "m/tfs/keras/2", "m/tfs/text/1"]
    done = tfmirror(path, *args, *models)
    assert done.returncode == 1  # the text model is refused
    refused = "m_tfs_text/1: refused (https://tfhub.dev/m/tfs/text/1): environment serving"
    assert f"{refused} cannot load it: needs tensorflow-text for {TEXT_OP}" in done.stderr
    assert "m_tfs_keras/2: written" in done.stdout and "m_tfs_keras/1: removed" in done.stdout
    assert sorted(
        p.name for p in (repo / "m_tfs_keras").iterdir() if not p.name.startswith(".")
    ) == ["2"]
    assert not (repo / "m_tfs_text").exists()
    config_text = (repo / "models.config").read_text()
    stamp = (repo / "models.config").stat().st_mtime_ns

    parsed = in_runtime(
        fleet["serving"],
        """
import json, os, sys
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
import tensorflow as tf
config = model_server_config_pb2.ModelServerConfig()
text_format.Parse(open(sys.argv[1]).read(), config)
out = {}
for model in config.model_config_list.config:
    versions = list(model.model_version_policy.specific.versions)
    for v in versions:
        loaded = tf.saved_model.load(os.path.join(model.base_path, str(v)))
        assert "serving_default" in loaded.signatures
    out[model.name] = [model.base_path, model.model_platform, versions]
print(json.dumps(out))
""",
        str(repo / "models.config"),
    )
    assert json.loads(parsed.strip().splitlines()[-1]) == {
        "m_tfs_keras": [str((repo / "m_tfs_keras").resolve()), "tensorflow", [2]]
    }
    # Run again: nothing changes.
    again = tfmirror(path, *args, *models)
    assert "m_tfs_keras/2: unchanged" in again.stdout
    assert (repo / "models.config").read_text() == config_text
    assert (repo / "models.config").stat().st_mtime_ns == stamp
