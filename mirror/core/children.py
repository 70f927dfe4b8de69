"""Child processes: the environment handed to those that run third-party code, and servers
that die with the process that started them. The air-gap proof installs freshly mirrored
wheels (their build and import code runs) and the model probe loads mirrored
SavedModels; neither needs the admin token, devpi's password or the store's keys, so
they get an allowlist, not the parent's environment minus a few names."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path

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
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
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


def private_server() -> None:
    """preexec_fn for a server that writes our data (devpi): it dies with us, and what it
    creates only its owner may read (devpi's sqlite holds every index and user record)."""
    os.umask(0o077)
    die_with_parent()


def python_module(name: str) -> list[str]:
    """`python -m name` for one of our own modules, whatever the child's cwd: `-m` finds
    it through cwd or an install, and a child working in a scratch folder has neither
    when tfmirror runs from a checkout. So the child puts the folder holding our
    package first on its path, then runs the module as `-m` would (argv kept)."""
    spec = importlib.util.find_spec(name.split(".")[0])
    assert spec is not None and spec.submodule_search_locations, name
    root = str(Path(next(iter(spec.submodule_search_locations))).parent)
    code = (
        f"import runpy, sys; sys.path.insert(0, {root!r}); "
        f"runpy.run_module({name!r}, run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", code]
