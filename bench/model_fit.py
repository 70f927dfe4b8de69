"""Bench: building an environment's runtime from the mirror's own wheels, and checking a
100 MB model's ops against two runtimes.

    python -m bench.model_fit

Reaches the real PyPI once: syncs two environments (tensorflow 2.21.0 with
tensorflow-text, and with tensorflow-serving-api) for this host into a fresh mirror.
1. Runtime: `tfmirror hub check` building one environment's runtime (uv, offline, from
   the store's blobs, ops recorded), cold, against the peer in the same run: pip
   installing the same locked wheels from a local folder into a fresh venv (no network,
   no ops probe). Target: < 60 s.
2. Op check: a SavedModel with a 100 MB variable, archived (tar.gz, ~100 MB), checked
   against both runtimes by `tfmirror hub check` from a cold process with the ops not
   yet read; the peer: TensorFlow's own protobuf parse of the same saved_model.pb (a
   Python that imports tensorflow). Target: < 2 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bench.common import run_tfmirror
from mirror.core.config import load_config
from mirror.core.storage import open_store
from mirror.pypi.lockfile import render_lock
from mirror.pypi.manifest import load_manifest
from verify.runtimes import Runtime, existing_runtime

CONFIG = """
[storage]
path = "store"
[pypi]
upstream = "https://pypi.org/simple/"
build_backends = []
[pypi.environments.text]
requirements = ["tensorflow==2.21.0", "tensorflow-text==2.21.1"]
targets = [{ python = "3.11", platform = "manylinux_2_28_x86_64" }]
[pypi.environments.serving]
requirements = ["tensorflow==2.21.0", "tensorflow-serving-api==2.21.0"]
targets = [{ python = "3.11", platform = "manylinux_2_28_x86_64" }]
"""

BIG_MODEL = """
import sys, numpy as np, tensorflow as tf
class Big(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.random.default_rng(1).random((5000, 5000), dtype=np.float32))
    @tf.function(input_signature=[tf.TensorSpec([None, 5000], tf.float32)])
    def __call__(self, x):
        return {"y": x @ self.w}
m = Big()
tf.saved_model.save(m, sys.argv[1], signatures={"serving_default": m.__call__})
"""

TF_PARSE = """
import sys, time
began = time.monotonic()
from tensorflow.core.protobuf import saved_model_pb2
model = saved_model_pb2.SavedModel()
model.ParseFromString(open(sys.argv[1], "rb").read())
ops = {n.op for g in model.meta_graphs for n in g.graph_def.node}
ops |= {n.op for g in model.meta_graphs for f in g.graph_def.library.function for n in f.node_def}
print(len(ops))
"""


def tfmirror(config: Path, *args: str) -> float:
    seconds, done = run_tfmirror(config, *args)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return seconds


def timed(command: list[str], **env: str) -> float:
    began = time.monotonic()
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        env={**os.environ, **env, "PIP_CONFIG_FILE": os.devnull},
    )
    return time.monotonic() - began


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tfmirror-fit-") as tmp:
        work = Path(tmp)
        path = work / "tfmirror.toml"
        path.write_text(CONFIG)
        print("syncing tensorflow 2.21.0 (+ tensorflow-text, + tensorflow-serving-api) ...")
        print(f"  sync {tfmirror(path, 'sync', 'pypi', '--no-devpi'):.1f} s")
        config = load_config(str(path))
        store = open_store(config.storage)

        print("1. one runtime from the mirror's wheels, cold")
        took = tfmirror(path, "hub", "check", "--env", "serving")
        serving = existing_runtime(config, store, "serving")
        assert isinstance(serving, Runtime), serving
        manifest = load_manifest(store, "serving", serving.target)
        assert manifest is not None
        wheels = work / "wheels"
        wheels.mkdir()
        for wheel in manifest.files:
            local = store.local_path(wheel.sha256)
            assert local is not None
            shutil.copy(local, wheels / wheel.filename)
        (work / "lock.txt").write_text(render_lock(manifest, "(offline)"))
        subprocess.run([sys.executable, "-m", "venv", str(work / "peer")], check=True)
        lock = str(work / "lock.txt")
        pip = [str(work / "peer/bin/python"), "-m", "pip", "install", "--quiet", "--no-index"]
        peer = timed(
            [*pip, "--find-links", str(wheels), "--require-hashes", "--no-deps", "-r", lock]
        )
        print(
            f"  tfmirror runtime {took:.1f} s (target < 60 s); pip install of the same wheels "
            f"{peer:.1f} s; {took / peer:.2f}x"
        )
        tfmirror(path, "hub", "check", "--env", "text")  # the second runtime

        print("2. op check of a 100 MB model against both runtimes")
        subprocess.run(
            [str(serving.python), "-c", BIG_MODEL, str(work / "big")],
            check=True,
            capture_output=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        with tarfile.open(work / "big.tar.gz", "w:gz", compresslevel=1) as tar:
            tar.add(work / "big", arcname=".")
        size = (work / "big.tar.gz").stat().st_size
        tfmirror(path, "hub", "import", str(work / "big.tar.gz"), "--handle", "https://x/big/1")
        took = tfmirror(path, "hub", "check")
        peer = timed(
            [str(serving.python), "-c", TF_PARSE, str(work / "big" / "saved_model.pb")],
            TF_CPP_MIN_LOG_LEVEL="3",
        )
        print(
            f"  archive {size / 1e6:.0f} MB: tfmirror hub check {took:.2f} s from a cold process "
            f"(target < 2 s); TensorFlow's own parse {peer:.2f} s; {took / peer:.2f}x"
        )


if __name__ == "__main__":
    main()
