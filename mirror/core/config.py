"""TOML config -> typed, validated Config.

Validated once, at start: every mistake becomes one ConfigError whose message names
the key and says how to fix it, so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name

from mirror.core.errors import TfmirrorError
from mirror.core.handles import handle_path
from mirror.core.kaggle import DEFAULT_API, KaggleModel, parse_kaggle
from mirror.core.redact import bounded, redact_url

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
ENV_CONFIG = "TFMIRROR_CONFIG"
LOCAL_CONFIG = "tfmirror.toml"

T = TypeVar("T")
_INDEX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class ConfigError(TfmirrorError):
    """A config value that cannot be used; the message says which and how to fix it."""

    exit_code = 2
    label = "config error"


@dataclass(frozen=True)
class Rule:
    """What a key's value must be beyond its type, and the fix a refusal names."""

    ok: Callable[[Any], bool]
    fix: str


PORT = Rule(lambda port: 1 <= port <= 65535, "use a TCP port from 1 to 65535")
RETRIES = Rule(lambda n: 0 <= n <= 20, "use 0 to 20")
# inf and nan are floats TOML accepts: a number of seconds must be finite.
SECONDS = Rule(lambda v: math.isfinite(v) and v > 0, "must be positive seconds")
SECONDS_OR_ZERO = Rule(lambda v: math.isfinite(v) and v >= 0, "must be 0 or more seconds")


def optional_url(fix: str) -> Rule:
    """Empty (the default applies), or an http(s) URL."""
    return Rule(lambda url: not url or url.startswith(("http://", "https://")), fix)


def key(default: Any, hint: str, rule: Rule | None = None) -> Any:
    """A config key, declared once on its dataclass field: its default, the example a
    refusal of its type shows (`hint`), and what else its value must be. The section's
    parser reads every such field in a loop (_Section.read)."""
    return field(default=default, metadata={"key": (hint, rule)})


@dataclass(frozen=True)
class StorageConfig:
    backend: str = key(
        "local", '"local"', Rule(lambda b: b in ("local", "s3"), 'use "local" or "s3"')
    )
    path: Path = Path("data")  # read by _storage: relative to the config file, checked
    bucket: str = key("", '"tfmirror"')
    prefix: str = key("", '"mirror/"')
    endpoint_url: str = key(
        "",
        '"http://minio:9000"',
        optional_url('must be an http(s) URL, e.g. "http://127.0.0.1:9000"'),
    )
    region: str = key("", '"us-east-1"')
    # S3 requests tried again after a throttle, a 5xx or a lost connection (botocore's
    # standard mode backs off between them): a vanished endpoint fails after these.
    retries: int = key(4, "4", RETRIES)


def _local_url(host: str, port: int) -> str:
    """The URL a process on this machine uses for a server listening on host:port (one
    listening on every address is reached on loopback)."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


@dataclass(frozen=True)
class WebConfig:
    host: str = key("127.0.0.1", '"0.0.0.0"')
    port: int = key(8080, "8080", PORT)
    # S3 store: send model downloads to presigned S3 URLs instead of streaming them.
    presign_s3: bool = key(False, "true")
    # Where the fleet reaches the mirror (a DNS name, a load balancer): what snippets,
    # pip-conf and the banner print. Empty: the proxy's address, else [web]'s.
    public_url: str = key(
        "",
        '"http://mirror.internal:8000"',
        Rule(
            lambda url: not url or _is_base_url(url.rstrip("/")),
            "must be an http(s) URL with a host and no credentials, query or fragment",
        ),
    )

    @property
    def base_url(self) -> str:
        return _local_url(self.host, self.port)


@dataclass(frozen=True)
class ProxyConfig:
    """nginx as the fleet's one entry point in front of devpi and the web front."""

    enabled: bool = key(True, "false")  # run it whenever the nginx binary is found
    # a name on PATH or a path
    nginx: str = key(
        "nginx", '"/usr/sbin/nginx"', Rule(bool, 'name the nginx binary, e.g. "nginx"')
    )
    host: str = key("127.0.0.1", '"0.0.0.0"')
    port: int = key(8000, "8000", PORT)
    workdir: Path = Path("data/proxy")  # generated config, pid, logs, temp files, page cache
    # The web fronts behind it (several: nginx balances and fails over); empty = [web]'s.
    fronts: tuple[str, ...] = ()
    # how long nginx keeps a simple page before asking devpi
    page_cache_seconds: int = key(10, "10", Rule(lambda n: 0 <= n <= 3600, "use 0 to 3600 seconds"))

    @property
    def base_url(self) -> str:
        return _local_url(self.host, self.port)


