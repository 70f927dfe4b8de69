"""Which model loads in which environment: each mirrored model's ops (read as its format
says, hub_cache.formats) against each environment's runtime of the kind its format names
(verify.runtimes: TensorFlow for a SavedModel, LiteRT for a .tflite, Keras for Keras),
checked by the kind's own rule, before a serving node dies with "Op type not
registered" or a device with "Select TensorFlow op(s) ... not supported". A format with
no Python runtime (TF.js) is shown as not checked, with why.

The matrix is kept in the store (hub_cache.compat_matrix) for the status page, the API,
the metrics and `hub prefetch --env` (through the model's page). The same check is the
hub sync's gate for a model whose `[hub] models` entry names `environments`: a version
one of them cannot load is not served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from hub_cache.compat_matrix import INCOMPATIBLE, OK, UNCHECKED, Pair, keep_matrix
from hub_cache.formats import FORMATS, format_of
from hub_cache.formats.base import GraphOps, RuntimeKind
from hub_cache.formats.tensorflow_runtime import TENSORFLOW
from hub_cache.models import ModelManifest, load_models
from mirror.core.config import Config
from mirror.core.storage import BlobStore
from mirror.pypi.manifest import stored_environments
from verify.runtimes import NoRuntime, Runtime, existing_runtime

# Every kind of runtime a format's models are checked against, each built once per
# environment whose closure has it (an environment may have several).
KINDS: tuple[RuntimeKind, ...] = tuple(
    {f.runtime.name: f.runtime for f in FORMATS if f.runtime is not None}.values()
)
Runtimes = dict[tuple[str, str], Runtime | NoRuntime]  # (environment, kind's name) -> runtime
Providers = dict[str, dict[str, str]]  # kind's name -> op -> the package that registers it


def environments(config: Config, store: BlobStore) -> list[str]:
    return sorted({e.name for e in config.pypi.environments} | stored_environments(store))


def _kind_of(model: ModelManifest) -> RuntimeKind | None:
    model_format = format_of(model.archive)
    return model_format.runtime if model_format is not None else None


def _ops_of(config: Config, store: BlobStore, model: ModelManifest) -> GraphOps | str:
    """The ops the model uses, or why they are not checked."""
    model_format = format_of(model.archive)
    if model_format is None:
        return unknown_format(model)
    max_bytes = config.hub.max_uncompressed_mb * 2**20
    return model_format.ops(store, model.sha256, model.archive, max_bytes)


def unknown_format(model: ModelManifest) -> str:
    root_file = model.archive.get("root_file", "")
    return f"its archive's root file {root_file!r} is of no model format this mirror knows"


def check_pair(
    model: ModelManifest,
    ops: GraphOps | str,
    environment: str,
    found: Runtime | NoRuntime,
    providers: Providers,
) -> Pair:
    """One model against one environment's runtime of its format's kind, by the kind's
    own check. `providers`: which package registers each op, as every runtime of that
    kind built here found it."""
    base = Pair(model.handle, environment, UNCHECKED, sha256=model.sha256)
    kind = _kind_of(model)
    if isinstance(ops, str) or kind is None:
        return replace(base, reason=ops if isinstance(ops, str) else "no runtime checks it")
    if isinstance(found, NoRuntime):
        return replace(base, reason=found.reason)
    tensorflow = found.version if kind is TENSORFLOW else ""
    checked = replace(base, tensorflow=tensorflow, runtime=found.label)
    gaps = kind.gaps(ops, found.registered(providers.get(kind.name, {})))
    if gaps.missing:
        return replace(
            checked,
            status=INCOMPATIBLE,
            missing_ops=gaps.missing,
            provided_by=gaps.provided_by,
            reason=gaps.reason,
        )
    if gaps.reason:  # nothing found missing, and nothing found at all: cannot tell
        return replace(checked, reason=gaps.reason)
    return replace(checked, status=OK)


def _runtimes(
    config: Config,
    store: BlobStore,
    names: Iterable[str],
    kinds: Iterable[RuntimeKind] = KINDS,
    build: bool = True,
) -> tuple[Runtimes, Providers]:
    """The runtimes of `kinds` in environments `names` (built where missing, with
    `build`), and which package registers each op as every runtime of its kind built
    here found it."""
    kinds = list(kinds)
    found: Runtimes = {
        (env, kind.name): existing_runtime(config, store, env, build, kind)
        for env in names
        for kind in kinds
    }
    providers: Providers = {}
    for kind in kinds:
        registers = providers.setdefault(kind.name, {})
        for env in environments(config, store):
            rt = found.get((env, kind.name)) or existing_runtime(config, store, env, kind=kind)
            if isinstance(rt, Runtime):
                registers.update(rt.providers)
    return found, providers


def _runtime_for(found: Runtimes, env: str, model: ModelManifest) -> Runtime | NoRuntime:
    kind = _kind_of(model)
    if kind is None:
        return NoRuntime(env, "its format is checked against no runtime")
    return found.get((env, kind.name), NoRuntime(env, f"no {kind.name} runtime was looked for"))


def check_matrix(
    config: Config, store: BlobStore, only: list[str] | None = None, build: bool = True
) -> list[Pair]:
    """Every model against every environment (or `only` these), building the runtimes
    that are missing when `build`; the result is kept for the status page."""
    names = only or environments(config, store)
    runtimes, providers = _runtimes(config, store, names, KINDS, build)
    pairs = []
    for model in load_models(store):
        if model.alias_of:
            continue  # the same archive as the model it names
        ops = _ops_of(config, store, model)
        pairs += [
            check_pair(model, ops, env, _runtime_for(runtimes, env, model), providers)
            for env in names
        ]
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
        kind = _kind_of(candidate)
        found, providers = _runtimes(config, store, names, [kind] if kind else [])
        problems = []
        for env in names:
            pair = check_pair(candidate, ops, env, _runtime_for(found, env, candidate), providers)
            if pair.status == INCOMPATIBLE:
                problems.append(f"environment {env} ({pair.runtime}) cannot load it: {pair.reason}")
            elif pair.status == UNCHECKED:
                problems.append(f"environment {env}: cannot check it ({pair.reason})")
        if not problems:
            return None
        return "; ".join(problems) + "; the version served before stays served"

    return gate
