"""`tfmirror hub check` and `tfmirror hub export-serving`: which model loads in which
environment's TensorFlow (verify.compat), and a TF Serving repository of those that do
(hub_cache.serving_repo)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub_cache.compat_matrix import INCOMPATIBLE, UNCHECKED, Pair
from hub_cache.contracts import served_check
from hub_cache.limits import caps
from hub_cache.models import ModelManifest, load_models
from hub_cache.serving_repo import Placement, export_serving, serving_name, serving_version
from mirror.core.contract_changes import BREAKING, ContractCheck
from mirror.core.errors import UsageError
from mirror.core.handles import handle_path
from mirror.core.licenses import License
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK
from tfmirror.parts import MirrorParts
from verify.compat import check_matrix, environments


def check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env", action="append", metavar="NAME", help="only this environment (repeatable)"
    )
    parser.add_argument("--json", action="store_true")


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="TF Serving's model repository")
    parser.add_argument(
        "--env", metavar="NAME", help="only models this environment's TensorFlow loads"
    )
    parser.add_argument("--models", nargs="+", metavar="HANDLE", help="only these (default: all)")
    parser.add_argument(
        "--keep", type=int, default=2, metavar="N", help="versions kept per model (default 2)"
    )


def _known(parts: MirrorParts, names: list[str] | None) -> list[str] | None:
    if not names:
        return None
    have = environments(parts.config, parts.store)
    for name in names:
        if name not in have:
            raise UsageError(f"no environment {name!r}; there are: {', '.join(have) or 'none'}")
    return names


def run_check(parts: MirrorParts, args: argparse.Namespace) -> int:
    only = _known(parts, args.env)
    pairs = check_matrix(parts.config, parts.store, only)
    models = [m for m in load_models(parts.store) if not m.alias_of]
    checks = {m.handle: served_check(parts.store, m, parts.config.hub) for m in models}
    licenses = {m.handle: m.model_license for m in models}
    # A model no environment was checked against still has its contract to show.
    paired = {p.model for p in pairs}
    pairs += [
        Pair(m.handle, "", UNCHECKED, reason="no environment to check it against", sha256=m.sha256)
        for m in models
        if m.handle not in paired
    ]
    if args.json:
        rows = [
            p.as_json()
            | {"contract": _contract_json(checks.get(p.model))}
            | {"license": _license_json(licenses.get(p.model))}
            for p in pairs
        ]
        print(json.dumps(rows, indent=1))
    else:
        for p in pairs:
            runtime = p.runtime or (f"TensorFlow {p.tensorflow}" if p.tensorflow else "")
            detail = f" ({runtime})" if runtime else ""
            why = f": {p.reason}" if p.reason else ""
            shown = f"{p.status.upper()}{detail}{why}"
            contract = _contract_shown(checks.get(p.model))
            license = licenses.get(p.model)
            licence = f"licence {license.shown() if license else '-'}"
            print(f"{p.model}\t{p.environment or '-'}\t{shown}\t{contract}\t{licence}")
        if not pairs:
            print("no models mirrored yet")
    incompatible = any(p.status == INCOMPATIBLE for p in pairs)
    broken = any(c is not None and c.state == BREAKING for c in checks.values())
    return EXIT_FAILED if incompatible or broken else EXIT_OK


def _contract_json(check: ContractCheck | None) -> dict[str, Any] | None:
    return check.as_json() if check is not None else None


def _license_json(license: License | None) -> dict[str, str] | None:
    return license.as_json() if license is not None else None


def _contract_shown(check: ContractCheck | None) -> str:
    """The contract column: its state against the pinned file, and why where it is not
    met ("-": no contract pinned)."""
    if check is None:
        return "contract -"
    shown = f"contract {check.state} vs {check.pinned}"
    if check.unread:
        return f"{shown}: {check.unread}"
    if check.breaking:
        return f"{shown}: " + "; ".join(c.shown() for c in check.breaking)
    return shown


def run_export(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    if args.keep < 1:
        raise UsageError(f"--keep {args.keep}: keep at least 1 version per model")
    store = parts.store
    named = {m.handle: m.serving_name for m in config.hub.models}
    models = [m for m in load_models(store) if not m.alias_of]
    if args.models:
        wanted = {handle_path(h) if "://" in h else h.strip("/") for h in args.models}
        unknown = wanted - {m.path for m in models}
        if unknown:
            raise UsageError(f"--models: no model {sorted(unknown)[0]!r} on this mirror")
        models = [m for m in models if m.path in wanted]
    placements = [
        Placement(m, serving_name(m.path, named.get(m.handle, "")), serving_version(m.path))
        for m in models
    ]
    taken: dict[tuple[str, int], str] = {}
    for p in placements:
        other = taken.setdefault((p.name, p.version), p.manifest.handle)
        if other != p.manifest.handle:
            raise UsageError(
                f"{p.manifest.handle} and {other} would both be {p.name}/{p.version}: "
                "give one a serving_name in [hub] models"
            )
    refuse = _refusal(parts, args.env) if args.env else (lambda _: None)
    done = export_serving(store, Path(args.dir), placements, caps(config.hub), args.keep, refuse)
    for e in done:
        line = f"{e.name}/{e.version}: {e.status}" + (f" ({e.handle})" if e.handle else "")
        print(line + (f": {e.detail}" if e.detail else ""), file=sys.stderr if e.detail else None)
    return EXIT_FAILED if any(e.status == "refused" for e in done) else EXIT_OK


def _refusal(parts: MirrorParts, environment: str) -> Callable[[ModelManifest], str | None]:
    only = _known(parts, [environment]) or []
    pairs = {p.sha256: p for p in check_matrix(parts.config, parts.store, only)}

    def refuse(model: ModelManifest) -> str | None:
        pair = pairs.get(model.sha256)
        if pair is not None and pair.status == INCOMPATIBLE:
            return f"environment {environment} cannot load it: {pair.reason}"
        if pair is not None and pair.status == UNCHECKED:
            print(f"note: {model.handle} not checked against {environment}: {pair.reason}")
        return None

    return refuse
