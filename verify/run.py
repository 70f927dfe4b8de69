"""`tfmirror verify`: scrub, devpi, air-gap proof per target, optional deep model checks.

The result goes to state/verify.json (the status page, /api/status and /metrics read it)
and to a run record under runs/verify/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from hub_cache.hub_sync import inspect_model
from hub_cache.limits import caps
from mirror.core.config import Config
from mirror.core.lease import KeepingOut
from mirror.core.runs import VERIFY_STATE, Failure, RunRecord, utcnow
from mirror.core.sizes import human_bytes
from mirror.core.snapshots import unreadable_snapshots
from mirror.core.storage import BlobStore
from mirror.core.upstream import Fetched
from mirror.devpi.errors import DevpiError, DevpiStartError
from mirror.devpi.publish import DevpiIndex
from verify.airgap import AirGapProof, TargetProof
from verify.compat import check_matrix
from verify.devpi_check import DevpiReport, check_devpi, repair_devpi
from verify.models import ModelCheck, check_models
from verify.references import MadeFrom, referenced
from verify.scrub import Remake, ScrubReport, repair, repair_order, repair_policy, scrub
from verify.signatures import check_signatures


@dataclass
class VerifyReport:
    scrub: ScrubReport
    devpi: DevpiReport = field(default_factory=DevpiReport)
    targets: list[TargetProof] = field(default_factory=list)
    models: list[ModelCheck] = field(default_factory=list)
    # each served model whose entry requires a signature, verified again (verify.signatures)
    signatures: list[ModelCheck] = field(default_factory=list)
    unreadable_snapshots: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        out = [
            f"{p.kind} blob {p.sha256[:12]} ({', '.join(p.names)}): {p.detail}"
            + (f"; repair failed: {p.repair_error}" if p.repair_error else "")
            for p in self.scrub.problems
            if not p.repaired
        ]
        out += [f"devpi lacks {name}" for name in self.devpi.missing]
        out += [f"devpi offers {name}, which no manifest lists" for name in self.devpi.extra]
        out += [f"devpi has other bytes for {name}" for name in self.devpi.mismatched]
        out += [f"devpi: {error}" for error in self.devpi.errors]
        out += [f"target {t.target}: {t.detail}" for t in self.targets if not t.ok]
        out += [f"model {m.handle}: {m.detail}" for m in self.models if not m.ok]
        out += [f"signature of {m.handle}: {m.detail}" for m in self.signatures if not m.ok]
        out += [
            f"snapshot {name}: its document does not parse; nothing of it is served"
            for name in self.unreadable_snapshots
        ]
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self, repairing: bool) -> str:
        """`tfmirror verify`'s report: every check, each problem once."""
        scrub = self.scrub
        rate = scrub.bytes / max(scrub.seconds, 1e-9) / 1e6
        lines = [
            f"blobs: {scrub.checked} checked, {human_bytes(scrub.bytes)} in "
            f"{scrub.seconds:.1f} s ({rate:.0f} MB/s)"
        ]
        for p in scrub.problems:
            state = f" [{'repaired' if p.repaired else 'NOT repaired'}]" if repairing else ""
            lines.append(f"  {p.kind} {p.sha256[:12]} {', '.join(p.names)}: {p.detail}{state}")
        lines.append(
            "devpi: " + ("offers exactly the manifests' files" if self.devpi.clean else "PROBLEMS")
        )
        lines += [f"  lacks {name}" for name in self.devpi.missing]
        lines += [f"  offers {name}, which no manifest lists" for name in self.devpi.extra]
        lines += [f"  has other bytes for {name}" for name in self.devpi.mismatched]
        lines += [f"  {error}" for error in self.devpi.errors]
        lines += [f"  re-pushed {name}" for name in self.devpi.repaired]
        lines += [
            f"target {t.target}: {'ok' if t.ok else 'FAILED'} ({t.how}) {t.detail}"
            for t in self.targets
        ]
        lines += [
            f"model {m.handle}: {'ok' if m.ok else 'FLAGGED'}: {m.detail}" for m in self.models
        ]
        lines += [
            f"signature of {m.handle}: {'ok' if m.ok else 'FAILED'}: {m.detail}"
            for m in self.signatures
        ]
        lines += [f"snapshot {name}: UNREADABLE" for name in self.unreadable_snapshots]
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict[str, object]:
        return {
            "end": utcnow(),
            "outcome": "ok" if self.ok else "problems",
            "seconds": round(self.seconds, 2),
            "blobs_checked": self.scrub.checked,
            "bytes_checked": self.scrub.bytes,
            "hash_seconds": round(self.scrub.seconds, 2),
            "blob_problems": [p.as_json() for p in self.scrub.problems],
            "devpi": self.devpi.as_json(),
            "targets": [t.as_json() for t in self.targets],
            "models": [m.as_json() for m in self.models],
            "signatures": [m.as_json() for m in self.signatures],
            "problems": self.problems,
        }


DevpiSession = Callable[[Config, BlobStore], AbstractContextManager[DevpiIndex]]


def run_verify(
    config: Config,
    store: BlobStore,
    devpi_session: DevpiSession,
    keeping_out: KeepingOut,
    fix: bool = False,
    deep: bool = False,
    install: bool = True,
    trigger: str = "manual",
) -> VerifyReport:
    record = RunRecord.begin("verify", trigger)
    began = time.monotonic()
    refs = referenced(config, store)
    report = VerifyReport(scrub(store, refs), unreadable_snapshots=unreadable_snapshots(store))
    if fix:
        policy = repair_policy(config)
        remake = _remaking(config, store)
        for problem in repair_order(report.scrub.problems, refs):
            repair(store, problem, refs[problem.sha256], policy, remake)
    try:
        with devpi_session(config, store) as index:
            devpi = index.client
            report.devpi = check_devpi(devpi, store)
            if fix and not report.devpi.clean:
                # devpi's proof state is the PyPI sync's too: repair it under that lease,
                # so a sync and this repair never write it over each other.
                with keeping_out(("pypi",), wait=True):
                    repair_devpi(devpi, store, config.devpi_mirror_url, report.devpi)
            if config.pypi.enabled:  # a hub-only mirror has nothing to install
                proof = AirGapProof(config, store)
                report.targets = [
                    proof.prove(env, target, install=install)
                    for env in config.pypi.environments
                    if env.requirements
                    for target in env.targets
                ]
    except (DevpiError, DevpiStartError) as exc:
        report.devpi.errors.append(str(exc))
    # Each environment's runtime (built when its closure changed) and the model matrix.
    pairs = check_matrix(config, store)
    report.signatures = check_signatures(config, store)
    if deep:
        report.models = check_models(config, store, pairs)
    report.seconds = time.monotonic() - began
    doc = report.as_json()
    store.put(VERIFY_STATE, json.dumps(doc, indent=1).encode())
    record.finish(
        store,
        ok=report.ok,
        counts={
            "blobs": report.scrub.checked,
            "problems": len(report.problems),
            "repaired": sum(p.repaired for p in report.scrub.problems) + len(report.devpi.repaired),
        },
        bytes_moved=0,
        errors=[Failure("verify", "", p).as_json() for p in report.problems],
    )
    return report


def _remaking(config: Config, store: BlobStore) -> Remake:
    """Extract an archive blob again as the sync did (checked, each file kept)."""
    limits = caps(config.hub)

    def remake(archive: MadeFrom) -> None:
        inspect_model(store, Fetched(archive.sha256, archive.size, ""), archive.form, limits)

    return remake
