"""A model's licence, read before its archive is fetched: a Kaggle model's from Kaggle's
metadata of the model instance (`licenseName`), any other's from its `[hub] models`
entry (`license`, else unknown), so that a model the licence policy refuses costs no
download."""

from __future__ import annotations

import json

from hub_cache.errors import LicenseUnread
from hub_cache.models import refuse_model
from mirror.core.config import Config, HubConfig, HubModel
from mirror.core.config.hub import license_policy
from mirror.core.errors import DownloadError
from mirror.core.licenses import FROM_CONFIG, FROM_KAGGLE, License
from mirror.core.storage import BlobStore
from mirror.core.upstream import FetchPolicy, fetch_document

# Kaggle's answer for one model instance is a few KB (its overview in markdown).
MAX_METADATA = 1024 * 1024
NO_UPSTREAM = "its upstream publishes no licence; set license in its [hub] models entry"


def kaggle_license(url: str, policy: FetchPolicy) -> License | None:
    """The licence Kaggle's metadata at `url` names, None where it names none. Raises
    LicenseUnread where it cannot be read."""
    try:
        doc = json.loads(fetch_document(url, policy, MAX_METADATA))
    except DownloadError as exc:
        raise LicenseUnread(f"Kaggle's metadata for it could not be read: {exc}") from None
    except (ValueError, RecursionError):
        raise LicenseUnread("Kaggle's metadata for it is not JSON") from None
    name = doc.get("licenseName") if isinstance(doc, dict) else None
    if isinstance(name, str) and name.strip():
        return License.named(name.strip(), FROM_KAGGLE)
    return None


def model_license(config: Config, model: HubModel, policy: FetchPolicy, auth: str = "") -> License:
    """`model`'s licence: Kaggle's where Kaggle names one, else its entry's `license`,
    else unknown (saying why). `auth` is Kaggle's metadata URL with the account in it,
    where one is set (hub_sync.kaggle_auth). Raises LicenseUnread where Kaggle's
    metadata cannot be read: the caller decides whether that matters."""
    why = NO_UPSTREAM
    if model.kaggle is not None and not model.source:
        url = auth or model.kaggle.instance_url(config.hub.kaggle_api)
        found = kaggle_license(url, policy)
        if found is not None:
            return found
        why = "Kaggle's metadata names no licence"
    if model.license:
        return License.named(model.license, FROM_CONFIG)
    return License.unknown(why)


def refused_license(
    store: BlobStore, model: HubModel, hub: HubConfig, license: License, actor: str
) -> str | None:
    """Why `model`'s licence policy refuses `license` (journaled, once per reason, as
    `model refused`), or None. Checked before its bytes are fetched or packed."""
    refused = license_policy(model, hub).refusal(license)
    if refused is not None:
        refuse_model(store, model.handle, model.path, "", "license", refused, actor)
    return refused
