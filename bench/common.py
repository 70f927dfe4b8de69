"""Helpers the benches share."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.servers import free_port


def drop_caches() -> bool:
    """Empty the page cache so the next read comes from disk (root only)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def settle() -> None:
    """Start a timed run from the same machine state whichever ran before it: every dirty
    page written back (devpi never fsyncs its files), the page cache emptied (root only),
    and a pause. Measured without it, whichever of tfmirror and pip ran second in a round
    took 0.5-1 s longer: this VM hands out memory that was freed a moment ago several
    times faster than memory it has to fault in from the host (ext4 writes of 572 MB:
    0.13-0.44 s into recycled pages, 1.1-1.45 s into fresh ones)."""
    drop_caches()
    time.sleep(3)


def write_mirror_config(work: Path, requirements: Sequence[str], extra: str = "") -> Path:
    """A fresh mirror's config under `work` (store in work/data, its own devpi and front
    on free ports); `extra` is more TOML, tables after [pypi] ones."""
    path = work / "tfmirror.toml"
    reqs = ", ".join(json.dumps(r) for r in requirements)
    path.write_text(f"""
[storage]
path = "data"
[devpi]
url = "http://127.0.0.1:{free_port()}"
[web]
port = {free_port()}
[pypi]
requirements = [{reqs}]
{extra}""")
    return path
