"""LiteRT as a runtime to check `.tflite` models against (hub_cache.formats.base.RuntimeKind):
the distributions that install its interpreter (ai-edge-litert, the old tflite-runtime,
and TensorFlow, whose `tf.lite.Interpreter` runs them too), the script that lists what
that interpreter registers, run in the runtime's venv, and the check of a model's
operator codes against that list, with the reason in words.

Neither package exposes its op resolver to Python, so the script asks the interpreter
itself: for each BuiltinOperator code it builds a model that declares that one operator
code and no operator (a template written here, its code and version patched in) and sees
whether the interpreter builds it; LiteRT's InterpreterBuilder looks every declared code
up in its resolver and refuses one it lacks ("Didn't find op for builtin opcode"). That
gives each registered builtin and the highest version registered, in about a second,
without running a kernel. Custom ops the resolver adds (Mfcc, AudioSpectrogram,
TFLite_Detection_PostProcess) are not listed: finding them means preparing their kernel,
which crashes on an empty node ("custom_ops" is null, with the reason). Flex (Select TF)
ops: a model with one Flex op is prepared in a child process; ai-edge-litert 2.3.0 says
"Select TensorFlow op(s) ... not supported by this interpreter" (it ships no Flex
delegate), and that sentence is reported as the reason; TensorFlow's own tf.lite runs them (its pip
package links the Flex delegate in).
"""

from __future__ import annotations

import json

from hub_cache.formats.base import Gaps, GraphOps, Registered, RuntimeKind
from hub_cache.formats.tensorflow_runtime import PACKAGES as TENSORFLOW_PACKAGES
from hub_cache.formats.tflite_ops import BUILTIN_OPERATORS

# In the order a runtime prefers them: what a device installs first, TensorFlow last.
PACKAGES = ("ai-edge-litert", "tflite-runtime", *TENSORFLOW_PACKAGES)
# The custom ops LiteRT's BuiltinOpResolver adds itself (tensorflow/lite/kernels/register.cc),
# which the script cannot list: a model using one loads; any other custom op the app
# registers, which a plain Interpreter does not.
RESOLVER_CUSTOM_OPS = frozenset({"Mfcc", "AudioSpectrogram", "TFLite_Detection_PostProcess"})

# Made once with flatbuffers and TF 2.21.0's schema_py_generated: a Model (version 3,
# one empty subgraph, one empty buffer) whose one OperatorCode has builtin_code
# 0x0BADC0DE and version 0x0BADBEEF, the markers the script replaces.
OPERATOR_CODE_MODEL = """
1800000054464c3300000e00140010000c000800000004000e000000100000001c0000005000000003000000
0100000008000000040004000400000001000000100000000c00140010000c00080004000c00000010000000
1000000010000000100000000000000000000000000000000000000001000000100000000c000c0000000000
080004000c000000dec0ad0befbead0b
"""
# The same with one CUSTOM OperatorCode, custom_code 64 "Q"s (the script writes a name
# and its length over them), and one Operator using it with no inputs or outputs.
CUSTOM_OP_MODEL = """
1800000054464c3300000e00140010000c000800000004000e000000100000001c0000007400000003000000
0100000008000000040004000400000001000000100000000c00140010000c00080004000c00000010000000
340000003400000034000000010000001000000000000a000c000000080004000a0000000800000008000000
000000000000000000000000000000000000000001000000100000000c0010000f000800000004000c000000
2000000008000000000000204000000051515151515151515151515151515151515151515151515151515151
51515151515151515151515151515151515151515151515151515151515151515151515100000000
"""

