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
from hub_cache.formats.protobuf_wire import sub, text
from mirror.core.storage import BlobStore

OPS_STATE = "state/hub/ops"  # <sha256 of the archive>.json: the ops it uses, once
SAVED_MODEL = "saved_model.pb"
MAX_GRAPH = 2**31  # protobuf's own limit for one message


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
            for op in sub(node, 2):
                self.ops.add(text(op))

    def graph(self, graph: memoryview) -> None:
        self.nodes(sub(graph, 1))
        for library in sub(graph, 2):
            for function in sub(library, 1):
                for signature in sub(function, 1):
                    for name in sub(signature, 1):
                        self.functions.add(text(name))
                self.nodes(sub(function, 3))


def saved_model_ops(data: bytes | memoryview) -> GraphOps:
    """The op types a `saved_model.pb` uses (function calls by name are not ops)."""
    walk = _Walk()
    metas = 0
    for meta in sub(memoryview(data), 2):
        metas += 1
        for info in sub(meta, 1):
            for version in sub(info, 5):
                walk.version = walk.version or text(version)
        for graph in sub(meta, 2):
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
    return keep_ops(store, sha256, archived_graph(store, sha256, max_bytes))


def keep_ops(store: BlobStore, sha256: str, graph: bytes) -> GraphOps:
    """The ops of `graph`, the `saved_model.pb` of the archive in blob `sha256`, kept."""
    found = saved_model_ops(graph)
    store.put(f"{OPS_STATE}/{sha256}.json", json.dumps(found.as_json()).encode())
    return found


def archived_graph(store: BlobStore, sha256: str, max_bytes: int) -> bytes:
    """The `saved_model.pb` of the model archived in blob `sha256`, read from the
    archive's stream (bounded: protobuf's own limit, and the mirror's unpacked cap)."""
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
                return handle.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise NotASavedModel(f"the archive cannot be read: {exc}") from None
    raise NotASavedModel(f"the archive has no {SAVED_MODEL} at its root")
