"""TensorFlow as a runtime to check models against (hub_cache.formats.base.RuntimeKind):
the distributions that install it, and the script that lists the ops a runtime's
TensorFlow registers, with the op libraries of its closure imported (tensorflow-text,
tensorflow-addons, ...), each op credited to the package that added it."""

from __future__ import annotations

from hub_cache.formats.base import Gaps, GraphOps, Registered, RuntimeKind

# Packages known to register ops when imported, and the module that does it. Any other
# distribution in the closure that requires TensorFlow and ships a shared library is
# tried too (LIST_OPS below finds them).
OP_LIBRARIES = {
    "tensorflow-text": "tensorflow_text",
    "tensorflow-addons": "tensorflow_addons",
    "tensorflow-io": "tensorflow_io",
    "tensorflow-decision-forests": "tensorflow_decision_forests",
    "tensorflow-recommenders-addons": "tensorflow_recommenders_addons",
    "tf-sentencepiece": "tf_sentencepiece",
    "struct2tensor": "struct2tensor",
}

# Runs in the runtime's Python: every registered op, and which package added which.
LIST_OPS = """
import importlib, importlib.metadata as md, json, os, re, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session as c_api

def registered():
    ops = op_def_pb2.OpList()
    ops.ParseFromString(c_api.TF_GetBuffer(c_api.TF_GetAllOpList()))
    return {op.name for op in ops.op}

known = json.loads(sys.argv[1])
libraries = {}
for dist in md.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
    needs_tf = any(re.match(r"tensorflow\\b", r) for r in dist.requires or [])
    ships_library = any(str(f).endswith(".so") for f in dist.files or [])
    if name in known:
        libraries[name] = known[name]
    elif needs_tf and ships_library:
        top = (dist.read_text("top_level.txt") or "").split()
        if top:
            libraries[name] = top[0]
before = registered()
providers, failed, imported = {}, {}, {}
for name, module in sorted(libraries.items()):
    try:
        importlib.import_module(module)
    except BaseException as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"[:300]
        continue
    imported[name] = module
    now = registered()
    for op in now - before - providers.keys():
        providers[op] = name
print("RUNTIME " + json.dumps({"name": "TensorFlow", "version": tf.__version__,
                               "ops": sorted(registered()),
                               "providers": providers, "failed": failed,
                               "libraries": imported}))
"""

PACKAGES = ("tensorflow", "tensorflow-cpu", "tensorflow-intel")


def tensorflow_gaps(ops: GraphOps, found: Registered) -> Gaps:
    """The ops a TensorFlow lacks, the packages that register them, and why, in words."""
    missing = sorted(ops.ops - found.ops)
    if not missing:
        return Gaps()
    providers = found.providers
    by = sorted({providers[op] for op in missing if op in providers})
    needs = [
        f"needs {pkg} for {', '.join(op for op in missing if providers.get(op) == pkg)}"
        for pkg in by
    ]
    unknown = [op for op in missing if op not in providers]
    if unknown:
        written = (
            f" (written by TensorFlow {ops.tensorflow_version})" if ops.tensorflow_version else ""
        )
        needs.append(f"TensorFlow {found.version} lacks {', '.join(unknown)}{written}")
    for package, error in sorted(found.failed.items()):
        # Installed, but its ops never registered: the likelier cause.
        needs.append(f"{package} is installed here but does not import ({error})")
    return Gaps(missing, by, "; ".join(needs))


TENSORFLOW = RuntimeKind(
    "tensorflow",
    PACKAGES,
    ("tensorflow",),
    "its closure has no tensorflow",
    LIST_OPS,
    tensorflow_gaps,
    OP_LIBRARIES,
)
