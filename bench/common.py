"""Helpers the benches share."""

from __future__ import annotations

import os
import time
from pathlib import Path


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
