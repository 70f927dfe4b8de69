"""The air-gap install proof: each environment on each of its targets, installed the ways
nodes install (AirGapProof), from the index the fleet reads and nothing else: nginx's
when it runs, else a web front's pages, whose file links a front sends on to devpi. As
root on Linux every step runs inside `unshare -n`, where the only reachable addresses
are those services, each bridged in at its own address and port (verify.netns); only a
devpi on another host with no nginx in front is proved through devpi's own pages (a host
name cannot be bridged in), and the proof says so."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import requests
from packaging.requirements import Requirement

from mirror.core.children import die_with_parent, scrubbed_env
from mirror.core.config import Config, Environment, Target, host_target
from mirror.core.scratch import scratch_dir
from mirror.core.storage import BlobStore
from mirror.proxy.nginx import nginx_answers
from mirror.pypi.interpreters import find_interpreter, missing_interpreter
from mirror.pypi.lockfile import render_lock
from mirror.pypi.manifest import load_manifest
from mirror.pypi.module_gaps import fix_for_import_error
from mirror.pypi.resolve import platforms_for, uv_binary
from verify import netns

# Which modules a distribution gives: its top_level.txt, else the importable names its
# RECORD installs at the top (numpy 2 has no top_level.txt and a numpy.libs folder).
MODULES = """
import importlib.metadata as md, json, sys
def top(dist):
    text = dist.read_text("top_level.txt")
    if text:
        return set(text.split())
    names = set()
    for f in dist.files or []:
        parts = str(f).split("/")
        if len(parts) == 1:
            if parts[0].endswith((".py", ".so", ".pyd")):
                names.add(parts[0].split(".")[0])
        elif parts[-1].endswith((".py", ".so", ".pyd")) and parts[0] != "__pycache__":
            names.add(parts[0])
    return names
out = {}
for name in sys.argv[1:]:
    out[name] = sorted(m for m in top(md.distribution(name))
                       if m.isidentifier() and not m.startswith("_"))
