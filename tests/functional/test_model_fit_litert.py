"""Which .tflite model runs where: real ai-edge-litert wheels from PyPI in the mirror, the
"edge" environment's LiteRT runtime built from them, and real models from TensorFlow's
converter (builtin ops only; one keeping the Select TF op FlexMatrixInverse; one whose
GATHER reads past its table when invoked). The matrix says which runs and why not in
words, the hub sync's gate and `hub prefetch --env --to` refuse what the environment
cannot run, and the deep check invokes each model in the runtime's own interpreter.

"edge" is ai-edge-litert alone (about 50 MB of wheels); "bare" has no TFLite runtime.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from hub_cache.formats.litert_runtime import LITERT
from hub_cache.models import load_model
from mirror.core.config import load_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from testkit.servers import free_port
from tests.functional.test_bundle import tfmirror
from tfmirror.app import create_app
from verify.compat import check_matrix
from verify.runtimes import Runtime, existing_runtime

ROOT = Path(__file__).resolve().parents[2]
VERSION = "2.3.0"
SETUP = f"""
[storage]
path = "store"

[web]
port = {{port}}

[pypi]
upstream = "https://pypi.org/simple/"
build_backends = []

[pypi.environments.edge]
requirements = ["ai-edge-litert=={VERSION}"]
targets = [{{{{ python = "3.11", platform = "manylinux_2_28_x86_64" }}}}]