@dataclass(frozen=True)
class DevpiConfig:
    url: str = key(
        "http://127.0.0.1:3141",
        '"http://127.0.0.1:3141"',
        Rule(lambda url: url.startswith(("http://", "https://")), "must be an http(s) URL"),
    )
    index: str = key(
        "tfmirror/pypi",
        '"tfmirror/pypi"',
        Rule(lambda index: bool(_INDEX_RE.match(index)), 'must be "user/index"'),
    )
    # Set: tfmirror runs devpi-server itself with this serverdir. Empty: devpi is external.
    serverdir: Path | None = None
    # Where devpi reaches tfmirror's simple pages; empty means [web]'s address.
    mirror_url: str = key(
        "",
        '"http://tfmirror-web:8080/simple/"',
        optional_url("must be an http(s) URL that devpi can reach"),
    )

    @property
    def user(self) -> str:
        return self.index.split("/")[0]

    @property
    def index_url(self) -> str:
        return f"{self.url.rstrip('/')}/{self.index}/+simple/"

    @property
    def host_port(self) -> tuple[str, int]:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80


@dataclass(frozen=True)
class Target:
    """One (python version, wheel platform tag) the fleet runs."""

    python: str
    platform: str
    # The Python that builds this target's extensions from sdists; empty: found on PATH
    # or in pyenv. Not part of the id: where a wheel was built does not change the target.
    interpreter: str = field(default="", compare=False)

    @property
    def id(self) -> str:
        return f"py{self.python}-{self.platform}"

    @property
    def python_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")
        return int(major), int(minor)


DEFAULT_ENVIRONMENT = "default"


@dataclass(frozen=True)
class Environment:
    """A named set of requirements with its own targets: the unit of version locking.
    Each is resolved per target on its own and served as an index of its own."""

    name: str
    requirements: tuple[str, ...]
    targets: tuple[Target, ...]
    # Bound what the resolver may pick without requiring it (pip's -c, uv's --constraint).
    constraints: tuple[str, ...] = ()
    # The cooldown: a release younger than this many seconds is not taken (0: off);
    # the environment's own min_age, else [pypi] min_age.
    min_age: float = 0.0


@dataclass(frozen=True)
class PypiConfig:
    upstream: str = DEFAULT_UPSTREAM
    # Top-level requirements/targets are the environment "default"; none configured at
    # all is the built-in TensorFlow default for the host.
    environments: tuple[Environment, ...] = ()
    workers: int = key(8, "8", Rule(lambda n: 1 <= n <= 64, "use 1 to 64"))
    timeout: float = key(60.0, "60", SECONDS)
    retries: int = key(4, "4", RETRIES)
    deadline: float = key(1800.0, "1800", SECONDS)  # one file's whole download, retries included
    allow_hosts: tuple[str, ...] = ()  # internal hosts a redirect may lead to
    # A dependency with no wheel for a target: "build" it from its sdist in a sandbox,
    # or "refuse" (the target fails, naming it).
    sdists: str = key(
        "build", '"build"', Rule(lambda v: v in ("build", "refuse"), 'use "build" or "refuse"')
    )
    build_timeout: float = key(900.0, "900", SECONDS)  # one sandboxed resolve or build
    # the whole build's memory (a cgroup) and each process's address space
    build_memory_mb: int = key(4096, "4096", Rule(lambda mb: mb >= 256, "give at least 256 MB"))
    # the whole build's process count (a fork loop stops here)
    build_processes: int = key(
        512, "512", Rule(lambda n: 32 <= n <= 100_000, "use 32 to 100000 processes")
    )
    build_backends: tuple[str, ...] = DEFAULT_BUILD_BACKENDS  # on every environment's index
    min_age: float = 0.0  # seconds; each environment's default (Environment.min_age)
    # A mirrored file upstream's page no longer lists: "quarantine" it, or "keep" it.
    on_upstream_removal: str = key(
        "quarantine",
        '"quarantine"',
        Rule(lambda v: v in ("quarantine", "keep"), 'use "quarantine" or "keep"'),
    )
    # Releases the cooldown lets through at once (an urgent fix): "urllib3==2.8.1".
    cooldown_exempt: tuple[str, ...] = ()

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


