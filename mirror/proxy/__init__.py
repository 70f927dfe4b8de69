"""The fleet's entry point: nginx in front of devpi and the web fronts (a side, like
mirror.devpi: it imports only mirror.core)."""
