"""What a set of manifests offers (the live mirror's, or a snapshot's), keyed so two
sets can be compared: `snapshot show`, and the status page's "what the live set has
beyond the promoted snapshot"."""

from __future__ import annotations

from dataclasses import dataclass

from hub_cache.models import load_models
from mirror.core.quarantine import Quarantine
from mirror.core.storage import DocumentReader
from mirror.pypi.manifest import load_all


def holdings(source: DocumentReader) -> dict[str, str]:
    """`environment/target: project` -> version, and `model HANDLE` -> its sha256's
    first 16 hex digits."""
    out: dict[str, str] = {}
    for manifest in load_all(source):
        for wheel in manifest.files:
            out[f"{manifest.where}: {wheel.project}"] = wheel.version
    for model in load_models(source):
        out[f"model {model.handle}"] = model.sha256[:16]
    return out


@dataclass(frozen=True)
class Difference:
    added: list[str]
    removed: list[str]
    changed: list[str]

    def as_json(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def difference(before: dict[str, str], after: dict[str, str]) -> Difference:
    return Difference(
        added=sorted(f"{k} {after[k]}" for k in after.keys() - before.keys()),
        removed=sorted(f"{k} {before[k]}" for k in before.keys() - after.keys()),
        changed=sorted(
            f"{k} {before[k]} -> {after[k]}"
            for k in before.keys() & after.keys()
            if before[k] != after[k]
        ),
    )


def quarantined_holdings(source: DocumentReader, quarantine: Quarantine) -> list[str]:
    """What `source` holds that quarantine keeps from every node: `project version
    (reason)` and `model HANDLE (reason)`, each once."""
    out: set[str] = set()
    if not quarantine.rules:
        return []
    for manifest in load_all(source):
        for wheel in manifest.files:
            rule = quarantine.file_rule(wheel.project, wheel.version, wheel.filename)
            if rule is not None:
                out.add(f"{wheel.project} {wheel.version} ({rule.reason})")
    for model in load_models(source):
        rule = quarantine.model_rule(model.handle, model.path)
        if rule is not None:
            out.add(f"model {model.handle} ({rule.reason})")
    return sorted(out)
