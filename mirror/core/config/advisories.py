"""[advisories]: where OSV's advisory database comes from (its `all.zip` export, one
file per ecosystem) and the caps its download and its records are held to. The section
absent, the mirror carries no advisories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from mirror.core.config.forms import HOSTS, HOSTS_EXAMPLE
from mirror.core.config.keys import RETRIES, SECONDS, Check, Form, Section, key, read_table
from mirror.core.errors import ConfigError
from mirror.core.redact import bounded

OSV_PYPI = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"


def _source(s: Section, name: str, value: str) -> str:
    """An http(s) URL as written, or a local file resolved against the config's folder."""
    if value.startswith(("http://", "https://")):
        return value
    return str((s.base / value).resolve())


def _positive(unit: str) -> Check:
    return Check(lambda n: n > 0, f"must be a positive number of {unit}")


def _until(s: Section, name: str, value: Any) -> date:
    """A TOML date (until = 2027-03-01) or the same as a string; the key is required."""
    day: date | None = value if isinstance(value, date) and value != date.min else None
    if isinstance(value, str):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            day = None
    shown = "(missing)" if value == date.min else value
    s.check(name, day is not None, shown, 'give the last day it applies, e.g. until = "2027-03-01"')
    assert day is not None
    return day


def _projects(s: Section, name: str, raw: Any) -> tuple[str, ...]:
    for project in raw:
        s.check(name, isinstance(project, str) and bool(project), project, "list project names")
    s.check(name, bool(raw), raw, 'list the projects it covers, e.g. projects = ["keras"]')
    return tuple(canonicalize_name(p) for p in raw)


@dataclass(frozen=True)
class Waiver:
    """An advisory accepted for some projects until a day: it does not block them, and
    stops applying by itself the day after `until`."""

    id: str = key(
        "",
        '"GHSA-xxxx-xxxx-xxxx"',
        Check(bool, "name the advisory it waives, by its id or an alias"),
    )
    projects: tuple[str, ...] = key((), '["keras"]', form=Form(list, _projects))
    # required: date.min, the absent value, is refused by _until
    until: date = key(date.min, '"2027-03-01"', form=Form(object, _until))  # noqa: RUF009
    reason: str = key("", '"no untrusted archives are loaded"', Check(bool, "say why"))

    def covers(self, advisory: str, aliases: tuple[str, ...], project: str) -> bool:
        return (self.id == advisory or self.id in aliases) and project in self.projects


def _waivers(s: Section, name: str, raw: Any) -> tuple[Waiver, ...]:
    waivers = []
    for i, table in enumerate(raw):
        where = f"advisories.waivers[{i}]"
        waiver = read_table(Waiver, where, table, s.base)
        if waiver.id.startswith("MAL-"):
            raise ConfigError(  # the check above names the key; this says why
                f"[{where}] id = {bounded(waiver.id, 80)!r}: a malicious release cannot be waived"
            )
        waivers.append(waiver)
    return tuple(waivers)


@dataclass(frozen=True)
class AdvisoriesConfig:
    source: str = key(
        "",
        f'"{OSV_PYPI}"',
        Check(bool, f'name OSV\'s export, e.g. source = "{OSV_PYPI}", or a local file'),
        Form(str, _source),
    )
    # The export is ~30 MB today; the caps bound a hostile or broken one before its
    # bytes are read: the download, what its members declare, each record, their count.
    max_mb: int = key(256, "256", _positive("MB"))
    max_uncompressed_mb: int = key(1024, "1024", _positive("MB"))
    max_record_kb: int = key(1024, "1024", _positive("KB"))
    max_records: int = key(200_000, "200000", _positive("records"))
    timeout: float = key(60.0, "60", SECONDS)
    retries: int = key(4, "4", RETRIES)
    deadline: float = key(900.0, "900", SECONDS)  # the whole download, retries included
    # internal hosts a redirect may lead to
    allow_hosts: tuple[str, ...] = key((), HOSTS_EXAMPLE, form=HOSTS)
    # [[advisories.waivers]]: advisories accepted for some projects until a day
    waivers: tuple[Waiver, ...] = key((), '[{id = "GHSA-...", ...}]', form=Form(list, _waivers))

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("http://", "https://"))


def read(raw: Any, base: Path) -> AdvisoriesConfig | None:
    """The section, or None when the config has none (advisories off)."""
    if raw is None:
        return None
    return read_table(AdvisoriesConfig, "advisories", raw, base)
