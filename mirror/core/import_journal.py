"""Where a bundle import keeps its journal from its commit point until its last manifest
is written (bundle.importer writes and finishes it). gc reads it too: the blobs an
unfinished import is about to list are in no committed manifest yet, and a crash can
leave them so for days (verify.gc); gc's floor may not import bundle, so the document's
place and shape are read here, below both."""

from __future__ import annotations

import json

from mirror.core.storage import DocumentReader

IMPORTED = "state/bundle/imported"  # the last import; while committing, its journal
OLD_JOURNAL = "state/bundle/committing.json"  # the release before's commit point


def unfinished_import_blobs(store: DocumentReader) -> set[str] | None:
    """Every blob an import that passed its commit point, but did not finish, names in
    the manifests it writes: empty when none is pending; None when one is but does not
    say which (a journal the release before wrote, with no list of its blobs)."""
    if store.get(OLD_JOURNAL) is not None:
        return None
    raw = store.get(IMPORTED)
    journal = json.loads(raw).get("committing") if raw else None
    if journal is None:
        return set()
    blobs = journal.get("blobs")
    return {str(sha) for sha in blobs} if isinstance(blobs, list) else None
