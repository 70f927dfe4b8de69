"""`tfmirror up`: devpi, the web front, the scheduler and (where nginx is) the fleet's
entry point, in one command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

from bundle.importer import pending
from bundle.runs import resume
from mirror.core.config import Config
from mirror.core.config.follow import FollowConfig
from mirror.core.follow_status import retry_delay
from mirror.core.scratch import drop_scratch
from mirror.core.stopping import StopRequest
from mirror.core.storage import drop_unfinished_writes
from mirror.core.web_server import WebServer
from mirror.devpi.server import DevpiProcess
from mirror.proxy.nginx import INSTALL_HINT, NginxProcess, entry_point, find_nginx, plan_for
from mirror.pypi.lockfile import render_pip_conf
from mirror.pypi.manifest import migrate_layout
from mirror.pypi.stored_urls import scrub_credentials
from sync_jobs import scheduler
from sync_jobs.runner import JobRunner, RunResult
from tfmirror.app import create_app
from tfmirror.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    SYNCS,
    check_listen,
    forward_signals,
    report_offer,
)
from tfmirror.console import logs_after
from tfmirror.parts import MirrorParts
from tfmirror.reloading import ConfigReloader
from tfmirror.services import own_devpi

if TYPE_CHECKING:
    from mirror.proxy.nginx import EntryPoint

UP_STOP_GRACE = 3.0  # seconds a running job gets when `up` is stopped


def arguments(parser: argparse.ArgumentParser) -> None:
    return None  # no options of its own


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    check_listen(config.web.host, config.web.port, "[web] host/port")
    store = parts.store
    stop = StopRequest()
    forward_signals(stop.set)
    # One holder of the config (parts.live): the runner's jobs and the app's pages read
    # it, a reload (SIGHUP, or the file changed before a scheduled job) swaps it.
    own = config.devpi.serverdir is not None
    proxy = _proxy(config)
    runner = parts.runner
    reloader = ConfigReloader(parts.live, getattr(args, "config", None), runner)
    # From here on a SIGHUP reloads (the default would end `up`); one during the start
    # is acted on once the scheduler runs.
    signal.signal(signal.SIGHUP, lambda signum, frame: reloader.request())
    outcomes: dict[str, RunResult] = {}
    app = create_app(parts)
    servers: list[WebServer | DevpiProcess | NginxProcess] = []
    with ExitStack() as running:
        # The banner is what `up` is for: the log's INFO lines come after it, not in it.
        startup_logs = ExitStack()
        startup_logs.enter_context(logs_after())
        running.callback(startup_logs.close)
        servers.append(running.enter_context(WebServer(app, config.web.host, config.web.port)))
        if own:  # before nginx sends its files
            servers.append(running.enter_context(own_devpi(config, store)))
        if proxy is not None:
            servers.append(running.enter_context(proxy))

        def down() -> str | None:
            """Why a server `up` started stopped serving: `up` then stops too (exit 1, so a
            supervisor restarts it) rather than live on with a port answering nothing."""
            return next((why for server in servers if (why := server.down()) is not None), None)

        _resume_bundle(parts)
        _migrate_store(parts)
        # The syncs first, so the mirror serves before `up` says it does; verify and gc
        # (if overdue) then run in the background. On a thread: a stop during a long
        # first sync is heard at once.
        starting = threading.Thread(
            target=lambda: outcomes.update(_catch_up(config, runner)),
            name="catch-up",
            daemon=True,
        )
        starting.start()
        sched = None
        stopped = stop.wait_for(lambda: not starting.is_alive() or down() is not None)
        if not stopped and down() is None:
            for job, outcome in outcomes.items():
                print(f"{job} sync at start: {outcome}", flush=True)
            _banner(entry_point(config, proxied=proxy is not None))
            startup_logs.close()
            # Only now: a verify or gc due at start logs nothing into the banner.
            sched = scheduler.build(parts.live.current, runner, run=reloader.scheduled)
            reloader.attach(sched)
            sched.start()
            scheduler.add_startup_jobs(sched, config, runner)
            if config.follow is not None:
                _follow_loop(runner, stop, config.follow, outcomes.get("follow", RunResult.OK))
            while not stop.wait_for(lambda: reloader.requested or down() is not None):
                if down() is not None:
                    break
                reloader.requested = False
                reloader.reload("SIGHUP")
        failure = None if stop.requested else down()
        if failure is not None:
            print(f"tfmirror: {failure}; stopping", file=sys.stderr, flush=True)
        still = scheduler.stop_promptly(sched, runner, UP_STOP_GRACE)
        if still:
            # Before devpi stops below: the pulls it cuts short are the stop, not faults.
            runner.record_interrupted(still, stop.signal)
            drop_unfinished_writes()
            drop_scratch()  # its venvs and sockets: the job's own cleanup will never run
    failed = failure is not None or RunResult.FAILED in outcomes.values()
    return _farewell(stop, still, EXIT_FAILED if failed else EXIT_OK)


def _catch_up(config: Config, runner: JobRunner) -> dict[str, RunResult]:
    """The syncs due at start; on a site ([follow]), one pull from the centre instead."""
    if config.follow is not None:
        return {"follow": runner.run("follow", "startup", retries=0)}  # the loop retries
    return scheduler.catch_up(config, runner, only=("pypi", "hub"))


def _follow_loop(
    runner: JobRunner, stop: StopRequest, follow: FollowConfig, first: RunResult
) -> None:
    """A site pulls from its centre every `interval` seconds, through the runner (its
    lease: of two replicas sharing a store, one pulls), until `up` stops; after a failed
    pull sooner, backing off (retry_delay) until one succeeds."""

    def loop() -> None:
        failures = 1 if first is RunResult.FAILED else 0
        due = [time.monotonic() + retry_delay(failures, follow.interval, follow.backoff_max)]
        while not stop.wait_for(lambda: time.monotonic() >= due[0]):
            # Not the runner's retries ([schedule] retry_backoff: a minute, then two):
            # this loop's backoff is the site's retry, seconds after a failed pull.
            result = runner.run("follow", "schedule", retries=0)
            if result is RunResult.FAILED:
                failures += 1
            elif result is RunResult.OK:
                failures = 0
            due[0] = time.monotonic() + retry_delay(failures, follow.interval, follow.backoff_max)

    threading.Thread(target=loop, name="follow", daemon=True).start()


def _proxy(config: Config) -> NginxProcess | None:
    """nginx in front, where there is one; where [proxy] wants one and there is none,
    `up` serves without it and says so."""
    nginx = find_nginx(config)
    if config.proxy.enabled and nginx is None:
        missing = f"tfmirror: no nginx for the fleet entry point ({INSTALL_HINT}); "
        print(missing + "serving devpi and the web front directly", file=sys.stderr, flush=True)
    return NginxProcess(nginx, plan_for(config)) if nginx is not None else None


def _farewell(stop: StopRequest, still: set[str], code: int) -> int:
    farewell = f"tfmirror up: stopped ({stop.signal})" if stop.requested else "tfmirror up: stopped"
    if still:
        # Job threads are joined at interpreter exit; Ctrl-C must not wait minutes for a
        # verify or gc. What they wrote unpublished is gc's after its grace period.
        print(
            f"{farewell} while {', '.join(sorted(still))} ran; it published nothing half-done",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(code)
    print(farewell, file=sys.stderr, flush=True)
    return code


def _migrate_store(parts: MirrorParts) -> None:
    """A store the release before environments wrote: its manifests move under the
    environment "default"; one written before stored URLs were scrubbed loses the
    credentials in them (the pypi lease keeps a sync from committing meanwhile)."""
    store = parts.store

    def migrate() -> tuple[list[str], list[str]]:
        return migrate_layout(store), scrub_credentials(store)

    moved, scrubbed = parts.runner.keep_out(("pypi",), migrate, wait=True)
    if moved:
        print(f"store: moved {len(moved)} manifests under environment default", flush=True)
    if scrubbed:
        print(f"store: took credentials out of {len(scrubbed)} stored documents", flush=True)


def _resume_bundle(parts: MirrorParts) -> None:
    """An import a crash interrupted is finished before the mirror says it serves."""
    if not pending(parts.store):
        return
    finished, failures = parts.runner.keep_out(
        SYNCS, lambda: resume(parts.store, parts.offer_manifests), wait=True
    )
    if finished:
        print(f"bundle {finished}: finished the import a crash interrupted", flush=True)
    report_offer(0, failures)


def _banner(entry: EntryPoint) -> None:
    print("\npip.conf for the fleet:\n" + render_pip_conf(entry.index_url))
    print(f"TF Hub models: {entry.hub_url}")
    print(f"status page:   {entry.base_url}/")
    how = "nginx in front of devpi and the web front" if entry.via_proxy else "web front"
    print(f"entry point: {entry.base_url}/   ({how}; Ctrl-C stops)", flush=True)
