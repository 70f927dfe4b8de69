"""Wheel platform tags: which a mirror target may name, and the most specific one this
host installs. Config reads a target's platform against it, and a host with none of
them cannot be its own default target."""

from __future__ import annotations

import re

from packaging.tags import sys_tags

PLATFORM_TAG = re.compile(
    r"^(manylinux_\d+_\d+_(x86_64|aarch64)|manylinux(2014|2010|1)_(x86_64|aarch64)"
    r"|musllinux_\d+_\d+_(x86_64|aarch64)|win_amd64|win_arm64|win32"
    r"|macosx_\d+_\d+_(arm64|x86_64|universal2))$"
)


def host_platform() -> str | None:
    """The host's most specific platform tag a target may name (pip's first choice)."""
    return next((tag.platform for tag in sys_tags() if PLATFORM_TAG.match(tag.platform)), None)
