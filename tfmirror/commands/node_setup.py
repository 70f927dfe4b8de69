"""`tfmirror node-setup`: what a node needs so unchanged code reaches the mirror by the
public names it answers ([proxy] answer_for): the hosts lines (or the same names in the
site's DNS), and the environment that makes Python trust the site's CA. Nothing secret:
the CA's certificate is public, and no client needs an account."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from urllib.parse import urlsplit

from mirror.core.config import Config
from mirror.core.errors import UsageError
from tfmirror.commands.common import EXIT_OK
from tfmirror.parts import MirrorParts

DEFAULT_CA = "/usr/local/share/ca-certificates/site-ca.crt"
HTTPS_PORT = 443  # clients ask the public names on it, whatever the mirror listens on


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        metavar="IP",
        help="the mirror's address nodes reach (default: [web] public_url's host, resolved)",
    )
    parser.add_argument(
        "--ca-file",
        metavar="PATH",
        default=DEFAULT_CA,
        help=f"where nodes keep the site CA's certificate (default: {DEFAULT_CA})",
    )


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    names = config.proxy.answer_for
    if not names:
        raise UsageError("[proxy] answer_for is empty: the mirror answers no public name")
    address = args.address or _address(config)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise UsageError(f"--address {address!r} is not an IP address") from None
    print("# /etc/hosts on each node (or the same names in the site's DNS):")
    print(f"{address} {' '.join(names)}")
    print("# The site's CA, which signed [proxy] tls_certificate, trusted by Python:")
    print(f"export REQUESTS_CA_BUNDLE={args.ca_file}")
    print(f"export SSL_CERT_FILE={args.ca_file}")
    print("# kagglehub asks api.kaggle.com only with KAGGLE_API_ENVIRONMENT unset (or PROD).")
    if config.proxy.tls_port != HTTPS_PORT:
        print(
            f"# [proxy] tls_port is {config.proxy.tls_port}: clients ask on {HTTPS_PORT}; "
            f"forward {address}:{HTTPS_PORT} to it."
        )
    return EXIT_OK


def _address(config: Config) -> str:
    """The address of the host nodes are told the mirror is at."""
    host = urlsplit(config.web.public_url).hostname if config.web.public_url else None
    host = host or config.proxy.host
    if host in ("0.0.0.0", "::", ""):
        raise UsageError("the mirror listens on every address: give --address IP for nodes")
    try:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0])
    except OSError:
        raise UsageError(f"{host} does not resolve here: give --address IP for nodes") from None
