"""kagglehub through the mirror's answers against kagglehub reading a prefetched cache:
the first call of a fresh process on a node, each way.

A TF.js model (model.json and 25 shards, --mb in all) is imported under a Kaggle handle.
Inside a network and mount namespace made for the run (loopback only; its /etc/hosts
sends tfhub.dev and Kaggle's names to the mirror's nginx, which answers them over TLS
with a certificate from a CA made for the run, as `[proxy] answer_for` does at a site),
fresh processes on fresh caches call `kagglehub.model_download`:
  - through the answers, unversioned (GetModelInstance first) and versioned;
  - the peer: versioned, from a KAGGLEHUB_CACHE that `tfmirror hub prefetch
    --kagglehub-cache` filled beforehand (kagglehub finds it and asks nothing).
Printed: each call's seconds (the import of kagglehub apart), the best of each way and
the ratio of the download calls. Needs root (the namespace), nginx and unshare.

    python -m bench.kagglehub_answers [--rounds 5] [--mb 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.model_formats import make_tfjs
from mirror.core.config import load_config
from mirror.core.public_names import PUBLIC_NAMES
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.proxy.nginx import nginx_binary
from testkit.public_names_node import run_node
from testkit.servers import free_port
from testkit.site_ca import make_ca
from tfmirror.app import create_app

ADDRESS = "127.0.0.7"  # the namespace's loopback: the public names lead here
KAGGLE = "bench/tiny/tfJs/default"
HANDLE = f"https://www.kaggle.com/models/{KAGGLE}/1"


def write_config(work: Path, nginx: str) -> Path:
    ca = make_ca(work / "ca", list(PUBLIC_NAMES))
    text = f"""[storage]
path = "{work / "store"}"
[web]
host = "{ADDRESS}"
port = 8080
[proxy]
nginx = "{nginx}"
host = "{ADDRESS}"
port = 8000
workdir = "{work / "proxy"}"
answer_for = {json.dumps(list(PUBLIC_NAMES))}
tls_certificate = "{ca.certificate}"
tls_key = "{ca.key}"
"""
    path = work / "tfmirror.toml"
    path.write_text(text)
    return path


def tfmirror(config: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "tfmirror.cli", "--config", str(config), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"tfmirror {' '.join(args)}: {done.stderr[-2000:]}")


def prefetched(config_path: Path, cache: Path) -> None:
    """The peer's cache, filled from a front outside the namespace."""
    config = load_config(str(config_path))
    port = free_port()
    with WebServer(create_app(config, open_store(config.storage)), "127.0.0.1", port):
        mirror = f"http://127.0.0.1:{port}"
        where = ["--kagglehub-cache", str(cache), "--mirror", mirror]
        tfmirror(config_path, "hub", "prefetch", f"{KAGGLE}/1", *where)


def node_env(work: Path, name: str, cache: Path | None = None) -> dict[str, str]:
    home = work / "nodes" / name
    (home / "home").mkdir(parents=True)
    kagglehub_cache = home / "kagglehub"
    if cache is not None:
        shutil.copytree(cache, kagglehub_cache)
    else:
        kagglehub_cache.mkdir()
    ca = str(work / "ca" / "ca.pem")
    return {
        "REQUESTS_CA_BUNDLE": ca,
        "SSL_CERT_FILE": ca,
        "HOME": str(home / "home"),
        "KAGGLEHUB_CACHE": str(kagglehub_cache),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    nginx = nginx_binary("nginx")
    if os.geteuid() != 0 or nginx is None or shutil.which("unshare") is None:
        sys.exit("skipped: needs root (a namespace of its own), nginx and unshare")
    with tempfile.TemporaryDirectory(prefix="tfmirror-kagglehub-") as tmp:
        work = Path(tmp)
        config = write_config(work, nginx)
        model = make_tfjs(work / "model", args.mb)
        tfmirror(config, "hub", "import", str(model), "--handle", HANDLE)
        cache = work / "prefetched"
        prefetched(config, cache)
        client = ["bench.kagglehub_client"]
        ways = {
            "answers, unversioned": (KAGGLE, False),
            "answers, versioned": (f"{KAGGLE}/1", False),
            "prefetched cache": (f"{KAGGLE}/1", True),
        }
        cases: list[dict[str, Any]] = []
        for r in range(args.rounds):
            for way, (handle, from_cache) in ways.items():
                name = f"{way} #{r + 1}"
                env = node_env(work, f"{r}-{len(cases)}", cache if from_cache else None)
                cases.append({"name": name, "argv": [*client, handle], "env": env})
        results = run_node(work, config, cases, ADDRESS)
        best: dict[str, float] = {}
        whole: dict[str, float] = {}
        print(f"kagglehub.model_download of a {args.mb} MB TF.js model, fresh process each:")
        for case in cases:
            got = results[case["name"]]
            if got.get("returncode") != 0 or "download" not in got:
                raise SystemExit(f"{case['name']} failed: {got.get('stderr', '')[-2000:]}")
            way = case["name"].rsplit(" #", 1)[0]
            best[way] = min(best.get(way, float("inf")), got["download"])
            whole[way] = min(whole.get(way, float("inf")), got["import"] + got["download"])
            print(
                f"  {case['name']:<26} import {got['import']:5.2f} s  "
                f"download {got['download']:6.2f} s  {got['bytes'] / 1e6:6.1f} MB"
            )
    peer, peer_whole = best["prefetched cache"], whole["prefetched cache"]
    print("best of each: model_download alone, and with `import kagglehub` (the whole call)")
    for way, seconds in best.items():
        print(
            f"  {way:<22} {seconds:6.2f} s ({seconds / peer:4.1f}x)   "
            f"whole {whole[way]:5.2f} s ({whole[way] / peer_whole:4.2f}x the prefetched cache)"
        )


if __name__ == "__main__":
    main()
