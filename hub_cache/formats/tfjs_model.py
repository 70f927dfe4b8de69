"""A TF.js model folder checked as `@tensorflow/tfjs` reads it, without reading a shard.

`loadGraphModel(url)` / `loadLayersModel(url)` GET `model.json` (with `fromTFHub`,
`<url>/model.json?tfjs-format=file`), parse it with JSON.parse, then GET every path of
every `weightsManifest` group as `<url up to its last slash> + path + <its query>`, in
manifest order, and slice the concatenated bytes weight by weight: elements times the byte size
of the dtype (of the quantized dtype when `quantization` is set). tfjs checks none of
this before slicing, so a shard one byte short fails in the browser and a stray path
fetches whatever it names. This reads `model.json` and the folder's declared file sizes
(no I/O: the caller gives both) and refuses, in one line naming the file, anything tfjs
would fail on or that would make the mirror serve a file the manifest does not name.
The rules follow tfjs 4.22 (tfjs-core/src/io/types.ts, io_utils.ts, http.ts;
tfjs-converter/src/executor/graph_model.ts; tfjs-layers/src/models.ts)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from hub_cache.errors import ArchiveRejected
from mirror.core.redact import bounded
from mirror.core.upstream import MAX_PAGE

MODEL_JSON = "model.json"  # the folder's root file; fromTFHub asks for exactly this name
GRAPH_MODEL = "graph-model"
LAYERS_MODEL = "layers-model"

# Bytes per element of the dtypes tfjs decodes unquantized (io_utils.ts decodeWeight:
# float16, uint8 and uint16 are in DTYPE_VALUE_SIZE_MAP but only as quantized dtypes).
WEIGHT_DTYPES = {"float32": 4, "int32": 4, "bool": 1, "complex64": 8}
STRING = "string"
# A string weight is, per element, a little-endian uint32 byte length then that many
# bytes; its size is known only by reading the shard, so without I/O only its floor is.
STRING_LENGTH_BYTES = 4
# quantization.dtype -> bytes per element, and the weight dtypes tfjs dequantizes it to.
QUANTIZED = {
    "uint8": (1, frozenset({"float32", "int32"})),
    "uint16": (2, frozenset({"float32", "int32"})),
    "float16": (2, frozenset({"float32"})),
}

# Bounds a hostile manifest meets long before the JSON's own size limit: real converter
# output has a few thousand weights in 4 MB shards.
MAX_WEIGHTS = 100_000
MAX_SHARDS = 10_000
MAX_RANK = 254  # TensorFlow's own limit on a shape's rank
MAX_ELEMENTS = 2**53  # past this a JS number no longer counts elements exactly
MAX_OPS = 10_000  # distinct op or layer class names
MAX_NAME = 256  # characters of one op or layer class name
NAME_SHOWN = 120  # characters of a path or name a reason quotes

# A first segment `name:` is a scheme to a URL resolver (RFC 3986 §4.2).
_SCHEME = re.compile(r"^[^/]*:")
# WHATWG URL parsing strips tabs and newlines and treats `\` as `/` in http URLs;
# `?` and `#` end the path; `%` is decoded by the server, so the file served would not
# be the name the manifest says; a trailing space is stripped from a URL without a query.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\?#%]| $")


class _Refused(Exception):
    """A reason without its file; inspect_tfjs adds `where` and raises ArchiveRejected."""


@dataclass(frozen=True)
class TfjsModel:
    """What a valid TF.js model folder is made of, as its manifest facts keep it."""

    kind: str  # GRAPH_MODEL or LAYERS_MODEL
    ops: frozenset[str]  # graph: node op types; layers: layer class names
    weights: int  # weight entries in the manifest
    weight_bytes: int  # bytes of all shards
    shards: tuple[str, ...]  # shard paths relative to model.json, in manifest order
    converted_by: str  # convertedBy, else generatedBy, bounded

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "ops": sorted(self.ops),
            "weights": self.weights,
            "weight_bytes": self.weight_bytes,
            "shards": list(self.shards),
            "converted_by": self.converted_by,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> TfjsModel:
        ops, shards = doc.get("ops", []), doc.get("shards", [])
        return cls(
            str(doc.get("kind", "")),
            frozenset(str(o) for o in ops) if isinstance(ops, list) else frozenset(),
            int(doc.get("weights", 0)),  # type: ignore[call-overload]
            int(doc.get("weight_bytes", 0)),  # type: ignore[call-overload]
            tuple(str(s) for s in shards) if isinstance(shards, list) else (),
            str(doc.get("converted_by", "")),
        )


def inspect_tfjs(model_json: bytes, files: Mapping[str, int], where: str = MODEL_JSON) -> TfjsModel:
    """The facts of the TF.js model whose `model.json` holds `model_json` and whose folder
    holds `files` (relative POSIX path -> declared size, `model.json` included).
    ArchiveRejected, naming `where` or the file at fault, if tfjs would not load it."""
    try:
        return _inspect(model_json, files)
    except _Refused as exc:
        raise ArchiveRejected(f"{_shown(where)}: {exc}") from None


def shard_for(model: TfjsModel, requested: str) -> str | None:
    """The shard a client's request names, relative to model.json's folder (as tfjs
    joins a manifest path to the model URL, percent-escapes decoded or not), or None:
    only the manifest's shards are served under the model's URL."""
    if requested in model.shards:
        return requested
    if "%" not in requested:
        return None
    # Manifest paths never hold `%`, so decoding a request cannot turn one name into another.
    try:
        decoded = unquote(requested, errors="strict")
    except UnicodeDecodeError:  # escapes of bytes that are not UTF-8 name no shard
        return None
    return decoded if decoded in model.shards else None


def _inspect(model_json: bytes, files: Mapping[str, int]) -> TfjsModel:
    doc = _parse(model_json)
    declared = files.get(MODEL_JSON)
    if declared != len(model_json):
        raise _Refused(
            f"the folder declares {declared} bytes for {MODEL_JSON}, it holds {len(model_json)}"
        )
    topology = doc.get("modelTopology")
    if not isinstance(topology, dict):
        raise _Refused("it has no modelTopology object")
    kind = _kind(doc.get("format"), topology)
    manifest = doc.get("weightsManifest")
    if not isinstance(manifest, list):
        raise _Refused("its weightsManifest is not a list of groups")
    shards, weights, weight_bytes = _check_manifest(manifest, files)
    named = set(shards) | {MODEL_JSON}
    extra = sorted(name for name in files if name not in named)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise _Refused(
            f"{_shown(extra[0])} is in the folder but the manifest does not name it{more}"
        )
    ops = (
        _graph_ops(topology, doc.get("modelInitializer"))
        if kind == GRAPH_MODEL
        else _layer_classes(topology)
    )
    by = doc.get("convertedBy") or doc.get("generatedBy")
    converted_by = _shown(by, 200) if isinstance(by, str) else ""
    return TfjsModel(kind, ops, weights, weight_bytes, tuple(shards), converted_by)


def _parse(model_json: bytes) -> dict[str, Any]:
    if len(model_json) > MAX_PAGE:
        raise _Refused(f"it is {len(model_json)} bytes, over the {MAX_PAGE} a JSON page may be")
    try:
        # fetch's Response.json() decodes UTF-8 (dropping a BOM), JSON.parse knows no NaN.
        text = model_json.decode("utf-8").removeprefix("\ufeff")
        doc = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise _Refused("its JSON nests deeper than this reader follows") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _Refused(f"it is not UTF-8 JSON ({bounded(str(exc), NAME_SHOWN)})") from None
    if not isinstance(doc, dict):
        raise _Refused("its JSON is not an object")
    return doc


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _kind(declared: object, topology: dict[str, Any]) -> str:
    if declared in (GRAPH_MODEL, LAYERS_MODEL):
        return str(declared)
    # tfjs-layers before 1.0 wrote no `format`; loadLayersModel reads any Keras config.
    if declared is None and ("model_config" in topology or "class_name" in topology):
        return LAYERS_MODEL
    if declared is None:
        raise _Refused("it names no format and its modelTopology is no Keras model config")
    raise _Refused(
        f"its format {_shown(repr(declared))} is neither {GRAPH_MODEL} nor {LAYERS_MODEL}"
    )


def _check_manifest(manifest: list[Any], files: Mapping[str, int]) -> tuple[list[str], int, int]:
    """Every group's shards and weights checked; (shards in order, weights, their bytes)."""
    shards: list[str] = []
    seen_shards: set[str] = set()
    seen_weights: set[str] = set()
    total = 0
    for number, group in enumerate(manifest, 1):
        if not isinstance(group, dict):
            raise _Refused(f"weightsManifest group {number} is not an object")
        paths, entries = group.get("paths"), group.get("weights")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise _Refused(
                f"weightsManifest group {number}'s paths is not a non-empty list of strings"
            )
        if not isinstance(entries, list):
            raise _Refused(f"weightsManifest group {number}'s weights is not a list")
        if len(shards) + len(paths) > MAX_SHARDS:
            raise _Refused(f"its weightsManifest names over {MAX_SHARDS} shards")
        if len(seen_weights) + len(entries) > MAX_WEIGHTS:
            raise _Refused(f"its weightsManifest names over {MAX_WEIGHTS} weights")
        present = 0
        for path in paths:
            _check_path(path, files)
            if path in seen_shards:
                raise _Refused(f"shard {_shown(path)} is listed twice in weightsManifest")
            seen_shards.add(path)
            shards.append(path)
            present += files[path]
        needed, exact = _group_bytes(entries, seen_weights)
        if present < needed or (exact and present != needed):
            raise _Refused(_size_reason(number, paths[0], needed, present, exact))
        total += present
    return shards, len(seen_weights), total


