"""Helpers the benches share."""

from __future__ import annotations

import os
from pathlib import Path


def drop_caches() -> bool:
    """Empty the page cache so the next read comes from disk (root only)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False
