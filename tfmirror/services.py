"""What a sync or a verify needs running: devpi, the simple pages devpi mirrors from, and
the fleet's pages (every environment's index) that verify's proof installs through.
Whatever is already up is used as it is; what tfmirror manages and is down is started
for the duration, so `tfmirror sync pypi` works alone as well as beside `tfmirror up`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from mirror.advisories.policy import Screen
from mirror.core.config import Config
from mirror.core.journal import Journal, actor_for
from mirror.core.runs import Failure
from mirror.core.storage import BlobStore
from mirror.core.web_server import WebServer, answers
from mirror.devpi.client import DevpiClient
from mirror.devpi.errors import DevpiError, DevpiStartError
from mirror.devpi.publish import DevpiIndex, devpi_index
from mirror.devpi.server import DevpiProcess, user_password
from mirror.pypi.closure_checks.advisories import withhold
from mirror.pypi.manifest import load_all
from mirror.pypi.simple_pages import simple_pages_app
from tfmirror import fleet_index

log = logging.getLogger("tfmirror.devpi")


@contextmanager
def own_devpi(config: Config, store: BlobStore) -> Iterator[DevpiProcess]:
    """tfmirror's own devpi-server, started; before anyone is served from it, it does
    what it owes the quarantine (a `quarantine add` while it was down purges nothing:
    it leaves that to here, instead of starting devpi for it)."""
    with DevpiProcess(config.devpi) as process:
        try:
            devpi_index(config, store).settle_quarantine()
        except DevpiError as exc:  # devpi still serves; the next sync's push purges it
            log.warning("devpi: could not purge what is quarantined yet: %s", exc)
        yield process


@contextmanager
def services_for_sync(config: Config, store: BlobStore) -> Iterator[DevpiIndex]:
    with ExitStack() as stack:
        # devpi is the mirror's own service: [pypi] timeout is for upstream, and a devpi
        # busy pulling a 572 MB wheel answers late but answers (2 s failed syncs).
        client = DevpiClient(config.devpi, user_password(config.devpi))
        if not client.alive():
            if config.devpi.serverdir is None:
                raise DevpiError(f"devpi at {config.devpi.url} is unreachable; start it first")
            stack.enter_context(own_devpi(config, store))
        if not answers(config.devpi_mirror_url):
            if config.devpi.mirror_url:
                raise DevpiError(
                    f"[devpi] mirror_url {config.devpi.mirror_url} is unreachable; "
                    "start `tfmirror serve` there first"
                )
            app = simple_pages_app(config, store)
            app.register_blueprint(fleet_index.blueprint)
            stack.enter_context(WebServer(app, config.web.host, config.web.port))
        yield DevpiIndex(client, store, config.devpi_mirror_url)


def withhold_advised(config: Config, store: BlobStore) -> None:
    """What the advisory database in force has every environment here block, withheld
    as the outer sync withholds it (an inner mirror runs no sync: a bundle brings the
    closures and the database they were checked by)."""
    screen = Screen.load(store, config, time.time())
    if screen is None:
        return
    files = [w for m in load_all(store) for w in m.files]
    changes = withhold(store, screen, files, actor_for("manual"))
    if changes:
        Journal(store).record(changes, actor_for("manual"), "advisories after a bundle import")


def offer_manifests(config: Config, store: BlobStore) -> tuple[int, list[Failure]]:
    """devpi offers and holds what the manifests list, as after a sync (for what came
    by another way than a sync: a bundle). Returns the files newly held, and failures."""
    files = {w.sha256: w for m in load_all(store) for w in m.files}
    if not files:
        return 0, []
    try:
        with services_for_sync(config, store) as devpi:
            devpi.prepare()
            result = devpi.publish(files, changed=True)
    except (DevpiError, DevpiStartError) as exc:
        return 0, [Failure("devpi", config.devpi.url, str(exc))]
    return result.count, result.failures
