"""The names LiteRT gives the numbers in a `.tflite` file: BuiltinOperator (an
OperatorCode's builtin code) and TensorType (a Tensor's type), indexed by number; the
sizes of TensorTypes, and the fields of the schema's tables that tflite_reader checks.

Written once, at development time, from TensorFlow 2.21.0's
`tensorflow/lite/python/schema_py_generated.py` (the classes BuiltinOperator and
TensorType generated from tensorflow/compiler/mlir/lite/schema/schema.fbs), so the
mirror needs no TensorFlow to name them. Both enums are dense from 0 there; a number past
the end comes from a newer converter, and tflite_reader names it rather than refuse it.
"""

from __future__ import annotations

# BuiltinOperator, by code (210 codes, 0..209), in schema order.
_BUILTIN_OPERATOR_NAMES = """
    ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE
    EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D
    LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU
    RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH
    CONCAT_EMBEDDINGS SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD
    UNIDIRECTIONAL_SEQUENCE_RNN GATHER BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN
    SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE BIDIRECTIONAL_SEQUENCE_RNN
    EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM
    ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN
    TRANSPOSE_CONV SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE
    POW ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND
    LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD
    RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V
    UNIQUE CEIL REVERSE_V2 ADD_N GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG
    QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE NON_MAX_SUPPRESSION_V4
    NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL
    PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG REAL
    COMPLEX_ABS HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL
    CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ASSIGN_VARIABLE BROADCAST_ARGS
    RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU DYNAMIC_UPDATE_SLICE
    RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX UNSORTED_SEGMENT_SUM ATAN2
    UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT STABLEHLO_LOGISTIC
    STABLEHLO_ADD STABLEHLO_DIVIDE STABLEHLO_MULTIPLY STABLEHLO_MAXIMUM STABLEHLO_RESHAPE
    STABLEHLO_CLAMP STABLEHLO_CONCATENATE STABLEHLO_BROADCAST_IN_DIM STABLEHLO_CONVOLUTION
    STABLEHLO_SLICE STABLEHLO_CUSTOM_CALL STABLEHLO_REDUCE STABLEHLO_ABS STABLEHLO_AND
    STABLEHLO_COSINE STABLEHLO_EXPONENTIAL STABLEHLO_FLOOR STABLEHLO_LOG STABLEHLO_MINIMUM
    STABLEHLO_NEGATE STABLEHLO_OR STABLEHLO_POWER STABLEHLO_REMAINDER STABLEHLO_RSQRT
    STABLEHLO_SELECT STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_SCATTER STABLEHLO_COMPARE
    STABLEHLO_CONVERT STABLEHLO_DYNAMIC_SLICE STABLEHLO_DYNAMIC_UPDATE_SLICE STABLEHLO_PAD
    STABLEHLO_IOTA STABLEHLO_DOT_GENERAL STABLEHLO_REDUCE_WINDOW STABLEHLO_SORT
    STABLEHLO_WHILE STABLEHLO_GATHER STABLEHLO_TRANSPOSE DILATE STABLEHLO_RNG_BIT_GENERATOR
    REDUCE_WINDOW STABLEHLO_COMPOSITE STABLEHLO_SHIFT_LEFT STABLEHLO_CBRT STABLEHLO_CASE
"""
BUILTIN_OPERATORS: tuple[str, ...] = tuple(_BUILTIN_OPERATOR_NAMES.split())

CUSTOM = BUILTIN_OPERATORS.index("CUSTOM")  # its name is the OperatorCode's custom_code

# TensorType, by number, lower-case as numpy and LiteRT's Python name dtypes.
_TENSOR_TYPE_NAMES = """
    float32 float16 int32 uint8 int64 string bool int16 complex64 int8 float64 complex128
    uint64 resource variant uint32 uint16 int4 bfloat16 int2 uint4
"""
TENSOR_TYPES: tuple[str, ...] = tuple(_TENSOR_TYPE_NAMES.split())

# Bytes per element of the fixed-size TensorTypes, by number (string, resource, variant
# and the sub-byte int4, int2, uint4 are not fixed). The names above say which is which.
TYPE_SIZES: dict[int, int] = {
    number: size
    for name, size in {
        "float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1,
        "int16": 2, "complex64": 8, "int8": 1, "float64": 8, "complex128": 16,
        "uint64": 8, "uint32": 4, "uint16": 2, "bfloat16": 2,
    }.items()
    for number in [TENSOR_TYPES.index(name)]
}  # fmt: skip
VARIABLE_SIZE_TYPES = frozenset(TENSOR_TYPES.index(n) for n in ("string", "resource", "variant"))

# Each table's fields in schema order, by size in bytes (4 for offsets; 0: a removed
# field, not checked). From the same schema_py_generated (its XxxAdd functions' slots).
# version, operator_codes, subgraphs, description, buffers, metadata_buffer, metadata,
# signature_defs
MODEL = (4, 4, 4, 4, 4, 4, 4, 4)
OPERATOR_CODE = (1, 4, 4, 4)  # deprecated_builtin_code, custom_code, version, builtin_code
# tensors, inputs, outputs, operators, name, debug_metadata_index
SUBGRAPH = (4, 4, 4, 4, 4, 4)
# shape, type, buffer, name, quantization, is_variable, sparsity, shape_signature,
# has_rank, variant_tensors, external_buffer
TENSOR = (4, 1, 4, 4, 4, 1, 4, 4, 1, 4, 4)
# opcode_index, inputs, outputs, builtin_options_type, builtin_options, custom_options,
# custom_options_format, mutating_variable_inputs, intermediates,
# large_custom_options_offset and _size, builtin_options_2_type, builtin_options_2,
# debug_metadata_index
OPERATOR = (4, 4, 4, 1, 4, 4, 1, 4, 4, 8, 8, 1, 4, 4)
BUFFER = (4, 8, 8)  # data, offset, size
# min, max, scale, zero_point, details_type, details, quantized_dimension
QUANTIZATION = (4, 4, 4, 4, 1, 4, 4)
METADATA = (4, 4)  # name, buffer
SIGNATURE_DEF = (4, 4, 4, 0, 4)  # inputs, outputs, signature_key, (removed), subgraph_index
TENSOR_MAP = (4, 4)  # name, tensor_index