def _check_path(path: str, files: Mapping[str, int]) -> None:
    shown = _shown(path)
    if not path or path.startswith("/") or _SCHEME.match(path):
        raise _Refused(f"shard path {shown} is not relative to model.json")
    if _UNSAFE.search(path):
        raise _Refused(
            f"shard path {shown} holds a backslash, a control character, "
            "?, #, % or a trailing space"
        )
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise _Refused(
            f"shard path {shown} has an empty, . or .. segment: "
            "it must name a file inside the model"
        )
    if path == MODEL_JSON:
        raise _Refused(f"shard path {shown} names the model.json itself")
    size = files.get(path)
    if size is None:
        raise _Refused(f"shard {shown} is named in weightsManifest but is not in the folder")
    if not isinstance(size, int) or size < 0:
        raise _Refused(f"shard {shown} has no valid declared size")


def _group_bytes(entries: list[Any], seen: set[str]) -> tuple[int, bool]:
    """The bytes a group's weights take in its shards, and whether that is exact (it is
    a floor when a string weight's lengths live in the shard)."""
    needed, exact = 0, True
    for entry in entries:
        name, count, size = _weight(entry)
        if name in seen:
            raise _Refused(f"weight {_shown(name)} is listed twice in weightsManifest")
        seen.add(name)
        if size is None:
            needed += count * STRING_LENGTH_BYTES
            exact = False
        else:
            needed += count * size
    return needed, exact


