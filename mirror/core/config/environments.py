"""[pypi.environments.NAME]: a named set of requirements with its own targets, the unit
of version locking, each resolved and served as an index of its own."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.core.config.forms import DURATION, REQUIREMENTS
from mirror.core.config.hub import LICENSES, LICENSES_EXAMPLE
from mirror.core.config.keys import Check, Form, Section, key
from mirror.core.config.targets import TARGETS, TARGETS_EXAMPLE, Target
from mirror.core.errors import ConfigError
from mirror.core.redact import bounded

DEFAULT_ENVIRONMENT = "default"
_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# What a known vulnerability does to an environment's closure (README "Known
# vulnerabilities and licences"): "report" it, or "block" the affected releases.
ADVISORY_MODE = Check(lambda v: v in ("report", "block"), 'use "report" or "block"')
# What a licence outside the policy does to it: "block" (resolve around the release, or
# fail the target naming it: the default, so a policy stays enforced) or "report" it.
LICENSE_MODE = Check(lambda v: v in ("report", "block"), 'use "block" or "report"')
SEVERITIES = ("low", "medium", "high", "critical")
ADVISORY_SEVERITY = Check(lambda v: v in SEVERITIES, f"use one of {', '.join(SEVERITIES)}")
# Keys an environment may set for itself, else it takes [pypi]'s.
INHERITED = ("min_age", "advisories", "advisory_min_severity", "licenses")


@dataclass(frozen=True)
class Environment:
    """A named set of requirements with its own targets: the unit of version locking.
    Each is resolved per target on its own and served as an index of its own."""

    name: str  # its table's name, not a key of it
    requirements: tuple[str, ...] = key(
        (), '["tensorflow==2.18.*"]', form=REQUIREMENTS, required=True
    )
    targets: tuple[Target, ...] = key((), TARGETS_EXAMPLE, form=TARGETS, required=True)
    # Bound what the resolver may pick without requiring it (pip's -c, uv's --constraint).
    constraints: tuple[str, ...] = key((), '["setuptools<82"]', form=REQUIREMENTS)
    # The cooldown: a release younger than this many seconds is not taken (0: off);
    # the environment's own min_age, else [pypi] min_age.
    min_age: float = key(0.0, '"7d"', form=DURATION)
    # Known vulnerabilities: "report" or "block" those at or above the severity (the
    # environment's own, else [pypi]'s).
    advisories: str = key("report", '"block"', ADVISORY_MODE)
    advisory_min_severity: str = key("high", '"high"', ADVISORY_SEVERITY)
    # This environment's package licence policy, in place of [pypi]'s where set, and
    # what a file outside it does: "block" or "report" (the environment's own, else
    # [pypi]'s).
    licenses: str = key("block", '"report"', LICENSE_MODE)
    allowed_licenses: tuple[str, ...] | None = key(None, LICENSES_EXAMPLE, form=LICENSES)
    denied_licenses: tuple[str, ...] | None = key(None, '["GPL-3.0-only"]', form=LICENSES)
    allow_unknown_license: bool | None = key(None, "true", form=Form(bool))


def read(name: str, raw: Any, inner: bool, base: Path) -> Environment:
    """`inner`: a mirror with no upstream, where an environment may list nothing."""
    s = Section(f"pypi.environments.{name}", raw, base)
    if not _ENV_NAME.match(name):
        raise ConfigError(
            f"[pypi.environments.{bounded(name, 80)!r}]: an environment's name becomes its "
            "index path; use letters, digits, '.', '-' and '_' (up to 64), e.g. serving"
        )
    env = Environment(name, **s.read(Environment))
    validate(s, env, inner)
    s.done()
    return env


def validate(s: Section, env: Environment, inner: bool) -> None:
    s.check(
        "requirements",
        bool(env.requirements) or inner,
        list(env.requirements),
        'list at least one, e.g. ["tensorflow==2.18.*"]',
    )


def _environments(s: Section, name: str, raw: Any) -> tuple[Environment, ...]:
    # [pypi] upstream, read before this key, tells an inner mirror.
    inner = s.raw["upstream"] == ""
    return tuple(read(str(n), e, inner, s.base) for n, e in dict(raw).items())


# [pypi.environments]: a table of environment tables, in the file's order.
ENVIRONMENTS = Form(dict, _environments)


def own_settings(s: Section) -> dict[str, set[str]]:
    """For each INHERITED key, the environments of [pypi] `s` that set their own."""
    tables = dict(s.raw["environments"]).items()
    return {name: {str(n) for n, table in tables if name in table} for name in INHERITED}
