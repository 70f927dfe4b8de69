"""tfmirror core and the PyPI side: config, store, upstream, resolve, devpi, sync, CLI."""