def _weight(entry: object) -> tuple[str, int, int | None]:
    """(name, elements, bytes per element; None for a string weight) of one entry."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise _Refused("a weightsManifest entry has no name")
    name = entry["name"]
    count = _elements(name, entry.get("shape"))
    dtype, quantization = entry.get("dtype"), entry.get("quantization")
    if quantization is not None:
        return name, count, _quantized_size(name, dtype, quantization)
    if dtype == STRING:
        return name, count, None
    if not isinstance(dtype, str) or dtype not in WEIGHT_DTYPES:
        raise _Refused(
            f"weight {_shown(name)} has dtype {_shown(repr(dtype))}, which tfjs does not decode"
        )
    return name, count, WEIGHT_DTYPES[dtype]


def _quantized_size(name: str, dtype: object, quantization: object) -> int:
    stored = quantization.get("dtype") if isinstance(quantization, dict) else None
    if not isinstance(quantization, dict) or not isinstance(stored, str) or stored not in QUANTIZED:
        raise _Refused(
            f"weight {_shown(name)}'s quantization dtype is not uint8, uint16 or float16"
        )
    size, targets = QUANTIZED[stored]
    if not isinstance(dtype, str) or dtype not in targets:
        raise _Refused(
            f"weight {_shown(name)}: tfjs does not dequantize {stored} to {_shown(repr(dtype))}"
        )
    if stored != "float16" and not all(_finite(quantization.get(k)) for k in ("scale", "min")):
        raise _Refused(
            f"weight {_shown(name)} is quantized to {stored} without a numeric scale and min"
        )
    return size


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _elements(name: str, shape: object) -> int:
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise _Refused(f"weight {_shown(name)}'s shape is not a list of at most {MAX_RANK} dims")
    count = 1
    for dim in shape:
        # JSON.parse reads 4.0 as the integer 4, so an integral float is a dim for tfjs.
        if not _finite(dim) or dim < 0 or dim != int(dim):
            raise _Refused(
                f"weight {_shown(name)}'s shape {_shown(str(shape))} "
                "has a dim that is not a whole number >= 0"
            )
        count *= int(dim)
        if count > MAX_ELEMENTS:
            raise _Refused(f"weight {_shown(name)}'s shape declares over 2^53 elements")
    return count


def _size_reason(number: int, first: str, needed: int, present: int, exact: bool) -> str:
    group = f"weightsManifest group {number} (shards from {_shown(first)})"
    if not exact:
        return f"{group} holds {present} bytes, under the {needed} its weights need at the least"
    gap = present - needed
    off = {-1: "one byte short", 1: "one byte too long"}.get(gap)
    off = off or (f"{-gap} bytes short" if gap < 0 else f"{gap} bytes too long")
    return f"{group} needs {needed} bytes for its weights, its shards hold {present} ({off})"


def _graph_ops(topology: dict[str, Any], initializer: object) -> frozenset[str]:
    """Node op types of the graph, of its function library and of its initializer graph,
    less the library's function names (a call by name is not an op)."""
    ops: set[str] = set()
    functions: set[str] = set()
    library = topology.get("library")
    for function in _dicts(library.get("function") if isinstance(library, dict) else None):
        signature = function.get("signature")
        if isinstance(signature, dict) and isinstance(signature.get("name"), str):
            functions.add(signature["name"])
        _add_ops(ops, _dicts(function.get("nodeDef")))
    _add_ops(ops, _dicts(topology.get("node")))
    # tfjs runs the initializer graph (hash tables of text models) before the model.
    _add_ops(ops, _dicts(initializer.get("node") if isinstance(initializer, dict) else None))
    return _bounded_names(ops - functions, "op")


