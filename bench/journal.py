"""Bench: the journal's history and verify over 100,000 entries, on the local store.

The journal is written as `Journal.record` writes it (canonical entries, each naming the
one before by sha256, sealed every 1,000 into a segment), but in bulk: recording 100,000
one by one would time the set-up, not the reads. Then, each from a cold process:
  - `tfmirror history --project P --limit 20 --json` (target < 1 s)
  - `tfmirror history --limit 20` (the newest entries)
  - `tfmirror history --verify` (every link, and each sealed entry against its segment)
against a peer in the same run: `grep -c` of the project's name over every segment file
(what an auditor with shell access would do instead).

    python -m bench.journal [--entries 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mirror.core import journal as journal_module
from mirror.core.journal import GENESIS, Journal, _canonical, _key
from mirror.core.storage import LocalStore


def build(store: LocalStore, entries: int) -> None:
    prev = GENESIS
    for seq in range(entries):
        doc = {
            "seq": seq,
            "prev": prev,
            "at": f"2026-{1 + seq * 11 // entries:02d}-01T00:00:00Z",
            "actor": "scheduler@bench",
            "reason": "pypi sync",
            "changes": [
                {"event": "file added", "project": f"p{seq % 300}", "version": f"1.{seq}"},
                {"event": "file removed", "project": f"p{seq % 300}", "version": f"1.{seq - 1}"},
            ],
        }
        raw = _canonical(doc)
        path = store.root / _key(seq)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        prev = hashlib.sha256(raw).hexdigest()
        if seq % journal_module.SEGMENT == journal_module.SEGMENT - 1:
            Journal(store)._seal(seq - journal_module.SEGMENT + 1)
    store.put(journal_module.HEAD, _canonical({"seq": entries - 1, "sha256": prev}))


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    began = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return time.monotonic() - began, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfmirror-journal-") as tmp:
        root = Path(tmp)
        store = LocalStore(root / "store")
        began = time.monotonic()
        build(store, args.entries)
        print(f"built {args.entries} entries in {time.monotonic() - began:.1f} s")
        config = root / "tfmirror.toml"
        config.write_text(f'[storage]\npath = "{store.root}"\n')
        cli = [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "history"]
        startup, _ = timed([sys.executable, "-m", "tfmirror.cli", "--help"])
        project, proc = timed([*cli, "--project", "p7", "--limit", "20", "--json"])
        assert proc.returncode == 0, proc.stderr
        newest, proc = timed([*cli, "--limit", "20"])
        assert proc.returncode == 0, proc.stderr
        verify, proc = timed([*cli, "--verify"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        segments = sorted(str(p) for p in (store.root / "journal" / "segments").iterdir())
        peer, _ = timed(["grep", "-c", '"project":"p7"', *segments])
        print(f"  interpreter start-up (tfmirror --help)   {startup:6.2f} s")
        print(f"  history --project p7 --limit 20 --json    {project:6.2f} s  (target < 1 s)")
        print(f"  history --limit 20                        {newest:6.2f} s")
        print(f"  history --verify                          {verify:6.2f} s  {proc.stdout.strip()}")
        ratio = project / peer
        print(f"  peer: grep -c over the segments           {peer:6.2f} s  -> ratio {ratio:.1f}x")


if __name__ == "__main__":
    main()
