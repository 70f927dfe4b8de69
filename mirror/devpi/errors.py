"""devpi's errors: the client's (a request devpi refused or failed) and the server's
(devpi could not be set up or started). Both are ServiceErrors (mirror.core.errors),
so what catches a failed service catches either."""

from __future__ import annotations

from mirror.core.errors import ServiceError


class DevpiError(ServiceError):
    """devpi refused or failed; the message says what and where."""

    label = "devpi"


class DevpiStartError(ServiceError):
    """devpi could not be set up or started, or an external one has no password."""

    label = ""  # each message begins with what failed: devpi-init, devpi-server, [devpi]
