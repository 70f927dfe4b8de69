"""Keras 3 `.keras` files and KerasHub preset folders, checked as their clients read
them, with no Keras in the mirror's process. `keras.saving.load_model(path,
safe_mode=True)` opens the zip (hub_cache.formats.zip_checks checks it first), reads
`config.json` and deserializes every object it names, then `model.weights.h5` (or
`.npz`); `metadata.json` is written beside them but never read. KerasHub's
`from_preset(dir)` reads `config.json` (and `tokenizer.json`, `task.json`, ...) the same
way, then `model.weights.h5` or the shards `model.weights.json` lists. A config is safe
to load only if each object it names is a class of Keras or KerasHub that safe_mode
lets through: a `Lambda` layer, a pickled Python lambda, a class from any other package
(custom code a node must have and the mirror cannot vouch for), a layer that loads an
outside SavedModel or pickle, or a vocabulary read from a path outside the model are
refused with the reason, as Keras would refuse them (or as they would run code)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from hub_cache.errors import ArchiveRejected
from hub_cache.formats.zip_checks import (
    MAX_ENTRIES,
    folded,
    member_bytes,
    path_problem,
    printable,
    read_directory,
    shown,
    stream_member,
)
from hub_cache.limits import ArchiveLimits
from mirror.core.redact import bounded

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = ("model.weights.h5", "model.weights.npz")  # keras saving_lib: _VARS_FNAME_*
PRESET_WEIGHTS, PRESET_SHARDS = "model.weights.h5", "model.weights.json"
# What KerasHub's preset loader deserializes (keras_hub/src/utils/preset_utils.py).
PRESET_CONFIGS = (
    CONFIG,
    "tokenizer.json",
    "task.json",
    "preprocessor.json",
    "audio_converter.json",
    "image_converter.json",
    "video_converter.json",
)
MAX_CONFIG = 64 * 2**20  # bytes of one JSON file read into memory
MAX_DEPTH = 256  # of a config's JSON nesting; real models stay under 40
MAX_NODES = 4_000_000  # dicts and lists walked in one config
VERSION_SHOWN = 64
# The packages keras's _retrieve_class_or_fn imports a class from by its module.
KERAS_PACKAGES = frozenset({"keras", "keras_hub", "keras_cv", "keras_nlp"})
# class_name values deserialize_keras_object turns into plain data, not classes.
DATA_CLASSES = frozenset(
    {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"}
)
# Layers whose from_config refuses under safe_mode, and why.
SAFE_MODE_REFUSES = {
    "TFSMLayer": "it loads an outside SavedModel, whose graph can run code",
    "TorchModuleWrapper": "it unpickles a torch module, which runs code",
}
# Config values that name a file to open rather than hold the data (keras IndexLookup,
# KerasHub's tokenizers): safe_mode refuses them as reads outside the model.
FILE_PATH_KEYS = ("vocabulary", "merges", "proto")
INLINE_PROTO = 2048  # SentencePiece takes a longer base64 string as the proto itself
# keras serialization_lib.NON_MODELING_APIS: refused at load.
NON_MODELING = frozenset(
    f"keras.{name}"
    for name in (
        "backend.clear_session",
        "config.enable_unsafe_deserialization",
        "models.load_model",
        "models.model_from_json",
        "models.save_model",
        "preprocessing.image_dataset_from_directory",
        "preprocessing.image.load_img",
        "preprocessing.image.save_img",
        "preprocessing.text_dataset_from_directory",
        "saving.deserialize_keras_object",
        "saving.load_model",
        "saving.load_weights",
        "saving.register_keras_serializable",
        "saving.save_model",
        "saving.save_weights",
        "saving.serialize_keras_object",
        "utils.audio_dataset_from_directory",
        "utils.clear_session",
        "utils.deserialize_keras_object",
        "utils.get_file",
        "utils.image_dataset_from_directory",
        "utils.load_img",
        "utils.register_keras_serializable",
        "utils.save_img",
        "utils.serialize_keras_object",
        "utils.text_dataset_from_directory",
    )
)
RUNS_CODE = "Keras's safe_mode refuses it, because loading it would run code"

Path = tuple[object, ...]  # keys from a config's root to one of its values


@dataclass(frozen=True)
class KerasModel:
    kind: str  # "keras-file" | "kerashub-preset"
    classes: frozenset[str]  # "keras.layers.Dense", "keras_hub.src.models....BertBackbone"
    keras_version: str  # from metadata.json, "" without one
    keras_hub_version: str  # a preset's metadata.json; "" for a .keras file
    files: int
    uncompressed_size: int

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "classes": sorted(self.classes),
            "keras_version": self.keras_version,
            "keras_hub_version": self.keras_hub_version,
            "files": self.files,
            "uncompressed_size": self.uncompressed_size,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> KerasModel:
        classes = doc.get("classes", [])
        return cls(
            str(doc.get("kind", "")),
            frozenset(str(c) for c in classes) if isinstance(classes, list) else frozenset(),
            str(doc.get("keras_version", "")),
            str(doc.get("keras_hub_version", "")),
            int(doc.get("files", 0)),  # type: ignore[call-overload]
            int(doc.get("uncompressed_size", 0)),  # type: ignore[call-overload]
        )


def inspect_keras_file(
    f: BinaryIO, size: int, limits: ArchiveLimits, name: str = "model.keras"
) -> KerasModel:
    """Check the `.keras` file in `f` (`size` bytes) as load_model(safe_mode=True)
    reads it; raise ArchiveRejected naming the file, the member and the reason."""
    where = printable(name)
    directory = read_directory(f, size, limits, where)
    config = directory.find(CONFIG)
    if config is None:
        raise ArchiveRejected(f"{where}: no {CONFIG}: keras.saving.load_model reads it first")
    if not any(directory.find(w) for w in WEIGHTS):
        raise ArchiveRejected(f"{where}: no {' or '.join(WEIGHTS)}: load_model needs one")
    classes = inspect_keras_config(member_bytes(f, config, MAX_CONFIG, where), f"{where}: {CONFIG}")
    versions: dict[str, str] = {}
    for member in directory.members:
        if member.name == METADATA and not member.is_dir:
            data = member_bytes(f, member, MAX_CONFIG, where)
            versions = _metadata(data, f"{where}: {METADATA}")
        elif member is not config:
            stream_member(f, member, where)
    files = sum(1 for m in directory.members if not m.is_dir)
    return KerasModel(
        "keras-file",
        classes,
        versions.get("keras_version", ""),
        "",
        files,
        directory.uncompressed_size,
    )


def _json(data: bytes, where: str) -> object:
    try:
        return json.loads(data)  # as keras reads it: bytes, UTF-8/16/32 detected alike
    except RecursionError:
        raise ArchiveRejected(f"{where} nests deeper than any model's config") from None
    except ValueError as exc:
        raise ArchiveRejected(f"{where} is not JSON ({bounded(str(exc), 120)})") from None


def _metadata(data: bytes, where: str) -> dict[str, str]:
    doc = _json(data, where)
    if not isinstance(doc, dict):
        raise ArchiveRejected(f"{where} is not a JSON object")
    return {
        key: printable(value, VERSION_SHOWN) if isinstance(value, str) else ""
        for key, value in doc.items()
        if key in ("keras_version", "keras_hub_version")
    }


def inspect_keras_config(config_json: bytes, where: str) -> frozenset[str]:
    """The classes and functions a Keras config names (module.name), once every one is
    one safe_mode loads; else ArchiveRejected saying which object and why."""
    doc = _json(config_json, where)
    if not isinstance(doc, dict) or "class_name" not in doc:
        raise ArchiveRejected(
            f"{where} is not a serialized Keras object (no class_name at its top)"
        )
    classes: set[str] = set()
    stack: list[tuple[object, Path]] = [(doc, ())]
    nodes = 0
    while stack:
        value, path = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ArchiveRejected(f"{where} holds more than {MAX_NODES} objects and lists")
        if len(path) > MAX_DEPTH:
            raise ArchiveRejected(f"{where} nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            if "class_name" in value:
                found = _checked_class(value, path, where)
                if found:
                    classes.add(found)
            children: list[tuple[object, object]] = list(value.items())
        elif isinstance(value, list):
            children = list(enumerate(value))
        else:
            continue
        stack.extend((child, (*path, key)) for key, child in reversed(children))
    return frozenset(classes)


def _place(obj: Mapping[str, object], path: Path) -> str:
    """Where an object sits, as a reader of the config finds it: layers[2] 'lambda'."""
    shown_path = ""
    for key in path:
        if isinstance(key, int):
            shown_path += f"[{key}]"
        elif key != "config":
            shown_path += f".{key}" if shown_path else str(key)
    inner = obj.get("config")
    label = inner.get("name") if isinstance(inner, dict) else None
    place = printable(shown_path, 120) or "the top"
    return f"{place} {bounded(label, 80)!r}" if isinstance(label, str) else place


def _checked_class(obj: Mapping[str, object], path: Path, where: str) -> str | None:
    class_name, module = obj.get("class_name"), obj.get("module")
    registered = obj.get("registered_name")
    if not isinstance(class_name, str) or not isinstance(module, str | None):
        raise ArchiveRejected(
            f"{where}: a class_name or module that is not a string ({_place(obj, path)})"
        )
    if class_name == "__lambda__":
        raise ArchiveRejected(
            f"{where} holds a Python lambda's bytecode ({_place(obj, path)}): {RUNS_CODE}"
        )
    if class_name == "Lambda":
        raise ArchiveRejected(
            f"{where} names a Lambda layer ({_place(obj, path)}): {_lambda_why(obj)}"
        )
    if class_name in DATA_CLASSES:
        return None
    name = obj.get("spec_name") if class_name == "__typespec__" else class_name
    if class_name == "function":
        name = obj.get("config")
    if not isinstance(name, str):
        raise ArchiveRejected(f"{where}: {class_name} without a name ({_place(obj, path)})")
    builtin_function = class_name == "function" and module == "builtins"
    if module and module.split(".")[0] not in KERAS_PACKAGES and not builtin_function:
        raise ArchiveRejected(
            f"{where} names {printable(module, 120)}.{printable(name, 80)} ({_place(obj, path)}), "
            "a class from outside Keras and KerasHub: custom code a node must install, "
            "which the mirror cannot vouch for"
        )
    if registered is not None and not isinstance(registered, str):
        raise ArchiveRejected(
            f"{where}: a registered_name that is not a string ({_place(obj, path)})"
        )
    if registered and ">" in registered and registered.split(">")[0] not in KERAS_PACKAGES:
        raise ArchiveRejected(
            f"{where} names {shown(registered)} ({_place(obj, path)}), a custom registered "
            "class: custom code a node must install, which the mirror cannot vouch for"
        )
    qualified = f"{module}.{name}" if module else name
    if qualified in NON_MODELING:
        raise ArchiveRejected(
            f"{where} names {qualified} ({_place(obj, path)}): not a modeling API; Keras "
            "refuses to deserialize it"
        )
    _refuse_safe_mode_config(obj, class_name, path, where)
    return qualified


def _lambda_why(obj: Mapping[str, object]) -> str:
    inner = obj.get("config")
    function = inner.get("function") if isinstance(inner, dict) else None
    if isinstance(function, dict) and function.get("class_name") != "__lambda__":
        # A named function: safe_mode lets it through only if Keras or code installed on
        # the node provides it; either way the layer runs whatever that name is.
        return "a layer that runs a function by name, which the mirror cannot vouch for"
    return RUNS_CODE


def _refuse_safe_mode_config(
    obj: Mapping[str, object], class_name: str, path: Path, where: str
) -> None:
    inner = obj.get("config")
    why = SAFE_MODE_REFUSES.get(class_name)
    if why and (
        class_name != "TorchModuleWrapper" or (isinstance(inner, dict) and "module" in inner)
    ):
        raise ArchiveRejected(
            f"{where} names a {class_name} ({_place(obj, path)}): safe_mode refuses it: {why}"
        )
    if not isinstance(inner, dict):
        return
    for key in FILE_PATH_KEYS:
        value = inner.get(key)
        if isinstance(value, str) and not (key == "proto" and _inline_proto(value)):
            raise ArchiveRejected(
                f"{where}: {class_name} ({_place(obj, path)}) reads its {key} from the path "
                f"{shown(value)}, outside the model: safe_mode refuses it"
            )


def _inline_proto(value: str) -> bool:
    if len(value) <= INLINE_PROTO:
        return False
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        return False
    return True


def inspect_kerashub_preset(
    files: Mapping[str, int], read: Callable[[str], bytes], where: str = "preset"
) -> KerasModel:
    """Check a KerasHub preset folder as `Backbone.from_preset(dir)` (and a task's or
    tokenizer's from_preset) reads it. `files`: each file's path in the folder -> its
    size; `read(path)`: its bytes (asked only for JSON files within MAX_CONFIG)."""
    where = printable(where)
    _check_preset_paths(files, where)
    if CONFIG not in files:
        raise ArchiveRejected(f"{where}: no {CONFIG}: KerasHub's from_preset reads it first")
    config_data = _read_json_file(files, read, CONFIG, where)
    _refuse_foreign_checkpoint(config_data, where)
    classes: set[str] = set()
    for name in PRESET_CONFIGS:
        if name in files:
            data = config_data if name == CONFIG else _read_json_file(files, read, name, where)
            classes |= inspect_keras_config(data, f"{where}: {name}")
    _check_preset_weights(files, read, where)
    versions: dict[str, str] = {}
    if METADATA in files:
        versions = _metadata(_read_json_file(files, read, METADATA, where), f"{where}: {METADATA}")
    return KerasModel(
        "kerashub-preset",
        frozenset(classes),
        versions.get("keras_version", ""),
        versions.get("keras_hub_version", ""),
        len(files),
        sum(files.values()),
    )


def _check_preset_paths(files: Mapping[str, int], where: str) -> None:
    if len(files) > MAX_ENTRIES:
        raise ArchiveRejected(f"{where}: {len(files)} files, more than {MAX_ENTRIES}")
    seen: set[str] = set()
    for name, size in files.items():
        problem = path_problem(name)
        if problem or name.endswith("/"):
            raise ArchiveRejected(f"{where}: file {shown(name)}: {problem or 'a folder name'}")
        if not isinstance(size, int) or size < 0:
            raise ArchiveRejected(f"{where}: file {shown(name)} has no size")
        if folded(name) in seen:
            raise ArchiveRejected(f"{where}: two files named {shown(name)}")
        seen.add(folded(name))


def _read_json_file(
    files: Mapping[str, int], read: Callable[[str], bytes], name: str, where: str
) -> bytes:
    if files[name] > MAX_CONFIG:
        raise ArchiveRejected(
            f"{where}: {name} is {files[name]} bytes, more than the {MAX_CONFIG} read"
        )
    data = read(name)
    if len(data) != files[name]:
        raise ArchiveRejected(f"{where}: {name} holds {len(data)} bytes, listed as {files[name]}")
    return data


def _refuse_foreign_checkpoint(config_data: bytes, where: str) -> None:
    doc = _json(config_data, f"{where}: {CONFIG}")
    if not isinstance(doc, dict) or "registered_name" not in doc:
        raise ArchiveRejected(
            f"{where}: {CONFIG} has no registered_name: not a Keras preset (KerasHub reads "
            "such a folder as a Transformers or timm checkpoint and converts it)"
        )


def _check_preset_weights(
    files: Mapping[str, int], read: Callable[[str], bytes], where: str
) -> None:
    if PRESET_WEIGHTS in files:
        return
    if PRESET_SHARDS not in files:
        raise ArchiveRejected(
            f"{where}: no {PRESET_WEIGHTS} or {PRESET_SHARDS}: from_preset loads weights from one"
        )
    doc = _json(_read_json_file(files, read, PRESET_SHARDS, where), f"{where}: {PRESET_SHARDS}")
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ArchiveRejected(f"{where}: {PRESET_SHARDS} has no weight_map")
    for value in weight_map.values():
        for shard in value if isinstance(value, list) else [value]:
            if not isinstance(shard, str) or shard not in files:
                raise ArchiveRejected(
                    f"{where}: {PRESET_SHARDS} names a shard the preset lacks: {shown(str(shard))}"
                )
