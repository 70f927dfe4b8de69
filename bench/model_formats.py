"""Bench: models in the forms they are published in (TFLite, TF.js, Keras): the sync and
its checks, the TF.js shards through the entry point, and the checks' peak memory.

In one run:
  1. sync + validation of a 100 MB `.tflite` (`?lite-format=tflite`) and of a 100 MB
     TF.js model of 25 shards (`?tfjs-format=compressed`, a tar.gz), each by the real
     HubSync into an empty LocalStore, from a local tfhub.dev (a 302, then the bytes);
     peer: `curl -sL -o FILE URL && sha256sum FILE` of the same bytes from the same
     server. Best of --rounds each, alternating which goes first. Target <= 1.2x.
  2. --clients clients at once each fetching the TF.js model as tfjs does (model.json,
     then its shards, six at a time as a browser does) through the entry point (nginx in
     front of the web front; X-Accel: nginx sends the blob files), against a bare nginx
     serving the same files from a plain folder: aggregate MB/s, best of --rounds.
     Target >= 0.9x. Beside it, requests/s of model.json alone (wrk), each side: what a
     file costs apart from its bytes.
  3. peak RSS (VmHWM, each in a fresh child) of the TFLite reader, the TF.js folder
     check, the TF.js sync's check (archive, extraction, folder, each file kept as a
     blob) and the `.keras` zip check, at 10 MB and 100 MB, beside a child that only
     imports them. Target <= 64 MB, flat.
kagglehub through the mirror's answers to Kaggle's names is bench.kagglehub_answers
(it needs root: a namespace of its own).
Needs curl, nginx and wrk (apt-get install curl nginx-light wrk; without nginx or wrk
their parts say they are skipped) and TensorFlow, in a child, to make the `.tflite`
files once (cached in the temp dir; without it the TFLite parts are skipped); stays on
127.0.0.1 and stops by itself.

    python -m bench.model_formats [--clients 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from contextlib import ExitStack
from pathlib import Path

from bench.common import wrk
from bench.fleet import start_bare_nginx
from hub_cache.hub_sync import HubSync, ModelStatus
from mirror.core.config import Config, parse_config
from mirror.core.storage import LocalStore
from mirror.core.web_server import WebServer
from mirror.proxy.nginx import NginxProcess, entry_point, nginx_binary, plan_for
from testkit.hub_files import HubFiles
from testkit.servers import free_port
from tfmirror.app import create_app

SHARDS = 25
BROWSER_CONNECTIONS = 6  # a browser's HTTP/1.1 connections per host
TFLITE_PATH = "bench/lite-model/big/1"
TFJS_PATH = "bench/tfjs-model/big/1"
CACHE = Path(tempfile.gettempdir()) / "tfmirror-bench-model-formats"
SYNC_TARGET, SERVE_TARGET, RSS_TARGET_MB = 1.2, 0.9, 64
# A `side` x `side` float32 constant behind a MATMUL: side 1581 is 10 MB, 5000 is 100 MB.
MAKE_TFLITE = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
for out, side in zip(sys.argv[1::2], map(int, sys.argv[2::2])):
    weights = tf.random.stateless_uniform([side, side], seed=[1, 2])
    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, side], tf.float32)])
        def __call__(self, x):
            return tf.matmul(x, weights)
    module = Module()
    concrete = module.__call__.get_concrete_function()
    data = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module).convert()
    with open(out + ".part", "wb") as f:
        f.write(data)
    os.replace(out + ".part", out)
"""
TFLITE_SIDES = {10: 1581, 100: 5000}


def tflite_files() -> dict[int, Path]:
    """A converter-made `.tflite` of 10 MB and of 100 MB, made once (TensorFlow in a
    child, ~20 s) and kept in the temp dir for the next run."""
    CACHE.mkdir(exist_ok=True)
    files = {mb: CACHE / f"matmul-{mb}mb.tflite" for mb in TFLITE_SIDES}
    missing = [
        str(arg) for mb, f in files.items() if not f.exists() for arg in (f, TFLITE_SIDES[mb])
    ]
    if missing:
        print("making the .tflite files with TensorFlow's converter (once; cached)")
        made = subprocess.run([sys.executable, "-c", MAKE_TFLITE, *missing], check=False)
        if made.returncode != 0:
            print("TFLite skipped: TensorFlow's converter could not make the files (above)")
            return {}
    return files


