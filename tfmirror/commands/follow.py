"""`tfmirror follow`: one pull from the centre this site follows ([follow] url), now."""

from __future__ import annotations

import argparse

from follow.jobs import JOB
from follow.pull import kept_line
from mirror.core.errors import UsageError
from mirror.core.sizes import human_bytes
from tfmirror.commands.common import report_offer, wait_flag
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    wait_flag(parser)


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    """A refused pull (FollowRefused) or an unreachable centre is the one line
    tfmirror.cli prints for it; what the site serves does not change."""
    if parts.config.follow is None:
        raise UsageError("this mirror follows no centre: add [follow] url to its config")
    done, held, failures = parts.runner.run(JOB, "manual", work=parts.follow, wait=args.wait)
    if done.unchanged:
        print(f"{done.summary()} (the centre's head has not moved)")
    else:
        print(f"{done.summary()}, {human_bytes(done.bytes)} fetched")
        if done.quarantine_changed:
            print("quarantine rules changed at the centre: taken")
        if done.promotion is not None:
            print(f"promoted as the centre: {done.promotion or 'live'}")
        if done.snapshots_deleted:
            print(f"snapshots deleted as at the centre: {', '.join(done.snapshots_deleted)}")
        for name in done.snapshots_kept:
            print(kept_line(name))
    return report_offer(held, failures)
