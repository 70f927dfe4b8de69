"""Errors that cross from one side to another."""


class ServiceError(Exception):
    """A service the mirror drives (devpi) refused or failed; the message says what."""
