"""The ops a SavedModel uses, read from its `saved_model.pb` without TensorFlow. A model
that uses an op its server's TensorFlow lacks dies at load with "Op type not
registered". Which ops it uses is written in the proto: every node of every meta graph,
and every node of every function in the graph's library (tf.function bodies, where TF2
models keep nearly everything). This reads exactly those fields of the protobuf wire
format (listed above _Walk; the rest is skipped by its length, not parsed), so it runs
in tfmirror's own Python, with no TensorFlow, on a model of any size, in well under a
second."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from hub_cache.errors import NotASavedModel
from hub_cache.formats.base import GraphOps
from mirror.core.storage import BlobStore

OPS_STATE = "state/hub/ops"  # <sha256 of the archive>.json: the ops it uses, once
SAVED_MODEL = "saved_model.pb"
MAX_GRAPH = 2**31  # protobuf's own limit for one message


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise NotASavedModel("a varint runs past the end of the data")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, memoryview | int]]:
    """(field number, value) of one message: a length-delimited field's bytes as a view
    (no copy), a number for the others."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise NotASavedModel("a field runs past the end of the data")
            yield number, buf[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise NotASavedModel(f"wire type {wire} is not in any SavedModel field read here")
        if pos > len(buf):
            raise NotASavedModel("a field runs past the end of the data")


def _sub(buf: memoryview, wanted: int) -> Iterator[memoryview]:
    for number, value in _fields(buf):
        if number == wanted and isinstance(value, memoryview):
            yield value


def _text(view: memoryview) -> str:
    return bytes(view).decode("utf-8", "replace")


# The fields read (tensorflow/core/protobuf/saved_model.proto, meta_graph.proto,
# framework/graph.proto, node_def.proto, function.proto, op_def.proto):
# SavedModel.meta_graphs=2 -> MetaGraphDef{meta_info_def=1 {tensorflow_version=5},
# graph_def=2} -> GraphDef{node=1, library=2} -> NodeDef{op=2};
# FunctionDefLibrary{function=1} -> FunctionDef{signature=1 {name=1}, node_def=3}.
@dataclass
class _Walk:
    ops: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    version: str = ""

    def nodes(self, nodes: Iterator[memoryview]) -> None:
        for node in nodes:
            for op in _sub(node, 2):
                self.ops.add(_text(op))

    def graph(self, graph: memoryview) -> None:
        self.nodes(_sub(graph, 1))
        for library in _sub(graph, 2):
            for function in _sub(library, 1):
                for signature in _sub(function, 1):
                    for name in _sub(signature, 1):
                        self.functions.add(_text(name))
                self.nodes(_sub(function, 3))


def saved_model_ops(data: bytes | memoryview) -> GraphOps:
    """The op types a `saved_model.pb` uses (function calls by name are not ops)."""
    walk = _Walk()
    metas = 0
    for meta in _sub(memoryview(data), 2):
        metas += 1
        for info in _sub(meta, 1):
            for version in _sub(info, 5):
                walk.version = walk.version or _text(version)
        for graph in _sub(meta, 2):
            walk.graph(graph)
    if not metas:
        raise NotASavedModel("saved_model.pb holds no meta graph")
    ops = frozenset(op for op in walk.ops - walk.functions if op)
    return GraphOps(ops, walk.version, len(walk.functions))


def archive_ops(store: BlobStore, sha256: str, max_bytes: int) -> GraphOps:
    """The ops of the model archived in blob `sha256` (tar, tar.gz or tar.bz2, the
    SavedModel at its root), read once and kept in the store: an archive never changes."""
    key = f"{OPS_STATE}/{sha256}.json"
    cached = store.get(key)
    if cached is not None:
        return GraphOps.from_json(json.loads(cached))
    try:
        with store.open_blob(sha256) as reader, tarfile.open(fileobj=reader, mode="r|*") as tar:
            for member in tar:
                if member.name.removeprefix("./") != SAVED_MODEL or not member.isfile():
                    continue
                if member.size > min(max_bytes, MAX_GRAPH):
                    raise NotASavedModel(
                        f"{SAVED_MODEL} declares {member.size} bytes, over the "
                        f"{min(max_bytes, MAX_GRAPH)} this mirror reads"
                    )
                handle = tar.extractfile(member)
                if handle is None:
                    break
                found = saved_model_ops(handle.read())
                store.put(key, json.dumps(found.as_json()).encode())
                return found
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise NotASavedModel(f"the archive cannot be read: {exc}") from None
    raise NotASavedModel(f"the archive has no {SAVED_MODEL} at its root")
