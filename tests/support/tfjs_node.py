"""@tensorflow/tfjs from the npm registry for the tests that load TF.js models with the
real client: installed once into pytest's cache, skipped with the reason when node, npm
or the registry is not there."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TFJS_VERSION = "4.22.0"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tfjs"


def tfjs_node_modules(config: pytest.Config) -> Path:
    """node_modules holding @tensorflow/tfjs (NODE_PATH for `node`)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to load the models with @tensorflow/tfjs")
    assert config.cache is not None
    home = Path(config.cache.mkdir(f"tfjs-{TFJS_VERSION}"))
    if not (home / "node_modules" / "@tensorflow" / "tfjs" / "package.json").is_file():
        try:
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--prefix",
                    str(home),
                    "--no-audit",
                    "--no-fund",
                    f"@tensorflow/tfjs@{TFJS_VERSION}",
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"the npm registry did not give @tensorflow/tfjs@{TFJS_VERSION}: {exc}")
    return home / "node_modules"
