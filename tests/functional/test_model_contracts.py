"""Interface contracts with real models: SavedModels and .tflite files made with TensorFlow
(v1 float32[?,4] -> scores; v2 the same and an `embedding` output, compatible; v3 a uint8
input, breaking), served by a local tfhub.dev and synced by the real `tfmirror` command.
The contract the mirror reads without TensorFlow is what TensorFlow and LiteRT load;
`hub contract --against` exits 1 on a breaking change only; a pinned contract blocks a
breaking version (the one before stays served) or, under report, lets it through and
says so on the model's page, in /api/status and in the journal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from hub_cache.contracts import kept_contract
from hub_cache.formats.saved_model_ops import archive_ops
from hub_cache.hub_sync import Commit, ModelStatus, publish_model
from hub_cache.models import load_model
from mirror.core.config import load_config, parse_config
from mirror.core.journal import Journal
from mirror.core.snapshots import read_promotion
from mirror.core.storage import LocalStore, open_store
from mirror.core.upstream import copy_local
from testkit.servers import free_port
from tests.support.archives import tar_of_dir
from tests.support.cli import tfmirror
from tests.support.hub_upstream import HubUpstream
from tfmirror.app import create_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The models, and what TensorFlow and LiteRT say of each (in a subprocess)."""
    out = tmp_path_factory.mktemp("contract-models")
    subprocess.run(
        [sys.executable, "-m", "tests.support.make_contract_models", str(out)],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=600,
    )
    return out, json.loads((out / "expected.json").read_text())


def write_config(tmp_path: Path, models: str, hub_extra: str = "") -> Path:
    path = tmp_path / "tfmirror.toml"
    path.write_text(
        f'[storage]\npath = "store"\n[web]\nport = {free_port()}\n'
        f"[hub]\ntimeout = 5\nretries = 1\n{hub_extra}models = [{models}]\n"
    )
    return path


def contract_of(config: Path, handle: str) -> dict[str, Any]:
    shown = tfmirror(config, "hub", "contract", handle, "--json")
    assert shown.returncode == 0, shown.stderr
    doc: dict[str, Any] = json.loads(shown.stdout)
    return doc


def test_contracts_read_without_tensorflow_are_what_tensorflow_loads_and_compare_by_version(
    made: tuple[Path, dict[str, Any]], hub_up: HubUpstream, tmp_path: Path
) -> None:
    models, expected = made
    handles = {
        v: hub_up.add(f"google/m/{v[1]}", tar_of_dir(models / v)) for v in ("v1", "v2", "v3")
    }
    config = write_config(tmp_path, ", ".join(f'"{h}"' for h in handles.values()))
    synced = tfmirror(config, "sync", "hub")
    assert synced.returncode == 0, synced.stderr
    lite = {
        "v1.tflite": "https://tfhub.dev/google/lite/1",
        "plain.tflite": "https://tfhub.dev/google/plain/1",
    }
    for name, handle in lite.items():
        imported = tfmirror(config, "hub", "import", str(models / name), "--handle", handle)
        assert imported.returncode == 0, imported.stderr

    # What `tf.saved_model.load(...).signatures` and LiteRT's Interpreter say, exactly.
    for version, handle in handles.items():
        assert contract_of(config, handle)["contract"]["signatures"] == expected[version]
    for name, handle in lite.items():
        assert contract_of(config, handle)["contract"]["signatures"] == expected[name]

    # An output added: listed, compatible, exit 0.
    v2 = tfmirror(config, "hub", "contract", handles["v2"], "--against", "1")
    assert v2.returncode == 0, v2.stderr
    assert "COMPATIBLE serving_default: output 'embedding' (float32[?,3]) added" in v2.stdout
    # The input's dtype changed: breaking, exit 1; the JSON names it too.
    v3 = tfmirror(config, "hub", "contract", handles["v3"], "--against", handles["v1"], "--json")
    assert v3.returncode == 1, v3.stderr
    assert json.loads(v3.stdout)["changes"] == [
        {
            "severity": "breaking",
            "signature": "serving_default",
            "what": "input 'x' dtype float32 -> uint8",
        }
    ]
    missing = tfmirror(config, "hub", "contract", handles["v3"], "--against", "9")
    assert missing.returncode == 2 and "--against: no model 'google/m/9'" in missing.stderr

    # --write makes the file to pin (and its folder): today's contract, which the
    # config then reads.
    pinned = tmp_path / "contracts" / "m.json"
    wrote = tfmirror(config, "hub", "contract", handles["v1"], "--write", str(pinned))
    assert wrote.returncode == 0, wrote.stderr
    assert json.loads(pinned.read_text())["signatures"] == expected["v1"]


