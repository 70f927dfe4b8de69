"""A bundle on disk: a folder holding `bundle.json`, the index (its id, the id it follows
or none for a full one, every item, manifest or blob, in stream order with its sha256
and size, and every part likewise); `bundle.sig`, the ed25519 signature of bundle.json's
exact bytes; and `part-00001`..., the items' bytes concatenated in index order and cut
at part size (an item may span parts), so parts fit whatever media carries them."""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from bundle.errors import BundleError

INDEX = "bundle.json"
SIGNATURE = "bundle.sig"
FORMAT = 1
MAX_INDEX = 64 * 1024 * 1024
CHUNK = 1024 * 1024
# An incremental bundle carries only the outer journal's new entries: an inner side of
# a release before this one refuses the kind by name (import a --full bundle there).
JOURNAL_TAIL = "journal_tail"


@dataclass(frozen=True)
class Item:
    # "manifest" (name: its store key), "blob" (name: its sha256), "journal" (the
    # outer mirror's, as lines: mirror.core.journal.OUTER), JOURNAL_TAIL (its entries
    # after the first N, which the bundle it follows carried; name: N) or "snapshot"
    # (name: its store key; each carried once along a chain of bundles)
    kind: str
    name: str
    sha256: str
    size: int


@dataclass
class Index:
    id: str
    follows: str | None  # None: a full bundle
    created: str
    items: list[Item] = field(default_factory=list)
    parts: list[Item] = field(default_factory=list)  # kind "part", name the file name

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "id": self.id,
            "follows": self.follows,
            "created": self.created,
            "items": [i.__dict__ for i in self.items],
            "parts": [p.__dict__ for p in self.parts],
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Index:
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise BundleError(
                    f"bundle format {doc.get('format')!r}; this tfmirror reads {FORMAT}"
                )
            return cls(
                id=str(doc["id"]),
                follows=None if doc["follows"] is None else str(doc["follows"]),
                created=str(doc["created"]),
                items=[_item(i) for i in doc["items"]],
                parts=[_item(p) for p in doc["parts"]],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"the bundle's index is malformed ({type(exc).__name__})") from None

    @property
    def total(self) -> int:
        return sum(i.size for i in self.items)


def _item(doc: Any) -> Item:
    item = Item(str(doc["kind"]), str(doc["name"]), str(doc["sha256"]), int(doc["size"]))
    if item.size < 0 or len(item.sha256) != 64 or ("/" in item.name and item.kind == "part"):
        raise ValueError("bad item")
    return item


class PartWriter:
    """Writes a byte stream into part files of at most `max_size` bytes, hashing each."""

    def __init__(self, folder: Path, max_size: int | None) -> None:
        self.folder = folder
        self.max_size = max_size
        self.parts: list[Item] = []
        self._out: BinaryIO | None = None
        self._digest = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> None:
        while data:
            if self._out is None:
                name = f"part-{len(self.parts) + 1:05d}"
                self._out = (self.folder / name).open("xb")
            room = len(data) if self.max_size is None else self.max_size - self._size
            chunk, data = data[:room], data[room:]
            self._out.write(chunk)
            self._digest.update(chunk)
            self._size += len(chunk)
            if self.max_size is not None and self._size >= self.max_size:
                self._close_part()

    def _close_part(self) -> None:
        assert self._out is not None
        self._out.close()
        name = Path(self._out.name).name
        self.parts.append(Item("part", name, self._digest.hexdigest(), self._size))
        self._out, self._digest, self._size = None, hashlib.sha256(), 0

    def close(self) -> list[Item]:
        if self._out is not None:
            self._close_part()
        return self.parts


class PartReader:
    """Reads the parts back as one stream; each part's size and sha256 are checked when
    it ends, so a flipped byte anywhere is refused before the import commits.

    A thread reads ahead and hashes the parts while the caller hashes and stores the
    items (hashlib and file reads release the GIL, so on two cores the two hashes run
    side by side); at most AHEAD chunks wait between them, so memory stays flat. A bad
    part's error comes after its last byte, where the caller reads past it."""

    AHEAD = 8

    def __init__(self, folder: Path, parts: list[Item]) -> None:
        self.folder = folder
        self.parts = parts
        for part in parts:  # every part present, at its declared size, before a byte is read
            path = folder / part.name
            if not path.is_file():
                raise BundleError(f"part {part.name} is missing from {folder}")
            if path.stat().st_size != part.size:
                raise BundleError(
                    f"part {part.name} is {path.stat().st_size} bytes; the index says {part.size}"
                )
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(self.AHEAD)
        self._stop = threading.Event()
        self._chunk, self._offset = b"", 0
        self._done = False
        self._thread = threading.Thread(target=self._read_ahead, daemon=True)
        self._thread.start()

    def _read_ahead(self) -> None:
        try:
            for part in self.parts:
                digest = hashlib.sha256()
                with (self.folder / part.name).open("rb") as file:
                    while chunk := file.read(CHUNK):
                        digest.update(chunk)
                        if not self._put(chunk):
                            return
                if digest.hexdigest() != part.sha256:
                    raise BundleError(
                        f"part {part.name} does not hash to the sha256 the index signs"
                    )
            self._put(None)
        except BaseException as exc:  # handed to the reader, raised where it reads
            self._put(exc)

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            if self._offset == len(self._chunk) and not self._next_chunk():
                break
            want = n - len(out)
            if not out and self._offset == 0 and len(self._chunk) <= want:
                self._offset = len(self._chunk)  # the common case: a whole chunk, no copy
                if len(self._chunk) == want:
                    return self._chunk
                out += self._chunk
                continue
            take = self._chunk[self._offset : self._offset + want]
            out += take
            self._offset += len(take)
        return bytes(out)

    def _next_chunk(self) -> bool:
        if self._done:
            return False
        got = self._queue.get()
        if got is None or isinstance(got, BaseException):
            self._done = True
            if got is not None:
                raise got
            return False
        self._chunk, self._offset = got, 0
        return True

    def finish(self) -> None:
        """Read what is left (there should be nothing) so the last part is checked too."""
        if self.read(1):
            raise BundleError("the parts hold more bytes than the index lists")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
