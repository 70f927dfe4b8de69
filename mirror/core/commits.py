"""A commit over what a run read, as a compare-and-set: the document is written only if
it is still what the run read at its start, checked and written in one conditional put,
so a run paused past its lease (mirror.core.lease) that wakes between its lease check
and its write cannot roll back what the replica that took over committed meanwhile."""

from __future__ import annotations

from collections.abc import Callable

from mirror.core.storage import BlobStore


def compare_and_set(
    store: BlobStore,
    key: str,
    data: bytes,
    read: bytes | None,
    canonical: Callable[[bytes], bytes] = lambda raw: raw,
) -> bool:
    """Write `data` at `key` only over `read` (None: only where there is nothing);
    False if another writer got there first. `canonical` compares documents an older
    release may have written in another layout."""
    current = store.get_versioned(key)
    if read is None:
        if current is not None:
            return False
        return store.put_if(key, data, None)
    if current is None or canonical(current[0]) != canonical(read):
        return False
    return store.put_if(key, data, current[1])
