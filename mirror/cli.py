"""The `tfmirror` command. Exit codes: 0 ok, 1 a job failed, 2 bad usage or config."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from mirror.core.config import (
    Config,
    ConfigError,
    Environment,
    Target,
    handle_path,
    host_target,
    load_config,
)
from mirror.core.lease import JobBusy
from mirror.core.runs import Failure, JobCrashed
from mirror.core.sizes import human_bytes
from mirror.core.storage import BlobStore, StoreError
from mirror.proxy import ProxyError
from sync_jobs.runner import JobRunner, RunResult

if TYPE_CHECKING:
    from mirror.proxy import EntryPoint

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
UP_STOP_GRACE = 3.0  # seconds a running job gets when `up` is stopped
log = logging.getLogger("tfmirror")


class UsageError(Exception):
    """Bad arguments for a subcommand: one line, exit 2."""


class _OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (exit 2) like every other bad input.
    Every command also takes the global options after its name (`tfmirror status
    --config x.toml`), as people type them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.prog != "tfmirror":  # a command's parser: the root's options, unset
            _global_options(self, default=argparse.SUPPRESS)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"tfmirror: error: {self.prog}: {message} (see --help)\n")


def _global_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="TOML config (default: $TFMIRROR_CONFIG, ./tfmirror.toml, built-in)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if default is None else default,
        help="debug logging",
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (use 1 to 65535)")
    return port


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(text: str) -> int:
    """A size like 700M or 4G (binary units) or plain bytes."""
    unit = text[-1:].upper() if text[-1:].isalpha() else ""
    number = text[: -len(unit)] if unit else text
    try:
        size = int(float(number) * _UNITS[unit])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 700M, 4G)") from None
    if size < 1 << 20:
        raise argparse.ArgumentTypeError(f"{text!r} is under 1M; parts that small help no one")
    return size


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not math.isfinite(hours) or hours < 0:
        raise argparse.ArgumentTypeError(f"{text} hours: use 0 or more (a finite number)")
    return hours


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="tfmirror", description="Verified PyPI and TF Hub mirror for air-gapped fleets."
    )
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sync = sub.add_parser("sync", help="mirror from upstream now")
    sync.add_argument("side", choices=["pypi", "hub", "all"], help="what to sync")
    sync.add_argument(
        "--no-devpi", action="store_true", help="store and commit only; leave devpi as it is"
    )
    _wait_flag(sync)

    devpi = sub.add_parser("devpi", help="run the configured devpi-server in the foreground")
    devpi.add_argument("--serverdir", metavar="DIR", help="override [devpi] serverdir")
    devpi.add_argument("--host", metavar="ADDR", help="listen address (default: [devpi] url's)")
    serve = sub.add_parser("serve", help="run the web front in the foreground")
    serve.add_argument("--host", metavar="ADDR", help="override [web] host")
    serve.add_argument("--port", type=_port, metavar="N", help="override [web] port")
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="run under gunicorn with N worker processes (production)",
    )
    pip_conf = sub.add_parser("pip-conf", help="print the pip.conf snippet for the mirror's index")
    pip_conf.add_argument(
        "--env", metavar="NAME", help="one environment's index (default: the union of all)"
    )
    proxy = sub.add_parser("proxy", help="run nginx, the fleet's entry point, in the foreground")
    proxy.add_argument("--host", metavar="ADDR", help="override [proxy] host")
    proxy.add_argument("--port", type=_port, metavar="N", help="override [proxy] port")
    proxy.add_argument(
        "--devpi-serverdir",
        metavar="DIR",
        help="devpi's serverdir, from which nginx sends devpi's files (default: [devpi])",
    )
    proxy.add_argument(
        "--print-config", action="store_true", help="print the nginx config and exit"
    )

    lock = sub.add_parser(
        "lock", help="print a hash-pinned requirements file for an environment's target"
    )
    lock.add_argument("--env", metavar="NAME", help="environment (see `tfmirror targets`)")
    lock.add_argument("--target", metavar="ID", help="target id (see `tfmirror targets`)")
    lock.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")

    sub.add_parser("targets", help="list each environment's targets and what each has mirrored")

    hub = sub.add_parser("hub", help="TF Hub models: prefetch a cache, import a model")
    hub_sub = hub.add_subparsers(dest="hub_command", required=True, metavar="ACTION")
    prefetch = hub_sub.add_parser("prefetch", help="fill a TFHUB_CACHE_DIR from the mirror")
    prefetch.add_argument("handles", nargs="+", metavar="HANDLE")
    where = prefetch.add_mutually_exclusive_group(required=True)
    where.add_argument("--cache-dir", metavar="DIR", help="a TFHUB_CACHE_DIR (tensorflow_hub)")
    where.add_argument(
        "--kagglehub-cache",
        metavar="DIR",
        help="a KAGGLEHUB_CACHE (kagglehub); handles as owner/model/framework/variation/version",
    )
    prefetch.add_argument("--mirror", metavar="URL", help="the mirror's web front (default: [web])")
    imp = hub_sub.add_parser("import", help="add a model from a SavedModel folder or tarball")
    imp.add_argument("path", metavar="PATH")
    imp.add_argument("--handle", required=True, metavar="HANDLE")
    _wait_flag(imp)
    sub.add_parser("up", help="devpi, the web front and the scheduler, in one command")
    sub.add_parser("scheduler", help="run the scheduled syncs until SIGTERM")
    ver = sub.add_parser("verify", help="re-hash the store, check devpi, prove installs")
    ver.add_argument(
        "--repair",
        action="store_true",
        help="re-fetch bad blobs (quarantining corrupt ones), re-push to devpi",
    )
    ver.add_argument("--deep", action="store_true", help="also load every model with TensorFlow")
    ver.add_argument(
        "--no-install",
        action="store_true",
        help="resolve only; skip the real install into a throwaway venv",
    )
    _wait_flag(ver)
    gc = sub.add_parser("gc", help="remove blobs no manifest references")
    gc.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    gc.add_argument(
        "--grace-hours", type=_hours, metavar="H", help="override [schedule] gc_grace_hours"
    )
    _wait_flag(gc)
    bundle = sub.add_parser("bundle", help="carry the mirror across an air gap, signed")
    bundle_sub = bundle.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    keygen = bundle_sub.add_parser("keygen", help="make an ed25519 key pair for bundles")
    keygen.add_argument("--out", required=True, metavar="DIR")
    exp = bundle_sub.add_parser("export", help="write what the inner mirror lacks, signed")
    exp.add_argument("--key", required=True, metavar="KEY", help="the bundle.key to sign with")
    exp.add_argument("-o", "--output", required=True, metavar="DIR", help="a new folder")
    since = exp.add_mutually_exclusive_group()
    since.add_argument("--since", metavar="ID", help="only blobs newer than export ID")
    since.add_argument("--full", action="store_true", help="every blob (a new inner mirror)")
    exp.add_argument("--max-part-size", type=_size, metavar="SIZE", help="e.g. 4G for FAT32")
    _wait_flag(exp)
    bimp = bundle_sub.add_parser("import", help="check a bundle and serve what it brought")
    bimp.add_argument("path", metavar="PATH")
    bimp.add_argument("--trust", required=True, metavar="PUBKEY", help="the outer bundle.pub")
    bimp.add_argument(
        "--allow-rollback",
        action="store_true",
        help="import a bundle made before the last one imported (it rolls the mirror back)",
    )
    _wait_flag(bimp)
    status = sub.add_parser("status", help="what the status page shows")
    status.add_argument("--json", action="store_true", help="the /api/status document")
    return parser


def check_listen(host: str, port: int, setting: str) -> None:
    from mirror.core.web_server import listen_problem, tfmirror_serves

    problem = listen_problem(host, port)
    if problem and tfmirror_serves(host, port):
        raise UsageError(
            f"another tfmirror already serves on {host}:{port} (a second `up`?): stop it "
            f"first, or give this one its own {setting} and store"
        )
    if problem:
        raise UsageError(f"{problem}; change {setting}")


def _runner(config: Config, store: BlobStore) -> JobRunner:
    """The one runner every way of starting a job goes through, with every job."""
    from mirror.jobs import registry

    return JobRunner(config, store, registry())


def _wait_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="if the job runs elsewhere, wait for it, then run"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # Library chatter (credential lookups, connection pools) is for -v only.
        # apscheduler's job lines would bury the startup banner with the pip.conf.
        for noisy in ("botocore", "boto3", "urllib3", "waitress", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # A stop (`kill`, `docker stop`) ends a command as Ctrl-C does: what it was writing
    # is removed and its temporary venvs and sockets cleaned up on the way out. `up`,
    # the scheduler and the servers set their own handlers.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        config = load_config(args.config)
        handler = _COMMANDS[args.command]
        return handler(config, args)
    except (ConfigError, UsageError) as exc:
        kind = "config error" if isinstance(exc, ConfigError) else "error"
        print(f"tfmirror: {kind}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"tfmirror: store: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ProxyError as exc:
        print(f"tfmirror: proxy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except JobBusy as exc:
        print(f"tfmirror: {exc}; pass --wait to run after it", file=sys.stderr)
        return EXIT_FAILED
    except JobCrashed as exc:
        print(f"tfmirror: {exc} (recorded as a failed run; -v for the traceback)", file=sys.stderr)
        logging.getLogger("tfmirror").debug("traceback", exc_info=exc.__cause__)
        return EXIT_FAILED
    except KeyboardInterrupt:
        from mirror.core.storage import drop_unfinished_writes

        dropped = drop_unfinished_writes()
        removed = f"; {dropped} partial downloads removed" if dropped else ""
        print(f"tfmirror: interrupted; nothing half-done was published{removed}", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        # Not a return: the download threads would be waited for, to their last byte.
        os._exit(130)


# ----------------------------------------------------------------------------- commands


def cmd_sync(config: Config, args: argparse.Namespace) -> int:
    from mirror.core.storage import open_store

    store = open_store(config.storage)
    runner = _runner(config, store)
    codes = [EXIT_OK]
    if args.side in ("pypi", "all") and not config.pypi.syncs:
        print(f"pypi: {config.pypi.why_no_sync}; nothing to sync")
    elif args.side in ("pypi", "all"):
        with runner.hold("pypi", wait=args.wait):
            codes.append(_sync_pypi(config, store, args.no_devpi))
    if args.side in ("hub", "all"):
        with runner.hold("hub", wait=args.wait):
            codes.append(_sync_hub(config, store))
    return max(codes)


def _sync_pypi(config: Config, store: BlobStore, no_devpi: bool) -> int:
    from mirror.jobs import sync_pypi
    from mirror.progress import TerminalProgress

    report = sync_pypi(config, store, "manual", TerminalProgress(), devpi=not no_devpi)
    for failure in report.failures:
        print(f"FAILED {failure}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def _sync_hub(config: Config, store: BlobStore) -> int:
    from hub_cache.hub_sync import ModelStatus
    from hub_cache.jobs import sync_hub

    report = sync_hub(config, store, "manual")
    for outcome in report.outcomes:
        if outcome.status is ModelStatus.FAILED:
            print(f"FAILED {outcome.handle}: {outcome.reason} ({outcome.url})", file=sys.stderr)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_bundle(config: Config, args: argparse.Namespace) -> int:
    from bundle.keys import KeyFileError, keygen, load_private, load_public
    from bundle.layout import BundleError

    try:
        if args.bundle_command == "keygen":
            private, public = keygen(Path(args.out))
            print(f"private key (keep it on the outer side): {private}\npublic key: {public}")
            return EXIT_OK
        if args.bundle_command == "export":
            return _bundle_export(config, args, load_private(Path(args.key)))
        return _bundle_import(config, args, load_public(Path(args.trust)))
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
    except BundleError as exc:
        print(f"tfmirror: bundle refused: {exc}", file=sys.stderr)
        return EXIT_FAILED


@contextmanager
def _keep_syncs_out(runner: JobRunner, wait: bool) -> Iterator[None]:
    """A bundle holds both syncs' leases: manifests a sync commits mid-export would not
    match the blobs carried, and an import rewrites them. Bundles record their own runs."""
    with runner.hold("pypi", wait, record=False), runner.hold("hub", wait, record=False):
        yield


def _bundle_export(config: Config, args: argparse.Namespace, key: Any) -> int:
    from bundle.runs import export_recorded
    from mirror.core.storage import open_store

    store = open_store(config.storage)
    runner = _runner(config, store)
    out = Path(args.output)
    with _keep_syncs_out(runner, args.wait):
        done = export_recorded(store, key, out, args.since, args.full, args.max_part_size)
    follows = f"follows {done.follows}" if done.follows else "full"
    print(
        f"{done.id}\t{follows}; {done.blobs} blobs, {human_bytes(done.bytes)}, {done.parts} parts"
    )
    return EXIT_OK


def _bundle_import(config: Config, args: argparse.Namespace, trusted: Any) -> int:
    from bundle.runs import import_recorded
    from mirror.core.storage import open_store
    from mirror.services import offer_manifests

    store = open_store(config.storage)
    runner = _runner(config, store)
    with _keep_syncs_out(runner, args.wait):
        done, held, failures = import_recorded(
            store,
            Path(args.path),
            trusted,
            lambda: offer_manifests(config, store),
            args.allow_rollback,
        )
    if done.again:
        print(f"{done.id} is the last bundle imported here: nothing new to check")
    else:
        print(
            f"imported {done.id}: {done.manifests} manifests, {done.new_blobs} new blobs, "
            f"{human_bytes(done.bytes)} checked"
        )
    return _report_offer(held, failures)


def _report_offer(held: int, failures: Sequence[Failure]) -> int:
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if held:
        print(f"devpi holds {held} new files")
    return EXIT_FAILED if failures else EXIT_OK


def cmd_hub(config: Config, args: argparse.Namespace) -> int:
    from hub_cache.hub_sync import ModelStatus, caps
    from hub_cache.importer import import_model
    from hub_cache.prefetch import PrefetchError, prefetch
    from mirror.core.storage import open_store

    if args.hub_command == "import":
        try:
            handle_path(args.handle)
        except ValueError as exc:
            raise UsageError(f"--handle: {exc}") from None
        source = Path(args.path)
        if not source.exists():
            raise UsageError(f"{source}: no such file or folder")
        if not (source.is_dir() or source.is_file()):
            raise UsageError(f"{source}: not a regular file or a folder")
        store = open_store(config.storage)
        with _runner(config, store).hold("hub", wait=args.wait):
            outcome = import_model(store, source, args.handle, config.hub)
        if outcome.status is ModelStatus.FAILED:
            print(f"FAILED {outcome.handle}: {outcome.reason}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{outcome.handle}: {outcome.status} ({human_bytes(outcome.bytes)})")
        return EXIT_OK
    mirror = args.mirror or config.web.base_url
    code = EXIT_OK
    for handle in args.handles:
        try:
            cache = Path(args.kagglehub_cache or args.cache_dir)
            kagglehub = args.kagglehub_cache is not None
            done = prefetch(handle, cache, mirror, caps(config.hub), kagglehub=kagglehub)
            print(f"{handle}: {done.status} -> {done.folder}")
        except (PrefetchError, ValueError) as exc:
            print(f"FAILED {exc}", file=sys.stderr)
            code = EXIT_FAILED
    return code


def cmd_devpi(config: Config, args: argparse.Namespace) -> int:
    from mirror.core.children import private_server, scrubbed_env
    from mirror.devpi.client import DevpiClient, DevpiError
    from mirror.devpi.server import command, initialise, user_password, wait_ready

    devpi = config.devpi
    if args.serverdir is not None:
        if not args.serverdir.strip():
            raise UsageError("--serverdir is empty; give a folder, or leave it out for [devpi]'s")
        devpi = replace(devpi, serverdir=Path(args.serverdir).resolve())
    if devpi.serverdir is None:
        raise UsageError(
            f"[devpi] serverdir is not set (devpi at {devpi.url} is external); "
            "set it, or pass --serverdir"
        )
    initialise(devpi.serverdir)
    proc = subprocess.Popen(
        command(devpi, listen=args.host), env=scrubbed_env(), preexec_fn=private_server
    )
    _forward_signals(proc.terminate)
    try:
        wait_ready(devpi.url, proc)
        DevpiClient(devpi, user_password(devpi)).bootstrap(config.devpi_mirror_url)
        print(f"devpi serving {devpi.index_url}", flush=True)
    except DevpiError as exc:
        print(f"tfmirror: devpi: {exc}", file=sys.stderr)
    code = proc.wait()
    return EXIT_OK if code in (0, -signal.SIGTERM, -signal.SIGINT) else EXIT_FAILED


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from mirror.app import create_app
    from mirror.core.web_server import serve_forever, serve_gunicorn

    web = replace(config.web, host=args.host or config.web.host, port=args.port or config.web.port)
    config = replace(config, web=web)
    check_listen(web.host, web.port, "--host/--port or [web] host/port")
    print(f"tfmirror web front on {web.base_url}/ (status page, /simple/, /hub/)", flush=True)
    if args.workers > 0:
        serve_gunicorn(f"{web.host}:{web.port}", args.workers, lambda: create_app(config))
    else:
        serve_forever(create_app(config), web.host, web.port)
    return EXIT_OK


def cmd_pip_conf(config: Config, args: argparse.Namespace) -> int:
    from mirror.proxy import entry_point
    from mirror.pypi.lockfile import render_pip_conf

    entry = entry_point(config)
    if args.env is None:
        print(render_pip_conf(entry.index_url), end="")
    else:
        env = _pick_environment(config, args.env)
        print(render_pip_conf(entry.environment_url(env.name), env.name), end="")
    return EXIT_OK


def cmd_proxy(config: Config, args: argparse.Namespace) -> int:
    from mirror.proxy import INSTALL_HINT, NginxProcess, nginx_binary, plan_for, render

    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: use a TCP port from 1 to 65535")
    serverdir = Path(args.devpi_serverdir) if args.devpi_serverdir else None
    if serverdir is not None and not serverdir.is_dir():
        raise UsageError(f"--devpi-serverdir {serverdir}: no such folder")
    plan = plan_for(config, args.host, args.port, serverdir)
    if args.print_config:
        sys.stdout.write(render(plan))
        return EXIT_OK
    nginx = nginx_binary(config.proxy.nginx)  # run when asked, whatever [proxy] enabled says
    if nginx is None:
        raise UsageError(f"{config.proxy.nginx} not found: {INSTALL_HINT}")
    proc = NginxProcess(nginx, plan).start()
    _forward_signals(proc.quit)
    print(f"fleet entry point on http://{plan.listen}/ (pip index, TF Hub, status)", flush=True)
    code = proc.wait()
    return EXIT_OK if code in (0, -signal.SIGTERM, -signal.SIGQUIT) else EXIT_FAILED


def _pick_environment(config: Config, wanted: str | None) -> Environment:
    from mirror.core.config import DEFAULT_ENVIRONMENT, normalise_name

    envs = config.pypi.environments
    names = ", ".join(e.name for e in envs) or "none"
    if wanted is not None:
        found = [e for e in envs if normalise_name(e.name) == normalise_name(wanted)]
        if not found:
            raise UsageError(f"--env {wanted}: not configured; use one of {names}")
        return found[0]
    if len(envs) == 1:
        return envs[0]
    default = config.pypi.environment(DEFAULT_ENVIRONMENT)
    if default is not None:
        return default
    raise UsageError(f"several environments are configured: pass --env, one of {names}")


def _pick_target(env: Environment, wanted: str | None) -> Target:
    by_id = {t.id: t for t in env.targets}
    ids = ", ".join(by_id)
    if wanted:
        if wanted not in by_id:
            raise UsageError(
                f"--target {wanted}: not a target of environment {env.name}; use one of {ids}"
            )
        return by_id[wanted]
    if len(by_id) == 1:
        return env.targets[0]
    host = host_target().id
    if host in by_id:
        return by_id[host]
    raise UsageError(f"environment {env.name} has several targets: pass --target, one of {ids}")


def cmd_lock(config: Config, args: argparse.Namespace) -> int:
    from mirror.core.storage import open_store
    from mirror.proxy import entry_point
    from mirror.pypi.lockfile import render_lock
    from mirror.pypi.manifest import load_manifest

    env = _pick_environment(config, args.env)
    target = _pick_target(env, args.target)
    manifest = load_manifest(open_store(config.storage), env.name, target.id)
    if manifest is None:
        print(
            f"tfmirror: {env.name}/{target.id} has nothing mirrored yet: run `tfmirror sync pypi`",
            file=sys.stderr,
        )
        return EXIT_FAILED
    entry = entry_point(config)
    text = render_lock(manifest, entry.environment_url(env.name))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_targets(config: Config, args: argparse.Namespace) -> int:
    from mirror.core.storage import open_store
    from mirror.proxy import entry_point
    from mirror.pypi.manifest import load_manifest

    store = open_store(config.storage)
    entry = entry_point(config)
    for env in config.pypi.environments:
        print(f"{env.name}\t{entry.environment_url(env.name)}")
        for target in env.targets:
            manifest = load_manifest(store, env.name, target.id)
            if manifest is None:
                print(f"  {target.id}\tnot synced yet")
            else:
                size = sum(w.size or 0 for w in manifest.files) / 1e6
                print(
                    f"  {target.id}\t{len(manifest.files)} files\t{size:.0f} MB\t"
                    f"synced {manifest.synced_at}"
                )
    return EXIT_OK


def cmd_up(config: Config, args: argparse.Namespace) -> int:
    from mirror.app import create_app
    from mirror.core.stopping import StopRequest
    from mirror.core.storage import drop_unfinished_writes, open_store
    from mirror.core.web_server import WebServer
    from mirror.devpi.server import DevpiProcess
    from mirror.proxy import INSTALL_HINT, NginxProcess, entry_point, find_nginx, plan_for
    from sync_jobs import scheduler

    check_listen(config.web.host, config.web.port, "[web] host/port")
    store = open_store(config.storage)
    stop = StopRequest()
    _forward_signals(stop.set)
    devpi_proc = DevpiProcess(config.devpi) if config.devpi.serverdir is not None else None
    nginx = find_nginx(config)
    if config.proxy.enabled and nginx is None:
        missing = f"tfmirror: no nginx for the fleet entry point ({INSTALL_HINT}); "
        print(missing + "serving devpi and the web front directly", file=sys.stderr, flush=True)
    proxy = NginxProcess(nginx, plan_for(config)) if nginx is not None else None
    runner = _runner(config, store)
    outcomes: dict[str, RunResult] = {}
    app = create_app(config, store, runner)
    with ExitStack() as running:
        running.enter_context(WebServer(app, config.web.host, config.web.port))
        if devpi_proc is not None:
            running.enter_context(devpi_proc)
        if proxy is not None:
            running.enter_context(proxy)
        _resume_bundle(config, store, runner)
        _migrate_store(store, runner)
        # The syncs first, so the mirror serves before `up` says it does; verify and gc
        # (if overdue) then run in the background. On a thread: a stop during a long
        # first sync is heard at once.
        starting = threading.Thread(
            target=lambda: outcomes.update(
                scheduler.catch_up(config, store, runner, only=("pypi", "hub"))
            ),
            name="catch-up",
            daemon=True,
        )
        starting.start()
        sched = None
        if not stop.wait_for(lambda: not starting.is_alive()):
            for job, outcome in outcomes.items():
                print(f"{job} sync at start: {outcome}", flush=True)
            sched = scheduler.build(config, runner)
            sched.start()
            scheduler.add_startup_jobs(sched, config, store, runner)
            _banner(entry_point(config, proxied=proxy is not None))
            stop.wait()
        still = scheduler.stop_promptly(sched, runner, UP_STOP_GRACE)
        if still:
            runner.record_interrupted(
                still, "interrupted: `tfmirror up` was stopped while it ran; nothing "
                "half-done was published",
            )  # fmt: skip
            drop_unfinished_writes()
    code = EXIT_FAILED if RunResult.FAILED in outcomes.values() else EXIT_OK
    if still:
        # Job threads are joined at interpreter exit; Ctrl-C must not wait minutes for a
        # verify or gc. What they wrote unpublished is gc's after its grace period.
        print(
            f"stopped while {', '.join(sorted(still))} ran; it published nothing half-done",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(code)
    return code


def _migrate_store(store: BlobStore, runner: JobRunner) -> None:
    """A store the release before environments wrote: its manifests move under the
    environment "default" (the pypi lease keeps a sync from committing meanwhile)."""
    from mirror.pypi.manifest import migrate_layout

    with runner.hold("pypi", wait=True, record=False):
        moved = migrate_layout(store)
    if moved:
        print(f"store: moved {len(moved)} manifests under environment default", flush=True)


def _resume_bundle(config: Config, store: BlobStore, runner: JobRunner) -> None:
    """An import a crash interrupted is finished before the mirror says it serves."""
    from bundle.importer import pending
    from bundle.runs import resume
    from mirror.services import offer_manifests

    if not pending(store):
        return
    with _keep_syncs_out(runner, wait=True):
        finished, failures = resume(store, lambda: offer_manifests(config, store))
    if finished:
        print(f"bundle {finished}: finished the import a crash interrupted", flush=True)
    _report_offer(0, failures)


def _banner(entry: EntryPoint) -> None:
    from mirror.pypi.lockfile import render_pip_conf

    print("\npip.conf for the fleet:\n" + render_pip_conf(entry.index_url))
    print(f"TF Hub models: {entry.hub_url}")
    print(f"status page:   {entry.base_url}/")
    how = "nginx in front of devpi and the web front" if entry.via_proxy else "web front"
    print(f"entry point: {entry.base_url}/   ({how}; Ctrl-C stops)", flush=True)


def cmd_verify(config: Config, args: argparse.Namespace) -> int:
    from mirror.core.storage import open_store
    from mirror.services import services_for_sync
    from verify.run import run_verify

    store = open_store(config.storage)
    with _runner(config, store).hold("verify", wait=args.wait):
        report = run_verify(
            config,
            store,
            services_for_sync,
            fix=args.repair,
            deep=args.deep,
            install=not args.no_install,
        )
    print(report.render(args.repair), end="")  # each problem once, where its check is
    print("verify: clean" if report.ok else f"verify: {len(report.problems)} problems remain")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_gc(config: Config, args: argparse.Namespace) -> int:
    from mirror.core.storage import open_store
    from verify.jobs import run_gc

    hours = config.schedule.gc_grace_hours if args.grace_hours is None else args.grace_hours
    store = open_store(config.storage)
    with _runner(config, store).hold("gc", wait=args.wait):
        report = run_gc(config, store, "manual", hours, args.dry_run)
    for sha in report.removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {sha}")
    print(report.summary())
    return EXIT_OK


def cmd_scheduler(config: Config, args: argparse.Namespace) -> int:
    from mirror.core.storage import open_store
    from sync_jobs.scheduler import run_forever

    store = open_store(config.storage)
    return run_forever(config, store, _runner(config, store))


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    import json

    from mirror.core.storage import open_store
    from mirror.proxy import entry_point
    from sync_jobs.page import render_text
    from sync_jobs.status import collect_status

    status = collect_status(config, open_store(config.storage), entry_point(config).base_url)
    if args.json:
        print(json.dumps(status.as_json(), indent=1))
        return EXIT_OK
    print(render_text(status), end="")
    return EXIT_OK if status.healthy else EXIT_FAILED


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _forward_signals(action: Callable[[], None]) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        action()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


_COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "sync": cmd_sync,
    "devpi": cmd_devpi,
    "serve": cmd_serve,
    "pip-conf": cmd_pip_conf,
    "proxy": cmd_proxy,
    "lock": cmd_lock,
    "targets": cmd_targets,
    "hub": cmd_hub,
    "bundle": cmd_bundle,
    "scheduler": cmd_scheduler,
    "verify": cmd_verify,
    "gc": cmd_gc,
    "status": cmd_status,
    "up": cmd_up,
}

if __name__ == "__main__":
    sys.exit(main())
