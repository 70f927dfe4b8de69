"""Processes that run third-party code get none of the mirror's secrets."""

from __future__ import annotations

import pytest

from verify.airgap import pip_env

SECRETS = {
    "TFMIRROR_ADMIN_TOKEN": "admin-s3cret",
    "TFMIRROR_DEVPI_PASSWORD": "devpi-s3cret",
    "AWS_SECRET_ACCESS_KEY": "aws-s3cret",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "PIP_INDEX_URL": "https://user:tok@elsewhere/simple",
    "HTTPS_PROXY": "http://user:pw@proxy:3128",
}


def test_the_air_gap_proof_and_the_model_probe_get_no_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mirror.core.children import scrubbed_env

    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    for env in (pip_env(), scrubbed_env(TF_CPP_MIN_LOG_LEVEL="3")):
        assert not set(SECRETS) & set(env)
        assert not any("s3cret" in v for v in env.values())
        assert env["PATH"]
    assert pip_env()["PIP_CONFIG_FILE"]  # still isolated from the machine's pip config