@dataclass(frozen=True)
class HubModel:
    """A TF Hub handle to mirror, and where to fetch it from when not from the handle."""

    handle: str
    source: str = ""  # another URL, or a local tarball path (DMZ set-ups)
    max_mb: int | None = None  # the download's cap; default [hub] max_uncompressed_mb
    aliases: tuple[str, ...] = ()  # other handles served the same model (old tfhub.dev)
    # Environments whose TensorFlow must load it: a version incompatible with one of
    # them is not served (verify.compat's gate); the last good version stays.
    environments: tuple[str, ...] = ()
    serving_name: str = ""  # its name in a TF Serving repository (hub export-serving)

    @property
    def kaggle(self) -> KaggleModel | None:
        return parse_kaggle(self.handle)

    @property
    def path(self) -> str:
        """The mirrored path: the handle's URL path, e.g. google/imagenet/.../5."""
        return handle_path(self.handle)


@dataclass(frozen=True)
class HubConfig:
    models: tuple[HubModel, ...] = ()
    max_uncompressed_mb: int = key(
        16384, "16384", Rule(lambda mb: mb > 0, "must be a positive number of MB")
    )
    # Where each environment's runtime venv is built (verify.runtimes); read by _hub
    runtimes_dir: Path = Path("data/runtimes")
    # uncompressed / compressed: above it, an archive bomb
    max_ratio: float = key(100.0, "100", Rule(lambda r: r >= 1, "must be at least 1"))
    timeout: float = key(60.0, "60", SECONDS)
    retries: int = key(4, "4", RETRIES)
    deadline: float = key(3600.0, "3600", SECONDS)  # one model's whole download, retries included
    allow_hosts: tuple[str, ...] = ()  # internal hosts a redirect may lead to
    # Kaggle's REST base, or a proxy or test double of it
    kaggle_api: str = key(
        DEFAULT_API,
        '"https://www.kaggle.com/api/v1"',
        Rule(lambda url: _is_base_url(url), "must be an http(s) URL"),
    )


@dataclass(frozen=True)
class ScheduleConfig:
    """Cron expressions per job (empty: not scheduled) and how runs behave."""

    jobs: tuple[tuple[str, str], ...] = (
        ("pypi", "0 */6 * * *"),
        ("hub", "30 */6 * * *"),
        ("verify", "0 3 * * *"),
        ("gc", "0 4 * * 0"),
        # Off unless asked: a dated snapshot (tfmirror.snapshotting), e.g. "0 3 * * *".
        ("snapshot", ""),
    )
    # seconds of random delay, so replicas and mirrors do not stampede
    jitter: int = key(120, "120", Rule(lambda s: s >= 0, "must be 0 or more seconds"))
    misfire_grace: int = key(3600, "3600", Rule(lambda s: s >= 1, "must be at least 1 second"))
    retries: int = key(2, "2", Rule(lambda n: 0 <= n <= 10, "use 0 to 10"))
    retry_backoff: float = key(60.0, "60", SECONDS_OR_ZERO)  # first wait; doubles each retry
    lease_seconds: int = key(300, "300", Rule(lambda s: s >= 5, "must be at least 5 seconds"))
    # run records kept per job
    keep_runs: int = key(1000, "1000", Rule(lambda n: n >= 1, "keep at least 1 run record per job"))
    # unreferenced blobs younger than this are left alone
    gc_grace_hours: float = key(24.0, "24", Rule(lambda h: h >= 0, "must be 0 or more hours"))
    verify_deep: bool = key(False, "true")  # the scheduled verify also loads every model
    # dated snapshots the schedule keeps (`keep` alone would read as the run records')
    snapshot_keep: int = key(14, "14", Rule(lambda n: n >= 1, "keep at least 1 snapshot"))

    def cron(self, job: str) -> str:
        return dict(self.jobs).get(job, "")


