"""The all-or-nothing commit of manifests that arrived from another mirror: a bundle
(bundle.importer) or a pull from a centre the site follows (follow.pull), its offline
and online forms. The manifests are written only after everything they refer to is in
place, behind one commit point, state/bundle/imported: a kill before it leaves the store
as it was, a kill after it is finished by `recover` (bundle.importer), so the store never
stays a mix of two arrivals."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bundle.contents import read_manifests, referenced
from bundle.errors import BundleError
from mirror.core.commits import compare_and_set
from mirror.core.import_journal import IMPORTED, OLD_JOURNAL
from mirror.core.journal import Journal, actor_for
from mirror.core.lease import fence
from mirror.core.storage import BlobStore
from mirror.pypi.manifest import PYPI_MANIFESTS

JOURNAL = OLD_JOURNAL  # the release before's commit point


@dataclass(frozen=True)
class Arrival:
    """What brought the manifests: its id, the arrival before it, when its source made
    it, and how the journal and a refusal name it."""

    id: str
    follows: str | None
    created: str
    what: str = "bundle"  # the journal entry's key for the id, and the messages' word
    event: str = "bundle imported"
    again: str = "import it again"  # what to do when another import committed first
    lease: str = "pypi"  # the lease the commit is made under (fenced before each write)
    trigger: str = "manual"
    facts: dict[str, Any] = field(default_factory=dict)  # more for the journal entry


def _imported(store: BlobStore) -> dict[str, Any]:
    data = store.get(IMPORTED)
    return dict(json.loads(data)) if data else {}


_RECORDED = ("id", "follows", "created", "brought")  # what state/bundle/imported keeps


def commit_arrival(
    store: BlobStore, arrival: Arrival, manifests: dict[str, bytes], read: bytes | None
) -> None:
    """The inner mirror's manifests become the bundle's: new and changed ones written,
    ones the outer mirror no longer has removed. The commit point: state/bundle/imported
    with the journal in it ("committing": the bundle's id, every manifest to write and to
    delete, the new blobs), written over `read` (what this import saw at its start), so of
    two imports that overlap (two replicas, or one paused past its lease) the second to
    commit is refused, never applied over the first. Until the last manifest is written
    the new blobs are listed by no manifest: gc keeps those the journal lists
    (mirror.core.import_journal). devpi's offer comes last and is remembered there too
    ("offered"), so an interrupted one is redone."""
    fence(arrival.lease)  # an import holds the sync's leases: it commits as a sync does
    current = read_manifests(store)
    changed = {k: v for k, v in sorted(manifests.items()) if current.get(k) != v}
    journal = {
        "id": arrival.id,
        "follows": arrival.follows,
        "created": arrival.created,
        "lease": arrival.lease,
        "brought": sorted(manifests),
        # Manifests are JSON text; surrogateescape keeps any byte as it came.
        "write": {k: v.decode("utf-8", "surrogateescape") for k, v in changed.items()},
        "delete": sorted((current.keys() & brought(store)) - manifests.keys()),
        # Listed by no committed manifest until the writes are done: gc keeps them.
        "blobs": sorted(referenced(changed)),
    }
    # The last import stays what the document says until this one is applied.
    doc = {**(json.loads(read) if read else {}), "committing": journal}
    committed = json.dumps(doc).encode()
    if not compare_and_set(store, IMPORTED, committed, read):
        raise BundleError(
            f"another import committed while {arrival.what} {arrival.id} was being checked: "
            f"nothing of this one was committed; {arrival.again} (it is checked against that one)"
        )
    if store.get(JOURNAL) is not None:
        # One the release before left for this bundle, which recover could not finish
        # (see import_bundle): this commit replaces it.
        store.delete(JOURNAL)
    apply_commit(store, doc, committed)
    change = {
        "event": arrival.event,
        arrival.what: arrival.id,
        "follows": arrival.follows,
        "written": sorted(changed),
        "deleted": journal["delete"],
        **arrival.facts,
    }
    reason = f"{arrival.what} {arrival.id} imported"
    Journal(store).record([change], actor_for(arrival.trigger), reason)


def brought(store: BlobStore) -> set[str]:
    """The manifests earlier bundles brought: the only ones a bundle may take away. A
    model imported by hand on this side (`tfmirror hub import`) is this side's own.
    An import by the release before kept no such list: then only PyPI manifests, which
    on an inner mirror nothing but bundles writes."""
    doc = _imported(store)
    if isinstance(doc.get("brought"), list):
        return {str(key) for key in doc["brought"]}
    return {key for key in read_manifests(store) if key.startswith(PYPI_MANIFESTS + "/")}


def apply_commit(store: BlobStore, doc: dict[str, Any], committed: bytes) -> None:
    """Idempotent: a crash anywhere in here is finished by running it again. The journal
    leaves state/bundle/imported only if that is still the commit this applied."""
    compare_and_set(store, IMPORTED, _write(store, doc["committing"]), committed)


def _write(store: BlobStore, journal: dict[str, Any]) -> bytes:
    """Write and delete the journal's manifests; state/bundle/imported once they are."""
    lease = str(journal.get("lease", "pypi"))  # a journal before follow named none
    for key, text in journal["write"].items():
        fence(lease)
        store.put(key, text.encode("utf-8", "surrogateescape"))
    for key in journal["delete"]:
        fence(lease)
        store.delete(key)
    done = {**{k: journal.get(k) for k in _RECORDED}, "offered": False}
    return json.dumps(done).encode()
