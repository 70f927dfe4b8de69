"""The house's layers as a test: imports point one way, with no cycle, counting the
imports inside functions (grimp reads every import statement in a module).

    composition root   tfmirror (the command, the web app, the jobs' wiring)
    following          follow (a site's pull, with the bundle's commit)
    jobs and proofs    sync_jobs | verify | bundle
    the sides          mirror.pypi | mirror.devpi | mirror.proxy | hub_cache   (peers)
    core               mirror.core                   (imports nothing of ours)

The contract itself is [tool.importlinter] in pyproject.toml; `lint-imports` checks it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tfmirror", "mirror", "hub_cache", "sync_jobs", "verify", "bundle", "follow")


def test_the_layers_contract_holds() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(lint), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_module_imports_itself_back_through_others() -> None:
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append(" -> ".join((module, *back)))
    assert cycles == [], "\n".join(sorted(set(cycles))[:20])
