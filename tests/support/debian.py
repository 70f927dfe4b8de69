"""Debian packages a test needs (Chromium, nginx): installed with apt-get when the tests
run as root on a machine that lacks them, as on a fresh CI machine."""

from __future__ import annotations

import os
import shutil
import subprocess

SBIN = "/usr/sbin:/usr/local/sbin"


def debian_tool(binary: str, package: str) -> str | None:
    """The binary's path, installing `package` first if needed and allowed; else None."""
    found = shutil.which(binary) or shutil.which(binary, path=SBIN)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package],
            check=False,
            env=env,
            capture_output=True,
        )
        found = shutil.which(binary) or shutil.which(binary, path=SBIN)
    return found


def require_debian_tool(binary: str, package: str) -> str:
    """The binary's path (installed as above), or the calling test is skipped."""
    import pytest

    found = debian_tool(binary, package)
    if found is None:
        pytest.skip(f"needs Debian's {package} (apt-get install {package})")
    return found
