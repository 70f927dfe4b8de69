"""Loads a model the way newer code does, with the real kagglehub, then runs it.

    python -m tests.support.load_kagglehub HANDLE keras|lookup
KAGGLEHUB_CACHE and the network namespace are the caller's: inside `unshare -n` this
works only if the cache already holds the model, which is what a prefill promises.
"""

from __future__ import annotations

import sys

from tests.support.load_model import main as run_model


def main(handle: str, kind: str) -> None:
    import kagglehub

    run_model(kagglehub.model_download(handle), kind)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
