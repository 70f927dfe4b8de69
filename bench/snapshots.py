"""Bench: `tfmirror snapshot create` of a large mirror, on local disk and on S3 (moto),
and a snapshot's index page against the live one through the entry point.

The mirror: 10 environments x 300 files and 50 models (manifests only: a snapshot never
reads a blob). Each `snapshot create` runs as a cold process; peers in the same run:
`cp -r` of the manifests folder (local), and boto3 reading every manifest (S3).
Targets: < 1 s local, < 5 s on S3.

Pages: one project's PEP 691 page in the union index, live (`/<index>/+simple/p7/`)
and from the snapshot (`/<index>/@bench/+simple/p7/`), asked by wrk's keep-alive
connections through nginx (the fleet's entry point, its page cache in front of a web
front) and from the front alone, as JSON (what pip and uv ask for) and as HTML (pip
before 22.2). Targets: the snapshot page at >= 0.9x the live page's rate through nginx;
the live page from the front alone at >= 1,000 pages/s. Needs nginx and wrk (apt-get
install nginx-light wrk); stays on 127.0.0.1 and stops by itself.

    python -m bench.snapshots [--clients 16] [--seconds 5] [--pages-only]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hub_cache.models import ModelManifest, save_model
from mirror.core.config import StorageConfig, Target
from mirror.core.storage import BlobStore, LocalStore, S3Store
from mirror.pypi.manifest import Manifest, save_manifest
from mirror.pypi.resolve import Wheel
from testkit.servers import MotoServer, aws_test_credentials, free_port

ENVIRONMENTS, FILES, MODELS = 10, 300, 50
PEP691_JSON = "application/vnd.pypi.simple.v1+json"
VIEWS = (  # what is asked for: a view, its path segment, the Accept header
    ("live", "", PEP691_JSON),
    ("snapshot", "@bench/", PEP691_JSON),
    ("live (html)", "", "text/html"),
)


def fill(store: BlobStore) -> None:
    target = Target("3.11", "manylinux_2_28_x86_64")
    for e in range(ENVIRONMENTS):
        files = []
        for f in range(FILES):
            sha = hashlib.sha256(f"{e}-{f}".encode()).hexdigest()
            name = f"p{f}-1.{e}-py3-none-any.whl"
            files.append(Wheel(f"p{f}", f"1.{e}", name, f"https://x/{name}", sha, 1000))
        save_manifest(store, Manifest(target, (f"p{e}",), files, "2026-11-28T00:00:00Z", f"env{e}"))
    for m in range(MODELS):
        sha = hashlib.sha256(f"model-{m}".encode()).hexdigest()
        handle = f"https://tfhub.dev/google/m{m}/1"
        save_model(store, ModelManifest(handle, f"google/m{m}/1", sha, 1000, "", "x"))


def create(config: Path, name: str) -> float:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "snapshot", "create", name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return time.monotonic() - began


def pages(config_path: Path, clients: int, seconds: int) -> None:
    from mirror.core.config import load_config
    from mirror.core.web_server import WebServer
    from mirror.proxy.nginx import NginxProcess, entry_point, nginx_binary, plan_for
    from tfmirror.app import create_app

    nginx = nginx_binary("nginx")
    if not (nginx and shutil.which("wrk")):
        print("pages: needs nginx and wrk (apt-get install nginx-light wrk); skipped")
        return
    from bench.common import wrk

    config = load_config(str(config_path))
    with (
        WebServer(create_app(config), config.web.host, config.web.port),
        NginxProcess(nginx, plan_for(config)),
    ):
        time.sleep(0.5)
        rates: dict[str, float] = {}
        for where, base in (
            ("entry point (nginx)", entry_point(config, proxied=True).base_url),
            ("front alone", config.web.base_url),
        ):
            for view, at, kind in VIEWS:
                url = f"{base}/{config.devpi.index}/{at}+simple/p7/"
                accept = [f"Accept: {kind}"]
                wrk(url, clients, 1, accept)  # warm-up (and nginx's page cache)
                _, p99, done, errors = wrk(url, clients, seconds, accept)
                rates[f"{where} {view}"] = done / seconds
                print(
                    f"  {where:<20} {view:<13} {done / seconds:8.0f} pages/s  "
                    f"p99 {p99:6.1f} ms  errors {errors}"
                )
            ratio = rates[f"{where} snapshot"] / rates[f"{where} live"]
            print(f"  {where:<20} snapshot/live {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--pages-only", action="store_true", help="skip the S3 (moto) part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfmirror-snap-") as tmp:
        root = Path(tmp)
        local = LocalStore(root / "store")
        fill(local)
        config = root / "local.toml"
        config.write_text(
            f'[storage]\npath = "{local.root}"\n[web]\nport = {free_port()}\n'
            f'[proxy]\nport = {free_port()}\nworkdir = "{root / "proxy"}"\n'
        )
        took = create(config, "bench")
        began = time.monotonic()
        subprocess.run(["cp", "-r", str(local.root / "manifests"), str(root / "copy")], check=True)
        peer = time.monotonic() - began
        print(f"local: snapshot create {took:.2f} s (target < 1 s); cp -r {peer:.2f} s")
        print(f"pages: p7's JSON page, {args.clients} keep-alive connections, {args.seconds} s")
        pages(config, args.clients, args.seconds)
        if args.pages_only:
            return

        aws_test_credentials()  # moto takes any; the child process inherits them
        moto = MotoServer(root / "moto.log")
        try:
            moto.client().create_bucket(Bucket="bench")
            s3 = S3Store(
                StorageConfig(
                    backend="s3", bucket="bench", endpoint_url=moto.url, region="us-east-1"
                )
            )
            fill(s3)
            config = root / "s3.toml"
            config.write_text(
                f'[storage]\nbackend = "s3"\nbucket = "bench"\nendpoint_url = "{moto.url}"\n'
                'region = "us-east-1"\n'
            )
            took = create(config, "bench")
            began = time.monotonic()
            for key in s3.list("manifests"):
                s3.get(key)
            peer = time.monotonic() - began
            print(f"moto S3: snapshot create {took:.2f} s (target < 5 s); reads {peer:.2f} s")
        finally:
            moto.stop()


if __name__ == "__main__":
    main()
