from __future__ import annotations

import time

import pytest

from mirror.core.credentials import Credentials
from mirror.core.redact import redact_text, redact_url, scrub_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:tok@host/simple/", "https://host/simple/"),
        (
            "https://storage.googleapis.com/b/m.tgz?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=svc%40p.iam&X-Goog-Signature=9f8e&X-Goog-Expires=600",
            "https://storage.googleapis.com/b/m.tgz?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=REDACTED&X-Goog-Signature=REDACTED&X-Goog-Expires=600",
        ),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Security-Token=t0k&X-Amz-Signature=51g",
            "https://b.s3.amazonaws.com/k?X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED",
        ),
        (
            "https://a.blob.core.windows.net/c/b?sv=2020-08-04&sig=AbC%3D&se=2026",
            "https://a.blob.core.windows.net/c/b?sv=2020-08-04&sig=REDACTED&se=2026",
        ),
        ("https://h/m?api_key=k&format=x", "https://h/m?api_key=REDACTED&format=x"),
        ("https://h/m?access_token=ya29", "https://h/m?access_token=REDACTED"),
        ("https://tfhub.dev/google/m/1?tf-hub-format=compressed", None),  # nothing secret
        ("not a url at all", None),
    ],
)
def test_urls_are_shown_without_credentials_or_signatures(url: str, shown: str | None) -> None:
    assert redact_url(url) == (url if shown is None else shown)


def test_secrets_in_free_text_are_removed_and_the_scan_stays_linear() -> None:
    message = "Max retries exceeded with url: /m?x=1&password=hunter2 (Caused by https://a:b@h/)"
    assert redact_text(message) == (
        "Max retries exceeded with url: /m?x=1&password=REDACTED (Caused by https://h/)"
    )
    began = time.monotonic()
    for hostile in ("?" + "a" * 300_000, "&" * 100_000 + "k" * 100_000, "?a=" * 100_000):
        redact_text(hostile)
    assert time.monotonic() - began < 5  # a hang guard, not a speed target


def test_a_resolvers_explanation_reaches_the_page_whole() -> None:
    from mirror.core.runs import Failure

    # uv's no-wheel explanation with its hints, as a target's failure carries it.
    why = (
        "Because only tensorflow-io-gcs-filesystem<=0.37.1 is available and every version "
        "has no wheels with a matching platform tag (e.g., `manylinux_2_28_x86_64`), we can "
        "conclude that all versions cannot be used. " * 6
    )
    assert 1000 < len(why) < 2000
    assert Failure("default/py3.13-manylinux_2_28_x86_64", "", why).reason == why


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        (
            "http://fleet:pw@art:8081/api/pypi/files/a-1.0-py3-none-any.whl?api_key=k&x=1#sha256=ab",
            "http://art:8081/api/pypi/files/a-1.0-py3-none-any.whl?x=1#sha256=ab",
        ),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=c&X-Amz-Date=d"
            "&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=51g&versionId=3",
            "https://b.s3.amazonaws.com/k?versionId=3",
        ),
        ("https://h/m?token=t", "https://h/m"),
        (
            "https://a.blob.core.windows.net/c/b?sv=2020&sig=AbC%3D",
            "https://a.blob.core.windows.net/c/b?sv=2020",
        ),
        ("https://files.pythonhosted.org/packages/aa/bb/x-1.0-py3-none-any.whl", None),
    ],
)
def test_urls_are_stored_without_credentials_or_signing_parameters(
    url: str, stored: str | None
) -> None:
    """Taken out, not replaced: a placeholder would be sent as the value later."""
    assert scrub_url(url) == (url if stored is None else stored)


def test_a_configured_login_goes_to_its_own_origin_only() -> None:
    logins = Credentials.of(["https://fleet:p%40ss@art.corp/simple/", "https://pypi.org/simple/"])
    assert logins.for_url("https://art.corp/files/a.whl") == ("fleet", "p@ss")
    assert logins.for_url("https://ART.corp:443/files/a.whl") == ("fleet", "p@ss")
    for elsewhere in (
        "http://art.corp/files/a.whl",  # not over plain http
        "https://art.corp:8443/files/a.whl",  # another port
        "https://s3.amazonaws.com/bucket/a.whl",  # a redirect's storage host
        "https://pypi.org/simple/",  # configured, without a login
        "https://other:pw@art.corp/files/a.whl",  # its own login stands
    ):
        assert logins.for_url(elsewhere) is None, elsewhere
