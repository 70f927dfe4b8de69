"""What the commands share: exit codes, argument types, picking an environment and
target, a snapshot by name, the closures a command reads, forwarding a stop to a child."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from packaging.utils import canonicalize_name

from mirror.core.config import (
    DEFAULT_ENVIRONMENT,
    PORT,
    Config,
    Environment,
    Target,
    host_target,
)
from mirror.core.errors import UsageError
from mirror.core.runs import Failure
from mirror.core.snapshots import FrozenDocuments, Snapshot, check_name, load_snapshot
from mirror.core.storage import BlobStore
from mirror.core.web_server import listen_problem, tfmirror_serves
from mirror.pypi.manifest import Manifest, load_all

EXIT_OK, EXIT_FAILED = 0, 1  # and 2, a UsageError's (tfmirror.cli)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not PORT.ok(port):
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port ({PORT.fix})")
    return port


def size_text(text: str) -> int:
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


def hours_text(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not math.isfinite(hours) or hours < 0:
        raise argparse.ArgumentTypeError(f"{text} hours: use 0 or more (a finite number)")
    return hours


def check_listen(host: str, port: int, setting: str) -> None:
    problem = listen_problem(host, port)
    if problem and tfmirror_serves(host, port):
        raise UsageError(
            f"another tfmirror already serves on {host}:{port} (a second `up`?): stop it "
            f"first, or give this one its own {setting} and store"
        )
    if problem:
        raise UsageError(f"{problem}; change {setting}")


def wait_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="if the job runs elsewhere, wait for it, then run"
    )


def pick_environment(config: Config, wanted: str | None) -> Environment:
    envs = config.pypi.environments
    names = ", ".join(e.name for e in envs) or "none"
    if wanted is not None:
        found = [e for e in envs if canonicalize_name(e.name) == canonicalize_name(wanted)]
        if not found:
            raise UsageError(f"--env {wanted}: not configured; use one of {names}")
        return found[0]
    if len(envs) == 1:
        return envs[0]
    default = config.pypi.environment(DEFAULT_ENVIRONMENT)
    if default is not None:
        return default
    raise UsageError(f"several environments are configured: pass --env, one of {names}")


def pick_target(env: Environment, wanted: str | None) -> Target:
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


# What a bundle keeps out while it runs (`runner.keep_out`): manifests a sync commits
# mid-export would not match the blobs carried, and an import rewrites them.
SYNCS = ("pypi", "hub")


def report_offer(held: int, failures: Sequence[Failure]) -> int:
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if held:
        print(f"devpi holds {held} new files")
    return EXIT_FAILED if failures else EXIT_OK


def forward_signals(action: Callable[[int], None]) -> None:
    """SIGTERM and SIGINT call `action(signum)` instead of raising."""

    def handler(signum: int, frame: FrameType | None) -> None:
        action(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def must_snapshot(store: BlobStore, name: str) -> Snapshot:
    """The snapshot of that name, or a usage error (exit 2) that says how to find one."""
    found = load_snapshot(store, check_name(name))
    if found is None:
        raise UsageError(f"snapshot {name!r} does not exist (see: tfmirror snapshot list)")
    return found


def closures(
    config: Config, store: BlobStore, env: str | None, snapshot: str | None
) -> dict[str, list[Manifest]]:
    """Each environment's committed manifests, live or as `snapshot` holds them; `env`'s
    alone where given (a usage error if there is none of it yet)."""
    source = FrozenDocuments(must_snapshot(store, snapshot)) if snapshot else store
    wanted = pick_environment(config, env).name if env else None
    found: dict[str, list[Manifest]] = {}
    for manifest in load_all(source, wanted):
        found.setdefault(manifest.environment, []).append(manifest)
    if wanted is not None and wanted not in found:
        where = f"snapshot {snapshot}" if snapshot else "the mirror"
        raise UsageError(f"--env {wanted}: {where} holds no closure of it yet")
    return dict(sorted(found.items()))