print(json.dumps(out))
"""

# Imports each module on its own, so a failure names the module.
IMPORTS = """
import importlib, sys, traceback
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        print(f"import {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
"""


@dataclass
class TargetProof:
    target: str  # environment/target
    ok: bool
    how: str
    detail: str = ""

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Route:
    """How the proof reaches the mirror: the base every index is under, and the
    services to bridge into the namespace."""

    base_url: str
    union_index: str  # user/index
    services: tuple[tuple[str, int], ...]
    via: str
    environments: bool = True  # False: devpi's own pages, which have the union only

    def index_url(self, environment: str) -> str:
        if not self.environments:
            return f"{self.base_url}/{self.union_index}/+simple/"
        user = self.union_index.split("/")[0]
        return f"{self.base_url}/{user}/{environment}/+simple/"


def pip_env(**extra: str) -> dict[str, str]:
    """pip and uv with no machine config, cache, prompts or extra indexes from the env,
    and none of the mirror's secrets: what they install runs its own code."""
    return scrubbed_env(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_CACHE_DIR="1",
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        **extra,
    )


def installer_python(target: Target) -> tuple[str | None, str]:
    """The Python that installs the target here, or None and why none can."""
    host = host_target()
    if target.platform not in platforms_for(host.platform):
        return None, f"{target.platform} wheels do not run on this {host.platform} host"
    if target.python == host.python:
        return sys.executable, ""
    found = find_interpreter(target)
    if found is None:
        return None, missing_interpreter(target, "install")
    return found.path, ""


def _why(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("ERROR", "error:", "import "))]
    return " ".join(errors[-2:] or lines[-2:])[:500] or "failed with no message"


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def _loopback(host: str) -> str | None:
    """The loopback address `host` names, or None (a host name or another machine)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def fleet_route(config: Config) -> Route:
    """The index the fleet reads, as it runs now: this mirror's nginx's (nginx_answers:
    not whatever answers on its address), else a front's, else devpi's own (only when
    devpi is on another host and no nginx runs, and the proof says so)."""
    index = config.devpi.index
    proxy = config.proxy.base_url
    if nginx_answers(config):
        return Route(proxy, index, (_address(proxy),), "through nginx")
    devpi = _address(config.devpi.url)
    front = config.web.base_url
    if _loopback(devpi[0]) and _answers(f"{front}/{index}/+simple/"):
        return Route(front, index, (_address(front), devpi), "through a web front")
    reason = "devpi is on another host" if not _loopback(devpi[0]) else "no web front answers"
    return Route(
        config.devpi.url.rstrip("/"),
        index,
        (devpi,),
        f"through devpi's own pages ({reason}; environments not isolated)",
        environments=False,
    )


class AirGapProof:
    """Every target: pip resolves the environment's requirements (within its constraints)
    for that target's Python and platform from the environment's own index (`install
    --dry-run --report`, machine pip config off). A target the host can run (its
    platform's wheels run here, and a Python of its version is found: the host's own, the
    target's `interpreter`, python3.X on PATH or pyenv's) is then installed twice with that
    Python, as nodes do: the environment's `tfmirror lock` with `--require-hashes` into a
    bare venv (no pip, no setuptools: what an image build starts from), and `uv pip
    install` through the index into a uv venv; in each, every requirement's top-level
    modules are imported. A target only resolved says why in its proof."""

    def __init__(
        self,
        config: Config,
        store: BlobStore,
        isolate: bool | None = None,
        route: Route | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.isolate = netns.can_unshare() if isolate is None else isolate
        self.route = route or fleet_route(config)

    def _run(self, command: list[str], work: Path, **env: str) -> subprocess.CompletedProcess[str]:
        run = partial(
            subprocess.run,
            capture_output=True,
            text=True,
            env=pip_env(**env),
            timeout=3600,
            cwd=work,
            preexec_fn=die_with_parent,  # `up` stopped mid-proof takes pip down with it
            start_new_session=True,  # a terminal's Ctrl-C is for tfmirror, which stops it
        )
        if not self.isolate:
            return run(command)
        with ExitStack() as stack:
            bridges = []
            for host, port in self.route.services:
                sock = Path(tempfile.gettempdir()) / f"tfmirror-bridge-{uuid.uuid4().hex[:8]}.sock"
                bridge = netns.HostBridge(sock, host, port)
                stack.callback(bridge.close)
                bridges.append((sock, _loopback(host) or "127.0.0.1", port))
            return run(netns.wrap(command, bridges))

    @property
    def where(self) -> str:
        scope = "inside unshare -n" if self.isolate else "index-url only"
        return f"{scope}, {self.route.via}"

    def prove(self, env: Environment, target: Target, install: bool = True) -> TargetProof:
        with scratch_dir("tfmirror-airgap-") as work:
            (work / "requirements.txt").write_text("\n".join(env.requirements) + "\n")
            (work / "constraints.txt").write_text("\n".join(env.constraints) + "\n")
            resolved = self._resolve(env, target, work)
            if not resolved.ok or not install:
                return resolved
            python, why_not = installer_python(target)
            if python is None:
                detail = f"{resolved.detail}; resolved only, not installed: {why_not}"
                return TargetProof(resolved.target, True, resolved.how, detail)
            proofs = [resolved]
            for step in (self._install_lock, self._install_uv):
                proofs.append(step(env, target, work, python))
                if not proofs[-1].ok:
                    return proofs[-1]
        hows = ", ".join(p.how.removesuffix(f" {self.where}") for p in proofs)
        detail = f"{resolved.detail}; {proofs[-1].detail} in both venvs"
        return TargetProof(resolved.target, True, f"{hows} {self.where}", detail)

    def _proof(
        self, env: Environment, target: Target, ok: bool, how: str, detail: str
    ) -> TargetProof:
        return TargetProof(f"{env.name}/{target.id}", ok, f"{how} {self.where}", detail)

    def _resolve(self, env: Environment, target: Target, work: Path) -> TargetProof:
        platforms = [f"--platform={p}" for p in platforms_for(target.platform)]
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(work / "report.json"),
            "--only-binary=:all:",
            f"--python-version={target.python}",
            *platforms,
            "--target",
            str(work / "t"),
            "--index-url",
            self.route.index_url(env.name),
            "-r",
            "requirements.txt",
            "-c",
            "constraints.txt",
        ]
        proc = self._run(command, work)
        if proc.returncode != 0:
            return self._proof(env, target, False, "pip resolve", _why(proc.stderr))
        report = json.loads((work / "report.json").read_text())
        count = len(report.get("install", []))
        return self._proof(env, target, True, "pip resolve", f"{count} wheels")

    def _install_lock(
        self, env: Environment, target: Target, work: Path, interpreter: str
    ) -> TargetProof:
        """`tfmirror lock` + `pip install --require-hashes` into a venv with nothing in
        it: no setuptools to hide a missing one, as in an image built from scratch."""
        how = "lock --require-hashes into a bare venv"
        manifest = load_manifest(self.store, env.name, target.id)
        if manifest is None:
            return self._proof(env, target, False, how, "nothing synced for it yet")
        index = self.route.index_url(env.name)
        (work / "lock.txt").write_text(render_lock(manifest, index))
        venv = work / "bare"
        subprocess.run(
            [interpreter, "-m", "venv", "--without-pip", str(venv)],
            check=True,
            preexec_fn=die_with_parent,
            start_new_session=True,  # a terminal's Ctrl-C is for tfmirror, which stops it
        )
        python = str(venv / "bin" / "python")
        pip = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet"]
        proc = self._run([*pip, "--require-hashes", "--index-url", index, "-r", "lock.txt"], work)
        if proc.returncode != 0:
            return self._proof(env, target, False, how, _why(proc.stderr))
        return self._imports(env, target, python, work, how)

    def _install_uv(
        self, env: Environment, target: Target, work: Path, interpreter: str
    ) -> TargetProof:
        how = "uv pip install"
        venv = work / "uv"
        uv = uv_binary()
        cache = {"UV_CACHE_DIR": str(work / "uv-cache"), "UV_NO_PROGRESS": "1"}
        made = self._run(
            [uv, "venv", "--no-config", "--quiet", "--python", interpreter, str(venv)],
            work,
            UV_PYTHON_DOWNLOADS="never",
            **cache,
        )
        if made.returncode != 0:
            return self._proof(env, target, False, how, _why(made.stderr))
        python = str(venv / "bin" / "python")
        command = [
            uv,
            "pip",
            "install",
            "--no-config",
            "--quiet",
            "--python",
            python,
            "--index-url",
            self.route.index_url(env.name),
            "-r",
            "requirements.txt",
            "-c",
            "constraints.txt",
        ]
        proc = self._run(command, work, **cache)
        if proc.returncode != 0:
            return self._proof(env, target, False, how, _why(proc.stderr))
        return self._imports(env, target, python, work, how)

    def _imports(
        self, env: Environment, target: Target, python: str, work: Path, how: str
    ) -> TargetProof:
        names = [Requirement(r).name for r in env.requirements]
        found = subprocess.run(
            [python, "-c", MODULES, *names],
            capture_output=True,
            text=True,
            check=False,
            env=pip_env(),
            preexec_fn=die_with_parent,
            start_new_session=True,  # a terminal's Ctrl-C is for tfmirror, which stops it
        )
        if found.returncode != 0:
            return self._proof(env, target, False, how, _why(found.stderr))
        modules = sorted({m for mods in json.loads(found.stdout).values() for m in mods})
        probe = self._run([python, "-c", IMPORTS, *modules], work)
        if probe.returncode != 0:
            why = _why(probe.stderr)
            fix = fix_for_import_error(env.name, probe.stderr, names)
            return self._proof(env, target, False, how, f"{why}; fix: {fix}" if fix else why)
        return self._proof(env, target, True, f"{how} + import", f"imported {', '.join(modules)}")
