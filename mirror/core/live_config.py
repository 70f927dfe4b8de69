"""The config a long-running process (`tfmirror up`) runs on now, and what its last reload
did: one holder, made by the composition root and passed to the runner and the web app.
A job reads it at the start of each run and keeps that config to the end, a page at each
request, so a reload swaps the config for everything at once without a global."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from mirror.core.config import Config


@dataclass(frozen=True)
class ConfigNote:
    """What the status page says of the config: where it is read from, when it was last
    reloaded, a refused one's one-line error, and settings changed that only a restart
    applies (as "[web] port")."""

    source: str
    reloaded_at: str | None = None
    refused: str = ""
    refused_at: str | None = None
    needs_restart: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LiveConfig:
    def __init__(self, config: Config) -> None:
        self._lock = threading.Lock()
        self._config = config
        self._note = ConfigNote(_source(config))

    @property
    def current(self) -> Config:
        with self._lock:
            return self._config

    def note(self) -> ConfigNote:
        with self._lock:
            return self._note

    def apply(self, config: Config, needs_restart: list[str]) -> None:
        """Run on `config` from now on; a refusal before it is over."""
        with self._lock:
            self._config = config
            self._note = ConfigNote(_source(config), _now(), needs_restart=list(needs_restart))

    def refuse(self, error: str) -> None:
        """A new config could not be used: the running one stays; the page says why."""
        with self._lock:
            self._note = replace(self._note, refused=error, refused_at=_now())


def _source(config: Config) -> str:
    return str(config.source) if config.source else "built-in default"
