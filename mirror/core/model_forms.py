"""The forms a model is published in, by the names a `[hub] models` entry's `format`
takes, and the one a handle means when the entry names none: Kaggle's framework
(`tfLite`, `tfJs`, `keras`, any case), tfhub.dev's `/lite-model/` and `/tfjs-model/`
paths, else a SavedModel. The hub side (hub_cache.formats) has a format for each name."""

from __future__ import annotations

from urllib.parse import urlsplit

from mirror.core.kaggle import parse_kaggle

SAVEDMODEL, TFLITE, TFJS, KERAS = "savedmodel", "tflite", "tfjs", "keras"
FORM_NAMES = (SAVEDMODEL, TFLITE, TFJS, KERAS)

_KAGGLE_FRAMEWORKS = {"tflite": TFLITE, "tfjs": TFJS, "keras": KERAS}
_TFHUB_PATHS = {"lite-model": TFLITE, "tfjs-model": TFJS}


def form_of_handle(handle: str) -> str:
    """The form `handle` is published in, as its name says."""
    kaggle = parse_kaggle(handle)
    if kaggle is not None:
        return _KAGGLE_FRAMEWORKS.get(kaggle.framework.lower(), SAVEDMODEL)
    segments = urlsplit(handle).path.strip("/").split("/")
    # tfhub.dev/<publisher>/lite-model/<name>/<version>
    if len(segments) > 1 and segments[1] in _TFHUB_PATHS:
        return _TFHUB_PATHS[segments[1]]
    return SAVEDMODEL
