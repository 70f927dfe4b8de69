"""The model formats the mirror knows, and the one table that lists them: the archive
checks, the op reader, the runtime checks, the serving export, prefetch and the model
pages ask it which format a model is and what that format says (hub_cache.formats.base
is the question list). Adding a format is a module that answers it and a line below."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from hub_cache.formats.base import ModelFormat
from hub_cache.formats.saved_model import SAVED_MODEL

# Tried in order on an archive's root files: the first that claims it is its format.
FORMATS: tuple[ModelFormat, ...] = (SAVED_MODEL,)


def recognise(root_files: Collection[str]) -> tuple[ModelFormat, str] | None:
    """The format of an archive whose root holds `root_files`, and the file that marks it."""
    for model_format in FORMATS:
        marker = model_format.root_file(root_files)
        if marker is not None:
            return model_format, marker
    return None


def format_of(archive: Mapping[str, object]) -> ModelFormat | None:
    """The format of a published model, from the archive facts of its manifest."""
    found = recognise({str(archive.get("root_file", ""))})
    return found[0] if found else None


def looked_for() -> str:
    """Every format's root files, as a refused archive is told."""
    return " or ".join(f.looks_for for f in FORMATS)
