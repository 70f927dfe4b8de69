"""The centre as a site reads it: its follow API (follow.api) over HTTP, by the download
policy (mirror.core.upstream: the hosts a hop may reach, caps, timeouts, retries) with
the read token sent to the centre's origin only. Every answer is checked before it is
used: a document against the sha256 the state named, a blob while it streams."""

from __future__ import annotations

import json
import os
import socket
from contextlib import suppress
from dataclasses import dataclass, replace
from urllib.parse import quote

from follow.errors import FollowRefused
from follow.state import CentreState, sha256_of
from mirror.core.config.follow import FollowConfig
from mirror.core.credentials import FOLLOW_TOKEN_ENV, BearerToken
from mirror.core.errors import DownloadError
from mirror.core.followers import FOLLOWER_HEADER, FOLLOWER_SEQ_HEADER
from mirror.core.hosts import HostPolicy
from mirror.core.storage import BlobStore
from mirror.core.upstream import (
    Fetched,
    FetchPolicy,
    fetch_document,
    fetch_unless,
    fetch_verified,
)

MAX_DOCUMENT = 64 * 1024 * 1024  # a manifest, a snapshot, the state, a journal page
MAX_UNSIZED_BLOB = 64 * 1024 * 1024  # a blob no manifest gives a size for (METADATA)
# The head is asked every interval and answers a few bytes: a centre that does not
# answer it within this is down as far as the site's page is concerned (the loop
# retries with its own backoff), where a blob's 60 s and four retries would hide an
# outage for minutes.
HEAD_TIMEOUT = 10.0


@dataclass(frozen=True)
class Head:
    seq: int  # -1: the centre's journal is empty
    sha256: str
    etag: str


def policy_for(follow: FollowConfig) -> FetchPolicy:
    """The centre is on the organisation's network: its host is trusted by name, as an
    upstream listed in allow_hosts would be; redirects elsewhere are checked as ever."""
    return FetchPolicy(
        timeout=60.0,
        retries=4,
        hosts=HostPolicy.trusting([follow.url], "[follow] url"),
        bearer=BearerToken(follow.url, os.environ.get(FOLLOW_TOKEN_ENV, "")),
    )


class Centre:
    def __init__(self, follow: FollowConfig, policy: FetchPolicy | None = None) -> None:
        self.url = follow.url
        self.policy = policy or policy_for(follow)
        self.name = follow.name or socket.gethostname()[:64]

    def head(self, etag: str | None, held: int) -> Head | None:
        """The journal's head; None when it has not moved from `etag` (a 304). The ask
        says who this site is and which entry it holds: the centre lists its followers."""
        say = {FOLLOWER_HEADER: self.name, FOLLOWER_SEQ_HEADER: str(held)}
        quick = replace(
            self.policy,
            timeout=min(self.policy.timeout, HEAD_TIMEOUT),
            retries=min(self.policy.retries, 1),
        )
        got = fetch_unless(f"{self.url}/api/follow/head", quick, 4096, etag, say)
        if got is None:
            return None
        body, tag = got
        try:
            doc = json.loads(body)
            return Head(int(doc["seq"]), str(doc["sha256"]), tag)
        except (ValueError, KeyError, TypeError):
            raise FollowRefused("the centre's journal head is not a head document") from None

    def report(self, held: int, etag: str) -> None:
        """Tell the centre which entry this site now holds (its list of followers): one
        more ask for the head, a 304 unless it moved meanwhile. A hint: a failure is
        the next pull's to notice."""
        with suppress(DownloadError, FollowRefused):
            self.head(etag, held)

    def entries_after(self, seq: int, until: int) -> list[bytes]:
        """The centre's entries after `seq` up to `until`, their exact bytes, page by page."""
        lines: list[bytes] = []
        while seq + len(lines) < until:
            url = f"{self.url}/api/follow/journal?after={seq + len(lines)}"
            page = fetch_document(url, self.policy, MAX_DOCUMENT).splitlines()
            if not page:
                break
            lines += page
        return lines

    def state(self) -> CentreState:
        got = fetch_document(f"{self.url}/api/follow/state", self.policy, MAX_DOCUMENT)
        try:
            return CentreState.from_json(json.loads(got))
        except (ValueError, KeyError, TypeError) as exc:
            raise FollowRefused(f"the centre's state document is refused: {exc}") from None

    def document(self, key: str, sha256: str) -> bytes:
        """One followed document, refused unless its bytes hash to what the state said."""
        url = f"{self.url}/api/follow/doc?key={quote(key, safe='/')}"
        data = fetch_document(url, self.policy, MAX_DOCUMENT)
        if sha256_of(data) != sha256:
            raise FollowRefused(
                f"{key} arrived as other bytes than the centre's state names "
                f"({sha256_of(data)}, not {sha256})"
            )
        return data

    def blob(self, store: BlobStore, sha256: str, size: int | None) -> Fetched:
        """One blob into the store, streamed, published only if sha256 and size match."""
        policy = self.policy
        if size is None:
            policy = replace(policy, max_bytes=MAX_UNSIZED_BLOB)
        return fetch_verified(store, f"{self.url}/api/follow/blob/{sha256}", sha256, size, policy)
