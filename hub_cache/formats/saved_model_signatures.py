"""A SavedModel's signatures, read from its `saved_model.pb` without TensorFlow: what
`tf.saved_model.load(dir).signatures[name]` takes (structured_input_signature) and gives
(structured_outputs), and what TF Serving serves by name. They are the `signature_def`
map of the meta graph TF Serving loads (tagged `serve`; the first where none is), each
input and output a TensorInfo of dtype and shape. Only those fields are read (listed
above _signature), by the same hand-walk of the wire format as the ops
(protobuf_wire.py)."""

from __future__ import annotations

from hub_cache.errors import NotASavedModel
from hub_cache.formats.protobuf_wire import number, signed, sub, text
from mirror.core.contracts import Contract, Shape, Signature, TensorSpec

SERVE_TAG = "serve"  # tf.saved_model.SERVING: the meta graph TF Serving and TF2 load
# Not a signature a caller calls: TF 2 keeps the model's initializer under this key, and
# tf.saved_model.load leaves it out of `.signatures`.
INIT_OP = "__saved_model_init_op"

# tensorflow/core/framework/types.proto DataType -> its tf.dtypes name.
DTYPES = (
    "invalid",
    "float32",
    "float64",
    "int32",
    "uint8",
    "int16",
    "int8",
    "string",
    "complex64",
    "int64",
    "bool",
    "qint8",
    "quint8",
    "qint32",
    "bfloat16",
    "qint16",
    "quint16",
    "uint16",
    "complex128",
    "float16",
    "resource",
    "variant",
    "uint32",
    "uint64",
    "float8_e5m2",
    "float8_e4m3fn",
    "float8_e4m3fnuz",
    "float8_e4m3b11fnuz",
    "float8_e5m2fnuz",
    "int4",
    "uint4",
    "int2",
    "uint2",
    "float4_e2m1fn",
)


def dtype_name(enum: int) -> str:
    return DTYPES[enum] if 0 < enum < len(DTYPES) else f"dtype_{enum}"


def _map(message: memoryview, field: int) -> dict[str, memoryview]:
    """A `map<string, Message>` field: its entries are messages {key=1, value=2}."""
    entries = {}
    for entry in sub(message, field):
        key = next((text(k) for k in sub(entry, 1)), "")
        entries[key] = next(sub(entry, 2), memoryview(b""))
    return entries


def _shape(tensor_shape: memoryview | None) -> Shape:
    """TensorShapeProto {dim=2 {size=1}, unknown_rank=3}: size -1 is unknown."""
    if tensor_shape is None or number(tensor_shape, 3):
        return None
    dims: list[int | None] = []
    for dim in sub(tensor_shape, 2):
        size = signed(number(dim, 1) or 0)
        dims.append(None if size < 0 else size)
    return tuple(dims)


def _tensor(key: str, info: memoryview, optional: bool = False) -> TensorSpec:
    """TensorInfo {name=1, dtype=2, tensor_shape=3, coo_sparse=4, composite_tensor=5}."""
    if next(sub(info, 4), None) is not None:
        return TensorSpec(key, "sparse", None, optional)
    if next(sub(info, 5), None) is not None:
        return TensorSpec(key, "composite", None, optional)
    return TensorSpec(key, dtype_name(number(info, 2) or 0), _shape(next(sub(info, 3), None)))


# The fields read (tensorflow/core/protobuf/saved_model.proto, meta_graph.proto,
# framework/tensor_shape.proto): SavedModel.meta_graphs=2 -> MetaGraphDef{meta_info_def=1
# {tags=4}, signature_def=5 map} -> SignatureDef{inputs=1 map, outputs=2 map,
# defaults=4 map (an input with a default may be left out)} -> TensorInfo (above).
def _signature(name: str, signature: memoryview) -> Signature:
    defaults = _map(signature, 4).keys()
    inputs = [_with_default(_tensor(k, v), k in defaults) for k, v in _map(signature, 1).items()]
    outputs = [_tensor(k, v) for k, v in _map(signature, 2).items()]
    return Signature.make(name, inputs, outputs)


def _with_default(spec: TensorSpec, optional: bool) -> TensorSpec:
    return TensorSpec(spec.name, spec.dtype, spec.shape, optional)


def _serving_meta_graph(data: bytes | memoryview) -> memoryview:
    metas = list(sub(memoryview(data), 2))
    if not metas:
        raise NotASavedModel("saved_model.pb holds no meta graph")
    for meta in metas:
        tags = {text(t) for info in sub(meta, 1) for t in sub(info, 4)}
        if SERVE_TAG in tags:
            return meta
    return metas[0]


def saved_model_contract(data: bytes | memoryview) -> Contract:
    """The signatures of a `saved_model.pb`, as TensorFlow loads them."""
    meta = _serving_meta_graph(data)
    signatures = [
        _signature(name, signature) for name, signature in _map(meta, 5).items() if name != INIT_OP
    ]
    return Contract.of(signatures, "saved_model.pb")
