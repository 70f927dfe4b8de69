"""Bench: `tfmirror verify`'s re-hash of the store vs `sha256sum` of the same files.

Mirrors the TensorFlow closure for one target from live PyPI into a fresh local store
(store only, no devpi), then in the same run times the scrub (parallel, streaming) and
a single `sha256sum` over the same blob files, both from the page cache and, as root,
both from disk (cache dropped first). Prints MB/s and the ratio.

    python -m bench.verify_throughput [--python 3.11] [--platform manylinux_2_28_x86_64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import drop_caches
from mirror.core.config import host_target, load_config
from mirror.core.storage import LocalStore, blob_key
from verify.references import referenced
from verify.scrub import scrub


def main() -> None:
    host = host_target()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=host.python)
    parser.add_argument("--platform", default=host.platform)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfmirror-verify-bench-") as tmp:
        config_path = Path(tmp) / "tfmirror.toml"
        config_path.write_text(
            '[storage]\npath = "data"\n[devpi]\nserverdir = ""\n'
            f'[[pypi.targets]]\npython = "{args.python}"\nplatform = "{args.platform}"\n'
        )
        sync = ["sync", "pypi", "--no-devpi"]
        cli = [sys.executable, "-m", "tfmirror.cli", "--config", str(config_path), *sync]
        subprocess.run(cli, check=True, stdout=subprocess.DEVNULL)
        config = load_config(str(config_path))
        store = LocalStore(config.storage.path)
        refs = referenced(config, store)
        files = [str(store.root / blob_key(sha)) for sha in refs]
        total = sum(os.path.getsize(f) for f in files)
        print(
            f"{len(files)} blobs, {total / 1e6:.0f} MB (the closure of tensorflow, tensorflow-hub)"
        )
        rounds = [("page cache", lambda: None)]
        if drop_caches():
            rounds.append(("disk (cache dropped)", drop_caches))
        for label, prepare in rounds:
            scrub(store, refs)  # warm (or, for the disk round, undone by prepare)
            prepare()
            report = scrub(store, refs)
            assert not report.problems, report.problems
            prepare()
            began = time.monotonic()
            subprocess.run(["sha256sum", *files], check=True, stdout=subprocess.DEVNULL)
            peer = time.monotonic() - began
            ours = report.seconds
            print(
                f"{label:21} tfmirror verify {total / ours / 1e6:6.0f} MB/s ({ours:.2f} s), "
                f"sha256sum {total / peer / 1e6:6.0f} MB/s ({peer:.2f} s), "
                f"ratio {peer / ours:.2f}x  (target >= 1.5)"
            )


if __name__ == "__main__":
    main()
