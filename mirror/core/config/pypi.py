"""[pypi]: the upstream index, the environments to mirror from it (the top-level
requirements and targets are the environment "default"), and how files are fetched and
sdists built."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from mirror.core.config.environments import (
    ADVISORY_MODE,
    ADVISORY_SEVERITY,
    DEFAULT_ENVIRONMENT,
    ENVIRONMENTS,
    INHERITED,
    LICENSE_MODE,
    Environment,
    own_settings,
)
from mirror.core.config.forms import DURATION, HOSTS, HOSTS_EXAMPLE, REQUIREMENTS
from mirror.core.config.hub import LICENSES, LICENSES_EXAMPLE
from mirror.core.config.keys import RETRIES, SECONDS, Check, Section, key, plain
from mirror.core.config.targets import TARGETS, TARGETS_EXAMPLE, Target
from mirror.core.licenses import LicensePolicy

DEFAULT_UPSTREAM = "https://pypi.org/simple/"
DEFAULT_REQUIREMENTS = ("tensorflow", "tensorflow-hub")
DEFAULT_CONSTRAINTS = ("setuptools<82",)
# What nodes build their own projects with (pip install ., pdm, hatch, poetry).
DEFAULT_BUILD_BACKENDS = (
    "setuptools",
    "wheel",
    "hatchling",
    "flit-core",
    "poetry-core",
    "pdm-backend",
)


def _with_slash(upstream: str) -> str:
    return upstream if upstream == "" or upstream.endswith("/") else upstream + "/"


@dataclass(frozen=True)
class PypiConfig:
    upstream: str = key(
        DEFAULT_UPSTREAM,
        '"https://pypi.org/simple/"',
        Check(
            lambda url: url == "" or url.startswith(("http://", "https://")),
            'must be the http(s) URL of a PEP 691 simple index, or "" for an inner mirror '
            "that only bundles feed",
        ),
        plain(_with_slash),
    )
    # Top-level requirements/targets are the environment "default"; none configured at
    # all is the built-in TensorFlow default for the host.
    environments: tuple[Environment, ...] = key(
        (), "{serving = {requirements = [...]}}", form=ENVIRONMENTS
    )
    # seconds; each environment's default (Environment.min_age)
    min_age: float = key(0.0, '"7d"', form=DURATION)
    # Releases the cooldown lets through at once (an urgent fix): "urllib3==2.8.1".
    cooldown_exempt: tuple[str, ...] = key((), '["urllib3==2.8.1"]', form=REQUIREMENTS)
    # each environment's default (Environment.advisories, .advisory_min_severity)
    advisories: str = key("report", '"block"', ADVISORY_MODE)
    advisory_min_severity: str = key("high", '"high"', ADVISORY_SEVERITY)
    workers: int = key(8, "8", Check(lambda n: 1 <= n <= 64, "use 1 to 64"))
    timeout: float = key(60.0, "60", SECONDS)
    retries: int = key(4, "4", RETRIES)
    deadline: float = key(1800.0, "1800", SECONDS)  # one file's whole download, retries included
    # A dependency with no wheel for a target: "build" it from its sdist in a sandbox,
    # or "refuse" (the target fails, naming it).
    sdists: str = key(
        "build", '"build"', Check(lambda v: v in ("build", "refuse"), 'use "build" or "refuse"')
    )
    build_timeout: float = key(900.0, "900", SECONDS)  # one sandboxed resolve or build
    # the whole build's memory (a cgroup) and each process's address space
    build_memory_mb: int = key(4096, "4096", Check(lambda mb: mb >= 256, "give at least 256 MB"))
    # the whole build's process count (a fork loop stops here)
    build_processes: int = key(
        512, "512", Check(lambda n: 32 <= n <= 100_000, "use 32 to 100000 processes")
    )
    # A mirrored file upstream's page no longer lists: "quarantine" it, or "keep" it.
    on_upstream_removal: str = key(
        "quarantine",
        '"quarantine"',
        Check(lambda v: v in ("quarantine", "keep"), 'use "quarantine" or "keep"'),
    )
    # internal hosts a redirect may lead to
    allow_hosts: tuple[str, ...] = key((), HOSTS_EXAMPLE, form=HOSTS)
    # on every environment's index
    build_backends: tuple[str, ...] = key(
        DEFAULT_BUILD_BACKENDS, '["setuptools", "hatchling"]', form=REQUIREMENTS
    )
    # The licences a mirrored file may have (SPDX ids or expressions; none: any not
    # denied), those it may not, and whether one whose licence is not known may; each
    # environment may set its own. "block": the resolver steps around a release outside
    # it, and a target no release fits fails naming it; "report": shown, not enforced.
    licenses: str = key("block", '"report"', LICENSE_MODE)
    allowed_licenses: tuple[str, ...] = key((), LICENSES_EXAMPLE, form=LICENSES)
    denied_licenses: tuple[str, ...] = key((), '["GPL-3.0-only"]', form=LICENSES)
    allow_unknown_license: bool = key(False, "true")

    @property
    def enabled(self) -> bool:
        """False on a hub-only mirror: no requirements, nothing to sync or prove."""
        return any(env.requirements for env in self.environments)

    @property
    def syncs(self) -> bool:
        """False on a hub-only mirror, and on an inner one (upstream "") that only
        bundles feed."""
        return self.enabled and bool(self.upstream)

    @property
    def why_no_sync(self) -> str:
        if not self.upstream:
            return 'no upstream (upstream = "": an inner mirror that bundles feed)'
        return "no [pypi] requirements (a hub-only mirror)"

    @property
    def requirements(self) -> tuple[str, ...]:
        """Every environment's requirements, each once (the lag shown on the page)."""
        return tuple(dict.fromkeys(r for env in self.environments for r in env.requirements))

    @property
    def targets(self) -> tuple[Target, ...]:
        """Every environment's targets, each once."""
        return tuple(dict.fromkeys(t for env in self.environments for t in env.targets))

    def environment(self, name: str) -> Environment | None:
        return next((env for env in self.environments if env.name == name), None)

    def license_policy(self, name: str) -> LicensePolicy:
        """The licence policy of environment `name`: its own keys, else [pypi]'s."""
        pypi = LicensePolicy(
            self.allowed_licenses, self.denied_licenses, self.allow_unknown_license
        )
        env = self.environment(name)
        if env is None:
            return pypi
        return pypi.own(env.allowed_licenses, env.denied_licenses, env.allow_unknown_license)