@dataclass(frozen=True)
class Config:
    storage: StorageConfig = field(default_factory=StorageConfig)
    devpi: DevpiConfig = field(default_factory=DevpiConfig)
    pypi: PypiConfig = field(default_factory=PypiConfig)
    web: WebConfig = field(default_factory=WebConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    source: Path | None = None  # the file it came from; None for the embedded default

    @property
    def devpi_mirror_url(self) -> str:
        return self.devpi.mirror_url or f"{self.web.base_url}/simple/"

    @property
    def front_urls(self) -> tuple[str, ...]:
        """The web fronts the proxy sends pages, the API and hub requests to."""
        return self.proxy.fronts or (self.web.base_url,)


_PYTHON_RE = re.compile(r"^3\.\d{1,2}$")
_PLATFORM_RE = re.compile(
    r"^(manylinux_\d+_\d+_(x86_64|aarch64)|manylinux(2014|2010|1)_(x86_64|aarch64)"
    r"|musllinux_\d+_\d+_(x86_64|aarch64)|win_amd64|win_arm64|win32"
    r"|macosx_\d+_\d+_(arm64|x86_64|universal2))$"
)


def host_target() -> Target:
    """The host's own Python and its most specific wheel platform tag."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    for tag in sys_tags():
        if _PLATFORM_RE.match(tag.platform):
            return Target(python, tag.platform)
    raise ConfigError(
        "[[pypi.targets]]: cannot derive a wheel platform for this host; "
        'add a target, e.g. platform = "manylinux_2_28_x86_64"'
    )


class _Section:
    """Reads one TOML table, remembering which keys were used so leftovers are errors."""

    def __init__(self, name: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"[{name}] must be a table, e.g. [{name}] on its own line")
        self.name = name
        self.data = dict(data)

    def get(self, key: str, kind: type[T], default: T, hint: str) -> T:
        if key not in self.data:
            return default
        value = self.data.pop(key)
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(
                f"[{self.name}] {key} = {value!r}: must be {kind.__name__}, e.g. {key} = {hint}"
            )
        return value  # type: ignore[no-any-return]

    def read(self, cls: type) -> dict[str, Any]:
        """Every key the dataclass declares with `key(...)`, in its field order: typed,
        defaulted and checked by its own declaration."""
        kinds = get_type_hints(cls)
        values = {}
        for f in fields(cls):
            declared = f.metadata.get("key")
            if declared is None:
                continue  # read by the section's own code (paths, lists, tables)
            hint, rule = declared
            value = self.get(f.name, kinds[f.name], f.default, hint)
            if rule is not None:
                self.check(f.name, rule.ok(value), value, rule.fix)
            values[f.name] = value
        return values

    def hosts(self, key: str) -> tuple[str, ...]:
        raw = self.get(key, list, [], '["files.internal.example", "10.0.0.5"]')
        for host in raw:
            plain = isinstance(host, str) and host and not any(c in host for c in "/:@ ")
            self.check(
                key, bool(plain), host, "list host names or addresses, without scheme or port"
            )
        return tuple(h.lower() for h in raw)

    def check(self, key: str, ok: bool, value: Any, fix: str) -> None:
        if not ok:
            # The value as written, but never a password inside a URL, nor 10 KB of it.
            shown = bounded(redact_url(value), 300) if isinstance(value, str) else value
            raise ConfigError(f"[{self.name}] {key} = {shown!r}: {fix}")

    def done(self) -> None:
        if self.data:
            key = sorted(self.data)[0]
            raise ConfigError(f"[{self.name}] {key}: unknown key; remove it or check its spelling")


# Kernel views of the machine, not storage: writing there fails oddly or does harm.
_PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


def _folder_problem(path: Path) -> str | None:
    """Why `path` cannot become a folder of ours, without creating anything."""
    real = path.resolve()
    if any(real == fs or fs in real.parents for fs in _PSEUDO_FILESYSTEMS):
        return f"{real} is on a kernel filesystem"
    for candidate in (real, *real.parents):
        if candidate.exists():
            if not candidate.is_dir():
                return f"{candidate} is a file, not a folder"
            return None
    return None


def _resolve_path(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def _storage(raw: Any, base: Path) -> StorageConfig:
    s = _Section("storage", raw)
    values = s.read(StorageConfig)
    path = s.get("path", str, str(StorageConfig.path), '"data"')
    backend, bucket = values["backend"], values["bucket"]
    s.check("bucket", backend != "s3" or bool(bucket), bucket, 'backend "s3" needs a bucket')
    s.done()
    resolved = _resolve_path(base, path)
    if backend == "local":
        problem = _folder_problem(resolved)
        s.check("path", problem is None, path, f"{problem}; choose a folder the mirror may own")
    return StorageConfig(**{**values, "path": resolved, "prefix": values["prefix"].strip("/")})


def _devpi(raw: Any, base: Path, storage: StorageConfig) -> DevpiConfig:
    s = _Section("devpi", raw)
    values = s.read(DevpiConfig)
    default_serverdir = str(storage.path / "devpi") if storage.backend == "local" else ""
    serverdir = s.get("serverdir", str, default_serverdir, '"data/devpi"')
    s.done()
    folder = _resolve_path(base, serverdir) if serverdir else None
    problem = _folder_problem(folder) if folder else None
    s.check("serverdir", problem is None, serverdir, f"{problem}; choose a folder devpi may own")
    return DevpiConfig(**{**values, "url": values["url"].rstrip("/"), "serverdir": folder})


def _requirement(where: str, i: int, value: Any) -> str:
    hint = 'a PEP 508 string such as "tensorflow>=2.16"'
    if not isinstance(value, str):
        raise ConfigError(f"[{where}[{i}] = {value!r}: must be {hint}")
    try:
        Requirement(value)
    except InvalidRequirement as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"[{where}[{i}] = {value!r}: not {hint} ({first})") from None
    return value


def _requirements(s: _Section, key: str, default: list[str], hint: str) -> tuple[str, ...]:
    raw = s.get(key, list, default, hint)
    return tuple(_requirement(f"{s.name}] {key}", i, r) for i, r in enumerate(raw))


def _target(where: str, raw: Any, base: Path) -> Target:
    s = _Section(where, raw)
    python = s.get("python", str, "", '"3.11"')
    s.check("python", bool(_PYTHON_RE.match(python)), python, 'must look like "3.11"')
    platform = s.get("platform", str, "", '"manylinux_2_28_x86_64"')
    s.check(
        "platform",
        bool(_PLATFORM_RE.match(platform)),
        platform,
        'must be a wheel platform tag such as "manylinux_2_28_x86_64", "win_amd64" '
        'or "macosx_12_0_arm64"',
    )
    interpreter = s.get("interpreter", str, "", f'"/usr/bin/python{python}"')
    if interpreter:
        path = _resolve_path(base, interpreter)
        s.check(
            "interpreter",
            path.is_file() and os.access(path, os.X_OK),
            interpreter,
            f"not an executable file; give the path of a Python {python or '3.x'} "
            "that builds this target's extensions",
        )
        interpreter = str(path)
    s.done()
    return Target(python, platform, interpreter)


def _targets(s: _Section, base: Path) -> tuple[Target, ...]:
    raw = s.get("targets", list, [], '[{python = "3.11", platform = "manylinux_2_28_x86_64"}]')
    targets = tuple(_target(f"{s.name}.targets[{i}]", t, base) for i, t in enumerate(raw))
    ids = [t.id for t in targets]
    dup = next((t for t in ids if ids.count(t) > 1), None)
    s.check("targets", dup is None, dup, "each python/platform pair may appear once")
    return targets or (host_target(),)


_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(s: _Section, key: str) -> float:
    """A span such as "7d", "12h", "30m", "90s" or "0", in seconds."""
    raw = s.get(key, str, "0", '"7d"')
    match = _DURATION.match(raw)
    s.check(key, match is not None, raw, 'use a number with s, m, h or d, e.g. "7d" ("0": off)')
    assert match is not None
    return float(match.group(1)) * _UNIT[match.group(2)]


def _environment(name: str, raw: Any, inner: bool, base: Path) -> tuple[Environment, float | None]:
    """The environment, and its own min_age if it sets one."""
    s = _Section(f"pypi.environments.{name}", raw)
    if not _ENV_NAME.match(name):
        raise ConfigError(
            f"[pypi.environments.{bounded(name, 80)!r}]: an environment's name becomes its "
            "index path; use letters, digits, '.', '-' and '_' (up to 64), e.g. serving"
        )
    requirements = _requirements(s, "requirements", [], '["tensorflow==2.18.*"]')
    s.check(
        "requirements",
        bool(requirements) or inner,
        list(requirements),
        'list at least one, e.g. ["tensorflow==2.18.*"]',
    )
    targets = _targets(s, base)
    constraints = _requirements(s, "constraints", [], '["setuptools<82"]')
    min_age = _duration(s, "min_age") if "min_age" in s.data else None
    s.done()
    return Environment(name, requirements, targets, constraints, min_age or 0.0), min_age


def _pypi(raw: Any, hub_only: bool, has_models: bool, base: Path) -> PypiConfig:
    """`hub_only`: no [pypi] table while [hub] lists models, so no requirements by
    default; `has_models`: an empty requirements list is then a hub-only mirror."""
    s = _Section("pypi", raw)
    upstream = s.get("upstream", str, DEFAULT_UPSTREAM, '"https://pypi.org/simple/"')
    s.check(
        "upstream",
        upstream == "" or upstream.startswith(("http://", "https://")),
        upstream,
        'must be the http(s) URL of a PEP 691 simple index, or "" for an inner mirror '
        "that only bundles feed",
    )
    inner = upstream == ""
    envs_raw = s.get("environments", dict, {}, "{serving = {requirements = [...]}}")
    read = [_environment(str(n), e, inner, base) for n, e in envs_raw.items()]
    named = [env for env, _ in read]
    has_top = "requirements" in s.data
    builtin = not named and not has_top and not hub_only and not inner
    top_requirements = _requirements(
        s, "requirements", list(DEFAULT_REQUIREMENTS) if builtin else [], '["tensorflow"]'
    )
    s.check(
        "requirements",
        bool(top_requirements) or bool(named) or has_models or inner,
        list(top_requirements),
        'list at least one, e.g. ["tensorflow"], or list [hub] models for a hub-only mirror',
    )
    has_targets = "targets" in s.data
    targets = _targets(s, base)
    s.check(
        "targets",
        not (named and not top_requirements and has_targets),
        "[...]",
        "the top-level targets belong to the environment default, which has no "
        "requirements here; give each [pypi.environments.NAME] its own targets",
    )
    # Applies to every environment: each adds its own.
    constraints = _requirements(s, "constraints", [], '["setuptools<82"]')
    environments = []
    if top_requirements:
        # pkg_resources left setuptools in 82, and tensorflow_hub still imports it: the
        # built-in default holds setuptools below it (README "Environments").
        own = DEFAULT_CONSTRAINTS if builtin else ()
        environments.append(Environment(DEFAULT_ENVIRONMENT, top_requirements, targets, own))
    environments += named
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
    if constraints:
        environments = [
            replace(env, constraints=(*constraints, *env.constraints)) for env in environments
        ]
    min_age = _duration(s, "min_age")
    own_age = {env.name: age for env, age in read if age is not None}
    environments = [replace(env, min_age=own_age.get(env.name, min_age)) for env in environments]
    exempt = _requirements(s, "cooldown_exempt", [], '["urllib3==2.8.1"]')
    values = s.read(PypiConfig)
    allow_hosts = s.hosts("allow_hosts")
    backends = _requirements(
        s, "build_backends", list(DEFAULT_BUILD_BACKENDS), '["setuptools", "hatchling"]'
    )
    s.done()
    return PypiConfig(
        **values,
        upstream=upstream if inner or upstream.endswith("/") else upstream + "/",
        environments=tuple(environments),
        allow_hosts=allow_hosts,
        build_backends=backends,
        min_age=min_age,
        cooldown_exempt=exempt,
    )


def _web(raw: Any) -> WebConfig:
    s = _Section("web", raw)
    values = s.read(WebConfig)
    s.done()
    return WebConfig(**{**values, "public_url": values["public_url"].rstrip("/")})


def _is_base_url(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    plain = not (parts.username or parts.query or parts.fragment)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and plain


def _proxy(raw: Any, storage: StorageConfig, base: Path) -> ProxyConfig:
    s = _Section("proxy", raw)
    values = s.read(ProxyConfig)
    workdir = s.get("workdir", str, str(storage.path / "proxy"), '"/var/cache/tfmirror-proxy"')
    fronts_raw = s.get("fronts", list, [], '["http://web-1:8080", "http://web-2:8080"]')
    fronts = []
    for i, front in enumerate(fronts_raw):
        ok = isinstance(front, str) and _is_host_port_url(front)
        s.check(f"fronts[{i}]", ok, front, 'must be "http://host:port" of a web front')
        fronts.append(front.rstrip("/"))
    s.done()
    workdir_path = _resolve_path(base, workdir)
    return ProxyConfig(**values, workdir=workdir_path, fronts=tuple(fronts))


def _is_host_port_url(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return False
    plain = parts.path in ("", "/") and not parts.username and not parts.query
    return parts.scheme == "http" and bool(parts.hostname) and port is not None and plain


_SERVING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _hub_model(i: int, raw: Any, base: Path) -> HubModel:
    example = '"https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"'
    max_mb = None
    aliases: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    serving_name = ""
    if isinstance(raw, str):
        handle, source = raw, ""
    elif isinstance(raw, Mapping):
        s = _Section(f"hub.models[{i}]", raw)
        handle = s.get("handle", str, "", example)
        source = s.get("source", str, "", '"http://dmz/models/x.tar.gz" or "models/x.tar.gz"')
        max_mb = s.get("max_mb", int, 0, "2048") if "max_mb" in s.data else None
        s.check("max_mb", max_mb is None or max_mb > 0, max_mb, "must be a positive number of MB")
        aliases_raw = s.get("aliases", list, [], '["https://tfhub.dev/google/model/1"]')
        for alias in aliases_raw:
            s.check("aliases", isinstance(alias, str), alias, "list handle URLs")
            try:
                handle_path(alias)
            except ValueError as exc:
                raise ConfigError(f"[hub] models[{i}] aliases: {exc}") from None
        aliases = tuple(aliases_raw)
        envs_raw = s.get("environments", list, [], '["serving"]')
        for env in envs_raw:
            s.check(
                "environments", isinstance(env, str) and bool(env), env, "list environment names"
            )
        environments = tuple(envs_raw)
        serving_name = s.get("serving_name", str, "", '"mobilenet"')
        s.check(
            "serving_name",
            not serving_name or _SERVING_NAME.match(serving_name) is not None,
            serving_name,
            "use letters, digits, '.', '-' and '_' (a folder name and a URL segment)",
        )
        s.done()
    else:
        raise ConfigError(f"[hub] models[{i}] = {raw!r}: must be a handle URL, e.g. {example}")
    try:
        handle_path(handle)
    except ValueError as exc:
        raise ConfigError(f"[hub] models[{i}]: {exc}; e.g. {example}") from None
    if source and not source.startswith(("http://", "https://")):
        local = _resolve_path(base, source)
        if not local.is_file():
            what = "is not a regular file" if local.exists() else "does not exist"
            raise ConfigError(
                f"[hub] models[{i}] source = {source!r}: {local} {what}; give a model tarball "
                "or an http(s) URL"
            )
        source = str(local)
    return HubModel(
        handle=handle,
        source=source,
        max_mb=max_mb,
        aliases=aliases,
        environments=environments,
        serving_name=serving_name,
    )


def _hub(raw: Any, base: Path, storage: StorageConfig) -> HubConfig:
    s = _Section("hub", raw)
    models_raw = s.get("models", list, [], '["https://tfhub.dev/google/.../5"]')
    models = tuple(_hub_model(i, m, base) for i, m in enumerate(models_raw))
    seen: dict[str, str] = {}
    for model in models:
        for name in (model.handle, *model.aliases):
            path = handle_path(name)
            other = seen.setdefault(path, name)
            s.check(
                "models",
                other == name,
                name,
                f"its path {path!r} is the same as {other!r}'s; mirror only one of them",
            )
    dup = next((m.handle for m in models if [n.handle for n in models].count(m.handle) > 1), None)
    s.check("models", dup is None, dup, "each handle may appear once")
    values = s.read(HubConfig)
    allow_hosts = s.hosts("allow_hosts")
    runtimes = s.get("runtimes_dir", str, str(storage.path / "runtimes"), '"/var/cache/tfmirror"')
    s.done()
    return HubConfig(
        **{**values, "kaggle_api": values["kaggle_api"].rstrip("/")},
        models=models,
        allow_hosts=allow_hosts,
        runtimes_dir=_resolve_path(base, runtimes),
    )


SCHEDULED_JOBS = ("pypi", "hub", "verify", "gc", "snapshot")


def _cron(key: str, value: str) -> None:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise ConfigError(
            f'[schedule] {key} = {value!r}: not a cron expression ({exc}); e.g. "0 */6 * * *", '
            'or "" to not schedule it'
        ) from None


def _schedule(raw: Any) -> ScheduleConfig:
    s = _Section("schedule", raw)
    defaults = dict(ScheduleConfig.jobs)
    jobs = []
    for job in SCHEDULED_JOBS:
        value = s.get(job, str, defaults[job], '"0 */6 * * *"')
        if value:
            _cron(job, value)
        jobs.append((job, value))
    values = s.read(ScheduleConfig)
    s.done()
    return ScheduleConfig(jobs=tuple(jobs), **values)


def parse_config(data: Mapping[str, Any], base: Path, source: Path | None = None) -> Config:
    """Validate a parsed TOML document; relative paths resolve against `base`."""
    known = ("storage", "devpi", "pypi", "web", "hub", "schedule", "proxy")
    for key in data:
        if key not in known:
            raise ConfigError(
                f"[{key}]: unknown section; use one of {', '.join(known)} or check its spelling"
            )
    storage = _storage(data.get("storage", {}), base)
    hub = _hub(data.get("hub", {}), base, storage)
    has_models = bool(hub.models)
    devpi = _devpi(data.get("devpi", {}), base, storage)
    pypi = _pypi(data.get("pypi", {}), "pypi" not in data and has_models, has_models, base)
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
    return Config(
        storage=storage,
        devpi=devpi,
        pypi=pypi,
        web=_web(data.get("web", {})),
        hub=hub,
        schedule=_schedule(data.get("schedule", {})),
        proxy=_proxy(data.get("proxy", {}), storage, base),
        source=source,
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
