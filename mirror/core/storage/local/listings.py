"""The stamps of the files under a folder, read again only where a folder changed: a
live index page asks for its manifests' stamps on every request, and listing and
stat-ing every file each time cost more than the rest of the page. Every document the
store writes is renamed into place (a new inode, and its folder's time moves), and a
file added or removed moves its folder's time too, so a folder whose inode and time are
as they were holds the same files with the same stamps."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

# A folder changed within this many seconds is read again however its time looks: its
# time has the kernel clock's tick (a few ms), so two changes within one tick leave one
# time, and the second would pass unseen (git's "racy" index entries).
RACY_SECONDS = 2.0
# A folder is read again after this long anyway, so a file rewritten in place by hand
# (no rename: the folder's time stays) is seen within it.
REREAD_SECONDS = 1.0


@dataclass(frozen=True)
class _Listing:
    identity: tuple[int, int]  # the folder's inode and modification time (ns)
    read_at: float  # time.monotonic() of the read
    files: tuple[tuple[str, str], ...]  # (name, stamp); hidden ones (temporaries, locks) left out
    folders: tuple[str, ...]


class FolderStamps:
    """Each file's stamp under a folder, each folder's kept while its identity holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, _Listing] = {}

    def stamps(self, base: str, root: str) -> Iterator[tuple[str, str]]:
        """(key relative to `root`, stamp) of each file under `base` (both normalised)."""
        pending = [(base, base[len(root) + 1 :])]
        while pending:
            folder, key_of_folder = pending.pop()
            listing = self._listing(folder)
            if listing is None:
                continue
            prefix = f"{key_of_folder}/" if key_of_folder else ""
            for name, stamp in listing.files:
                yield prefix + name, stamp
            pending.extend((f"{folder}/{n}", prefix + n) for n in listing.folders)

    def _listing(self, folder: str) -> _Listing | None:
        try:
            st = os.stat(folder)
        except (FileNotFoundError, NotADirectoryError):
            with self._lock:
                self._kept.pop(folder, None)
            return None
        identity = (st.st_ino, st.st_mtime_ns)
        with self._lock:
            kept = self._kept.get(folder)
        now = time.monotonic()
        if (
            kept is not None
            and kept.identity == identity
            and now - kept.read_at < REREAD_SECONDS
            and time.time_ns() - st.st_mtime_ns > RACY_SECONDS * 1e9
        ):
            return kept
        listing = _read(folder, identity, now)
        if listing is not None:
            with self._lock:
                self._kept[folder] = listing
        return listing


def _read(folder: str, identity: tuple[int, int], now: float) -> _Listing | None:
    files, folders = [], []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return None
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.name)
            elif entry.is_file() and not entry.name.startswith("."):
                st = entry.stat()
                # A new inode and time for every write, even of the same bytes (only a
                # freed inode reused for a file of the same size within one clock tick
                # would pass unseen).
                files.append((entry.name, f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}"))
        except FileNotFoundError:
            continue  # deleted since the listing
    return _Listing(identity, now, tuple(files), tuple(folders))
