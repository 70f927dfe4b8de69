"""The `tfmirror` command. Exit codes: 0 ok, 1 a job failed, 2 bad usage or config. One
module per command under tfmirror.commands (`arguments(parser)`, `run(parts, args)`,
given the mirror's parts built from the config); only the one a command line names is
imported, as pip does. Errors become one line and an exit code here, in one place, by
what each TfmirrorError declares."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType, ModuleType
from typing import Any, NoReturn

from mirror.core.config import load_config
from mirror.core.errors import JobCrashed, TfmirrorError, UsageError
from mirror.core.scratch import drop_scratch
from mirror.core.stopping import Stopped
from mirror.core.storage import drop_unfinished_writes
from tfmirror.parts import MirrorParts

log = logging.getLogger("tfmirror")

# name, module under tfmirror.commands, help: in the order `tfmirror --help` lists them.
COMMANDS = (
    ("sync", "sync", "mirror from upstream now"),
    ("devpi", "devpi", "run the configured devpi-server in the foreground"),
    ("serve", "serve", "run the web front in the foreground"),
    ("pip-conf", "pip_conf", "print the pip.conf snippet for the mirror's index"),
    ("proxy", "proxy", "run nginx, the fleet's entry point, in the foreground"),
    ("node-setup", "node_setup", "print the hosts lines and environment for the public names"),
    ("lock", "lock", "print a hash-pinned requirements file for an environment's target"),
    ("targets", "targets", "list each environment's targets and what each has mirrored"),
    ("hub", "hub", "TF Hub models: prefetch a cache, import a model"),
    ("up", "up", "devpi, the web front and the scheduler, in one command"),
    ("scheduler", "scheduler", "run the scheduled syncs until SIGTERM"),
    ("verify", "verify", "re-hash the store, check devpi, prove installs"),
    ("gc", "gc", "remove blobs no manifest references"),
    ("bundle", "bundle", "carry the mirror across an air gap, signed"),
    ("follow", "follow", "pull what the centre this site follows committed, now"),
    ("status", "status", "what the status page shows"),
    ("audit", "audit", "known vulnerabilities (OSV advisories) in each environment or a lock"),
    ("sbom", "sbom", "a CycloneDX SBOM of an environment: files, hashes, licences, advisories"),
    ("history", "history", "every change to what the mirror offers: when, who, why"),
    ("quarantine", "quarantine", "stop offering a release or model fleet-wide, or offer it again"),
    ("snapshot", "snapshot", "hold every closure and model as they are now; list, show, delete"),
)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (exit 2) like every other bad input.
    Every command also takes the global options after its name (`tfmirror status
    --config x.toml`), as people type them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.prog != "tfmirror":  # a command's parser: the root's options, unset
            _global_options(self, default=argparse.SUPPRESS)

    def error(self, message: str) -> NoReturn:
        # `tfmirror: error: ...` as every other usage error; the help to read names the
        # command (the root's prog is "tfmirror" itself: once is enough).
        self.exit(UsageError.exit_code, f"tfmirror: error: {message} (see {self.prog} --help)\n")


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


def _command(module: str) -> ModuleType:
    return importlib.import_module(f"tfmirror.commands.{module}")


def _parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every command's options, or (`wanted`) only those of
    the command named, whose module alone is then imported."""
    parser = _OneLineParser(
        prog="tfmirror", description="Verified PyPI and TF Hub mirror for air-gapped fleets."
    )
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, summary in COMMANDS:
        command = sub.add_parser(name, help=summary)
        if wanted is None or wanted == name:
            _command(module).arguments(command)
    return parser


def _named(argv: Sequence[str]) -> str | None:
    """The command an argv names: its first word that is not a global option."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(_named(argv)).parse_args(argv)
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
    # is removed and its temporary venvs and sockets cleaned up on the way out, and the
    # run is recorded as interrupted by that signal. `up`, the scheduler and the
    # servers set their own handlers.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    module = next(m for name, m, _ in COMMANDS if name == args.command)
    try:
        parts = MirrorParts(load_config(args.config))
        code: int = _command(module).run(parts, args)
        return code
    except TfmirrorError as exc:
        print(exc.line(), file=sys.stderr)
        if isinstance(exc, JobCrashed):
            log.debug("traceback", exc_info=exc.__cause__)
        return exc.exit_code
    except KeyboardInterrupt:
        drop_scratch()  # what a worker thread made; the main thread's `with`s are done
        dropped = drop_unfinished_writes()
        removed = f"; {dropped} partial downloads removed" if dropped else ""
        print(f"tfmirror: interrupted; nothing half-done was published{removed}", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        # Not a return: the download threads would be waited for, to their last byte.
        os._exit(130)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


if __name__ == "__main__":
    sys.exit(main())
