"""Original handles, unchanged code, nothing prefetched: the mirror answers tfhub.dev and
Kaggle's names ([proxy] answer_for) over TLS with a certificate from a CA the test makes.
The models are synced from the local look-alikes of tfhub.dev and Kaggle; then, inside a
network and mount namespace the test makes (loopback only, its own /etc/hosts sending
the names to the mirror's nginx), the real kagglehub and tensorflow_hub load them by
their public handles with empty caches and no Kaggle account; KerasHub's
`from_preset("kaggle://...")` too, from a venv of its own with keras-hub from PyPI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from hub_cache.hub_sync import HubSync
from mirror.core.config import load_config
from mirror.core.public_names import PUBLIC_NAMES
from mirror.core.storage import open_store
from testkit.public_names_node import run_node
from testkit.servers import make_venv, pip_install
from testkit.site_ca import make_ca
from tests.functional.test_hub import assert_same_outputs
from tests.support.archives import tar_of_dir
from tests.support.hub_upstream import HubUpstream, KaggleUpstream

ROOT = Path(__file__).resolve().parents[2]
MIRROR_ADDRESS = "127.0.0.7"  # the namespace's loopback: the names lead here
KAGGLE = "tfmirror/keras-test/tensorFlow2/default"
KAGGLE_URL = "https://www.kaggle.com/models/" + KAGGLE
TFHUB = "https://tfhub.dev/google/tfmirror-test/keras/1"
ABSENT = "tfmirror/not-mirrored/tensorFlow2/default/1"
SECRET = "kaggle-s3cret-key-7d1e"
PRESET = "tfmirror/tiny-bert/keras/tiny"
PYPI = "https://pypi.org/simple/"
# The release the test was written against: a new one may call Kaggle otherwise.
KERAS_HUB = "keras-hub==0.32.0"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: a network and mount namespace of its own"
)


def write_config(
    tmp_path: Path, nginx: str, kaggle: KaggleUpstream, models: list[dict[str, str]]
) -> Path:
    ca = make_ca(tmp_path / "ca", list(PUBLIC_NAMES))
    doc = {
        "storage": {"path": str(tmp_path / "store")},
        "web": {"host": MIRROR_ADDRESS, "port": 8080},
        "proxy": {
            "nginx": nginx,
            "host": MIRROR_ADDRESS,
            "port": 8000,
            "workdir": str(tmp_path / "proxy"),
            "answer_for": list(PUBLIC_NAMES),
            "tls_certificate": str(ca.certificate),
            "tls_key": str(ca.key),
        },
        "hub": {"models": models, "kaggle_api": kaggle.api, "timeout": 5, "retries": 1},
    }
    path = tmp_path / "tfmirror.toml"
    path.write_text(_toml(doc))
    return path


def _toml(doc: dict[str, Any]) -> str:
    lines = []
    for table, keys in doc.items():
        lines.append(f"[{table}]")
        for key, value in keys.items():
            if key == "models":
                items = ", ".join(
                    "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in m.items()) + "}"
                    for m in value
                )
                lines.append(f"models = [{items}]")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def node_env(tmp_path: Path, name: str) -> dict[str, str]:
    """A node's: the site CA trusted, empty caches, no Kaggle account anywhere."""
    home = tmp_path / "nodes" / name
    for folder in ("home", "kagglehub", "tfhub"):
        (home / folder).mkdir(parents=True)
    ca = str(tmp_path / "ca" / "ca.pem")
    return {
        "REQUESTS_CA_BUNDLE": ca,
        "SSL_CERT_FILE": ca,
        "HOME": str(home / "home"),
        "KAGGLEHUB_CACHE": str(home / "kagglehub"),
        "TFHUB_CACHE_DIR": str(home / "tfhub"),
    }


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["returncode"] == 0 and "error" not in result, result
    return result


