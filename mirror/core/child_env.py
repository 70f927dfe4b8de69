"""The environment handed to processes that run third-party code.

The air-gap proof installs freshly mirrored wheels (their build and import code runs)
and the model probe loads mirrored SavedModels with TensorFlow. Neither needs the
admin token, devpi's password or the store's AWS keys that the mirror's own process
holds, so they get an allowlist, not the parent's environment minus a few names.
"""

from __future__ import annotations

import os

KEEP = (
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CUDA_VISIBLE_DEVICES",
)


def scrubbed_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in KEEP or k.startswith("LC_")}
    env.update(extra)
    return env
