"""The PyPI side: resolve each target's closure, mirror and verify it, commit manifests,
serve PEP 691 simple pages over them, and write hash-pinned lock files."""
