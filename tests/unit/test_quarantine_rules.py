"""What a quarantine rule covers, and which project's copies devpi must purge."""

from __future__ import annotations

from mirror.core.quarantine import new_rule


def test_a_file_rule_names_its_project_even_with_dashes_in_the_name() -> None:
    # Before, the project was taken as the text before the first dash: "google", so
    # devpi's copies of google-apitools were never purged.
    sdist = new_rule("google-apitools-0.5.31.tar.gz", "broken", "ops@host")
    wheel = new_rule("tf_keras-2.18.0-py3-none-any.whl", "broken", "ops@host")
    assert sdist.project == "google-apitools" and wheel.project == "tf-keras"
    assert sdist.matches_file("google-apitools", "0.5.31", "google-apitools-0.5.31.tar.gz")
    assert not sdist.matches_file("google-apitools", "0.5.31", "google_apitools-0.5.31.tar.gz")


def test_a_release_rule_covers_its_versions_only() -> None:
    rule = new_rule("TF-Keras>=2.18,<2.19", "CVE", "ops@host")
    assert rule.project == "tf-keras"
    assert rule.matches_file("tf_keras", "2.18.1", "tf_keras-2.18.1-py3-none-any.whl")
    assert not rule.matches_file("tf_keras", "2.19.0", "tf_keras-2.19.0-py3-none-any.whl")
