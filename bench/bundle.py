"""Bench: bundle export and import of the TensorFlow closure vs `tar` + `sha256sum`.

Mirrors the TensorFlow closure for one target from live PyPI into a fresh local store
(store only, no devpi), then per round, in the same run and from the same state (dirty
pages written back, page cache dropped as root, each timing ending with a `sync`):
  export  `tfmirror bundle export --full` (streams every blob, re-hashes it, hashes each
          part, signs) against `tar -c <the same blob files> | tee bundle.tar | sha256sum`;
  import  the import's check and copy into an empty store (signature, every part and
          blob hashed, blobs published, manifests committed; devpi's pull of the files
          is measured by bench.pypi_sync) against `tee <bundle.tar >(sha256sum) | tar -x`.
Prints MB/s, peak RSS, each round's ratios (peer time / ours; the goal is >= 1) and the
medians.

    python -m bench.bundle [--rounds 3] [--part-size 0] [--python 3.11] [--platform ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import settle
from bundle.contents import read_manifests, referenced
from mirror.core.config import host_target
from mirror.core.storage import LocalStore, blob_key

# Runs in a child so its peak RSS is its own; prints seconds (including the sync that
# puts the bytes on disk, as the peer's time does) and peak RSS.
CHILD = """
import os, resource, sys, time
from pathlib import Path
from bundle.keys import load_private, load_public
from mirror.core.storage import LocalStore
action, store, keys, folder, part = sys.argv[1:6]
began = time.monotonic()
if action == "export":
    from bundle.export import export
    key = load_private(Path(keys) / "bundle.key")
    export(LocalStore(Path(store)), key, Path(folder), full=True, max_part_size=int(part) or None)
else:
    from bundle.importer import import_bundle
    import_bundle(LocalStore(Path(store)), Path(folder), load_public(Path(keys) / "bundle.pub"))
os.sync()
print(time.monotonic() - began, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def child(action: str, store: Path, keys: Path, folder: Path, part: int) -> tuple[float, int]:
    argv = [sys.executable, "-c", CHILD, action, str(store), str(keys), str(folder), str(part)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def shell(command: str) -> float:
    began = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", command + "; sync"], check=True)
    return time.monotonic() - began


def main() -> None:
    host = host_target()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part-size", type=int, default=0, help="bytes per part; 0: one")
    parser.add_argument("--python", default=host.python)
    parser.add_argument("--platform", default=host.platform)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfmirror-bundle-bench-") as tmp:
        work = Path(tmp)
        config = work / "tfmirror.toml"
        config.write_text(
            '[storage]\npath = "data"\n[devpi]\nserverdir = ""\n'
            f'[[pypi.targets]]\npython = "{args.python}"\nplatform = "{args.platform}"\n'
        )
        cli = [sys.executable, "-m", "tfmirror.cli", "--config", str(config)]
        subprocess.run([*cli, "sync", "pypi", "--no-devpi"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*cli, "bundle", "keygen", "--out", str(work / "keys")], check=True)
        store = LocalStore(work / "data")
        files = [str(store.root / blob_key(sha)) for sha in referenced(read_manifests(store))]
        total = sum(os.path.getsize(f) for f in files)
        print(f"{len(files)} blobs, {total / 1e6:.0f} MB: tensorflow, tensorflow-hub's closure")
        (work / "files.txt").write_text("\n".join(files) + "\n")
        ratios: dict[str, list[float]] = {"export": [], "import": []}
        for round_ in range(args.rounds):
            for folder in ("out", "inner", "peer-x"):
                shutil.rmtree(work / folder, ignore_errors=True)
            (work / "peer.tar").unlink(missing_ok=True)
            settle()
            ours, rss = child("export", work / "data", work / "keys", work / "out", args.part_size)
            settle()
            peer = shell(
                f"tar -cf - -T {work / 'files.txt'} 2>/dev/null | tee {work / 'peer.tar'} "
                "| sha256sum >/dev/null"
            )
            report("export", round_, total, ours, peer, rss, ratios)
            settle()
            ours, rss = child("import", work / "inner", work / "keys", work / "out", 0)
            settle()
            (work / "peer-x").mkdir()
            peer = shell(
                f"tee <{work / 'peer.tar'} >(sha256sum >/dev/null) | tar -xf - -C {work / 'peer-x'}"
            )
            report("import", round_, total, ours, peer, rss, ratios)
        print(
            "median ratios (goal >= 1.0): "
            + ", ".join(f"{k} {statistics.median(v):.2f}x" for k, v in ratios.items())
        )


def report(
    what: str,
    round_: int,
    total: int,
    ours: float,
    peer: float,
    rss_kb: int,
    ratios: dict[str, list[float]],
) -> None:
    ratios[what].append(peer / ours)
    print(
        f"round {round_ + 1} {what:6} tfmirror {total / ours / 1e6:5.0f} MB/s ({ours:.2f} s, "
        f"peak {rss_kb / 1024:.0f} MB), tar+sha256sum {total / peer / 1e6:5.0f} MB/s "
        f"({peer:.2f} s), ratio {peer / ours:.2f}x",
        flush=True,
    )


if __name__ == "__main__":
    main()
