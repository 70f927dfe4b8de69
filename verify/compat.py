"""Which model loads in which environment: each mirrored model's ops (read as its format
says, hub_cache.formats) against each environment's runtime (verify.runtimes), before a
serving node dies with "Op type not registered".

The matrix is kept in the store (hub_cache.compat_matrix) for the status page, the API,
the metrics and `hub prefetch --env` (through the model's page). The same check is the
hub sync's gate for a model whose `[hub] models` entry names `environments`: a version
one of them cannot load is not served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from hub_cache.compat_matrix import INCOMPATIBLE, OK, UNCHECKED, Pair, keep_matrix
from hub_cache.formats import format_of
from hub_cache.formats.base import GraphOps
from hub_cache.formats.tensorflow_runtime import TENSORFLOW
from hub_cache.models import ModelManifest, load_models
from mirror.core.config import Config
from mirror.core.storage import BlobStore
from mirror.pypi.manifest import stored_environments
from verify.runtimes import NoRuntime, Runtime, existing_runtime


def environments(config: Config, store: BlobStore) -> list[str]:
    return sorted({e.name for e in config.pypi.environments} | stored_environments(store))


def _ops_of(config: Config, store: BlobStore, model: ModelManifest) -> GraphOps | str:
    """The ops the model uses, or why they are not checked."""
    model_format = format_of(model.archive)
    if model_format is None:
        return unknown_format(model)
    if model_format.runtime is not TENSORFLOW:  # the one kind of runtime built so far
        return f"{model_format.name} models are not checked against a runtime here"
    root_file = str(model.archive.get("root_file", ""))
    max_bytes = config.hub.max_uncompressed_mb * 2**20
    return model_format.ops(store, model.sha256, root_file, max_bytes)


def unknown_format(model: ModelManifest) -> str:
    root_file = model.archive.get("root_file", "")
    return f"its archive's root file {root_file!r} is of no model format this mirror knows"


def check_pair(
    model: ModelManifest,
    ops: GraphOps | str,
    environment: str,
    found: Runtime | NoRuntime,
    providers: dict[str, str],
) -> Pair:
    """One model against one environment's runtime. `providers`: which package registers
    each op, as every runtime built here found it."""
    base = Pair(model.handle, environment, UNCHECKED, sha256=model.sha256)
    if isinstance(ops, str):
        return replace(base, reason=ops)
    if isinstance(found, NoRuntime):
        return replace(base, reason=found.reason)
    missing = sorted(ops.ops - found.ops)
    if not missing:
        return Pair(model.handle, environment, OK, sha256=model.sha256, tensorflow=found.tensorflow)
    by = sorted({providers[op] for op in missing if op in providers})
    needs = [
        f"needs {pkg} for {', '.join(op for op in missing if providers.get(op) == pkg)}"
        for pkg in by
    ]
    unknown = [op for op in missing if op not in providers]
    if unknown:
        written = (
            f" (written by TensorFlow {ops.tensorflow_version})" if ops.tensorflow_version else ""
        )
        needs.append(f"TensorFlow {found.tensorflow} lacks {', '.join(unknown)}{written}")
    for package, error in sorted(found.failed.items()):
        # Installed, but its ops never registered: the likelier cause.
        needs.append(f"{package} is installed here but does not import ({error})")
    return Pair(
        model.handle,
        environment,
        INCOMPATIBLE,
        missing,
        by,
        "; ".join(needs),
        model.sha256,
        found.tensorflow,
    )


def _runtimes(
    config: Config, store: BlobStore, names: Iterable[str], build: bool = True
) -> tuple[dict[str, Runtime | NoRuntime], dict[str, str]]:
    """The runtimes of `names` (built where missing, with `build`), and which package
    registers each op as every runtime built here found it."""
    found = {env: existing_runtime(config, store, env, build) for env in names}
    every = [
        existing_runtime(config, store, e) for e in environments(config, store) if e not in found
    ]
    providers: dict[str, str] = {}
    for rt in [*found.values(), *every]:
        if isinstance(rt, Runtime):
            for op, package in rt.providers.items():
                providers.setdefault(op, package)
    return found, providers


def check_matrix(
    config: Config, store: BlobStore, only: list[str] | None = None, build: bool = True
) -> list[Pair]:
    """Every model against every environment (or `only` these), building the runtimes
    that are missing when `build`; the result is kept for the status page."""
    names = only or environments(config, store)
    runtimes, providers = _runtimes(config, store, names, build)
    pairs = []
    for model in load_models(store):
        if model.alias_of:
            continue  # the same archive as the model it names
        ops = _ops_of(config, store, model)
        pairs += [check_pair(model, ops, env, runtimes[env], providers) for env in names]
    keep_matrix(store, pairs, names)
    return pairs


def compat_gate(config: Config, store: BlobStore) -> Callable[[ModelManifest], str | None]:
    """The hub sync's check of a new version before it is served: None to serve it, or
    why not (its ops and the environment that cannot load it)."""
    wanted = {m.handle: m.environments for m in config.hub.models}

    def gate(candidate: ModelManifest) -> str | None:
        names = wanted.get(candidate.handle, ())
        if not names:
            return None
        ops = _ops_of(config, store, candidate)
        found, providers = _runtimes(config, store, names)
        problems = []
        for env in names:
            pair = check_pair(candidate, ops, env, found[env], providers)
            if pair.status == INCOMPATIBLE:
                tf = pair.tensorflow
                problems.append(
                    f"environment {env} (TensorFlow {tf}) cannot load it: {pair.reason}"
                )
            elif pair.status == UNCHECKED:
                problems.append(f"environment {env}: cannot check it ({pair.reason})")
        if not problems:
            return None
        return "; ".join(problems) + "; the version served before stays served"

    return gate
