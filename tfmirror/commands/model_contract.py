"""`tfmirror hub contract HANDLE [--against VERSION] [--json] [--write FILE]`: the
signatures a mirrored model takes and gives (read without TensorFlow, hub_cache.contracts),
what changed since another version the mirror holds (exit 1 if anything breaks serving
code), and the contract written as the file an operator pins in `[hub] models`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hub_cache.contracts import model_contract
from hub_cache.models import ModelManifest, load_model
from mirror.core.contract_changes import Change, breaking, compare
from mirror.core.contracts import Contract
from mirror.core.errors import UsageError
from mirror.core.handles import handle_path
from mirror.core.storage import BlobStore
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK
from tfmirror.parts import MirrorParts


def contract_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("handle", metavar="HANDLE", help="a model's handle, or its path")
    parser.add_argument(
        "--against",
        metavar="VERSION",
        help="another version the mirror holds (its number, handle or path): list what changed",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--write", metavar="FILE", help="write the contract as the file to pin ([hub] models)"
    )


def _path(handle: str) -> str:
    try:
        return handle_path(handle) if "://" in handle else handle_path(f"https://x/{handle}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _version_path(path: str, version: str) -> str:
    """Another version of the model at `path`: a bare number replaces its last segment."""
    if "://" in version or "/" in version:
        return _path(version)
    return _path(path.rsplit("/", 1)[0] + "/" + version)


def _model(store: BlobStore, path: str, flag: str = "") -> ModelManifest:
    found = load_model(store, path)
    if found is None:
        where = f"{flag}: " if flag else ""
        raise UsageError(f"{where}no model {path!r} on this mirror (tfmirror status lists them)")
    return found


def _contract(parts: MirrorParts, model: ModelManifest) -> Contract | str:
    max_bytes = parts.config.hub.max_uncompressed_mb * 2**20
    return model_contract(parts.store, model.sha256, model.archive, max_bytes)


def _print(model: ModelManifest, contract: Contract) -> None:
    print(f"{model.handle} (read from {contract.read_from or 'its files'})")
    for signature in contract.signatures:
        print(signature.name)
        for side, specs in (("input", signature.inputs), ("output", signature.outputs)):
            for spec in specs:
                default = " (has a default)" if spec.optional else ""
                print(f"  {side:6} {spec.name}\t{spec.shown()}{default}")


def _write(path: Path, contract: Contract) -> None:
    """The pin file, in a folder made for it if there is none yet (`contracts/m.json`)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contract.to_bytes())
    except OSError as exc:
        raise UsageError(f"--write {path}: {exc.strerror or exc}") from None


def run_contract(parts: MirrorParts, args: argparse.Namespace) -> int:
    model = _model(parts.store, _path(args.handle))
    contract = _contract(parts, model)
    if isinstance(contract, str):
        print(f"FAILED {model.handle}: its contract is not read: {contract}", file=sys.stderr)
        return EXIT_FAILED
    if args.write:
        _write(Path(args.write), contract)
    changes: list[Change] | None = None
    if args.against:
        older = _model(parts.store, _version_path(model.path, args.against), "--against")
        before = _contract(parts, older)
        if isinstance(before, str):
            print(f"FAILED {older.handle}: its contract is not read: {before}", file=sys.stderr)
            return EXIT_FAILED
        changes = compare(before, contract)
    if args.json:
        doc: dict[str, object] = {"handle": model.handle, "contract": contract.as_json()}
        if changes is not None:
            doc["against"] = older.handle
            doc["changes"] = [c.as_json() for c in changes]
        print(json.dumps(doc, indent=1))
    else:
        _print(model, contract)
        if changes is not None:
            print(f"changes since {older.handle}:" if changes else f"same as {older.handle}")
            for change in changes:
                print(f"  {change.shown()}")
    if args.write:
        print(f"wrote {args.write}", file=sys.stderr)
    return EXIT_FAILED if changes and breaking(changes) else EXIT_OK