def make_tfjs(folder: Path, size_mb: int) -> Path:
    """A graph-model folder as the tfjs converter writes it: model.json and SHARDS shards
    of one weight group, the weights' bytes random (a check reads sizes, not values)."""
    folder.mkdir(parents=True)
    shard_bytes = size_mb * 10**6 // SHARDS // 4 * 4
    paths = [f"group1-shard{i}of{SHARDS}.bin" for i in range(1, SHARDS + 1)]
    for path in paths:
        (folder / path).write_bytes(os.urandom(shard_bytes))
    weights = [{"name": "dense/kernel", "shape": [SHARDS, shard_bytes // 4], "dtype": "float32"}]
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        {"name": "dense/kernel", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        {"name": "Identity", "op": "MatMul", "input": ["x", "dense/kernel"]},
    ]
    model = {
        "format": "graph-model",
        "generatedBy": "2.21.0",
        "convertedBy": "TensorFlow.js Converter v4.22.0",
        "modelTopology": {"node": nodes, "library": {}, "versions": {"producer": 1994}},
        "weightsManifest": [{"paths": paths, "weights": weights}],
    }
    (folder / "model.json").write_text(json.dumps(model))
    return folder


def tar_gz(folder: Path, archive: Path) -> Path:
    """The folder as tfhub.dev's `?tfjs-format=compressed` archive (files at the root)."""
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


def make_keras(path: Path, size_mb: int) -> Path:
    """A `.keras`-shaped zip: a Dense model's config, metadata, and `size_mb` of weights
    (random, stored: the check inflates and CRCs every member whatever its contents)."""
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "Dense",
                    "config": {"name": "dense", "units": 2, "activation": "relu"},
                    "registered_name": None,
                }
            ],
        },
        "registered_name": None,
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.12.0"}))
        zf.writestr("config.json", json.dumps(config))
        with zf.open("model.weights.h5", "w", force_zip64=True) as weights:
            for _ in range(size_mb):
                weights.write(os.urandom(10**6))
    return path


def timed(cmd: list[str]) -> float:
    """A command's wall time, its process's start included."""
    began = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - began


def sync_timed(config: Config, store_dir: Path, name: str) -> float:
    """The config's one model synced by HubSync into an empty store: its seconds."""
    shutil.rmtree(store_dir, ignore_errors=True)
    store_dir.mkdir()
    sync = HubSync(config, LocalStore(store_dir))
    began = time.monotonic()
    outcome = sync.sync_model(config.hub.models[0])
    took = time.monotonic() - began
    if outcome.status is not ModelStatus.NEW:
        raise SystemExit(f"{name}: the sync failed: {outcome.reason}")
    return took


def measure_sync(work: Path, name: str, handle: str, query: str, rounds: int) -> tuple[str, float]:
    """Best of `rounds` of the sync against curl + sha256sum of the same URL (and curl
    alone, to show what the download itself takes), in turns that alternate which goes
    first: the line to print and the ratio to the peer."""
    store_dir = work / "store"
    config = parse_config({"storage": {"path": str(store_dir)}, "hub": {"models": [handle]}}, work)
    copy, url = work / "curl-copy", f"{handle}?{query}"
    peers = {
        "peer": ["sh", "-c", 'curl -sfL -o "$1" "$2" && sha256sum "$1" >/dev/null', "-"],
        "curl": ["sh", "-c", 'curl -sfL -o "$1" "$2"', "-"],
    }
    times: dict[str, list[float]] = {"ours": [], "peer": [], "curl": []}
    for r in range(rounds):
        for side in list(times) if r % 2 == 0 else list(times)[::-1]:
            if side == "ours":
                times[side].append(sync_timed(config, store_dir, name))
            else:
                times[side].append(timed([*peers[side], str(copy), url]))
    best, peer, curl = (min(times[side]) for side in ("ours", "peer", "curl"))
    size = copy.stat().st_size
    line = (
        f"  {name:<6} {size / 1e6:4.0f} MB: sync + check {best:5.2f} s, "
        f"curl + sha256sum {peer:5.2f} s (curl alone {curl:4.2f} s): "
        f"{best / peer:.2f}x (target <= {SYNC_TARGET}x)"
    )
    return line, best / peer


