"""The mirror below the composition root: the core (config, store, leases, verified fetch,
run records, journal, sandbox), the PyPI side (resolve, build, sync, simple pages),
devpi, and the nginx entry point."""
