"""TOML config -> typed, validated Config, one module per section. Validated once, at
start: every mistake becomes one ConfigError (mirror.core.errors) whose message names the
key and says how to fix it, so the CLI can print one line and exit 2. Each key is
declared once on its section's dataclass (keys.py says how); callers import what they
need from here."""

from mirror.core.config.devpi import DevpiConfig
from mirror.core.config.environments import DEFAULT_ENVIRONMENT, Environment
from mirror.core.config.hub import HubConfig, HubModel
from mirror.core.config.keys import PORT, RETRIES, SECONDS, SECONDS_OR_ZERO, Check
from mirror.core.config.load import (
    ENV_CONFIG,
    LOCAL_CONFIG,
    Config,
    config_path,
    load_config,
    parse_config,
)
from mirror.core.config.proxy import ProxyConfig
from mirror.core.config.pypi import (
    DEFAULT_BUILD_BACKENDS,
    DEFAULT_CONSTRAINTS,
    DEFAULT_REQUIREMENTS,
    DEFAULT_UPSTREAM,
    PypiConfig,
)
from mirror.core.config.schedule import SCHEDULED_JOBS, ScheduleConfig
from mirror.core.config.storage import StorageConfig
from mirror.core.config.targets import Target, host_target
from mirror.core.config.web import WebConfig

__all__ = [
    "DEFAULT_BUILD_BACKENDS",
    "DEFAULT_CONSTRAINTS",
    "DEFAULT_ENVIRONMENT",
    "DEFAULT_REQUIREMENTS",
    "DEFAULT_UPSTREAM",
    "ENV_CONFIG",
    "LOCAL_CONFIG",
    "PORT",
    "RETRIES",
    "SCHEDULED_JOBS",
    "SECONDS",
    "SECONDS_OR_ZERO",
    "Check",
    "Config",
    "DevpiConfig",
    "Environment",
    "HubConfig",
    "HubModel",
    "ProxyConfig",
    "PypiConfig",
    "ScheduleConfig",
    "StorageConfig",
    "Target",
    "WebConfig",
    "config_path",
    "host_target",
    "load_config",
    "parse_config",
]
