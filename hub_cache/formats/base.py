"""What a model format must say for the hub side to mirror it: how its archive is
recognised, which ops its models use, what runtime they are checked against and how
one is loaded there, whether TF Serving serves it, which client caches prefetch may
fill with it, how a client loads it from the mirror, and the signatures it takes and
gives. Every format answers the same questions (hub_cache.formats lists them), so no
caller asks "is it a SavedModel?"."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from hub_cache.limits import ArchiveLimits
from mirror.core.contracts import Contract
from mirror.core.storage import BlobStore

# The client caches `tfmirror hub prefetch` fills with a model folder, as archived.
TFHUB_CACHE = "tensorflow_hub"
KAGGLEHUB_CACHE = "kagglehub"


@dataclass(frozen=True)
class GraphOps:
    """The ops a model's graph uses, as its format's reader found them."""

    ops: frozenset[str]  # registered op types the model's graphs and functions use
    tensorflow_version: str = ""  # what wrote it, where it says
    functions: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "ops": sorted(self.ops),
            "tensorflow_version": self.tensorflow_version,
            "functions": self.functions,
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> GraphOps:
        ops = doc.get("ops", [])
        return cls(
            frozenset(str(o) for o in ops) if isinstance(ops, list) else frozenset(),
            str(doc.get("tensorflow_version", "")),
            int(doc.get("functions", 0)),  # type: ignore[call-overload]
        )


@dataclass(frozen=True)
class Registered:
    """What one environment's runtime of a kind registers, as its list script found it,
    for the kind's own check of a model's ops (RuntimeKind.gaps)."""

    label: str  # the runtime as messages name it ("ai-edge-litert 2.3.0")
    version: str
    ops: frozenset[str]
    failed: Mapping[str, str]  # op library -> why it did not import
    extra: Mapping[str, object]  # what else the list script said (LiteRT's Flex check)
    # op -> the package that registers it, as every runtime of the kind built here found it
    providers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Gaps:
    """What a runtime lacks for one model, and why, in words ("" when nothing)."""

    missing: list[str] = field(default_factory=list)
    provided_by: list[str] = field(default_factory=list)  # packages that would add them
    reason: str = ""


@dataclass(frozen=True)
class RuntimeKind:
    """A framework that models are checked against in an environment's runtime
    (verify.runtimes: a venv of the environment's closure, built offline). The scripts
    run in that venv's Python, which has none of tfmirror."""

    name: str  # the framework's distribution name, as messages say it ("tensorflow")
    packages: tuple[str, ...]  # any one of these in a closure makes a runtime of it
    modules: tuple[str, ...]  # what a Python imports to be one (tfmirror's own, as a last resort)
    absent: str  # why an environment whose closure has none of `packages` has no runtime
    # Python source run as `python -c SOURCE OP_LIBRARIES_JSON`; prints one line
    # `RUNTIME {json}`: name (as messages say it: "TensorFlow"), version, ops, providers,
    # failed, libraries, and what else the kind says (verify.runtimes.Runtime).
    list_ops: str
    # A model's ops against what one runtime registers: what it lacks, and why in words.
    gaps: Callable[[GraphOps, Registered], Gaps]
    # Packages known to register ops when imported -> the module that does it.
    op_libraries: Mapping[str, str] = field(default_factory=dict)


class ModelFormat(Protocol):
    """One model format. A module implements it and hub_cache.formats registers it."""

    key: str  # its name in a `[hub] models` entry's `format` (mirror.core.model_forms)
    name: str  # as messages and pages name it ("SavedModel")
    looks_for: str  # the root files that mark it, as a refused archive is told
    # True: the blob is the model file itself (a .tflite), checked by inspect_file;
    # False: a tar archive of the model folder, checked by hub_cache.archive.
    single_file: bool
    # True: an archived form whose extracted folder is checked too (check_folder), and
    # whose files are kept each as a blob of its own (its client asks for them one by one).
    checks_folder: bool
    fetch_query: str  # what tfhub.dev is asked for this form ("tf-hub-format=compressed")
    served_query: tuple[str, str]  # the query its client asks the mirror with, as (name, value)
    suffix: str  # of the file a client downloads (".tar.gz", ".tflite")
    runtime: RuntimeKind | None  # what its models are checked against; None: nothing
    serving_platform: str | None  # TF Serving's `model_platform`; None: not servable there
    caches: frozenset[str]  # client caches prefetch may fill with it (TFHUB_CACHE, ...)
    client_import: str  # what its usage code needs imported first, as its page shows

    def root_file(self, root_files: Collection[str]) -> str | None:
        """The file at the archive's root that marks this format, or None if it is not
        this format. The manifest records it (`archive.root_file`) and a published
        model's format is found again from it alone: given just that name, the format
        must claim it again."""
        ...

    def inspect_file(
        self, reader: BinaryIO, size: int, name: str, limits: ArchiveLimits
    ) -> dict[str, object]:
        """A single-file form's facts, as the manifest keeps them (`archive`), read from a
        seekable `reader` of `size` bytes exactly as its client reads it; ArchiveRejected,
        naming `name` and the reason, for anything the client would not read."""
        ...

    def check_folder(self, folder: Path) -> dict[str, object]:
        """An archived form's further facts, from its extracted (already checked) folder,
        read as its client reads it; ArchiveRejected with the reason."""
        ...

    def ops(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> GraphOps | str:
        """The ops (or classes) the model in blob `sha256` uses, from its blob or the facts
        its manifest keeps (`archive`), or why they are not checked, in words."""
        ...

    def contract(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> Contract | str:
        """The signatures the model in blob `sha256` takes and gives (its manifest's
        archive facts: root_file, served_files), read without TensorFlow, or why they
        are not read. `max_bytes`: the most read into memory for it."""
        ...

    def load_probe(self, root_file: str) -> Path | str:
        """The script a runtime's Python runs on the extracted model folder, or on the
        file itself for a single-file form, named `root_file` (argv: that path, then op
        library modules to import first; prints `SIGNATURES {json}` and, once the model
        answered a call on zeros, `CALLED {json}`), or why the model is not loaded."""
        ...

    def usage(self, mirror_handle: str) -> dict[str, str]:
        """How a client loads it from the mirror: name -> an expression that loads it (its
        page shows each as `model = CODE` under `client_import`)."""
        ...