[pypi.environments.bare]
requirements = ["flatbuffers"]
targets = [{{{{ python = "3.11", platform = "manylinux_2_28_x86_64" }}}}]
"""
FLEX_WHY = (
    f"uses Flex op FlexMatrixInverse: needs the Flex delegate, which ai-edge-litert {VERSION} "
    "does not ship"
)

pytestmark = pytest.mark.live


def handle(name: str) -> str:
    return f"https://tfhub.dev/fit/lite-model/{name}/1"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The mirror with both environments synced from PyPI, the LiteRT runtime built, and
    the three models imported."""
    work = tmp_path_factory.mktemp("litert-fit")
    made = subprocess.run(
        [sys.executable, "-m", "tests.support.make_tflite", str(work), "--oob"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    path = work / "tfmirror.toml"
    path.write_text(SETUP.format(port=free_port()))
    synced = tfmirror(path, "sync", "pypi", "--no-devpi")
    assert synced.returncode == 0, synced.stderr[-2000:]
    for name in ("builtin", "flex", "oob"):
        done = tfmirror(
            path, "hub", "import", str(work / f"{name}.tflite"), "--handle", handle(name)
        )
        assert done.returncode == 0, done.stderr
    return {"path": path, "work": work, "config": load_config(str(path))}


def test_the_matrix_checks_each_operator_code_against_the_litert_the_environment_installs(
    edge: dict[str, Any],
) -> None:
    checked = tfmirror(edge["path"], "hub", "check", "--json")  # builds the runtime
    assert checked.returncode == 1, checked.stderr[-2000:]  # the Flex model cannot run
    pairs = {
        (p["model"].split("/lite-model/")[1], p["environment"]): p
        for p in json.loads(checked.stdout)
    }
    flex = pairs[("flex/1", "edge")]
    assert flex["status"] == "incompatible" and flex["missing_ops"] == ["FlexMatrixInverse"]
    assert flex["reason"] == FLEX_WHY and flex["runtime"] == f"ai-edge-litert {VERSION}"
    assert pairs[("builtin/1", "edge")]["status"] == "ok"
    assert pairs[("oob/1", "edge")]["status"] == "ok"  # its ops are all there
    bare = pairs[("builtin/1", "bare")]
    assert bare["status"] == "unchecked"
    assert bare["reason"].startswith("no TFLite runtime in this environment")
    config = edge["config"]
    store = open_store(config.storage)
    runtime = existing_runtime(config, store, "edge", kind=LITERT)
    assert isinstance(runtime, Runtime) and {"CONV_2D", "MEAN", "SOFTMAX"} <= runtime.ops
    # Built once: checking again builds nothing, and says it in a line.
    stamp = (runtime.folder / "runtime-ai-edge-litert.json").stat().st_mtime_ns
    shown = tfmirror(edge["path"], "hub", "check", "--env", "edge").stdout
    assert (runtime.folder / "runtime-ai-edge-litert.json").stat().st_mtime_ns == stamp
    assert f"INCOMPATIBLE (ai-edge-litert {VERSION}): {FLEX_WHY}" in shown

    with WebServer(create_app(config), config.web.host, config.web.port):
        page = requests.get(f"{config.web.base_url}/").text
        assert f"ai-edge-litert {VERSION}" in page and FLEX_WHY in page
        to = edge["work"] / "device"

        def prefetch_for(env: str) -> subprocess.CompletedProcess[str]:
            return tfmirror(
                edge["path"], "hub", "prefetch", handle("flex"), "--to", str(to), "--env", env
            )

        refused = prefetch_for("edge")
        assert refused.returncode == 1, refused.stderr
        assert f"environment edge cannot load it: {FLEX_WHY}" in refused.stderr
        assert not to.exists() or not list(to.glob("*.tflite"))
        written = tfmirror(
            edge["path"], "hub", "prefetch", handle("builtin"), "--to", str(to), "--env", "edge"
        )
        assert written.returncode == 0, written.stderr
        assert [p.name for p in to.glob("*.tflite")] == ["fit_lite-model_builtin_1.tflite"]


def test_deep_verify_invokes_each_model_in_the_environments_interpreter(
    edge: dict[str, Any],
) -> None:
    from verify.models import check_models

    config = edge["config"]
    store = open_store(config.storage)
    checks = {
        c.handle.split("/lite-model/")[1]: c
        for c in check_models(config, store, check_matrix(config, store))
    }
    builtin, oob, flex = checks["builtin/1"], checks["oob/1"], checks["flex/1"]
    assert builtin.ok and "loads in edge;" in builtin.detail, builtin.detail
    assert "serving_default called on zeros in edge" in builtin.detail
    manifest = load_model(store, "fit/lite-model/builtin/1")
    assert manifest is not None
    inputs = manifest.signatures["serving_default"]["inputs"]
    assert [spec["shape"] for spec in inputs.values()] == [[1, 8, 8, 3]]
    # Its ops are all registered, but LiteRT refuses its GATHER when it runs.
    assert not oob.ok and "fails when called on zeros in edge" in oob.detail, oob.detail
    assert "gather index out of bounds" in oob.detail
    # The environment cannot run it: not loaded there, and not flagged for it.
    assert flex.ok and flex.detail.startswith("not loaded"), flex.detail


def test_the_gate_keeps_the_served_version_when_edge_cannot_run_the_new_one(
    edge: dict[str, Any],
) -> None:
    work, name = edge["work"], handle("guarded")

    def sync_with(model: str, tag: str) -> subprocess.CompletedProcess[str]:
        path = work / f"{tag}.toml"
        entry = f'{{ handle = "{name}", source = "{work / model}", environments = ["edge"] }}'
        path.write_text(edge["path"].read_text() + f"\n[hub]\nmodels = [\n{entry}\n]\n")
        return tfmirror(path, "sync", "hub")

    assert sync_with("builtin.tflite", "guard1").returncode == 0
    store = open_store(edge["config"].storage)
    served = load_model(store, "fit/lite-model/guarded/1")
    assert served is not None
    refused = sync_with("flex.tflite", "guard2")
    assert refused.returncode == 1
    said = refused.stderr
    assert f"environment edge (ai-edge-litert {VERSION}) cannot load it: {FLEX_WHY}" in said, said
    assert "stays served" in said
    after = load_model(store, "fit/lite-model/guarded/1")
    assert after is not None and after.sha256 == served.sha256
