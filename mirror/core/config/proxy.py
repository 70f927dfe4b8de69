"""[proxy]: nginx as the fleet's one entry point in front of devpi and the web fronts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mirror.core.config.forms import OPTIONAL_PATH, PATH
from mirror.core.config.keys import PORT, Check, Form, Section, key, read_table
from mirror.core.config.storage import StorageConfig
from mirror.core.config.tls import certificate_problem, key_problem
from mirror.core.config.web import local_url
from mirror.core.public_names import PUBLIC_NAMES


def _is_host_port_url(url: str) -> bool:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return False
    plain = parts.path in ("", "/") and not parts.username and not parts.query
    return parts.scheme == "http" and bool(parts.hostname) and port is not None and plain


def _fronts(s: Section, name: str, raw: Any) -> tuple[str, ...]:
    fronts = []
    for i, front in enumerate(raw):
        ok = isinstance(front, str) and _is_host_port_url(front)
        s.check(f"{name}[{i}]", ok, front, 'must be "http://host:port" of a web front')
        fronts.append(front.rstrip("/"))
    return tuple(fronts)


@dataclass(frozen=True)
class ProxyConfig:
    """nginx as the fleet's one entry point in front of devpi and the web front."""

    enabled: bool = key(True, "false")  # run it whenever the nginx binary is found
    # a name on PATH or a path
    nginx: str = key(
        "nginx", '"/usr/sbin/nginx"', Check(bool, 'name the nginx binary, e.g. "nginx"')
    )
    host: str = key("127.0.0.1", '"0.0.0.0"')
    port: int = key(8000, "8000", PORT)
    # how long nginx keeps a simple page before asking devpi
    page_cache_seconds: int = key(
        10, "10", Check(lambda n: 0 <= n <= 3600, "use 0 to 3600 seconds")
    )
    # generated config, pid, logs, temp files, page cache; by default under [storage] path
    workdir: Path = key(  # noqa: RUF009 - key() returns a dataclasses.field
        Path("data/proxy"), '"/var/cache/tfmirror-proxy"', form=PATH
    )
    # The web fronts behind it (several: nginx balances and fails over); empty = [web]'s.
    fronts: tuple[str, ...] = key(
        (), '["http://web-1:8080", "http://web-2:8080"]', form=Form(list, _fronts)
    )
    # Public names nginx answers for the models the mirror holds (mirror.core.public_names),
    # with a certificate for them from the site's CA; opt-in: the site's DNS must send
    # those names here. Empty: none.
    answer_for: tuple[str, ...] = key(
        (),
        '["tfhub.dev", "www.kaggle.com", "kaggle.com", "api.kaggle.com"]',
        Check(
            lambda names: all(n in PUBLIC_NAMES for n in names) and len(set(names)) == len(names),
            f"list each at most once, of {', '.join(PUBLIC_NAMES)}",
        ),
        Form(list, lambda s, name, raw: tuple(raw)),
    )
    # PEM files: the certificate (chain) naming every answer_for name, and its key.
    tls_certificate: Path | None = key(  # noqa: RUF009 - key() returns a dataclasses.field
        None, '"/etc/tfmirror/public-names.pem"', form=OPTIONAL_PATH
    )
    tls_key: Path | None = key(  # noqa: RUF009 - key() returns a dataclasses.field
        None, '"/etc/tfmirror/public-names.key"', form=OPTIONAL_PATH
    )
    tls_port: int = key(443, "443", PORT)

    @property
    def base_url(self) -> str:
        return local_url(self.host, self.port)


def read(raw: Any, base: Path, storage: StorageConfig) -> ProxyConfig:
    workdir = str(storage.path / "proxy")
    return read_table(ProxyConfig, "proxy", raw, base, validate, absent={"workdir": workdir})


def validate(s: Section, proxy: ProxyConfig) -> None:
    """The public names' TLS keys together: all or none, and a certificate nodes accept."""
    cert, key_file = proxy.tls_certificate, proxy.tls_key
    if not proxy.answer_for:
        given = "tls_certificate" if cert else "tls_key" if key_file else ""
        s.check(given, not given, s.raw.get(given), "set answer_for too, or remove it")
        return
    for name, path in (("tls_certificate", cert), ("tls_key", key_file)):
        s.check(name, path is not None, "", "answer_for needs it: a PEM file from the site's CA")
    assert cert is not None and key_file is not None
    problem = certificate_problem(cert, proxy.answer_for)
    s.check("tls_certificate", problem is None, s.raw["tls_certificate"], str(problem))
    problem = key_problem(key_file, cert)
    s.check("tls_key", problem is None, s.raw["tls_key"], str(problem))
    clash = proxy.tls_port == proxy.port
    s.check("tls_port", not clash, proxy.tls_port, "must differ from [proxy] port")
