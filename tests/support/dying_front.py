"""`python -m tests.support.dying_front TRIGGER tfmirror-args...`: the tfmirror command
whose web front's server loop dies as soon as the file TRIGGER exists, the way
waitress's select() loop died past 1024 descriptors, while the rest of the process
(the scheduler, devpi, nginx) lives on."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from waitress import wasyncore

TRIGGER = Path(sys.argv.pop(1))
_loop = wasyncore.loop


def loop(timeout: float = 30.0, use_poll: bool = False, map: Any = None, count: Any = None) -> None:
    while map and not TRIGGER.exists():
        _loop(timeout, use_poll, map, count=1)
    if map:
        raise ValueError("filedescriptor out of range in select()")


wasyncore.loop = loop  # waitress's servers look it up on each run()

if __name__ == "__main__":
    from tfmirror.cli import main

    sys.exit(main())