@dataclass(frozen=True)
class DefaultEnvironment:
    """[pypi]'s own requirements and targets, the environment "default"; its constraints
    bound every environment, each adding its own."""

    requirements: tuple[str, ...] = key((), '["tensorflow"]', form=REQUIREMENTS)
    targets: tuple[Target, ...] = key((), TARGETS_EXAMPLE, form=TARGETS)
    constraints: tuple[str, ...] = key((), '["setuptools<82"]', form=REQUIREMENTS)


def read(raw: Any, hub_only: bool, has_models: bool, base: Path) -> PypiConfig:
    """`hub_only`: no [pypi] table while [hub] lists models, so no requirements by
    default; `has_models`: an empty requirements list is then a hub-only mirror."""
    s = Section("pypi", raw, base)
    pypi = PypiConfig(**s.read(PypiConfig))
    inner = pypi.upstream == ""
    given = "requirements" in s.given
    builtin = not pypi.environments and not given and not hub_only and not inner
    requirements = DEFAULT_REQUIREMENTS if builtin else ()
    top = DefaultEnvironment(**s.read(DefaultEnvironment, absent={"requirements": requirements}))
    pypi = validate(s, pypi, top, builtin, has_models)
    s.done()
    return pypi


def validate(
    s: Section, pypi: PypiConfig, top: DefaultEnvironment, builtin: bool, has_models: bool
) -> PypiConfig:
    """Checks the default environment against the named ones, and gives each its
    share of [pypi]'s: the constraints, the cooldown."""
    named = pypi.environments
    inner = pypi.upstream == ""
    s.check(
        "requirements",
        bool(top.requirements) or bool(named) or has_models or inner,
        list(top.requirements),
        'list at least one, e.g. ["tensorflow"], or list [hub] models for a hub-only mirror',
    )
    s.check(
        "targets",
        not (named and not top.requirements and "targets" in s.given),
        "[...]",
        "the top-level targets belong to the environment default, which has no "
        "requirements here; give each [pypi.environments.NAME] its own targets",
    )
    environments = list(named)
    if top.requirements:
        # pkg_resources left setuptools in 82, and tensorflow_hub still imports it: the
        # built-in default holds setuptools below it (README "Environments").
        own = DEFAULT_CONSTRAINTS if builtin else ()
        default = Environment(DEFAULT_ENVIRONMENT, top.requirements, top.targets, own)
        environments.insert(0, default)
    _check_index_names(s, environments)
    set_own = own_settings(s)
    environments = [
        replace(
            env,
            constraints=(*top.constraints, *env.constraints),
            **{k: getattr(env if env.name in set_own[k] else pypi, k) for k in INHERITED},
        )
        for env in environments
    ]
    return replace(pypi, environments=tuple(environments))


def _check_index_names(s: Section, environments: list[Environment]) -> None:
    """Each environment is an index: no two names may be one after normalising."""
    seen: dict[str, Environment] = {}
    for env in environments:
        first = seen.setdefault(canonicalize_name(env.name), env)
        other = first.name
        s.check(
            "environments",
            first is env,
            env.name,
            (
                f"{other!r} is defined twice"
                if other == env.name
                else f"{other!r} and {env.name!r} are one index name after normalising"
            )
            + "; rename one"
            + (
                " (the top-level requirements are the environment default)"
                if DEFAULT_ENVIRONMENT in (other, env.name)
                else ""
            ),
        )
