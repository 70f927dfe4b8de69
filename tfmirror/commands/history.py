"""`tfmirror history`: what the mirror offered, when, who changed it and why (the
journal, mirror.core.journal); `--verify` re-walks its hash chain."""

from __future__ import annotations

import argparse
import json
from typing import Any

from packaging.utils import canonicalize_name

from mirror.core.errors import UsageError
from mirror.core.journal import (
    OUTER,
    Journal,
    parse_since,
    read_lines,
    touches,
    verify_outer,
)
from mirror.core.journal_text import describe
from mirror.core.storage import BlobStore
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--project", metavar="P", help="only changes to this PyPI project")
    which.add_argument("--model", metavar="HANDLE", help="only changes to this model")
    parser.add_argument(
        "--since", metavar="T", help="only changes from this time on (2026-11-28 or ISO 8601)"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="the newest N entries only")
    parser.add_argument("--json", action="store_true", help="one JSON list of the entries")
    parser.add_argument(
        "--outer",
        action="store_true",
        help="the outer mirror's journal, as the last bundle imported here carried it",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="re-walk the hash chain; name the first entry that does not match (exit 1)",
    )


def _line(change: dict[str, object]) -> str:
    return f"    {describe(change)}"


def _outer(store: BlobStore, args: argparse.Namespace) -> list[dict[str, Any]] | int:
    """The outer mirror's journal (entries newest first), or the exit code of --verify."""
    data = store.get(OUTER)
    if data is None:
        raise UsageError("history --outer: no bundle carrying a journal was imported here")
    if args.verify:
        count, broken = verify_outer(store) or (0, None)
        if broken is not None:
            print(f"outer journal: BROKEN at {broken}")
            return EXIT_FAILED
        print(f"outer journal: {count} entries, every link matches")
        return EXIT_OK
    return list(reversed(read_lines(data)))


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    store = parts.store
    journal = Journal(store)
    outer: list[dict[str, Any]] | None = None
    if args.outer:
        found = _outer(store, args)
        if isinstance(found, int):
            return found
        outer = found
    if args.verify:
        broken = journal.verify()
        if broken is not None:
            print(f"journal: BROKEN at {broken}")
            return EXIT_FAILED
        count = sum(1 for _ in journal.entries())
        print(f"journal: {count} entries, every link matches")
        return EXIT_OK
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError:
        raise UsageError(f"--since {args.since!r}: use a date such as 2026-11-28") from None
    project = canonicalize_name(args.project) if args.project else None
    if outer is not None:
        entries = [e for e in outer if touches(e, project, args.model, since)][: args.limit]
    else:
        entries = journal.history(project, args.model, since, args.limit)
    if args.json:
        print(json.dumps(entries, indent=1))
        return EXIT_OK
    if not entries:
        print("no changes recorded" + (" that match" if project or args.model or since else ""))
    for entry in entries:
        reason = f": {entry['reason']}" if entry.get("reason") else ""
        print(f"#{entry['seq']} {entry['at']} {entry['actor']}{reason}")
        for change in entry.get("changes", []):
            if project and change.get("project") != project:
                continue
            if args.model and change.get("model") != args.model:
                continue
            print(_line(change))
    return EXIT_OK
