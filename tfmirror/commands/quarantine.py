"""`tfmirror quarantine add|remove|list`: pull a release or a model from the whole fleet
now, put it back later (mirror.core.quarantine); every change is journaled."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

from hub_cache.models import load_models
from mirror.core.config import Config
from mirror.core.errors import UsageError
from mirror.core.journal import Journal, actor_for
from mirror.core.quarantine import (
    QuarantineRule,
    add_rules,
    as_change,
    check_spec,
    new_rule,
    read_quarantine,
    remove_rule,
)
from mirror.core.storage import BlobStore
from mirror.devpi.errors import DevpiError, DevpiStartError
from mirror.pypi.manifest import load_all
from tfmirror.commands.common import EXIT_OK
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="stop offering a project, release, file or model")
    add.add_argument(
        "spec", help="project, project==version, a file name, or with --model a handle"
    )
    add.add_argument("--reason", required=True, help="why (kept in the journal and shown)")
    add.add_argument("--model", action="store_true", help="SPEC is a model handle")
    remove = actions.add_parser("remove", help="offer it again")
    remove.add_argument("spec")
    remove.add_argument("--model", action="store_true", help="SPEC is a model handle")
    listing = actions.add_parser("list", help="what is quarantined, by whom and why")
    listing.add_argument("--json", action="store_true")


def _covered(store: BlobStore, rule: QuarantineRule) -> list[tuple[str, str]]:
    """(file or handle, sha256) of what the rule covers now."""
    if rule.model:
        return [
            (what, sha)
            for m in load_models(store)
            if rule.matches_model(m.handle, m.path)
            for sha, _, what in m.blobs()
        ]
    found = {
        w.sha256: w.filename
        for m in load_all(store)
        for w in m.files
        if rule.matches_file(w.project, w.version, w.filename)
    }
    return sorted((name, sha) for sha, name in found.items())


def _tell_devpi(config: Config, store: BlobStore, doing: str) -> None:
    """A running devpi does its part now (one purge or one page re-read: a takedown
    does not wait for more); a devpi that is down is not started for it (that costs
    seconds to minutes): tfmirror does it as it next starts devpi, before it serves."""
    from mirror.devpi.publish import settle_running_devpi  # `list` does without it

    # Said before it is waited for: if devpi is slow to answer, this is what we wait on.
    print(f"devpi: {doing} ...", end=" ", flush=True)
    began = time.monotonic()
    try:
        running = settle_running_devpi(config, store)
    except (DevpiError, DevpiStartError) as exc:
        print(f"failed: {exc}; the next sync brings devpi in line")
        return
    if running:
        print(f"done ({time.monotonic() - began:.1f} s)")
    elif config.devpi.serverdir is not None:
        print("not running; tfmirror does it as it next starts devpi, before devpi serves")
    else:
        print("not reachable; the next sync does it")


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    store = parts.store
    journal = Journal(store)
    actor = actor_for("manual")
    if args.action == "list":
        rules = read_quarantine(store).rules
        if args.json:
            print(json.dumps([asdict(r) for r in rules], indent=1))
        for rule in [] if args.json else rules:
            what = "model " if rule.model else ""
            print(f"{what}{rule.spec}\t{rule.reason}\t{rule.actor} {rule.at}\t({rule.source})")
        return EXIT_OK
    spec = check_spec(args.spec, args.model)
    if args.action == "remove":
        lifted = remove_rule(store, spec, args.model)
        if lifted is None:
            raise UsageError(f"quarantine: {spec!r} is not quarantined (see: quarantine list)")
        journal.record([as_change(lifted, "released")], actor, f"released: {lifted.reason}")
        print(f"released {spec}; offered again within the page cache's lifetime")
        if not lifted.model:
            _tell_devpi(config, store, f"re-reading the page of {lifted.project}")
        return EXIT_OK
    rule = new_rule(spec, args.reason, actor, args.model)
    covered = _covered(store, rule)
    rule = replace(rule, blobs=tuple(sha for _, sha in covered))
    if not add_rules(store, [rule]):
        print(f"{spec} is already quarantined for that reason")
        return EXIT_OK
    change = {**as_change(rule, "quarantined"), "files": [name for name, _ in covered]}
    journal.record([change], actor, args.reason)
    names = ", ".join(name for name, _ in covered) or "nothing mirrored yet"
    print(f"quarantined {spec} ({names}); gone from every index within the page cache's lifetime")
    if not rule.model:
        _tell_devpi(config, store, f"purging its copies of {rule.project}")
    return EXIT_OK
