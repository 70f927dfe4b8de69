"""Child processes: the environment handed to those that run third-party code, and
servers that die with the process that started them.

The air-gap proof installs freshly mirrored wheels (their build and import code runs)
and the model probe loads mirrored SavedModels with TensorFlow. Neither needs the
admin token, devpi's password or the store's AWS keys that the mirror's own process
holds, so they get an allowlist, not the parent's environment minus a few names.
"""

from __future__ import annotations

import os
import signal

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


def die_with_parent() -> None:
    """Popen's preexec_fn for a server we start (devpi, nginx): the kernel sends it
    SIGTERM when our process dies, even by SIGKILL, so none is left holding its port.
    (Linux's PR_SET_PDEATHSIG follows the thread that started the child: start servers
    from a thread that lives as long as they should.)"""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
