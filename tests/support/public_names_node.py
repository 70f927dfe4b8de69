"""Inside a network and mount namespace of its own (tests/functional/
test_hub_original_names.py makes it): the mirror's front and nginx answering the public
names over TLS on loopback, this namespace's /etc/hosts sending the names there, and a
node's unchanged code run against them in fresh processes. Prints one `CASE {json}` line
per client run; stops what it started.

    python -m tests.support.public_names_node CONFIG CASES_JSON
CASES_JSON: [{"name", "argv", "env"}]: argv after `python -m`, env added to the node's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from mirror.core.config import load_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.proxy.nginx import NginxProcess, plan_for
from tfmirror.app import create_app

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SECONDS = 240


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
                [sys.executable, "-m", *case["argv"]],
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
