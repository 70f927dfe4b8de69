"""The download step: every file the sync's closures need and the store lacks, fetched
side by side (largest first: the TensorFlow wheel sets the critical path) and verified
into the store, a guess the prefetch already started (mirror.pypi.speculate) taken over
rather than fetched again. A file that fails is named and fails alone.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from mirror.core.errors import DownloadError, StoreError
from mirror.core.runs import Failure
from mirror.core.storage import BlobStore
from mirror.core.upstream import Fetched, FetchPolicy, fetch_verified
from mirror.pypi.resolve import Wheel
from mirror.pypi.speculate import SpeculativePrefetch


class Progress:
    """Receives progress events; the CLI draws a bar, tests and the scheduler ignore them."""

    def start(self, files: int, total_bytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class Downloaded:
    new: int = 0
    bytes: int = 0
    failures: list[Failure] = field(default_factory=list)


def _arrived(guess: Future[Fetched] | None) -> bool:
    """A guess that is stored already (one that failed is fetched again, on the bar)."""
    return guess is not None and guess.done() and guess.exception() is None


def download(
    store: BlobStore,
    wheels: list[Wheel],
    prefetch: SpeculativePrefetch,
    policy: FetchPolicy,
    workers: int,
    progress: Progress,
) -> Downloaded:
    """`wheels`, fetched and verified into the store, `workers` at a time."""
    out = Downloaded()
    # The bar counts the bytes it sees move: a guess that arrived during the resolve
    # is not on it, one under way is with what it has left (counted whole at its
    # end, it read as thousands of MB/s).
    under_way = prefetch.follow(progress.advance)
    on_bar = {
        w.sha256: (w.size or 0) - under_way.get(w.sha256, 0)
        for w in wheels
        if w.sha256 in under_way or not _arrived(prefetch.fetch_for(w.sha256))
    }
    progress.start(len(on_bar), sum(max(0, n) for n in on_bar.values()))
    # Largest first: the TensorFlow wheel sets the critical path.
    wheels = sorted(wheels, key=lambda w: -(w.size or 0))
    workers = min(workers, max(1, len(wheels)))
    with ThreadPoolExecutor(workers, thread_name_prefix="fetch") as pool:

        def fetch(wheel: Wheel) -> Future[Fetched]:
            return pool.submit(
                fetch_verified,
                store,
                wheel.url,
                wheel.sha256,
                wheel.size,
                policy,
                progress.advance,
            )

        pending: dict[Future[Fetched], tuple[Wheel, bool]] = {}
        for wheel in wheels:
            guessed = prefetch.fetch_for(wheel.sha256)
            pending[guessed or fetch(wheel)] = (wheel, guessed is not None)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                wheel, was_guess = pending.pop(future)
                try:
                    fetched = future.result()
                except (DownloadError, StoreError) as exc:
                    if was_guess:  # fetched again the usual way, which reports
                        pending[fetch(wheel)] = (wheel, False)
                        continue
                    out.failures.append(Failure(wheel.filename, wheel.url, str(exc)))
                else:
                    out.bytes += fetched.size
                    out.new += 1
                if wheel.sha256 in on_bar:
                    progress.file_done()
    progress.close()
    return out
