"""A node where the site's DNS sends the public names to the mirror: inside a network
and mount namespace of its own (`run_node` makes it), the mirror's front and nginx
answering the public names over TLS on loopback, the namespace's /etc/hosts sending the
names there, and a node's unchanged code run against them in fresh processes. The child
prints one `CASE {json}` line per client run and stops what it started.

    python -m testkit.public_names_node CONFIG CASES_JSON
CASES_JSON: [{"name", "argv", "env"[, "python"]}]: argv after `python -m`, env added to
the node's; `python` runs the case (default: this one), e.g. a venv with a client of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from mirror.core.config import load_config
from mirror.core.public_names import PUBLIC_NAMES
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.proxy.nginx import NginxProcess, plan_for
from tfmirror.app import create_app

ROOT = Path(__file__).resolve().parents[1]
CLIENT_SECONDS = 240


def run_node(work: Path, config: Path, cases: list[dict[str, Any]], address: str) -> dict[str, Any]:
    """The mirror (listening on `address`) and the clients inside a namespace of their
    own, the public names sent to `address`; each case's result by name, and `_logs`."""
    hosts = work / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{address} {' '.join(PUBLIC_NAMES)}\n")
    cases_file = work / "cases.json"
    cases_file.write_text(json.dumps(cases))
    script = (
        'ip link set lo up && mount --bind "$1" /etc/hosts && '
        'exec "$2" -m testkit.public_names_node "$3" "$4"'
    )
    argv = ["unshare", "-n", "-m", "sh", "-c", script, "sh"]
    argv += [str(hosts), sys.executable, str(config), str(cases_file)]
    # A node with no Kaggle account and no proxy of the machine's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE")}
    env = {k: v for k, v in env.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=len(cases) * 240 + 60
    )
    results: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith("CASE "):
            result = json.loads(line[len("CASE ") :])
            results[result["name"]] = result
    if done.returncode != 0 or len(results) != len(cases):
        raise RuntimeError(f"the node's namespace failed: {done.stderr[-4000:]}")
    results["_logs"] = done.stdout + done.stderr
    return results


def main(config_path: str, cases_json: str) -> None:
    config = load_config(config_path)
    cases = json.loads(Path(cases_json).read_text())
    with ExitStack() as stack:
        app = create_app(config, open_store(config.storage))
        stack.enter_context(WebServer(app, config.web.host, config.web.port))
        stack.enter_context(NginxProcess(config.proxy.nginx, plan_for(config)))
        for case in cases:
            env = {**os.environ, **case["env"], "PYTHONPATH": str(ROOT)}
            done = subprocess.run(
                [case.get("python", sys.executable), "-m", *case["argv"]],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                timeout=CLIENT_SECONDS,
            )
            line = next(
                (ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), "RESULT {}"
            )
            result = json.loads(line[len("RESULT ") :])
            result.update(name=case["name"], returncode=done.returncode)
            result["stderr"] = done.stderr[-3000:]
            print("CASE " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
