from __future__ import annotations

import time

import pytest

from mirror.core.redact import redact_text, redact_url


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