def tfjs_client(base: str, query: str, shards: list[str]) -> tuple[int, int]:
    """One client as tfjs loads a model: model.json, then every shard, BROWSER_CONNECTIONS
    at a time. Returns (bytes received, failed requests)."""
    out = "%{http_code} %{size_download}\\n"
    first = ["curl", "-s", "-o", "/dev/null", "-w", out, f"{base}/model.json{query}"]
    rest = ["curl", "-s", "--parallel", "--parallel-max", str(BROWSER_CONNECTIONS), "-w", out]
    for shard in shards:
        rest += ["-o", "/dev/null", f"{base}/{shard}{query}"]
    rows: list[list[str]] = []
    for cmd in (first, rest):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        rows += [line.split() for line in done.stdout.splitlines() if line.strip()]
    failed = sum(code != "200" for code, _ in rows) + 1 + len(shards) - len(rows)
    return sum(int(size) for _, size in rows), failed


def fleet_load(base: str, query: str, shards: list[str], clients: int) -> tuple[float, int]:
    """`clients` tfjs clients at once: aggregate MB/s to the last byte, failed requests."""
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def one() -> None:
        got = tfjs_client(base, query, shards)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    return sum(r[0] for r in results) / wall / 1e6, sum(r[1] for r in results)


def answers_per_second(sides: dict[str, tuple[str, str]], clients: int) -> None:
    """What each file's request costs apart from its bytes: model.json (1 KB) asked by
    wrk's keep-alive connections for 3 s, each side (skipped without wrk)."""
    if shutil.which("wrk") is None:
        print("  model.json requests/s: skipped, needs wrk (apt-get install wrk)")
        return
    for name, (base, query) in sides.items():
        _, p99, done, errors = wrk(f"{base}/model.json{query}", clients, 3)
        rate = f"{done / 3:8.0f} requests/s  p99 {p99:5.1f} ms  errors {errors}"
        print(f"  model.json, {name:<12} {rate}")


def serve_tfjs(
    work: Path, store_dir: Path, folder: Path, clients: int, rounds: int
) -> float | None:
    """Part 2: the synced TF.js model through the entry point and from a bare nginx;
    prints both and returns the ratio of the best rates (None: no nginx, skipped)."""
    nginx = nginx_binary("nginx")
    if nginx is None:
        print("  skipped: needs nginx (apt-get install nginx-light)")
        return None
    port = free_port()
    config = parse_config(
        {
            "storage": {"path": str(store_dir)},
            "web": {"port": port},
            "proxy": {"port": free_port(), "nginx": nginx, "workdir": str(work / "proxy")},
        },
        work,
    )
    shards = sorted(p.name for p in folder.iterdir() if p.name != "model.json")
    with ExitStack() as stack:
        stack.enter_context(WebServer(create_app(config), config.web.host, port))
        stack.enter_context(NginxProcess(nginx, plan_for(config)))
        bare = start_bare_nginx(stack, nginx, work / "bare", folder, folder / "model.json", folder)
        sides = {
            "entry point": (
                f"{entry_point(config, proxied=True).base_url}/hub/{TFJS_PATH}",
                "?tfjs-format=file",
            ),
            "bare nginx": (bare, ""),
        }
        best = {name: 0.0 for name in sides}
        for name, (base, query) in sides.items():  # warm-up: every file in the page cache
            _, failed = fleet_load(base, query, shards, 1)
            if failed:
                raise SystemExit(f"{name}: {failed} requests failed")
        for r in range(rounds):
            for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                rate, failed = fleet_load(*sides[name], shards, clients)
                print(f"    round {r + 1} {name:<12} {rate:7.0f} MB/s  failed {failed}")
                best[name] = max(best[name], rate)
        answers_per_second(sides, clients)
    ratio = best["entry point"] / best["bare nginx"]
    print(
        f"  {clients} tfjs clients, {len(shards)} shards each: entry point "
        f"{best['entry point']:.0f} MB/s, bare nginx {best['bare nginx']:.0f} MB/s: "
        f"{ratio:.2f}x (target >= {SERVE_TARGET}x)"
    )
    return ratio


