"""The air-gap install proof, per target, against the devpi index alone.

Every target: pip resolves the requirements for that target's Python and platform from
devpi only (`install --dry-run --report`, machine pip config off). The target the host
can run: a real install into a throwaway venv, then an import of each requirement's
top-level modules. As root on Linux both run inside `unshare -n`, where the only
reachable address is devpi (see verify/netns.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from packaging.requirements import Requirement

from mirror.core.children import die_with_parent, scrubbed_env
from mirror.core.config import Config, Target, host_target
from mirror.pypi.resolve import platforms_for
from verify import netns

TOP_LEVEL = """
import importlib.metadata as md, json, sys
out = {}
for name in sys.argv[1:]:
    dist = md.distribution(name)
    text = dist.read_text("top_level.txt")
    if text:
        mods = [m for m in text.split() if m and not m.startswith("_")]
    else:  # no top_level.txt (e.g. some wheels): infer from the installed files
        mods = sorted({str(f).split("/")[0].removesuffix(".py") for f in dist.files or []
                       if not str(f).split("/")[0].endswith((".dist-info", ".data"))
                       and not str(f).startswith(("..", "_"))})
    out[name] = mods
print(json.dumps(out))
"""


@dataclass
class TargetProof:
    target: str
    ok: bool
    how: str
    detail: str = ""

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def pip_env() -> dict[str, str]:
    """pip and uv with no machine config, cache, prompts or extra indexes from the env,
    and none of the mirror's secrets: what they install runs its own code."""
    return scrubbed_env(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_CACHE_DIR="1",
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )


def host_runs(target: Target) -> bool:
    host = host_target()
    return target.python == host.python and target.platform in platforms_for(host.platform)


def _why(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return " ".join(errors[-2:] or lines[-2:])[:500] or "pip failed with no message"


class AirGapProof:
    def __init__(self, config: Config, isolate: bool | None = None) -> None:
        self.config = config
        self.index = config.devpi.index_url
        self.isolate = netns.can_unshare() if isolate is None else isolate

    def _devpi_address(self) -> tuple[str, str, int]:
        parts = urlsplit(self.config.devpi.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.scheme, parts.hostname or "127.0.0.1", port

    def _index_args(self) -> list[str]:
        """pip's index: inside the namespace, the bridge on 127.0.0.1 at devpi's port (the
        configured host name or address means nothing there)."""
        if not self.isolate:
            return ["--index-url", self.index]
        scheme, _, port = self._devpi_address()
        inside = self.index.replace(urlsplit(self.index).netloc, f"127.0.0.1:{port}", 1)
        # TLS to devpi names its host; through the bridge pip reaches it as 127.0.0.1.
        trust = ["--trusted-host", f"127.0.0.1:{port}"] if scheme == "https" else []
        return ["--index-url", inside, *trust]

    def _run(self, command: list[str], work: Path) -> subprocess.CompletedProcess[str]:
        run = partial(
            subprocess.run,
            capture_output=True,
            text=True,
            env=pip_env(),
            timeout=3600,
            cwd=work,
            preexec_fn=die_with_parent,  # `up` stopped mid-proof takes pip down with it
        )
        if not self.isolate:
            return run(command)
        _, host, port = self._devpi_address()
        sock = Path(tempfile.gettempdir()) / f"tfmirror-bridge-{uuid.uuid4().hex[:8]}.sock"
        bridge = netns.HostBridge(sock, host, port)
        try:
            return run(netns.wrap(command, sock, port))
        finally:
            bridge.close()

    @property
    def where(self) -> str:
        return "inside unshare -n (devpi only)" if self.isolate else "index-url only"

    def prove(self, target: Target, install: bool = True) -> TargetProof:
        with tempfile.TemporaryDirectory(prefix="tfmirror-airgap-") as tmp:
            work = Path(tmp)
            resolved = self._resolve(target, work)
            if not resolved.ok or not install or not host_runs(target):
                return resolved
            return self._install(target, work)

    def _resolve(self, target: Target, work: Path) -> TargetProof:
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
            *self._index_args(),
            *self.config.pypi.requirements,
        ]
        proc = self._run(command, work)
        how = f"pip resolve {self.where}"
        if proc.returncode != 0:
            return TargetProof(target.id, False, how, _why(proc.stderr))
        report = json.loads((work / "report.json").read_text())
        return TargetProof(target.id, True, how, f"{len(report.get('install', []))} wheels")

    def _install(self, target: Target, work: Path) -> TargetProof:
        how = f"install + import {self.where}"
        subprocess.run(
            [sys.executable, "-m", "venv", str(work / "venv")],
            check=True,
            preexec_fn=die_with_parent,
        )
        python = str(work / "venv" / "bin" / "python")
        pip = [python, "-m", "pip", "install", "--quiet", *self._index_args()]
        proc = self._run([*pip, *self.config.pypi.requirements], work)
        if proc.returncode != 0:
            return TargetProof(target.id, False, how, _why(proc.stderr))
        names = [Requirement(r).name for r in self.config.pypi.requirements]
        found = subprocess.run(
            [python, "-c", TOP_LEVEL, *names],
            capture_output=True,
            text=True,
            check=False,
            env=pip_env(),
            preexec_fn=die_with_parent,
        )
        if found.returncode != 0:
            return TargetProof(target.id, False, how, _why(found.stderr))
        modules = sorted({m for mods in json.loads(found.stdout).values() for m in mods})
        probe = self._run([python, "-c", "; ".join(f"import {m}" for m in modules)], work)
        if probe.returncode != 0:
            return TargetProof(target.id, False, how, f"import failed: {_why(probe.stderr)}")
        return TargetProof(target.id, True, how, f"imported {', '.join(modules)}")