# Runs in the runtime's Python (argv[1]: op libraries, none for LiteRT). @NAMES@,
# @OPERATOR_CODE_MODEL@ and @CUSTOM_OP_MODEL@ are filled in below.
_SCRIPT = r"""
import importlib.metadata as md, json, os, struct, subprocess, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
try:
    from ai_edge_litert.interpreter import Interpreter
    package = "ai-edge-litert"
except ImportError:
    try:
        from tflite_runtime.interpreter import Interpreter
        package = "tflite-runtime"
    except ImportError:
        from tensorflow.lite.python.interpreter import Interpreter  # tf.lite's
        for package in ("tensorflow", "tensorflow-cpu", "tensorflow-intel"):
            try:
                md.version(package)
                break
            except md.PackageNotFoundError:
                pass

NAMES = @NAMES@
OPERATOR_CODE_MODEL = bytes.fromhex("".join(@OPERATOR_CODE_MODEL@.split()))
CUSTOM_OP_MODEL = bytes.fromhex("".join(@CUSTOM_OP_MODEL@.split()))
CODE, VERSION = struct.pack("<i", 0x0BADC0DE), struct.pack("<i", 0x0BADBEEF)
MAX_VERSION = 64
BEYOND = 64  # codes past the names probed too: a newer runtime's builtins

def builds(code, version):
    model = OPERATOR_CODE_MODEL.replace(CODE, struct.pack("<i", code))
    try:
        Interpreter(model_content=model.replace(VERSION, struct.pack("<i", version)))
        return True
    except Exception:
        return False

def name(code):
    return NAMES[code] if code < len(NAMES) else f"BUILTIN_{code}"

def builtins():
    if not builds(0, 1):  # ADD v1 is in every LiteRT: the template itself is refused
        return None, None
    versions = {}
    for code in range(len(NAMES) + BEYOND):
        if code == 32 or not builds(code, 1):  # CUSTOM: named by its custom code
            continue
        version = 1
        while version < MAX_VERSION and builds(code, version + 1):
            version += 1
        versions[name(code)] = version
    return sorted(versions), versions

def custom_op_model(custom_code):
    model, raw = bytearray(CUSTOM_OP_MODEL), custom_code.encode()
    at = model.index(b"Q" * 64)
    model[at - 4 : at] = struct.pack("<I", len(raw))
    model[at : at + 64] = raw + bytes(64 - len(raw))
    return bytes(model)

def flex():
    # In a child: were a Flex delegate there, it would run the op's kernel.
    child = (
        "import sys\n"
        f"from {Interpreter.__module__} import Interpreter\n"
        "i = Interpreter(model_content=bytes.fromhex(sys.argv[1]))\n"
        "i.allocate_tensors()\n"
    )
    run = subprocess.run([sys.executable, "-c", child, custom_op_model("FlexAddV2").hex()],
                         capture_output=True, text=True, timeout=300)
    if run.returncode == 0:
        return True, "a model with the Flex op FlexAddV2 was prepared"
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    said = next((ln for ln in lines if "Select TensorFlow op" in ln), lines[-1] if lines else "")
    said = said.split("Error: ", 1)[-1].split(". ", 1)[0]  # its first sentence
    return False, (said or f"exit status {run.returncode}")[:300]

ops, versions = builtins()
flex_available, flex_reason = flex()
print("RUNTIME " + json.dumps({
    "name": package, "version": md.version(package),
    "ops": ops, "op_versions": versions,
    "ops_reason": "" if ops is not None else "the interpreter refused a model declaring ADD",
    "custom_ops": None,
    "custom_ops_reason": "the op resolver is not exposed to Python, and finding a custom "
                         "op means preparing its kernel on an empty node, which crashes",
    "flex": {"available": flex_available, "reason": flex_reason},
    "providers": {}, "failed": {}, "libraries": {},
}))
"""

LIST_OPS = (
    _SCRIPT.replace("@NAMES@", json.dumps(list(BUILTIN_OPERATORS)))
    .replace("@OPERATOR_CODE_MODEL@", repr(OPERATOR_CODE_MODEL))
    .replace("@CUSTOM_OP_MODEL@", repr(CUSTOM_OP_MODEL))
)


def litert_gaps(ops: GraphOps, found: Registered) -> Gaps:
    """The operator codes a LiteRT interpreter cannot run, and why, in words: Flex ops
    without the Flex delegate, builtins it does not register, custom ops its resolver
    does not add (an app registers those itself)."""
    if not found.ops:
        return Gaps(reason=str(found.extra.get("ops_reason", "its interpreter listed no ops")))
    flex = sorted(op for op in ops.ops if op.startswith("Flex"))
    builtin = {op for op in ops.ops if _is_builtin(op)}
    custom = sorted(ops.ops - set(flex) - builtin - RESOLVER_CUSTOM_OPS)
    said = found.extra.get("flex")
    if isinstance(said, dict) and said.get("available"):
        flex = []
    lacks = sorted(builtin - found.ops)
    why = []
    if flex:
        why.append(
            f"uses Flex op{_s(flex)} {', '.join(flex)}: needs the Flex delegate, "
            f"which {found.label} does not ship"
        )
    if lacks:
        why.append(f"{found.label} does not register builtin op{_s(lacks)} {', '.join(lacks)}")
    if custom:
        why.append(
            f"uses custom op{_s(custom)} {', '.join(custom)}, which {found.label} "
            "does not register (the app must)"
        )
    return Gaps(sorted([*flex, *lacks, *custom]), [], "; ".join(why))


def _s(names: list[str]) -> str:
    return "s" if len(names) > 1 else ""


def _is_builtin(op: str) -> bool:
    return op in BUILTIN_OPERATORS or (op.startswith("BUILTIN_") and op[8:].isdigit())


LITERT = RuntimeKind(
    "ai-edge-litert",
    PACKAGES,
    ("ai_edge_litert", "tflite_runtime", "tensorflow"),
    "no TFLite runtime in this environment (its closure has none of ai-edge-litert, "
    "tflite-runtime or tensorflow)",
    LIST_OPS,
    litert_gaps,
)
