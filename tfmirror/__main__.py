"""`python -m tfmirror`: the same as the `tfmirror` command."""

from tfmirror.cli import main

raise SystemExit(main())
