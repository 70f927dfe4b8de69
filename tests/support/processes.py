"""Processes a test started, as /proc shows them: to find a child and to prove none is
left behind."""

from __future__ import annotations

from pathlib import Path

import pytest


def descendants(pid: int) -> list[int]:
    """Every process below `pid`: children, theirs, and so on."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out + [g for c in out for g in descendants(c)]


def command_line(pid: int) -> str:
    """Its argv joined by spaces; "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def put_secrets(monkeypatch: pytest.MonkeyPatch, secrets: dict[str, str]) -> dict[str, str]:
    """The secrets in this process's environment, as an operator's syncer holds them."""
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    return secrets
