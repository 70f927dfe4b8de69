"""What the container image holds: exactly the files the Dockerfile copies, installed the
way it installs them, each command run there (no Docker engine runs here: this is the
nearest honest check). Before, the image lacked the `bundle` package that pyproject
declares: `tfmirror bundle keygen` and `up` ended in ModuleNotFoundError."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import requests

from testkit.servers import free_port, read_banner
from tests.support.archives import FAKE_MODEL, tar_bytes

ROOT = Path(__file__).resolve().parents[2]
HANDLE = "https://tfhub.dev/google/tfmirror-image/1"


def dockerfile_copies() -> list[str]:
    """The build-context paths the Dockerfile's COPY lines take."""
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            args = [w for w in words[1:] if not w.startswith("--")]
            sources += args[:-1]
    return sources


def declared_packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return [pattern.rstrip("*") for pattern in found]


def command_paths() -> list[list[str]]:
    """Every command and sub-command the CLI has, as argv."""
    from tfmirror.cli import _parser

    paths: list[list[str]] = [[]]

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(_parser(), [])
    return paths


def test_the_dockerfile_copies_every_package_pyproject_declares() -> None:
    copied = dockerfile_copies()
    assert "pyproject.toml" in copied
    missing = [p for p in declared_packages() if p not in copied and "." not in copied]
    assert missing == [], f"the image would lack {missing}"


def test_the_image_install_runs_every_command_up_and_a_bundle_keygen(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for source in dockerfile_copies():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / source)
    venv = tmp_path / "venv"
    # The dependencies (and the build backend, setuptools from the test extra) come from
    # the environment the tests run in, a venv or not: a .pth names its site-packages
    # (`--system-site-packages` would name the base Python's, which has none of them).
    # The project itself only from what the Dockerfile copied (checked below).
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    ours = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    (Path(site) / "tests-environment.pth").write_text("\n".join(sorted(ours)) + "\n")
    env = {**os.environ, "PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("PIP_FIND_LINKS", None)
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps"]
    done = subprocess.run(
        [*install, "--no-build-isolation", str(context)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    where = subprocess.run(
        [str(python), "-c", "import importlib, sys\nfor n in sys.argv[1:]:\n"
         "    print(importlib.import_module(n).__file__)", *declared_packages()],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr[-2000:]
    outside = [p for p in where.stdout.split() if not Path(p).is_relative_to(venv)]
    assert outside == [], f"imported from outside the image's install: {outside}"

    tfmirror = str(venv / "bin" / "tfmirror")
    for argv in command_paths():
        shown = subprocess.run(
            [tfmirror, *argv, "--help"], capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert shown.returncode == 0 and "usage:" in shown.stdout, (argv, shown.stderr[-1000:])
    keys = subprocess.run(
        [tfmirror, "bundle", "keygen", "--out", str(tmp_path / "keys")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert keys.returncode == 0, keys.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["bundle.key", "bundle.pub"]

    # A hub-only mirror of one local model: `up` starts devpi, the front and the
    # scheduler, and syncs the model, all from the image's install.
    port = free_port()
    (tmp_path / "model.tar.gz").write_bytes(tar_bytes(FAKE_MODEL))
    (tmp_path / "tfmirror.toml").write_text(f"""
[storage]
path = "data"
[devpi]
url = "http://127.0.0.1:{free_port()}"
[web]
port = {port}
[pypi]
requirements = []
[hub]
models = [{{ handle = "{HANDLE}", source = "model.tar.gz" }}]
[proxy]
enabled = false
""")
    up = subprocess.Popen(
        [tfmirror, "up"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        said = read_banner(up)
        assert "hub sync at start: ok" in said, said
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
    finally:
        up.send_signal(signal.SIGTERM)
        _, err = up.communicate(timeout=60)
    assert up.returncode == 0, err[-2000:]