class CountingStore(LocalStore):
    """Counts how often a blob is opened: each open of a model archive is a pass over it."""

    opened = 0

    def open_blob(self, sha256: str) -> BinaryIO:
        self.opened += 1
        return super().open_blob(sha256)


def test_a_savedmodel_is_checked_and_its_contract_and_ops_read_in_one_pass(
    made: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    models, expected = made
    (tmp_path / "m.tar.gz").write_bytes(tar_of_dir(models / "v1"))
    store = CountingStore(tmp_path / "store")
    hub = parse_config({}, tmp_path).hub
    fetched = copy_local(store, tmp_path / "m.tar.gz", 0)
    published = publish_model(
        store, "https://tfhub.dev/google/m/1", "google/m/1", fetched, hub, Commit("t", "test")
    )
    assert published.status is ModelStatus.NEW, published.reason
    # Before: the archive was read once to check it and again for saved_model.pb.
    assert store.opened == 1
    kept = kept_contract(store, fetched.sha256)
    assert kept is not None and kept.as_json()["signatures"] == expected["v1"]
    ops = archive_ops(store, fetched.sha256, 2**30)  # kept too: no read
    assert store.opened == 1 and "MatMul" in ops.ops


def test_a_pinned_contract_blocks_a_breaking_version_or_reports_it(
    made: tuple[Path, dict[str, Any]], hub_up: HubUpstream, tmp_path: Path
) -> None:
    models, _ = made
    handle = hub_up.add("google/pinned/1", tar_of_dir(models / "v1"))
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    entry = f'{{handle = "{handle}", contract = "contracts/m.json"}}'

    # Bootstrap the pin from what the mirror serves today.
    config = write_config(tmp_path, f'"{handle}"')
    assert tfmirror(config, "sync", "hub").returncode == 0
    assert (
        tfmirror(config, "hub", "contract", handle, "--write", str(contracts / "m.json")).returncode
        == 0
    )

    config = write_config(tmp_path, entry, 'on_contract_change = "block"\n')
    store = open_store(load_config(config).storage)

    def served() -> str:
        model = load_model(store, "google/pinned/1")
        assert model is not None
        return model.sha256

    # The version served before the pin is checked against it on its page too.
    page = create_app(load_config(config), store).test_client().get("/hub/google/pinned/1")
    assert "<strong>matches</strong>" in page.get_data(as_text=True)

    # v2 adds an output: compatible with the pin, published even under block.
    hub_up.add("google/pinned/1", tar_of_dir(models / "v2"))
    compatible = tfmirror(config, "sync", "hub")
    assert compatible.returncode == 0, compatible.stderr
    v2 = served()
    model = load_model(store, "google/pinned/1")
    assert model is not None and model.contract_check["state"] == "compatible"

    # v3 takes uint8: blocked, the sync fails naming the change, v2 stays served.
    hub_up.add("google/pinned/1", tar_of_dir(models / "v3"))
    blocked = tfmirror(config, "sync", "hub")
    assert blocked.returncode == 1
    assert (
        "breaks the pinned contract: BREAKING serving_default: input 'x' dtype float32 -> uint8"
        in blocked.stderr
    )
    assert "contracts/m.json" in blocked.stderr
    assert served() == v2
    # `history --model` names the refusal, once however often a sync meets that version.
    assert tfmirror(config, "sync", "hub").returncode == 1
    refusals = [
        c
        for e in Journal(store).history(model=handle)
        for c in e["changes"]
        if c["event"] == "model refused"
    ]
    assert [c["kind"] for c in refusals] == ["contract"]
    assert "BREAKING serving_default" in refusals[0]["reason"]
    shown = tfmirror(config, "history", "--model", handle, "--limit", "1").stdout
    assert "model refused" in shown and "dtype float32 -> uint8" in shown

    # The same under report: published, and said on the page, the API and the journal.
    config = write_config(tmp_path, entry)  # report: the default
    reported = tfmirror(config, "sync", "hub")
    assert reported.returncode == 0, reported.stderr
    assert served() != v2
    app = create_app(load_config(config), store)
    client = app.test_client()
    page = client.get("/hub/google/pinned/1").get_data(as_text=True)
    assert "<strong>breaking</strong>" in page
    assert "BREAKING serving_default: input &#39;x&#39; dtype float32 -&gt; uint8" in page
    assert "uint8[?,4]" in page  # the served version's own contract
    status = client.get("/api/status").get_json()
    (row,) = [m for m in status["inventory"]["models"] if m["path"] == "google/pinned/1"]
    assert row["contract"] == "breaking"
    assert (row["version"], row["format"]) == ("1", "SavedModel")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'tfmirror_model_contracts{state="breaking"} 1.0' in metrics
    assert 'tfmirror_model_contracts{state="matches"} 0.0' in metrics
    latest = Journal(store).history(model=handle)[0]
    (change,) = latest["changes"]
    assert change["contract"]["state"] == "breaking"
    assert change["contract"]["changes"] == [
        "BREAKING serving_default: input 'x' dtype float32 -> uint8"
    ]
    history = tfmirror(config, "history", "--model", handle, "--limit", "1")
    assert history.returncode == 0, history.stderr
    assert "contract breaking vs contracts/m.json: BREAKING serving_default" in history.stdout
    # `hub check` fails on it too, naming the change; unpinned models do not count.
    checked = tfmirror(config, "hub", "check")
    assert checked.returncode == 1, checked.stderr
    assert (
        "contract breaking vs contracts/m.json: "
        "BREAKING serving_default: input 'x' dtype float32 -> uint8" in checked.stdout
    )
    as_json = tfmirror(config, "hub", "check", "--json")
    assert as_json.returncode == 1, as_json.stderr
    (pair,) = json.loads(as_json.stdout)
    assert pair["model"] == handle and pair["contract"]["state"] == "breaking"
    assert pair["contract"]["changes"][0]["what"] == "input 'x' dtype float32 -> uint8"
    # Pinning the contract it serves now accepts the change: `hub check` passes again.
    accepted = tfmirror(config, "hub", "contract", handle, "--write", str(contracts / "m.json"))
    assert accepted.returncode == 0, accepted.stderr
    rechecked = tfmirror(config, "hub", "check")
    assert rechecked.returncode == 0, rechecked.stdout
    assert "contract matches vs contracts/m.json" in rechecked.stdout
    unpinned = write_config(tmp_path, f'"{handle}"')
    shown = tfmirror(unpinned, "hub", "check", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [p["contract"] for p in json.loads(shown.stdout)] == [None]


def test_a_promote_that_moves_the_fleet_to_a_breaking_contract_says_so_and_waits(
    made: tuple[Path, dict[str, Any]], hub_up: HubUpstream, tmp_path: Path
) -> None:
    models, _ = made
    handle = hub_up.add("google/fleet/1", tar_of_dir(models / "v1"))
    config = write_config(tmp_path, f'"{handle}"')
    assert tfmirror(config, "sync", "hub").returncode == 0
    assert tfmirror(config, "snapshot", "create", "float").returncode == 0
    assert tfmirror(config, "snapshot", "promote", "float").returncode == 0
    # The same handle now serves a version that takes uint8.
    hub_up.add("google/fleet/1", tar_of_dir(models / "v3"))
    assert tfmirror(config, "sync", "hub").returncode == 0
    assert tfmirror(config, "snapshot", "create", "uint8").returncode == 0
    change = "BREAKING serving_default: input 'x' dtype float32 -> uint8"

    shown = tfmirror(config, "snapshot", "show", "float", "--against", "uint8")
    assert shown.returncode == 0, shown.stderr
    contracts = shown.stdout.split("model contracts, float -> snapshot uint8:\n", 1)[1]
    assert contracts.startswith(f"  model {handle} ")
    assert f"    {change}\n" in contracts
    live = tfmirror(config, "snapshot", "show", "float", "--against", "live", "--json")
    assert live.returncode == 0, live.stderr
    (move,) = json.loads(live.stdout)["contracts"]
    assert move["handle"] == handle and move["unread"] == ""
    assert [c["severity"] for c in move["changes"]] == ["breaking"]

    store = open_store(load_config(config).storage)
    refused = tfmirror(config, "snapshot", "promote", "uint8")
    assert refused.returncode == 1
    assert change in refused.stdout
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .endswith("pass --accept-contract-change to promote uint8 anyway")
    )
    assert read_promotion(store).snapshot == "float"
    # Back to the live mirror is the same move, refused the same way.
    assert tfmirror(config, "snapshot", "promote", "--live").returncode == 1
    assert read_promotion(store).snapshot == "float"

    accepted = tfmirror(
        config, "snapshot", "promote", "uint8", "--accept-contract-change", "--note", "new input"
    )
    assert accepted.returncode == 0, accepted.stderr
    assert read_promotion(store).snapshot == "uint8"
    (entry,) = Journal(store).history(limit=1)
    assert entry["changes"][0]["accepted_contract_changes"] == [f"model {handle}: {change}"]
    history = tfmirror(config, "history", "--limit", "1")
    assert f"accepted contract changes: model {handle}: {change}" in history.stdout
    # uint8 and the live mirror hold the same version: nothing breaks, no flag needed.
    assert tfmirror(config, "snapshot", "promote", "--live").returncode == 0
