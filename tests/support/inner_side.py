"""The inner side of an air gap, run inside `unshare -n` (loopback only): import the
bundles, start `tfmirror up`, install with pip and load a model with tensorflow_hub
from it, and print what happened as one JSON line per step.

    unshare -n python -m tests.support.inner_side CONFIG PUBKEY VENV_PYTHON OUTER_URL \
        MODEL_PATH BUNDLE...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mirror.core.config import load_config
from mirror.proxy.nginx import entry_point
from testkit.servers import pip_install
from verify.netns import loopback_up


def say(step: str, **facts: object) -> None:
    print(json.dumps({"step": step, **facts}), flush=True)


def cli(config: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "--config", config, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def reaches(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=3)
    except OSError:
        return False
    return True


def main(config: str, pub: str, venv: str, outer_url: str, model: str, *bundles: str) -> None:
    loopback_up()
    say("outer upstream reachable", value=reaches(outer_url))
    for bundle in bundles:
        done = cli(config, "bundle", "import", bundle, "--trust", pub)
        say("import", bundle=bundle, rc=done.returncode, out=done.stdout, err=done.stderr[-2000:])
    cfg = load_config(config)
    web = f"http://127.0.0.1:{cfg.web.port}"
    up = subprocess.Popen(
        [sys.executable, "-m", "tfmirror.cli", "--config", config, "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        # /readyz: the front and devpi both answer (the front starts first, and a file
        # link sends pip on to devpi).
        while not reaches(f"{web}/readyz") and time.monotonic() < deadline:
            time.sleep(0.5)
        pip = pip_install(Path(venv), entry_point(cfg, proxied=False).index_url, "alpha")
        say("pip", rc=pip.returncode, err=pip.stderr[-2000:])
        version = subprocess.run(
            [venv, "-c", "import alpha; print(alpha.VERSION)"], capture_output=True, text=True
        )
        say("version", value=version.stdout.strip())
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TFHUB_CACHE_DIR": cache}
            load = subprocess.run(
                [sys.executable, "-m", "tests.support.load_model", f"{web}/hub/{model}", "keras"],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
            )
        outputs = next((ln[8:] for ln in load.stdout.splitlines() if ln.startswith("OUTPUTS ")), "")
        say("hub.load", rc=load.returncode, outputs=outputs, err=load.stderr[-2000:])
        with urllib.request.urlopen(f"{web}/api/status", timeout=10) as answer:
            jobs = {j["job"]: j for j in json.load(answer)["jobs"]}
        say("status", bundle=jobs.get("bundle"))
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


if __name__ == "__main__":
    main(*sys.argv[1:])