def test_unchanged_code_loads_original_handles_through_the_mirrors_answers(
    nginx: str,
    saved_models: tuple[Path, dict[str, Any]],
    kaggle: KaggleUpstream,
    hub_up: HubUpstream,
    tmp_path: Path,
) -> None:
    models_dir, expected = saved_models
    kaggle.add(f"{KAGGLE}/1", tar_of_dir(models_dir / "keras"))
    kaggle.add(f"{KAGGLE}/2", tar_of_dir(models_dir / "lookup"))
    hub_up.add("google/tfmirror-test/keras/1", tar_of_dir(models_dir / "keras"))
    source = f"{hub_up.url}/google/tfmirror-test/keras/1?tf-hub-format=compressed"
    models = [
        {"handle": f"{KAGGLE_URL}/1"},
        {"handle": f"{KAGGLE_URL}/2"},
        {"handle": TFHUB, "source": source},
    ]
    config_path = write_config(tmp_path, nginx, kaggle, models)
    config = load_config(str(config_path))
    assert HubSync(config, open_store(config.storage)).run().count("new") == 3

    client = "tests.support.public_names_client"
    with_account = {
        **node_env(tmp_path, "account"),
        "KAGGLE_USERNAME": "fleet-bot",
        "KAGGLE_KEY": SECRET,
    }
    cases = [
        {
            "name": "unversioned",
            "argv": [client, "kagglehub", KAGGLE, "lookup"],
            "env": node_env(tmp_path, "unversioned"),
        },
        {
            "name": "versioned",
            "argv": [client, "kagglehub", f"{KAGGLE}/1", "keras"],
            "env": node_env(tmp_path, "versioned"),
        },
        {
            "name": "tfhub",
            "argv": [client, "tfhub", TFHUB, "keras"],
            "env": node_env(tmp_path, "tfhub"),
        },
        {
            "name": "absent",
            "argv": [client, "kagglehub", ABSENT, "-"],
            "env": node_env(tmp_path, "absent"),
        },
        {"name": "account", "argv": [client, "kagglehub", f"{KAGGLE}/2", "-"], "env": with_account},
    ]
    results = run_node(tmp_path, config_path, cases, MIRROR_ADDRESS)

    # No version: the mirror's newest (2, the lookup model), into kagglehub's own layout.
    unversioned = ok(results["unversioned"])
    assert unversioned["path"].endswith("/models/tfmirror/keras-test/tensorFlow2/default/2")
    assert_same_outputs(unversioned["outputs"], expected["lookup"])
    versioned = ok(results["versioned"])
    assert versioned["path"].endswith("/tensorFlow2/default/1")
    assert_same_outputs(versioned["outputs"], expected["keras"])
    assert_same_outputs(ok(results["tfhub"])["outputs"], expected["keras"])
    # tensorflow_hub cached it under the original handle, as it would from tfhub.dev.
    assert any((tmp_path / "nodes/tfhub/tfhub").iterdir())

    absent = results["absent"]
    assert absent["error"] == "KaggleApiHTTPError" and absent["status"] == 404, absent
    assert "not found" in absent["message"].lower()
    assert "tfmirror/not-mirrored/tensorflow2/default/1" in json.loads(absent["body"])["message"]

    # A node that sends an account anyway: it works, and no log holds the account.
    ok(results["account"])
    basic = base64.b64encode(f"fleet-bot:{SECRET}".encode()).decode()
    logs = results["_logs"] + "".join(
        p.read_text(errors="replace") for p in (tmp_path / "proxy").glob("*.log")
    )
    assert "fleet-bot" not in logs and SECRET not in logs and basic not in logs
    # The downloads went through nginx's TLS server by the public names.
    access = (tmp_path / "proxy" / "access.log").read_text()
    assert "POST /v1/models.ModelApiService/GetModelInstance" in access
    assert "GET /google/tfmirror-test/keras/1?tf-hub-format=compressed" in access
    # kagglehub took each Kaggle model as its archive (nginx's blob), not file by file.
    whole = "GET /hub/models/tfmirror/keras-test/tensorflow2/default/{}?tf-hub-format=compressed"
    assert all(whole.format(v) in access for v in (1, 2)), access[-3000:]


