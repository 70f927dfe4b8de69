"""The model formats the mirror knows, and the tables that list them: the sync, the
archive checks, the op reader, the runtime checks, the serving export, prefetch and the
model pages ask them which format a model is and what that format says
(hub_cache.formats.base is the question list). Adding a format is a module that answers
it, its name in mirror.core.model_forms, and a line below."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from hub_cache.formats.base import ModelFormat
from hub_cache.formats.keras import KERAS_FILE, KERAS_PRESET
from hub_cache.formats.saved_model import SAVED_MODEL
from hub_cache.formats.tfjs import TFJS_FORMAT
from hub_cache.formats.tflite import TFLITE_ARCHIVE, TFLITE_FORMAT

# Every format; the archived ones are tried in this order on an archive's root files,
# and the first that claims it is its format.
FORMATS: tuple[ModelFormat, ...] = (
    SAVED_MODEL,
    TFJS_FORMAT,
    KERAS_PRESET,
    TFLITE_ARCHIVE,
    TFLITE_FORMAT,
    KERAS_FILE,
)


def format_named(key: str) -> ModelFormat | None:
    """The format of this `[hub] models` format name (mirror.core.model_forms)."""
    return next((f for f in FORMATS if f.key == key), None)


def recognise(root_files: Collection[str]) -> tuple[ModelFormat, str] | None:
    """The format of an archive whose root holds `root_files`, and the file that marks it."""
    for model_format in FORMATS:
        if model_format.single_file:
            continue
        marker = model_format.root_file(root_files)
        if marker is not None:
            return model_format, marker
    return None


def format_of(archive: Mapping[str, object]) -> ModelFormat | None:
    """The format of a published model, from the facts its manifest keeps: the format's
    name, or (a manifest from before formats were named: always an archive) the root
    file that marked it."""
    named = archive.get("format")
    if isinstance(named, str):
        return format_named(named)
    found = recognise({str(archive.get("root_file", ""))})
    return found[0] if found else None


def served_by_query(args: Mapping[str, str]) -> ModelFormat | None:
    """The format whose client asks with these query arguments (`?lite-format=tflite`)."""
    for model_format in FORMATS:
        name, value = model_format.served_query
        if args.get(name) == value:
            return model_format
    return None


def looked_for() -> str:
    """Every archived format's root files, as a refused archive is told."""
    named = [f"{f.looks_for} ({f.name})" for f in FORMATS if not f.single_file]
    return ", ".join(named[:-1]) + " or " + named[-1] if len(named) > 1 else "".join(named)
