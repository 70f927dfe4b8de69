"""Publisher signatures again: each served model whose `[hub] models` entry requires a
signature is extracted from its stored archive and verified with the entry's trust
material as the config names it now (a key rotated, a CA withdrawn), as the sync did
when it published it (hub_cache.signatures). A mismatch is a verify failure."""

from __future__ import annotations

from hub_cache.errors import ArchiveRejected, SignatureRefused
from hub_cache.models import load_models
from hub_cache.signatures import verify_kept
from mirror.core.config import Config
from mirror.core.errors import BlobNotFound
from mirror.core.storage import BlobStore
from verify.models import ModelCheck


def check_signatures(config: Config, store: BlobStore) -> list[ModelCheck]:
    checks = []
    for model in load_models(store):
        try:
            signer = verify_kept(store, model, config.hub)
        except (SignatureRefused, ArchiveRejected, BlobNotFound) as exc:
            checks.append(ModelCheck(model.path, model.handle, False, str(exc)))
            continue
        if signer is not None:
            detail = f"signed by {signer['signer']} ({signer['method']}, {signer['signature']})"
            checks.append(ModelCheck(model.path, model.handle, True, detail))
    return checks
