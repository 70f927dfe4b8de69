"""TF.js models end to end: synced from a tfhub.dev `tfjs-model` handle with
`?tfjs-format=compressed`, the archive and then the folder checked as tfjs reads it,
each file kept as a blob, and loaded by the real `@tensorflow/tfjs` (Node.js) with
`loadGraphModel(mirror, {fromTFHub: true})`; CORS for a page of another origin; a shard
one byte short is refused and the version served before stays; gc keeps every file;
`hub prefetch --to DIR` writes the folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from hub_cache.models import load_model
from mirror.core.config import load_config, parse_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.proxy.nginx import NginxProcess, entry_point, plan_for
from testkit.hub_files import StaticSite
from testkit.servers import free_port
from tests.support.archives import tar_of_dir
from tests.support.cli import tfmirror
from tests.support.debian import require_debian_tool
from tests.support.hub_upstream import HubUpstream
from tests.support.runner import runner_over
from tests.support.tfjs_node import FIXTURES, tfjs_node_modules
from tfmirror.app import create_app
from verify.jobs import run_gc

PATH = "google/tfjs-model/tfmirror-tiny/1"
QUERY = "tfjs-format=compressed"
APP = "http://127.0.0.1:9"  # the page's origin: allowed by the config
LOAD = """
const tf = require("@tensorflow/tfjs");
(async () => {
  await tf.setBackend("cpu");
  const model = await tf.loadGraphModel(process.argv[2], {fromTFHub: true});
  const out = model.predict(tf.tensor2d(JSON.parse(process.argv[3])));
  console.log("OUTPUT " + JSON.stringify(await out.array()));
})().catch((e) => { console.log("ERROR " + (e.message || e)); process.exit(1); });
"""


def tfjs_predict(modules: Path, tmp_path: Path, url: str, inputs: object) -> list[float]:
    script = tmp_path / "load.js"
    script.write_text(LOAD)
    proc = subprocess.run(
        ["node", str(script), url, json.dumps(inputs)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("OUTPUT ")), None)
    assert line is not None, proc.stdout + proc.stderr
    return [value for row in json.loads(line.removeprefix("OUTPUT ")) for value in row]


def test_a_tfjs_model_syncs_and_tfjs_loads_it_file_by_file_from_the_mirror(
    request: pytest.FixtureRequest, hub_up: HubUpstream, tmp_path: Path
) -> None:
    modules = tfjs_node_modules(request.config)
    expected = json.loads((FIXTURES / "expected.json").read_text())
    want = [value for row in expected["graph"] for value in row]
    graph = FIXTURES / "graph"
    handle = hub_up.add(PATH, tar_of_dir(graph), query=QUERY)
    port = free_port()
    config_path = tmp_path / "tfmirror.toml"
    config_path.write_text(
        f'[storage]\npath = "store"\n[web]\nport = {port}\ncors_origins = ["{APP}"]\n'
        f'[hub]\nmodels = ["{handle}"]\n'
    )
    synced = tfmirror(config_path, "sync", "hub")
    assert synced.returncode == 0, synced.stderr
    config = parse_config(
        {"storage": {"path": "store"}, "web": {"port": port, "cors_origins": [APP]}}, tmp_path
    )
    store = open_store(config.storage)
    manifest = load_model(store, PATH)
    assert manifest is not None and manifest.archive["format"] == "tfjs"
    assert manifest.archive["tfjs"]["kind"] == "graph-model"
    assert sorted(manifest.served_files()) == sorted(p.name for p in graph.iterdir())

    front = f"http://127.0.0.1:{port}/hub/{PATH}"
    with WebServer(create_app(config, store), "127.0.0.1", port):
        got = requests.get(f"{front}/model.json?tfjs-format=file", timeout=10)
        assert got.status_code == 200 and got.content == (graph / "model.json").read_bytes()
        shard = "group1-shard1of2.bin"
        got = requests.get(f"{front}/{shard}?tfjs-format=file", headers={"Origin": APP}, timeout=10)
        assert got.content == (graph / shard).read_bytes()
        assert got.headers["Access-Control-Allow-Origin"] == APP
        other = requests.get(
            f"{front}/{shard}?tfjs-format=file", headers={"Origin": "http://evil"}, timeout=10
        )
        assert "Access-Control-Allow-Origin" not in other.headers
        stray = requests.get(f"{front}/secrets.bin?tfjs-format=file", timeout=10)
        assert stray.status_code == 404
        wrong = requests.get(f"{front}?tf-hub-format=compressed", timeout=10)
        assert wrong.status_code == 404 and "?tfjs-format=compressed" in wrong.json()["message"]

        # The real tfjs, as a browser app loads a TF Hub model, from the mirror.
        out = tfjs_predict(modules, tmp_path, front, expected["input"])
        assert out == pytest.approx(want, abs=1e-5)

        # A new version with a shard one byte short: refused, named; the old one stays.
        short = tmp_path / "short"
        shutil.copytree(graph, short)
        (short / "group1-shard2of2.bin").write_bytes(
            (graph / "group1-shard2of2.bin").read_bytes()[:-1]
        )
        hub_up.add(PATH, tar_of_dir(short), query=QUERY)
        refused = tfmirror(config_path, "sync", "hub")
        assert refused.returncode != 0 and "one byte short" in refused.stdout + refused.stderr
        # Every file of the model is kept by gc.
        run_gc(config, store, "manual", runner_over(store, config).keeping_out, grace_hours=0)
        out = tfjs_predict(modules, tmp_path, front, expected["input"])
        assert out == pytest.approx(want, abs=1e-5)

        # A web server of the fleet's own takes the folder plainly.
        done = tfmirror(config_path, "hub", "prefetch", handle, "--to", str(tmp_path / "www"))
        assert done.returncode == 0, done.stderr
        folder = tmp_path / "www" / PATH.replace("/", "_")
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in graph.iterdir())


def test_through_nginx_each_file_is_kept_per_origin_and_a_quarantine_reaches_it(
    nginx: str, tmp_path: Path
) -> None:
    graph = FIXTURES / "graph"
    port, proxy_port = free_port(), free_port()
    config_path = tmp_path / "tfmirror.toml"
    config_path.write_text(
        f'[storage]\npath = "store"\n[web]\nport = {port}\ncors_origins = ["{APP}"]\n'
        f'[proxy]\nport = {proxy_port}\nnginx = "{nginx}"\nworkdir = "proxy"\n'
        "page_cache_seconds = 1\n"
    )
    handle = "https://tfhub.dev/google/tfjs-model/tfmirror-tiny/1"
    imported = tfmirror(config_path, "hub", "import", str(graph), "--handle", handle)
    assert imported.returncode == 0, imported.stderr
    config = load_config(str(config_path))
    store = open_store(config.storage)
    with (
        WebServer(create_app(config, store), "127.0.0.1", port),
        NginxProcess(nginx, plan_for(config)),
    ):
        base = f"{entry_point(config, proxied=True).base_url}/hub/{PATH}"
        # A node with no Origin asks first: what it got must not become every origin's.
        plain = requests.get(f"{base}/model.json?tfjs-format=file", timeout=10)
        assert plain.status_code == 200 and "Access-Control-Allow-Origin" not in plain.headers
        for name in sorted(p.name for p in graph.iterdir()):
            url = f"{base}/{name}?tfjs-format=file"
            first, again = (requests.get(url, headers={"Origin": APP}, timeout=10) for _ in "12")
            for got in (first, again):
                assert got.status_code == 200 and got.content == (graph / name).read_bytes()
                assert got.headers["Access-Control-Allow-Origin"] == APP
                assert "Origin" in got.headers.get("Vary", "")
            # The second came from nginx's file cache, not from a front.
            assert again.headers["X-Cache-Status"] == "HIT"
        # Nor does it (or a page of another origin) get the allowed origin's answer.
        url = f"{base}/model.json?tfjs-format=file"
        for origin in ({}, {"Origin": "http://elsewhere.test"}):
            assert "Access-Control-Allow-Origin" not in requests.get(url, headers=origin).headers
        # Ranges and revalidation are answered from the cache as from a file.
        shard = next(p for p in graph.iterdir() if p.suffix == ".bin")
        shard_url = f"{base}/{shard.name}?tfjs-format=file"
        part = requests.get(shard_url, headers={"Range": "bytes=2-5"}, timeout=10)
        assert part.status_code == 206 and part.content == shard.read_bytes()[2:6]
        etag = part.headers["ETag"]
        assert requests.get(shard_url, headers={"If-None-Match": etag}).status_code == 304
        # A takedown reaches the cached files within page_cache_seconds.
        added = tfmirror(config_path, "quarantine", "add", "--model", handle, "--reason", "x")
        assert added.returncode == 0, added.stderr
        deadline = time.monotonic() + 10
        while requests.get(shard_url, timeout=10).status_code != 410:
            assert time.monotonic() < deadline, "the cached shard outlived the quarantine"
            time.sleep(0.2)


PAGE = """<html><body><script src="tf.min.js"></script><script>
tf.setBackend("cpu").then(() => tf.loadGraphModel("MODEL", {fromTFHub: true}))
  .then((model) => model.predict(tf.tensor2d(INPUT)).array())
  .then((out) => document.body.setAttribute("data-output", JSON.stringify(out)))
  .catch((e) => document.body.setAttribute("data-error", String(e.message || e)));
