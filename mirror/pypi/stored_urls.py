"""Stores written before stored URLs were scrubbed: their credentials taken out.

Releases before this one stored each file's URL as the upstream page gave it, joined to
the configured upstream: with `user:password@` and any `?api_key=` in manifests (which
bundles and snapshots carry on) and the upstream itself in the lag record. On first
start (`tfmirror up`) and at every PyPI sync, under the pypi lease, those documents are
written again without them (mirror.core.redact.scrub_url); nothing is fetched, and what
the mirror offers stays the same (URLs are not on any page a node reads).
"""

from __future__ import annotations

import json
from dataclasses import replace

from mirror.core.commits import compare_and_set
from mirror.core.redact import scrub_url
from mirror.core.snapshots import (
    Snapshot,
    replace_snapshot,
    snapshot_key,
    snapshot_stamps,
)
from mirror.core.storage import BlobStore
from mirror.pypi.lag import LAG_STATE
from mirror.pypi.manifest import PYPI_MANIFESTS, Manifest

# Each snapshot's stamp when it was last found clean: a sync reads again only the
# snapshots made (or brought by a bundle) since, not every snapshot every time.
CLEAN_SNAPSHOTS = "state/scrubbed-snapshots.json"


def scrub_credentials(store: BlobStore) -> list[str]:
    """Write every stored document that holds a URL with credentials again without
    them; returns the keys written."""
    written = [key for key in store.list(PYPI_MANIFESTS) if _scrub_manifest(store, key)]
    if _scrub_lag(store):
        written.append(LAG_STATE)
    return written + _scrub_snapshots(store)


def _scrubbed(text: bytes) -> bytes | None:
    """A manifest's bytes without credentials in its URLs; None if it has none."""
    manifest = Manifest.from_bytes(text)
    if all(scrub_url(w.url) == w.url for w in manifest.files):
        return None
    return manifest.to_bytes()  # Wheel.as_json writes each URL scrubbed


def _scrub_manifest(store: BlobStore, key: str) -> bool:
    raw = store.get(key)
    if raw is None or not key.endswith(".json"):
        return False
    clean = _scrubbed(raw)
    # Over what was read: a commit made meanwhile stands (and was written scrubbed).
    return clean is not None and compare_and_set(store, key, clean, raw)


def _scrub_lag(store: BlobStore) -> bool:
    raw = store.get(LAG_STATE)
    if raw is None:
        return False
    try:
        doc = json.loads(raw)
        upstream = doc["upstream"]
    except (ValueError, KeyError, TypeError):
        return False  # unreadable: the next sync writes a new one
    if not isinstance(upstream, str) or scrub_url(upstream) == upstream:
        return False
    store.put(LAG_STATE, json.dumps({**doc, "upstream": scrub_url(upstream)}, indent=1).encode())
    return True


def _scrub_snapshots(store: BlobStore) -> list[str]:
    try:
        clean = dict(json.loads(store.get(CLEAN_SNAPSHOTS) or b"{}"))
    except (ValueError, TypeError):
        clean = {}
    checked: dict[str, str] = {}
    written = []
    for name, stamp in sorted(snapshot_stamps(store).items()):
        if clean.get(name) != stamp:
            current = store.get_versioned(snapshot_key(name))
            if current is None:
                continue
            try:
                snapshot = Snapshot.from_bytes(current[0])
                manifests = {k: _scrubbed_text(k, t) for k, t in snapshot.manifests.items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # unreadable: `tfmirror verify` names it; nothing of it is served
            if manifests != snapshot.manifests:
                if not replace_snapshot(store, replace(snapshot, manifests=manifests), current[1]):
                    continue  # deleted or made again meanwhile: looked at next time
                written.append(snapshot_key(name))
        checked[name] = stamp
    if written:  # their stamps changed with the write
        now = snapshot_stamps(store)
        checked = {n: now[n] for n in checked if n in now}
    if checked != clean:
        store.put(CLEAN_SNAPSHOTS, json.dumps(checked, indent=1, sort_keys=True).encode())
    return written


def _scrubbed_text(key: str, text: str) -> str:
    if not key.startswith(f"{PYPI_MANIFESTS}/"):
        return text  # a model's manifest: its source was stored redacted
    fixed = _scrubbed(text.encode("utf-8", "surrogateescape"))
    return text if fixed is None else fixed.decode()
