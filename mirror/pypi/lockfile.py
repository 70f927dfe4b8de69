"""Hash-pinned requirement files for CI image builds (`pip install --require-hashes -r`)."""

from __future__ import annotations

from mirror.pypi.manifest import Manifest
from mirror.pypi.resolve import Role


def render_lock(manifest: Manifest, index_url: str) -> str:
    """`index_url`: the environment's own index, so a node installing from this file can
    only ever get that environment's files."""
    lines = [
        f"# tfmirror lock for environment {manifest.environment}, target "
        f"{manifest.target.id} (python {manifest.target.python}, "
        f"{manifest.target.platform}), synced {manifest.synced_at}",
        f"# requirements: {', '.join(manifest.requirements)}",
    ]
    if manifest.constraints:
        lines.append(f"# constraints: {', '.join(manifest.constraints)}")
    lines.append(f"# pip install --require-hashes --index-url {index_url} -r <this file>")
    # The closure only: an sdist kept beside its built wheel and the build requirements
    # are on the index for nodes that build, never something an image installs.
    closure = [w for w in manifest.files if w.role is Role.CLOSURE]
    for wheel in sorted(closure, key=lambda w: w.project):
        lines.append(f"{wheel.project}=={wheel.version} \\\n    --hash=sha256:{wheel.sha256}")
    return "\n".join(lines) + "\n"


def render_pip_conf(index_url: str, environment: str | None = None) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(index_url)
    lines = [f"# environment {environment}: its closures only"] if environment else []
    lines += ["[global]", f"index-url = {index_url}"]
    if parts.scheme == "http":
        lines.append(f"trusted-host = {parts.hostname}")
    lines += [
        "",
        "# uv reads the same index from: UV_DEFAULT_INDEX=" + index_url,
    ]
    return "\n".join(lines) + "\n"


def read_lock(text: str, where: str) -> list[tuple[str, str]]:
    """The (project, version) pins of a requirements lock (`name==version`, with its
    `--hash` options and `\\` continuations, as `tfmirror lock` and pip-compile write
    them). Option lines (`--index-url`) are skipped; anything that is not an exact pin
    is an error naming its line: an audit of a lock must not skip a requirement."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    from mirror.pypi.errors import LockUnreadable

    pins: list[tuple[str, str]] = []
    logical = text.replace("\\\r\n", " ").replace("\\\n", " ").splitlines()
    for number, line in enumerate(logical, 1):
        body = line.split(" #", 1)[0].strip()
        if not body or body.startswith(("#", "-")):
            continue
        requirement = body.split(" --", 1)[0].strip()
        try:
            parsed = Requirement(requirement)
        except InvalidRequirement as exc:
            raise LockUnreadable(f"{where}:{number}: {exc}") from None
        exact = [s for s in parsed.specifier if s.operator in ("==", "===")]
        if len(exact) != 1 or "*" in exact[0].version:
            raise LockUnreadable(
                f"{where}:{number}: {requirement[:120]!r} is not pinned to one version "
                "(name==version)"
            )
        pins.append((canonicalize_name(parsed.name), exact[0].version))
    return pins
