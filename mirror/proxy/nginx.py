"""nginx as the fleet's one entry point, in front of devpi and the web fronts: this module
writes its config and runs it. devpi's waitress and the front's pin a thread (or a
connection slot) per client, where nginx holds thousands of slow clients for a few KB
each; so nginx sends every large byte with sendfile (devpi's files from its serverdir,
model archives from the store's blob files) and asks the Python servers only for the
small, changing answers (simple pages, briefly cached; the status page; which blob a
model handle means)."""

from __future__ import annotations

import os
import pwd
import re
import resource
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import requests
from jinja2 import Environment, PackageLoader, StrictUndefined

from mirror.core.children import die_with_parent, scrubbed_env
from mirror.core.config import Config
from mirror.core.errors import TfmirrorError
from mirror.core.storage import BLOB_PREFIX

INSTALL_HINT = "install Debian's nginx-light (apt-get install nginx-light) or set [proxy] nginx"
# Where nginx finds mime.types; Debian's package puts it here.
MIME_TYPES = ("/etc/nginx/mime.types", "/usr/local/nginx/conf/mime.types")
# On stop, downloads in flight get this long before nginx closes them.
SHUTDOWN_SECONDS = 5
HEALTH_PATH = "/healthz/proxy"
# This mirror's nginx's name, in its workdir, answered at HEALTH_PATH ("ok <id>").
INSTANCE_FILE = "instance-id"
_INSTANCE = re.compile(r"[0-9a-f]{32}")
# Requests one client address may have in flight at once (429 past it): one host cannot
# take every connection, and a fleet behind one NAT address still fits.
REQUESTS_PER_CLIENT = 512
# The most disk TF.js files kept by nginx take in its workdir (least used go first).
FILE_CACHE_MB = 4096


class ProxyError(TfmirrorError):
    """nginx could not be found, configured or started; the message says why."""

    label = "proxy"


class NginxPlan(Protocol):
    """What running an nginx needs of its plan: the entry point's (ProxyPlan) or a rack's
    edge cache's (mirror.proxy.edge)."""

    @property
    def listen(self) -> str: ...
    @property
    def workdir(self) -> Path: ...
    @property
    def instance(self) -> str: ...
    @property
    def template(self) -> str: ...


@dataclass(frozen=True)
class ProxyPlan:
    """Everything the generated nginx config depends on."""

    listen: str  # host:port
    workdir: Path
    devpi: str  # host:port of devpi-server
    index: str  # user/index pip.conf points at
    fronts: tuple[str, ...]  # host:port of each web front
    devpi_serverdir: Path | None  # None: devpi's files are proxied, not sent from disk
    blob_root: Path | None  # the local store's blobs/ (None on S3: fronts stream)
    page_cache_seconds: int
    run_as: str | None  # nginx's worker user when started as root
    mime_types: str
    open_files: int  # per worker: what this machine's hard limit allows, up to 65536
    instance: str  # answered at HEALTH_PATH: tells this mirror's nginx from another's
    shutdown_seconds: int = SHUTDOWN_SECONDS
    requests_per_client: int = REQUESTS_PER_CLIENT
    # The public names answered over TLS ([proxy] answer_for), where, and with what.
    answer_for: tuple[str, ...] = ()
    tls_listen: str = ""
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    file_cache_mb: int = FILE_CACHE_MB

    @property
    def template(self) -> str:
        return "nginx.conf.j2"

    @property
    def worker_connections(self) -> int:
        return worker_connections(self.open_files)

    @property
    def open_file_seconds(self) -> int:
        """How long nginx trusts a file it found in devpi's serverdir: no longer than a
        page is cached, so a quarantined file devpi purged stops being sent as soon as
        its page stops listing it (an open descriptor outlives the file's deletion)."""
        return max(1, min(10, self.page_cache_seconds or 10))

    @property
    def user_pattern(self) -> str:
        """devpi's user, as a regex that matches exactly it (environments' indexes)."""
        return re.escape(self.index.split("/")[0])

    @property
    def describe(self) -> str:
        names = (
            f"; answers {', '.join(self.answer_for)} on {self.tls_listen}"
            if self.answer_for
            else ""
        )
        return f"listen {self.listen}; devpi {self.devpi}; fronts {', '.join(self.fronts)}{names}"


