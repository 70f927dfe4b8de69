"""`tfmirror hub import`: a model from a local folder, tarball or `.tflite` file, for
networks that nothing reaches. It goes through the same validation as a synced model, its format
recognised as a synced one's is (hub_cache.formats)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from hub_cache.formats.keras import KERAS_FILE_KEY
from hub_cache.hub_sync import Commit, Gate, ModelOutcome, ModelStatus, publish_model
from hub_cache.licenses import refused_license
from mirror.core.config import HubConfig, HubModel
from mirror.core.errors import DownloadError
from mirror.core.handles import handle_path
from mirror.core.journal import actor_for
from mirror.core.licenses import FROM_CONFIG, License
from mirror.core.model_forms import TFLITE
from mirror.core.storage import BlobStore, HashingWriter
from mirror.core.upstream import Fetched, copy_local


def pack_folder(store: BlobStore, folder: Path) -> Fetched:
    """Stream a model folder into the store as tar.gz, laid out the way
    tensorflow_hub extracts it: './' first, every folder before what it holds."""
    sink = HashingWriter(store.new_blob())
    try:
        with tarfile.open(fileobj=sink, mode="w|gz") as tar:  # type: ignore[call-overload]
            tar.add(folder, arcname=".", recursive=False)
            for root, dirs, files in os.walk(folder):
                dirs.sort()
                base = Path(root)
                for name in dirs:
                    tar.add(base / name, arcname=_arcname(folder, base / name), recursive=False)
                for name in sorted(files):
                    tar.add(base / name, arcname=_arcname(folder, base / name), recursive=False)
        sha = sink.publish()
    except BaseException:
        sink.discard()
        raise
    return Fetched(sha, sink.size, f"import:{folder}")


def _arcname(folder: Path, path: Path) -> str:
    return "./" + str(path.relative_to(folder))


def import_model(
    store: BlobStore,
    source: Path,
    handle: str,
    hub: HubConfig,
    gate: Gate | None = None,
    license_name: str = "",
) -> ModelOutcome:
    """A model folder (packed as an archive), a model archive, or a single-file model (a
    `.tflite`), checked as a synced one is, its licence too: `license_name` (`--license`),
    else its [hub] models entry's, else unknown."""
    path = handle_path(handle)
    entry = next((m for m in hub.models if m.handle == handle), HubModel(handle))
    named = license_name or entry.license
    why = "none given; pass --license or set license in its [hub] models entry"
    license = License.named(named, FROM_CONFIG) if named else License.unknown(why)
    refused = refused_license(store, entry, hub, license, actor_for("manual"))
    if refused is not None:
        return ModelOutcome(handle, ModelStatus.FAILED, f"import:{source}", f"refused: {refused}")
    # A .tflite or .keras file by its name; an archive or folder is whatever model it holds.
    suffix = source.suffix.lower() if source.is_file() else ""
    form = {".tflite": TFLITE, ".keras": KERAS_FILE_KEY}.get(suffix)
    try:
        if source.is_dir():
            fetched = pack_folder(store, source)
        else:
            local = copy_local(store, source, hub.max_uncompressed_mb * 2**20)
            fetched = Fetched(local.sha256, local.size, f"import:{source}")
    except DownloadError as exc:
        return ModelOutcome(handle, ModelStatus.FAILED, f"import:{source}", str(exc))
    commit = Commit(actor_for("manual"), "hub import")  # a command someone ran
    return publish_model(store, handle, path, fetched, hub, commit, gate, form, license)
