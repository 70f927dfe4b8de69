"""Keras 3 as a runtime to check `.keras` files and KerasHub presets against
(hub_cache.formats.base.RuntimeKind): an environment whose closure has `keras`, with
`keras-hub` for presets. A Keras model's "ops" are the classes and functions its
config names (hub_cache.formats.keras_model reads them, as `keras.layers.Dense`); the
script lists every public name that environment's Keras has, and every class KerasHub
registers (`keras_hub>BertBackbone`, the name Keras finds it by), so a model naming a
layer that Keras version lacks, or a KerasHub class without KerasHub, is told before a
notebook finds out.

Keras needs a backend to import: the closure's TensorFlow, JAX or PyTorch, else NumPy's
(inference only, which is all a load and one call need). The load probe chooses alike.
"""

from __future__ import annotations

import inspect

from hub_cache.formats.base import Gaps, GraphOps, Registered, RuntimeKind
from hub_cache.formats.probes import keras_load

KERAS_HUB = "keras-hub"
# The packages whose classes KerasHub-era presets name; Keras finds them by registered name.
_HUB_MODULES = ("keras_hub.", "keras_nlp.", "keras_cv.")

# Runs in the runtime's Python (argv[1]: op libraries, none for Keras). @KERAS_BACKEND@:
# the load probe's own choice of backend, so both import Keras alike.
_SCRIPT = r"""
import importlib, importlib.metadata as md, importlib.util, inspect, json, os, sys, types
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
@KERAS_BACKEND@
os.environ.setdefault("KERAS_BACKEND", keras_backend())
import keras

names = set()
def walk(module, path, depth):
    for attr in dir(module):
        if attr.startswith("_"):
            continue
        value = getattr(module, attr, None)
        if isinstance(value, types.ModuleType):
            if depth < 4 and value.__name__.startswith("keras") and ".src" not in value.__name__:
                walk(value, f"{path}.{attr}", depth + 1)
        elif inspect.isclass(value) or callable(value):
            names.add(f"{path}.{attr}")
walk(keras, "keras", 0)
# Configs name some classes by where they are defined (keras.src.models.functional.Functional)
for name, module in list(sys.modules.items()):
    if name.startswith("keras.src.") and module is not None:
        names.update(f"{name}.{attr}" for attr, value in vars(module).items()
                     if inspect.isclass(value) and value.__module__ == name)
failed, libraries, providers, hub = {}, {}, {}, ""
if importlib.util.find_spec("keras_hub") is not None:
    try:
        import keras_hub
        libraries["keras-hub"], hub = "keras_hub", md.version("keras-hub")
    except BaseException as exc:
        failed["keras-hub"] = f"{type(exc).__name__}: {exc}"[:300]
for registered in keras.saving.get_custom_objects():
    names.add(registered)
    if registered.startswith("keras_hub>"):
        providers[registered] = "keras-hub"
print("RUNTIME " + json.dumps({
    "name": "keras", "version": keras.__version__, "ops": sorted(names),
    "providers": providers, "failed": failed, "libraries": libraries,
    "backend": keras.backend.backend(), "keras_hub": hub,
}))
"""
LIST_OPS = _SCRIPT.replace("@KERAS_BACKEND@", inspect.getsource(keras_load.keras_backend))


def registered_name(qualified: str) -> str:
    """How Keras finds a class a config names: KerasHub's by its registered name
    (`keras_hub>BertBackbone`, whatever module it moved to), Keras's own by its path."""
    if qualified.startswith(_HUB_MODULES):
        return "keras_hub>" + qualified.rsplit(".", 1)[-1]
    return qualified


def keras_gaps(ops: GraphOps, found: Registered) -> Gaps:
    """The classes a Keras model names that this environment's Keras (and KerasHub)
    lacks, and why, in words."""
    wanted = {registered_name(c): c for c in ops.ops}
    missing = sorted(name for name in wanted if name not in found.ops)
    if not missing:
        return Gaps()
    hub = [n for n in missing if n.startswith("keras_hub>")]
    rest = [wanted[n] for n in missing if n not in hub]
    why = []
    if KERAS_HUB in found.failed:
        why.append(f"{KERAS_HUB} is installed here but does not import ({found.failed[KERAS_HUB]})")
    elif hub and not found.extra.get("keras_hub"):
        why.append(f"needs {KERAS_HUB} for {', '.join(n.split('>', 1)[1] for n in hub)}")
    elif hub:
        rest += hub
    if rest:
        written = f" (written by Keras {ops.tensorflow_version})" if ops.tensorflow_version else ""
        why.append(f"{found.label} lacks {', '.join(sorted(rest))}{written}")
    by = [KERAS_HUB] if hub and not found.extra.get("keras_hub") else []
    return Gaps(sorted(wanted[n] for n in missing), by, "; ".join(why))


KERAS = RuntimeKind(
    "keras",
    ("keras",),
    ("keras",),
    "no Keras in this environment (its closure has no keras)",
    LIST_OPS,
    keras_gaps,
)