def worker_connections(open_files: int) -> int:
    # A proxied request holds two descriptors (client and upstream).
    return max(512, open_files // 2)


def worker_user() -> str | None:
    """nginx's worker user when started as root: ours, who owns the files it sends."""
    return pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None


def mime_types() -> str:
    return next((m for m in MIME_TYPES if Path(m).is_file()), "")


def open_files() -> int:
    """Descriptors per worker: what this machine's hard limit allows, up to 65536."""
    return min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def plan_for(
    config: Config,
    host: str | None = None,
    port: int | None = None,
    devpi_serverdir: Path | None = None,
) -> ProxyPlan:
    proxy = config.proxy
    serverdir = devpi_serverdir or config.devpi.serverdir
    local = config.storage.backend == "local"
    blob_root = config.storage.path / BLOB_PREFIX if local else None
    return ProxyPlan(
        listen=f"{host or proxy.host}:{port or proxy.port}",
        workdir=proxy.workdir.resolve(),
        devpi=host_port(config.devpi.url),
        index=config.devpi.index,
        fronts=tuple(host_port(u) for u in config.front_urls),
        devpi_serverdir=serverdir.resolve() if serverdir else None,
        blob_root=blob_root.resolve() if blob_root else None,
        page_cache_seconds=proxy.page_cache_seconds,
        run_as=worker_user(),
        mime_types=mime_types(),
        open_files=open_files(),
        instance=instance_id(proxy.workdir.resolve()),
        answer_for=proxy.answer_for,
        tls_listen=f"{host or proxy.host}:{proxy.tls_port}" if proxy.answer_for else "",
        tls_certificate=proxy.tls_certificate.resolve() if proxy.tls_certificate else None,
        tls_key=proxy.tls_key.resolve() if proxy.tls_key else None,
    )


def recorded_instance(workdir: Path) -> str | None:
    """The instance id of the nginx this workdir configures; None if it has none yet."""
    try:
        text = (workdir / INSTANCE_FILE).read_text().strip()
    except (OSError, UnicodeError):
        return None
    return text if _INSTANCE.fullmatch(text) else None


def instance_id(workdir: Path) -> str:
    """The workdir's instance id, made the first time: one per mirror's nginx, the same
    across restarts. Two starts at once agree on the first one written (a hard link
    never replaces a file)."""
    found = recorded_instance(workdir)
    if found is not None:
        return found
    workdir.mkdir(parents=True, exist_ok=True)
    made = uuid.uuid4().hex
    tmp = workdir / f".{INSTANCE_FILE}.{made}.tmp"
    tmp.write_text(made + "\n")
    try:
        os.link(tmp, workdir / INSTANCE_FILE)
    except FileExistsError:
        # Another start won, or the file is not an id (then it is ours to replace).
        if recorded_instance(workdir) is None:
            os.replace(tmp, workdir / INSTANCE_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    return recorded_instance(workdir) or made


def answers_as(base_url: str, instance: str, timeout: float) -> bool:
    """Whether the nginx with this instance id answers at `base_url`."""
    try:
        answer = requests.get(f"{base_url}{HEALTH_PATH}", timeout=timeout)
    except requests.RequestException:
        return False
    return answer.status_code == 200 and answer.text.strip() == f"ok {instance}"


def nginx_answers(config: Config) -> bool:
    """Whether this mirror's nginx answers at [proxy]'s address. Asked only when this
    mirror runs one ([proxy] enabled, and its workdir configured one), and taken only
    if the answer carries that nginx's instance id: another mirror's nginx on the same
    port (8000 is everyone's default) answers too."""
    if not config.proxy.enabled:
        return False
    instance = recorded_instance(config.proxy.workdir.resolve())
    return instance is not None and answers_as(config.proxy.base_url, instance, 5)


def render(plan: NginxPlan) -> str:
    env = Environment(
        loader=PackageLoader("mirror.proxy", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # Without mime.types every file nginx sends is application/octet-stream: right for
    # wheels and archives, which is all it sends itself.
    return env.get_template(plan.template).render(plan=plan)


def nginx_binary(name: str) -> str | None:
    """The nginx binary `name` (a name on PATH, or a path), if it is installed."""
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def find_nginx(config: Config) -> str | None:
    """The nginx binary, if the proxy is enabled and one is installed."""
    return nginx_binary(config.proxy.nginx) if config.proxy.enabled else None


@dataclass(frozen=True)
class EntryPoint:
    """Where the fleet points: through nginx when the proxy runs, else the servers."""

    index_url: str  # the union of every environment
    base_url: str  # status page, /hub/, /api, /metrics
    via_proxy: bool
    user: str  # devpi's user: environments' indexes sit beside the union under it

    @property
    def hub_url(self) -> str:
        return f"{self.base_url}/hub/"

    def environment_url(self, environment: str, snapshot: str | None = None) -> str:
        """The index that offers one environment's closures only (as a snapshot holds
        them, given one)."""
        return f"{self.base_url}/{self.user}/{environment}/{_at(snapshot)}+simple/"

    def union_url(self, snapshot: str | None = None) -> str:
        """The union index, or a snapshot's union (tfmirror.fleet_index's `@NAME/`)."""
        return self.index_url.replace("/+simple/", f"/{_at(snapshot)}+simple/")


def _at(snapshot: str | None) -> str:
    return f"@{snapshot}/" if snapshot else ""


def entry_point(config: Config, proxied: bool | None = None) -> EntryPoint:
    if proxied is None:
        proxied = find_nginx(config) is not None
    public = config.web.public_url
    # Without nginx the pages are the fronts' (tfmirror.fleet_index); their file links
    # lead to devpi.
    base = public or (config.proxy.base_url if proxied else config.web.base_url)
    index = f"{base}/{config.devpi.index}/+simple/"
    return EntryPoint(index, base, proxied, config.devpi.user)


class NginxProcess:
    """nginx with a generated config, in the foreground as our child; `with` stops it."""

    def __init__(self, nginx: str, plan: NginxPlan) -> None:
        self.nginx = nginx
        self.plan = plan
        self.conf = plan.workdir / "nginx.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._quitting = False

    def _args(self) -> list[str]:
        # -e: nginx opens its default error log before it reads the config; point it
        # at our folder so an unprivileged user can start it.
        workdir = self.plan.workdir
        return [self.nginx, "-p", str(workdir), "-c", str(self.conf), "-e", f"{workdir}/error.log"]

    def write_config(self) -> None:
        self.plan.workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render(self.plan))
        check = subprocess.run(
            [*self._args(), "-t", "-q"], capture_output=True, text=True, env=scrubbed_env()
        )
        if check.returncode != 0:
            lines = [ln for ln in check.stderr.splitlines() if "emerg" in ln or "crit" in ln]
            reason = (lines or check.stderr.strip().splitlines() or ["nginx -t failed"])[-1]
            raise ProxyError(f"the generated nginx config was refused: {reason}")

    def start(self) -> NginxProcess:
        self._quitting = False
        self.write_config()
        error_log = self.plan.workdir / "error.log"
        self._log_offset = error_log.stat().st_size if error_log.exists() else 0
        log = (self.plan.workdir / "nginx.out").open("ab")
        with log:
            self.proc = subprocess.Popen(
                self._args(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=scrubbed_env(),
                preexec_fn=die_with_parent,
            )
        base = f"http://{self.plan.listen.replace('0.0.0.0', '127.0.0.1')}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProxyError(f"nginx exited at start: {self._start_error()}")
            if answers_as(base, self.plan.instance, 1):  # this nginx, not one before it
                return self
            time.sleep(0.05)
        self.stop()
        raise ProxyError(f"nginx did not answer on {self.plan.listen} within 15 s")

    def _start_error(self) -> str:
        """nginx's own first reason since this start, e.g. "bind() to 127.0.0.1:8000
        failed (98: Address already in use)" (its last is "still could not bind()")."""
        log = self.plan.workdir / "error.log"
        try:
            with log.open("rb") as handle:
                handle.seek(self._log_offset)
                lines = handle.read().decode(errors="replace").splitlines()
        except OSError:
            lines = []
        fatal = [ln for ln in lines if "[emerg]" in ln or "[crit]" in ln]
        if not fatal:
            return f"see {log}"
        return fatal[0].split("] ", 1)[-1].split(": ", 1)[-1]

    def down(self) -> str | None:
        """Why nginx stopped serving on its own (it exited), or None."""
        if self._quitting or self.proc is None or self.proc.poll() is None:
            return None
        return f"nginx exited with code {self.proc.returncode}: {self._start_error()}"

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait()

    def quit(self) -> None:
        """Ask nginx to finish: transfers in flight get worker_shutdown_timeout, then go.
        Safe from a signal handler (it does not wait)."""
        self._quitting = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.quit()
        try:
            self.proc.wait(timeout=SHUTDOWN_SECONDS + 5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> NginxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
