"""Does devpi offer exactly the manifests' files, with their sha256? And the repair."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mirror.core.storage import BlobStore
from mirror.devpi.client import DevpiClient
from mirror.devpi.errors import DevpiError
from mirror.devpi.publish import WARM_STATE, push_to_devpi
from mirror.pypi.manifest import load_all


@dataclass
class DevpiReport:
    missing: list[str] = field(default_factory=list)  # listed, not offered
    extra: list[str] = field(default_factory=list)  # offered, listed nowhere
    mismatched: list[str] = field(default_factory=list)  # same name, other sha256
    errors: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.mismatched or self.errors)

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__, clean=self.clean)


def check_devpi(devpi: DevpiClient, store: BlobStore) -> DevpiReport:
    report = DevpiReport()
    wanted: dict[str, dict[str, str]] = {}
    for manifest in load_all(store):
        for wheel in manifest.files:
            wanted.setdefault(wheel.project, {})[wheel.filename] = wheel.sha256
    for project, files in sorted(wanted.items()):
        try:
            offered = {f.filename: f.sha256 for f in devpi.files(project)}
        except DevpiError as exc:
            report.errors.append(f"{project}: {exc}")
            continue
        for name, sha in sorted(files.items()):
            if name not in offered:
                report.missing.append(name)
            elif offered[name] != sha:
                report.mismatched.append(name)
        report.extra.extend(sorted(set(offered) - set(files)))
    return report


def repair_devpi(
    devpi: DevpiClient, store: BlobStore, mirror_url: str, report: DevpiReport
) -> None:
    """Forget devpi's proof for the bad files, then push again: refresh every project
    (drops extras, restores deleted links) and pull what is missing back through devpi."""
    bad = set(report.missing) | set(report.mismatched)
    raw = store.get(WARM_STATE)
    if raw:
        state = json.loads(raw)
        state["proven"] = {s: n for s, n in state.get("proven", {}).items() if n not in bad}
        store.put(WARM_STATE, json.dumps(state, indent=1).encode())
    files = {w.sha256: w for m in load_all(store) for w in m.files}
    result = push_to_devpi(devpi, store, mirror_url, files, force_refresh=True)
    report.errors.extend(str(f) for f in result.failures)
    after = check_devpi(devpi, store)
    report.repaired = sorted(bad - set(after.missing) - set(after.mismatched))
    report.missing, report.extra = after.missing, after.extra
    report.mismatched, report.errors = after.mismatched, report.errors + after.errors
