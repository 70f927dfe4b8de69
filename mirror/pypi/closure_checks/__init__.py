"""The checks every resolved closure passes before it is committed, in this order
(mirror.pypi.closure_checks.check says what a check is). Adding one is a module in this
package and a line in CLOSURE_CHECKS.
"""

from __future__ import annotations

from mirror.pypi.closure_checks.advisories import Advisories
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

# Upstream's word and the advisories first: the rules they write are the quarantine the
# next one reads; licences last.
CLOSURE_CHECKS: tuple[CheckFactory, ...] = (UpstreamRemovals, Advisories, Quarantined, Licenses)

__all__ = ["CLOSURE_CHECKS", "CheckFactory", "ClosureCheck", "Finding", "SyncView", "Verdict"]