# Run in a fresh child per figure: VmHWM is that process's own peak (getrusage's
# ru_maxrss would carry the parent's peak across fork and exec).
PEAK_CHILD = """
import os, re, sys
from pathlib import Path
from hub_cache.formats.keras_model import inspect_keras_file
from hub_cache.formats.tfjs import read_folder
from hub_cache.formats.tflite_reader import read_tflite
from hub_cache.hub_sync import inspect_model
from hub_cache.limits import caps
from mirror.core.upstream import copy_local
from mirror.core.config import parse_config
from mirror.core.storage import LocalStore
check, path = sys.argv[1], Path(sys.argv[2])
limits = caps(parse_config({}, path.parent).hub)
if check == "tflite":
    with path.open("rb") as f:
        read_tflite(f, path.stat().st_size)
elif check == "tfjs-folder":
    read_folder(path)
elif check == "tfjs-sync":
    store = LocalStore(Path(sys.argv[3]))
    inspect_model(store, copy_local(store, path, 0), "tfjs", limits)
elif check == "keras":
    with path.open("rb") as f:
        inspect_keras_file(f, path.stat().st_size, limits)
print(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1])
"""


def peak_mb(check: str, path: Path, *more: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_CHILD, check, str(path), *more],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{check} on {path.name} failed: {done.stderr.strip()[-500:]}")
    return int(done.stdout) / 1024


def peaks(work: Path, inputs: dict[str, dict[int, Path]]) -> float:
    """Part 3: each check's peak RSS at 10 MB and 100 MB; returns the highest."""
    floor = peak_mb("imports", work)
    print(f"  a child importing the checks and doing nothing: {floor:.0f} MB")
    highest = floor
    for check, by_size in inputs.items():
        figures = []
        for mb, path in sorted(by_size.items()):
            extra = [str(work / f"rss-store-{check}-{mb}")] if check == "tfjs-sync" else []
            peak = peak_mb(check, path, *extra)
            highest = max(highest, peak)
            figures.append(f"{peak:4.0f} MB at {mb} MB")
        print(f"  {check:<12} " + ", ".join(figures) + f" (target <= {RSS_TARGET_MB} MB, flat)")
    return highest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--part", choices=("sync", "serve", "peaks"), action="append", help="only these (all)"
    )
    args = parser.parse_args()
    parts = set(args.part or ("sync", "serve", "peaks"))
    # waitress logs each moment its threads are all busy: expected under this load.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if shutil.which("curl") is None:
        sys.exit("needs curl: apt-get install curl")
    tflite = tflite_files()
    with tempfile.TemporaryDirectory(prefix="tfmirror-model-formats-") as tmp, HubFiles() as hub:
        work = Path(tmp)
        folders = {mb: make_tfjs(work / f"tfjs-{mb}mb", mb) for mb in (10, 100)}
        archives = {mb: tar_gz(f, work / f"tfjs-{mb}mb.tar.gz") for mb, f in folders.items()}
        keras = {mb: make_keras(work / f"model-{mb}mb.keras", mb) for mb in (10, 100)}

        ratios: dict[str, float] = {}
        highest = 0.0
        print(f"1. sync + check from a local tfhub.dev, best of {args.rounds}")
        if "sync" in parts and tflite:
            query = "lite-format=tflite"
            handle = hub.add(TFLITE_PATH, tflite[100], query)
            line, ratios["sync TFLite"] = measure_sync(work, "TFLite", handle, query, args.rounds)
            print(line)
        query = "tfjs-format=compressed"
        handle = hub.add(TFJS_PATH, archives[100], query)
        if parts & {"sync", "serve"}:  # the serving part serves what this sync stored
            line, ratios["sync TF.js"] = measure_sync(work, "TF.js", handle, query, args.rounds)
            print(line)
        if "serve" in parts:
            print(f"\n2. the TF.js model's files to {args.clients} tfjs clients at once")
            served = serve_tfjs(work, work / "store", folders[100], args.clients, args.rounds)
            if served is not None:
                ratios["TF.js shards"] = served
        if "peaks" in parts:
            print("\n3. peak RSS of each check, in a fresh child")
            highest = peaks(
                work,
                {
                    **({"tflite": tflite} if tflite else {}),
                    "tfjs-folder": folders,
                    "tfjs-sync": archives,
                    "keras": keras,
                },
            )
    sync, serve = f"<= {SYNC_TARGET}", f">= {SERVE_TARGET}"
    targets = {"sync TFLite": sync, "sync TF.js": sync, "TF.js shards": serve}
    shown = [f"{name} {ratio:.2f}x ({targets[name]}x)" for name, ratio in ratios.items()]
    if "peaks" in parts:
        shown.append(f"peak RSS {highest:.0f} MB (<= {RSS_TARGET_MB} MB)")
    print("\nsummary: " + "; ".join(shown))


if __name__ == "__main__":
    main()