@pytest.fixture
def kaggle() -> Iterator[KaggleUpstream]:
    with KaggleUpstream() as up:
        yield up


def test_kerashub_from_preset_loads_kaggle_presets_through_the_mirrors_answers(
    nginx: str, kerashub_python: Path, kaggle: KaggleUpstream, tmp_path: Path
) -> None:
    expected = {}
    for version in ("1", "2"):  # the same tiny classifier, its weights drawn from two seeds
        folder = tmp_path / "presets" / version
        expected[version] = make_preset(kerashub_python, folder, seed=int(version))
        kaggle.add(f"{PRESET}/{version}", tar_of_dir(folder))
    assert expected["1"] != expected["2"]
    url = f"https://www.kaggle.com/models/{PRESET}"
    config_path = write_config(
        tmp_path, nginx, kaggle, [{"handle": f"{url}/1"}, {"handle": f"{url}/2"}]
    )
    config = load_config(str(config_path))
    assert HubSync(config, open_store(config.storage)).run().count("new") == 2

    client = "tests.support.public_names_client"
    cases = [
        {
            "name": name,
            "argv": [client, "kerashub", handle, "-"],
            "env": node_env(tmp_path, name),
            "python": str(kerashub_python),
        }
        for name, handle in (("versioned", f"{PRESET}/1"), ("unversioned", PRESET))
    ]
    results = run_node(tmp_path, config_path, cases, MIRROR_ADDRESS)

    assert_same_outputs(ok(results["versioned"])["outputs"], expected["1"])
    # No version: the mirror's newest, version 2, in kagglehub's own cache layout.
    assert_same_outputs(ok(results["unversioned"])["outputs"], expected["2"])
    cached = tmp_path / "nodes/unversioned/kagglehub/models" / PRESET / "2"
    assert (cached / "model.weights.h5").is_file()
    assert (cached / "assets/tokenizer/vocabulary.txt").is_file()  # a file in a folder
    access = (tmp_path / "proxy" / "access.log").read_text()
    assert "POST /v1/models.ModelApiService/DownloadModelInstanceVersion" in access

    # verify --deep's probe, in an environment that has keras-hub: the preset as the node
    # got it loads by Backbone.from_preset and answers one call on zeros.
    probe = ROOT / "hub_cache" / "formats" / "probes" / "keras_load.py"
    done = subprocess.run(
        [str(kerashub_python), str(probe), str(cached)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = next(ln for ln in done.stdout.splitlines() if ln.startswith("SIGNATURES "))
    assert "token_ids" in json.loads(shown[len("SIGNATURES ") :])["call"]["inputs"]
    assert 'CALLED ["call"]' in done.stdout


def make_preset(python: Path, folder: Path, seed: int) -> dict[str, Any]:
    """A tiny BERT classifier saved by KerasHub's save_to_preset, and its outputs."""
    done = subprocess.run(
        [str(python), "-m", "tests.support.kerashub_preset", str(folder), str(seed)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=300,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("OUTPUTS ")), "")
    assert done.returncode == 0 and line, done.stderr[-3000:]
    return dict(json.loads(line[len("OUTPUTS ") :]))


@pytest.fixture(scope="session")
def kerashub_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv of its own (keras-hub pins kagglesdk and needs tensorflow-text, so it stays
    out of the test extra) that sees TensorFlow and Keras from this Python, with keras-hub
    installed from PyPI by pip with no machine config: one per session."""
    try:
        requests.head(f"{PYPI}keras-hub/", timeout=10).raise_for_status()
    except requests.RequestException as exc:
        pytest.skip(f"PyPI cannot be reached ({type(exc).__name__}): keras-hub comes from there")
    python = make_venv(tmp_path_factory.mktemp("kerashub") / "venv", system_site_packages=True)
    done = pip_install(python, PYPI, KERAS_HUB)
    assert done.returncode == 0, done.stderr[-3000:]
    # kagglehub (from this Python) with the kagglesdk keras-hub pins: pip finds them fit.
    check = subprocess.run(
        [str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout
    return python