def _add_ops(ops: set[str], nodes: Iterator[dict[str, Any]]) -> None:
    for node in nodes:
        op = node.get("op")
        if isinstance(op, str) and op:
            ops.add(op)


def _layer_classes(topology: dict[str, Any]) -> frozenset[str]:
    """Class names of the model and of every layer in it, nested models and wrapped
    layers (TimeDistributed, Bidirectional) included; walked without recursion."""
    model = topology.get("model_config", topology)
    classes: set[str] = set()
    pending: list[object] = [model]
    while pending:
        layer = pending.pop()
        if not isinstance(layer, dict):
            continue
        if isinstance(layer.get("class_name"), str):
            classes.add(layer["class_name"])
        config = layer.get("config")
        # An old Sequential's config is its list of layers.
        inner = config if isinstance(config, list) else []
        if isinstance(config, dict):
            layers = config.get("layers")
            inner = [
                *(layers if isinstance(layers, list) else []),
                config.get("layer"),
                config.get("backward_layer"),
            ]
        pending.extend(inner)
    return _bounded_names(classes, "layer class")


def _dicts(value: object) -> Iterator[dict[str, Any]]:
    return (item for item in (value if isinstance(value, list) else []) if isinstance(item, dict))


def _bounded_names(names: set[str], what: str) -> frozenset[str]:
    if len(names) > MAX_OPS:
        raise _Refused(f"its topology names over {MAX_OPS} distinct {what} names")
    long = next((n for n in names if len(n) > MAX_NAME), None)
    if long is not None:
        raise _Refused(f"{what} name {_shown(long)} is over {MAX_NAME} characters")
    return frozenset(names)


def _shown(text: str, limit: int = NAME_SHOWN) -> str:
    """Text from the upstream as one line of a reason or a page: escaped, bounded."""
    head = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    more = len(text) - limit
    return f"{head}... ({more} more characters)" if more > 0 else head
