"""What a commit of a target's closure changes, as the journal records it
(mirror.core.journal): files added and removed, a yank upstream made, requirements."""

from __future__ import annotations

from typing import Any

from mirror.pypi.manifest import Manifest
from mirror.pypi.resolve import Wheel


def _file(event: str, wheel: Wheel, where: str, **more: Any) -> dict[str, Any]:
    return {
        "event": event,
        "project": wheel.project,
        "version": wheel.version,
        "filename": wheel.filename,
        "where": where,
        **more,
    }


def closure_changes(old: Manifest | None, new: Manifest | None, where: str) -> list[dict[str, Any]]:
    """The changes from `old` to `new` (None: none before, or none after)."""
    before = {w.sha256: w for w in old.files} if old is not None else {}
    after = {w.sha256: w for w in new.files} if new is not None else {}
    changes: list[dict[str, Any]] = []
    if old is not None and new is not None:
        for key in ("requirements", "constraints"):
            was, now = list(getattr(old, key)), list(getattr(new, key))
            if was != now:
                changes.append(
                    {
                        "event": f"{key} changed",
                        "where": where,
                        "before": list(was),
                        "after": list(now),
                    }
                )
    for sha, wheel in sorted(after.items(), key=lambda kv: kv[1].filename):
        if sha not in before:
            changes.append(_file("file added", wheel, where, after=sha))
        elif wheel.yanked and not before[sha].yanked:
            reason = wheel.yanked if isinstance(wheel.yanked, str) else ""
            changes.append(_file("yank seen", wheel, where, after=sha, reason=reason))
        elif before[sha].yanked and not wheel.yanked:
            changes.append(_file("yank lifted", wheel, where, after=sha))
    for sha, wheel in sorted(before.items(), key=lambda kv: kv[1].filename):
        if sha not in after:
            changes.append(_file("file removed", wheel, where, before=sha))
    return changes
