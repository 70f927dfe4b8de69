"""[advisories]: where OSV's advisory database comes from (its `all.zip` export, one
file per ecosystem) and the caps its download and its records are held to. The section
absent, the mirror carries no advisories."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.core.config.forms import HOSTS, HOSTS_EXAMPLE
from mirror.core.config.keys import RETRIES, SECONDS, Check, Form, Section, key, read_table

OSV_PYPI = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"


def _source(s: Section, name: str, value: str) -> str:
    """An http(s) URL as written, or a local file resolved against the config's folder."""
    if value.startswith(("http://", "https://")):
        return value
    return str((s.base / value).resolve())


def _positive(unit: str) -> Check:
    return Check(lambda n: n > 0, f"must be a positive number of {unit}")


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

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("http://", "https://"))


def read(raw: Any, base: Path) -> AdvisoriesConfig | None:
    """The section, or None when the config has none (advisories off)."""
    if raw is None:
        return None
    return read_table(AdvisoriesConfig, "advisories", raw, base)
