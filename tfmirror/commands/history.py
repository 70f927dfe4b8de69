"""`tfmirror history`: what the mirror offered, when, who changed it and why (the
journal, mirror.core.journal); `--verify` re-walks its hash chain."""

from __future__ import annotations

import argparse
import json

from mirror.core.config import Config, normalise_name
from mirror.core.errors import UsageError
from mirror.core.journal import Journal, parse_since
from mirror.core.storage import open_store
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK


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
        "--verify",
        action="store_true",
        help="re-walk the hash chain; name the first entry that does not match (exit 1)",
    )


def _line(change: dict[str, object]) -> str:
    what = change.get("model") or " ".join(
        str(change[k]) for k in ("project", "version") if change.get(k)
    )
    where = f" [{change['where']}]" if change.get("where") else ""
    more = f" ({change['reason']})" if change.get("reason") else ""
    return f"    {change['event']}: {what or change.get('filename', '')}{where}{more}"


def run(config: Config, args: argparse.Namespace) -> int:
    journal = Journal(open_store(config.storage))
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
    project = normalise_name(args.project) if args.project else None
    entries = journal.history(project, args.model, since, args.limit)
    if args.json:
        print(json.dumps(entries, indent=1))
        return EXIT_OK
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