</script></body></html>
"""


def test_a_page_of_another_origin_loads_the_model_in_chromium_only_where_cors_allows(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    chromium = require_debian_tool("chromium", "chromium")
    modules = tfjs_node_modules(request.config)
    expected = json.loads((FIXTURES / "expected.json").read_text())
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(modules / "@tensorflow" / "tfjs" / "dist" / "tf.min.js", site / "tf.min.js")
    with StaticSite(site) as page_server:
        port = free_port()
        config_path = tmp_path / "tfmirror.toml"
        config_path.write_text(
            f'[storage]\npath = "store"\n[web]\nport = {port}\n'
            f'cors_origins = ["{page_server.url}"]\n'
        )
        handle = "https://tfhub.dev/google/tfjs-model/tfmirror-tiny/1"
        done = tfmirror(config_path, "hub", "import", str(FIXTURES / "graph"), "--handle", handle)
        assert done.returncode == 0, done.stderr
        config = load_config(str(config_path))
        store = open_store(config.storage)
        model = f"http://127.0.0.1:{port}/hub/{PATH}"
        (site / "index.html").write_text(
            PAGE.replace("MODEL", model).replace("INPUT", json.dumps(expected["input"]))
        )

        browse = [chromium, "--headless", "--no-sandbox", "--disable-gpu"]
        browse += ["--virtual-time-budget=20000", "--dump-dom", f"{page_server.url}/index.html"]

        def page() -> str:
            shown = subprocess.run(
                browse,
                capture_output=True,
                text=True,
                timeout=120,
            )
            return shown.stdout

        with WebServer(create_app(config, store), "127.0.0.1", port):
            allowed = page()
        assert 'data-output="' in allowed, allowed[-2000:]
        out = json.loads(allowed.split('data-output="')[1].split('"')[0].replace("&quot;", '"'))
        want = [value for row in expected["graph"] for value in row]
        assert [value for row in out for value in row] == pytest.approx(want, abs=1e-5)

        # The same page, the mirror no longer allowing its origin: the browser refuses.
        config = replace(config, web=replace(config.web, cors_origins=()))
        with WebServer(create_app(config, store), "127.0.0.1", port):
            refused = page()
        assert 'data-error="Failed to fetch"' in refused and 'data-output="' not in refused
