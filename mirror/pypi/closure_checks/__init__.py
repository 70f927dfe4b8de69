"""The checks every resolved closure passes before it is committed, in this order
(mirror.pypi.closure_checks.check says what a check is). Adding one is a module in this
package and a line in CLOSURE_CHECKS.
"""

from __future__ import annotations

from mirror.pypi.closure_checks.check import (
    CheckFactory,
    ClosureCheck,
    Finding,
    SyncView,
    Verdict,
)
from mirror.pypi.closure_checks.licenses import Licenses
from mirror.pypi.closure_checks.quarantined import Quarantined
from mirror.pypi.closure_checks.upstream_removals import UpstreamRemovals

# Upstream's word first: the rules it writes are the quarantine the next one reads.
CLOSURE_CHECKS: tuple[CheckFactory, ...] = (UpstreamRemovals, Quarantined, Licenses)

__all__ = ["CLOSURE_CHECKS", "CheckFactory", "ClosureCheck", "Finding", "SyncView", "Verdict"]
