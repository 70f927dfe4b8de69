"""What an advisory does to one environment (README "Known vulnerabilities and
licences"): in "report" nothing; in "block" an advisory at or above the environment's
`advisory_min_severity` keeps the release it affects out, unless a waiver in force
covers it. A `MAL-` record (a malicious release) blocks everywhere and cannot be waived.
An unscored advisory (severity unknown) counts as below low: it is reported, never
blocked, since a threshold cannot say where it stands.

"Today" is the day of the sync's own clock (PypiSync's), so a waiver's last day is
judged the same way by every check of one sync, and a test can move it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from mirror.advisories.database import load_advisories
from mirror.advisories.errors import NoDatabase
from mirror.advisories.matching import Finding, Matcher
from mirror.advisories.records import Severity
from mirror.core.config import Config, Environment
from mirror.core.config.advisories import Waiver
from mirror.core.storage import BlobStore

BLOCK = "block"


def is_malicious(finding: Finding) -> bool:
    return finding.advisory.id.startswith("MAL-")


def day_of(moment: float) -> date:
    """The UTC day of an epoch time: waivers run out at the end of their last UTC day."""
    return datetime.fromtimestamp(moment, UTC).date()


@dataclass(frozen=True)
class Policy:
    """One environment's policy on one day."""

    environment: str
    mode: str  # "report" or "block"
    min_severity: Severity
    waivers: tuple[Waiver, ...]
    today: date

    @classmethod
    def of(cls, env: Environment, config: Config, today: date) -> Policy:
        waivers = config.advisories.waivers if config.advisories is not None else ()
        threshold = Severity.named(env.advisory_min_severity)
        return cls(env.name, env.advisories, threshold, waivers, today)

    def waiver(self, finding: Finding) -> Waiver | None:
        """The waiver in force that covers this finding, if any."""
        if is_malicious(finding):
            return None
        a = finding.advisory
        return next(
            (
                w
                for w in self.waivers
                if w.until >= self.today and w.covers(a.id, a.aliases, finding.project)
            ),
            None,
        )

    def would_block(self, finding: Finding) -> bool:
        """Blocked but for a waiver."""
        if is_malicious(finding):
            return True
        return self.mode == BLOCK and finding.severity >= self.min_severity

    def blocks(self, finding: Finding) -> bool:
        return self.would_block(finding) and self.waiver(finding) is None

    def blocked(self, findings: Iterable[Finding]) -> list[Finding]:
        return [f for f in findings if self.blocks(f)]


def expired(waivers: Iterable[Waiver], today: date) -> list[Waiver]:
    return [w for w in waivers if w.until < today]


def why_blocked(finding: Finding) -> str:
    """`GHSA-… (high; fixed in 1.2.0)`: what a failure or a withheld file names."""
    fixed = ", ".join(finding.fixed_in) or "no fix listed"
    kind = "malicious" if is_malicious(finding) else finding.severity.label
    return f"{finding.advisory.id} ({kind}; fixed in {fixed})"


@dataclass(frozen=True)
class Screen:
    """One sync's advisory database and each environment's policy: what its resolves
    avoid and its checks refuse or withhold."""

    matcher: Matcher
    policies: dict[str, Policy]  # by environment
    database: str  # the export's sha256

    @classmethod
    def load(cls, store: BlobStore, config: Config, now: float) -> Screen | None:
        """None: no database synced (or carried) yet, so nothing is blocked."""
        try:
            current, records = load_advisories(store)
        except NoDatabase:
            return None
        today = day_of(now)
        policies = {e.name: Policy.of(e, config, today) for e in config.pypi.environments}
        return cls(Matcher(records.entries), policies, current.archive_sha256)

    def blocked(self, environment: str, releases: Iterable[tuple[str, str]]) -> list[Finding]:
        policy = self.policies.get(environment)
        found = self.matcher.match(releases)
        if policy is None:  # no longer configured: only what blocks everywhere
            return [f for f in found if is_malicious(f)]
        return policy.blocked(found)

    def blocked_everywhere(self, project: str, version: str) -> list[Finding]:
        """What keeps the release out of every environment: its files can be withheld
        from every page (the union's too, whose file URLs every environment links)."""
        return [
            f
            for f in self.matcher.affecting(project, version)
            if is_malicious(f)
            or (bool(self.policies) and all(p.blocks(f) for p in self.policies.values()))
        ]

    def digest(self, environment: str) -> str:
        """What the environment's closure is resolved around, as one string: the
        database, the policy and the waivers in force today. A closure resolved under
        another is resolved again (a waiver that begins or runs out changes it)."""
        policy = self.policies.get(environment)
        if policy is None:
            return self.database
        in_force = sorted(
            f"{w.id}:{','.join(w.projects)}" for w in policy.waivers if w.until >= policy.today
        )
        return f"{self.database} {policy.mode} {policy.min_severity.label} {' '.join(in_force)}"
