"""devpi-server's HTTP client: bootstrap the user and the mirror index, refresh or delete a
project, list its files, and fetch one back while hashing it, which proves what devpi
actually serves. The index is a devpi *mirror* index over tfmirror's own simple pages:
devpi pulls a 545 MB wheel that way in 5.7 s, where its upload endpoint needs 17 s (its
multipart parser runs at ~32 MB/s)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

from mirror.core.config import DevpiConfig
from mirror.core.upstream import PEP691_JSON
from mirror.devpi.errors import DevpiError

# devpi re-reads the simple pages after this; syncs also refresh explicitly.
MIRROR_CACHE_EXPIRY = 1800
PULL_ATTEMPTS = 3


@dataclass(frozen=True)
class DevpiFile:
    filename: str
    url: str
    sha256: str


class DevpiClient:
    def __init__(self, config: DevpiConfig, password: str, timeout: float = 60.0) -> None:
        self.base = config.url.rstrip("/")
        self.user = config.user
        self.index = config.index
        self._auth = (self.user, password)
        self._timeout = timeout
        self._http = requests.Session()

    def _request(self, method: str, path: str, **kw: object) -> requests.Response:
        """One request; a 5xx is asked again (twice, after 0.5 s and 1 s): under load
        devpi-server now and then answers 500 to a refresh or page read that succeeds
        when repeated, and every call here is safe to repeat."""
        url = f"{self.base}/{path.lstrip('/')}"
        attempts = 0
        while True:
            try:
                answer = self._http.request(method, url, timeout=self._timeout, **kw)  # type: ignore[arg-type]
            except requests.RequestException as exc:
                raise DevpiError(f"devpi at {self.base} is unreachable: {exc}") from None
            attempts += 1
            if answer.status_code < 500 or attempts == PULL_ATTEMPTS:
                return answer
            time.sleep(0.5 * attempts)

    def alive(self) -> bool:
        """devpi answers at all: a refused connection is quick; a busy devpi (a loaded
        machine, a big pull) gets 10 s before it counts as not running."""
        try:
            return self._http.get(f"{self.base}/+api", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    def server_uuid(self) -> str:
        answer = self._request("GET", "/+api", headers={"Accept": "application/json"})
        return answer.headers.get("X-DEVPI-UUID", "")

    def bootstrap(self, mirror_url: str) -> None:
        """Create the user and the mirror index, or bring an existing one in line. Idempotent."""
        json_accept = {"Accept": "application/json"}
        user = self._request("GET", f"/{self.user}", headers=json_accept)
        if user.status_code == 404:
            made = self._request("PUT", f"/{self.user}", json={"password": self._auth[1]})
            if made.status_code not in (201, 409):
                raise DevpiError(f"cannot create devpi user {self.user!r}: {_why(made)}")
        index = self._request("GET", f"/{self.index}", headers=json_accept)
        wanted = {
            "type": "mirror",
            "mirror_url": mirror_url,
            "mirror_cache_expiry": MIRROR_CACHE_EXPIRY,
            # Ask our pages per project: a stale project list would hide new projects.
            "mirror_no_project_list": True,
            # Volatile, so a quarantined project's cached files can be purged from it
            # (devpi refuses to delete from a non-volatile index).
            "volatile": True,
            "title": "tfmirror: verified mirror",
        }
        if index.status_code == 404:
            made = self._request("PUT", f"/{self.index}", json=wanted, auth=self._auth)
            if made.status_code in (200, 201):
                return
            if made.status_code != 409:
                raise DevpiError(f"cannot create devpi index {self.index!r}: {_why(made)}")
            # Created meanwhile by another bootstrap (`tfmirror devpi` and a sync both do
            # this as soon as devpi answers): check it as an existing one.
            index = self._request("GET", f"/{self.index}", headers=json_accept)
        if index.status_code != 200:
            raise DevpiError(f"cannot read devpi index {self.index!r}: {_why(index)}")
        current = index.json()["result"]
        if current.get("type") != "mirror":
            raise DevpiError(
                f"devpi index {self.index!r} exists as type {current.get('type')!r}; "
                "tfmirror needs a mirror index: pick another [devpi] index name"
            )
        changes = [f"{k}={v}" for k, v in wanted.items() if str(current.get(k)) != str(v)]
        if changes:
            patched = self._request("PATCH", f"/{self.index}", json=changes, auth=self._auth)
            if patched.status_code != 200:
                raise DevpiError(f"cannot update devpi index {self.index!r}: {_why(patched)}")

    def delete_project(self, project: str) -> None:
        """Purge devpi's copies of a project (devpi pulls again what our pages still
        list, when asked): a quarantined file must not stay in its serverdir."""
        answer = self._request("DELETE", f"/{self.index}/{project}", auth=self._auth)
        if answer.status_code not in (200, 404):
            raise DevpiError(f"devpi would not purge {project}: {_why(answer)}")

    def refresh(self, project: str, missing_ok: bool = False) -> None:
        """Make devpi re-read our page for `project` now instead of after its cache expiry
        (`missing_ok`: an index devpi does not have yet holds no page to re-read)."""
        answer = self._request(
            "POST", f"/{self.index}/+simple/{project}/refresh", allow_redirects=False
        )
        if missing_ok and answer.status_code == 404:
            return
        if answer.status_code not in (200, 302):
            raise DevpiError(f"devpi refresh of {project} failed: {_why(answer)}")

    def files(self, project: str) -> list[DevpiFile]:
        """What devpi offers for `project`, with the sha256 it records."""
        page = f"{self.base}/{self.index}/+simple/{project}/"
        answer = self._request(
            "GET", f"/{self.index}/+simple/{project}/", headers={"Accept": PEP691_JSON}
        )
        if answer.status_code == 404:
            return []
        if answer.status_code != 200:
            raise DevpiError(f"devpi page for {project}: {_why(answer)}")
        out = []
        for entry in answer.json().get("files", []):
            url = urljoin(page, entry["url"]).split("#", 1)[0]
            out.append(DevpiFile(entry["filename"], url, entry.get("hashes", {}).get("sha256", "")))
        return out

    def fetch_sha256(self, url: str, timeout: float = 120.0) -> str:
        """Stream a file out of devpi, hash what it served, and return once devpi keeps it.

        devpi streams a pulled file to the client before it commits it (it copies its
        spool file into place first: ~1.7 s for the TensorFlow wheel here); a devpi
        stopped in that window forgets the file, so a pull returns only when devpi's
        record of the file carries the `last_modified` its commit sets.
        """
        for attempt in range(PULL_ATTEMPTS):
            digest = hashlib.sha256()
            try:
                with self._http.get(url, stream=True, timeout=self._timeout) as answer:
                    # Two first requests for one file at once (our pull and a node's
                    # install through nginx): devpi stores it for one and answers the
                    # other 500 (its filestore asserts the file is new). Asked again,
                    # it serves the copy the first one kept.
                    if answer.status_code >= 500 and attempt + 1 < PULL_ATTEMPTS:
                        time.sleep(0.5 * (attempt + 1))
                        continue
                    if answer.status_code != 200:
                        raise DevpiError(f"devpi served {url} with {_why(answer)}")
                    # Only a pull (not a file served from devpi's store) carries this.
                    pulled = "X-Accel-Buffering" in answer.headers
                    for chunk in answer.iter_content(1024 * 1024):
                        digest.update(chunk)
            except requests.RequestException as exc:
                raise DevpiError(f"devpi failed serving {url}: {exc}") from None
            if pulled:
                self._wait_kept(url, timeout)
            return digest.hexdigest()
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait_kept(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = self._http.get(
                    url, headers={"Accept": "application/json"}, timeout=self._timeout
                )
                if answer.status_code == 200 and answer.json()["result"].get("last_modified"):
                    return
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(0.02)
        raise DevpiError(f"devpi served {url} but did not store it within {timeout:.0f} s")


def _why(answer: requests.Response) -> str:
    try:
        message = answer.json().get("message", "")
    except ValueError:
        message = answer.text[:200]
    return f"HTTP {answer.status_code} {message}".strip()
