"""`tfmirror audit`: the advisories in force against what the mirror offers (each
environment's closure, now or as a snapshot holds it) or against a lock file a CI image
was built from. Exit 1 when an advisory at or above `--min-severity` affects something
and no waiver in force ([[advisories.waivers]]) covers it, 0 when none does, 2 for a
usage error. Nothing is withheld here: the sync does that (mirror.advisories.policy).
`--licenses` lists each environment's licences instead (files per SPDX id, and those
outside its policy: exit 1 when there is one); it needs no advisory database."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mirror.advisories.database import Current, load_advisories
from mirror.advisories.matching import Finding, Matcher
from mirror.advisories.policy import Policy, day_of
from mirror.advisories.records import Severity
from mirror.core.config import Config
from mirror.core.config.advisories import Waiver
from mirror.core.errors import UsageError
from mirror.pypi.lockfile import read_lock
from mirror.pypi.package_licenses import LicenseSummary
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK, closures
from tfmirror.parts import MirrorParts

LEVELS = [s.label for s in Severity]


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", metavar="NAME", help="one environment (default: every one)")
    parser.add_argument("--snapshot", metavar="NAME", help="the closures a snapshot holds")
    parser.add_argument("--lock", metavar="FILE", help="a requirements lock (name==version)")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument(
        "--licenses",
        action="store_true",
        help="each environment's licences and the files outside its licence policy",
    )
    parser.add_argument(
        "--min-severity",
        choices=LEVELS,
        default="unknown",
        help="exit 1 only for advisories at or above it (default: any; unknown = unscored)",
    )


@dataclass(frozen=True)
class Scope:
    """What was audited (an environment, or a lock file) and the releases it holds."""

    name: str
    releases: frozenset[tuple[str, str]]


def _scopes(parts: MirrorParts, args: argparse.Namespace) -> list[Scope]:
    if args.lock:
        if args.env or args.snapshot:
            raise UsageError("--lock audits the file alone; drop --env and --snapshot")
        path = Path(args.lock)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--lock {args.lock}: cannot read it ({exc})") from None
        return [Scope(str(path), frozenset(read_lock(text, str(path))))]
    return [
        Scope(name, frozenset((w.project, w.version) for m in manifests for w in m.files))
        for name, manifests in closures(parts.config, parts.store, args.env, args.snapshot).items()
    ]


def _waivers(config: Config) -> tuple[Waiver, ...]:
    return config.advisories.waivers if config.advisories is not None else ()


def waived(config: Config) -> Callable[[Finding], Waiver | None]:
    """The waiver in force today that covers a finding (in any scope: a waiver names
    projects, not environments)."""
    today = day_of(time.time())
    policy = Policy("audit", "report", Severity.UNKNOWN, _waivers(config), today)
    return policy.waiver


def _json(
    current: Current,
    found: dict[str, list[Finding]],
    threshold: Severity,
    waiver: Callable[[Finding], Waiver | None],
) -> str:
    doc = {
        "database": {
            "sha256": current.archive_sha256,
            "records": current.records,
            "fetched_at": current.fetched_at,
        },
        "min_severity": threshold.label,
        "scopes": {
            scope: [
                {
                    "id": f.advisory.id,
                    "aliases": list(f.advisory.aliases),
                    "project": f.project,
                    "version": f.version,
                    "severity": f.severity.label,
                    "score": f.advisory.score,
                    "fixed_in": list(f.fixed_in),
                    "summary": f.advisory.summary,
                    "waived_until": w.until.isoformat() if (w := waiver(f)) else None,
                }
                for f in findings
            ]
            for scope, findings in found.items()
        },
    }
    return json.dumps(doc, indent=1)


def _text(
    current: Current, found: dict[str, list[Finding]], waiver: Callable[[Finding], Waiver | None]
) -> str:
    lines = [
        f"advisory database {current.archive_sha256[:12]} ({current.records} PyPI advisories, "
        f"fetched {current.fetched_at})"
    ]
    for scope, findings in found.items():
        lines.append(f"{scope}: {len(findings) or 'no'} known vulnerabilities")
        for f in findings:
            fixed = ", ".join(f.fixed_in) or "no fix listed"
            score = f" {f.advisory.score:g}" if f.advisory.score is not None else ""
            w = waiver(f)
            note = f"  waived until {w.until.isoformat()}: {w.reason}" if w else ""
            lines.append(
                f"  {f.advisory.id}  {f.project} {f.version}  {f.severity.label}{score}  "
                f"fixed in {fixed}{note}"
            )
    return "\n".join(lines)


def _license_lines(summaries: list[LicenseSummary]) -> list[str]:
    lines = []
    for summary in summaries:
        lines.append(f"{summary.environment}: {sum(summary.counts.values())} files")
        lines += [f"  {n:5d}  {name}" for name, n in summary.counts.items()]
        lines.append(f"  outside the licence policy: {len(summary.outside) or 'none'}")
        lines += [f"    {line}" for line in summary.outside]
    return lines


def _licenses(parts: MirrorParts, args: argparse.Namespace) -> int:
    if args.lock:
        raise UsageError("--licenses reads the mirrored files' metadata; drop --lock")
    pypi = parts.config.pypi
    summaries = [
        LicenseSummary.of(env, (w for m in ms for w in m.files), pypi.license_policy(env))
        for env, ms in closures(parts.config, parts.store, args.env, args.snapshot).items()
    ]
    if args.json:
        print(json.dumps({"licenses": [asdict(s) for s in summaries]}, indent=1))
    else:
        print("\n".join(_license_lines(summaries)))
    return EXIT_FAILED if any(s.outside for s in summaries) else EXIT_OK


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    if args.licenses:
        return _licenses(parts, args)
    threshold = Severity[args.min_severity.upper()]
    scopes = _scopes(parts, args)
    current, records = load_advisories(parts.store)
    matcher = Matcher(records.entries)
    found = {scope.name: matcher.match(scope.releases) for scope in scopes}
    waiver = waived(parts.config)
    print(_json(current, found, threshold, waiver) if args.json else _text(current, found, waiver))
    over = any(f.severity >= threshold and waiver(f) is None for fs in found.values() for f in fs)
    return EXIT_FAILED if over else EXIT_OK
