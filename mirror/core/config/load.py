"""The whole config: finding the file, reading each section in turn, and the checks
that span sections (an environment named like the union index, a model naming an
environment [pypi] does not have)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from mirror.core.config import advisories, devpi, follow, hub, proxy, pypi, schedule, storage, web
from mirror.core.config.advisories import AdvisoriesConfig
from mirror.core.config.devpi import DevpiConfig
from mirror.core.config.follow import FollowConfig
from mirror.core.config.hub import HubConfig
from mirror.core.config.proxy import ProxyConfig
from mirror.core.config.pypi import PypiConfig
from mirror.core.config.schedule import ScheduleConfig
from mirror.core.config.storage import StorageConfig
from mirror.core.config.web import WebConfig
from mirror.core.errors import ConfigError
from mirror.core.model_forms import TFJS

ENV_CONFIG = "TFMIRROR_CONFIG"
LOCAL_CONFIG = "tfmirror.toml"
SECTIONS = (
    "storage",
    "devpi",
    "pypi",
    "web",
    "hub",
    "schedule",
    "proxy",
    "advisories",
    "follow",
)


@dataclass(frozen=True)
class Config:
    storage: StorageConfig = field(default_factory=StorageConfig)
    devpi: DevpiConfig = field(default_factory=DevpiConfig)
    pypi: PypiConfig = field(default_factory=PypiConfig)
    web: WebConfig = field(default_factory=WebConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    advisories: AdvisoriesConfig | None = None  # None: no [advisories], none carried
    follow: FollowConfig | None = None  # None: no [follow], a mirror of its own
    source: Path | None = None  # the file it came from; None for the embedded default

    @property
    def jobs(self) -> tuple[tuple[str, str], ...]:
        """This mirror's jobs, each with its cron ("" for not scheduled): the advisories
        job only where [advisories] names a source to refresh."""
        return tuple(
            (job, cron)
            for job, cron in self.schedule.jobs
            if job != "advisories" or self.advisories is not None
        )

    @property
    def devpi_mirror_url(self) -> str:
        return self.devpi.mirror_url or f"{self.web.base_url}/simple/"

    @property
    def front_urls(self) -> tuple[str, ...]:
        """The web fronts the proxy sends pages, the API and hub requests to."""
        return self.proxy.fronts or (self.web.base_url,)


def parse_config(data: Mapping[str, Any], base: Path, source: Path | None = None) -> Config:
    """Validate a parsed TOML document; relative paths resolve against `base`."""
    follow_config = follow.read(data, base)  # first: it names a secret put in the file
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(
                f"[{key}]: unknown section; use one of {', '.join(SECTIONS)} or check its spelling"
            )
    storage_config = storage.read(data.get("storage", {}), base)
    hub_config = hub.read(data.get("hub", {}), base, storage_config)
    has_models = bool(hub_config.models)
    devpi_config = devpi.read(data.get("devpi", {}), base, storage_config)
    hub_only = "pypi" not in data and has_models
    pypi_config = pypi.read(data.get("pypi", {}), hub_only, has_models, base)
    if follow_config is not None:
        # A site resolves nothing: the centre's manifests are all it serves.
        pypi_config = replace(pypi_config, upstream="")
    validate(devpi_config, pypi_config, hub_config)
    return Config(
        storage=storage_config,
        devpi=devpi_config,
        pypi=pypi_config,
        web=web.read(data.get("web", {}), base),
        hub=hub_config,
        schedule=_schedule(data, base),
        advisories=advisories.read(data.get("advisories"), base),
        proxy=proxy.read(data.get("proxy", {}), base, storage_config),
        follow=follow_config,
        source=source,
    )


def _schedule(data: Mapping[str, Any], base: Path) -> ScheduleConfig:
    """[schedule], with the advisories job unscheduled where there is no [advisories]
    (nor is it one of this mirror's jobs then: Config.jobs)."""
    read = schedule.read(data.get("schedule", {}), base)
    if "advisories" in data:
        return read
    raw = data.get("schedule", {})
    if isinstance(raw, Mapping) and raw.get("advisories"):
        raise ConfigError(
            "[schedule] advisories: there is no [advisories] section to refresh; add one "
            "with its source, or remove the key"
        )
    return replace(read, advisories="")


def validate(devpi: DevpiConfig, pypi: PypiConfig, hub: HubConfig) -> None:
    """The checks that span sections."""
    union = devpi.index.split("/")[1]
    for env in pypi.environments:
        if canonicalize_name(env.name) == canonicalize_name(union):
            raise ConfigError(
                f"[pypi.environments.{env.name}]: {devpi.user}/{env.name} is the union "
                f"index ([devpi] index = {devpi.index!r}); rename the environment"
            )
    named = {env.name for env in pypi.environments}
    for model in hub.models:
        unknown = [e for e in model.environments if e not in named]
        if unknown:
            raise ConfigError(
                f"[hub] models: {model.handle} names environment {unknown[0]!r}, which "
                f"[pypi] does not have; use one of {', '.join(sorted(named)) or '(none)'}"
            )
        if model.environments and model.form == TFJS:
            raise ConfigError(
                f"[hub] models: {model.handle} is a TF.js model, which runs in browsers and "
                "Node.js, not in a Python environment: drop its `environments`"
            )


def config_path(explicit: str | None) -> Path | None:
    """--config, else $TFMIRROR_CONFIG, else ./tfmirror.toml, else None (embedded default)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    local = Path(LOCAL_CONFIG)
    return local if local.is_file() else None


def load_config(explicit: str | None = None) -> Config:
    path = config_path(explicit)
    if path is None:
        return parse_config({}, Path.cwd())
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8, as TOML requires"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_config(data, path.resolve().parent, source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
