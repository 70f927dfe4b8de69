"""Licences: Kaggle's names and SPDX's read as SPDX ids, the policy's decisions, and the
config keys that refuse what is no SPDX id in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.core.config import parse_config
from mirror.core.config.hub import license_policy
from mirror.core.errors import ConfigError
from mirror.core.licenses import FROM_CONFIG, FROM_KAGGLE, License, LicensePolicy, spdx_of


@pytest.mark.parametrize(
    ("name", "spdx"),
    [
        ("Apache 2.0", "Apache-2.0"),
        ("CC BY 4.0", "CC-BY-4.0"),
        ("CC BY-NC-SA 4.0", "CC-BY-NC-SA-4.0"),
        ("MIT", "MIT"),
        ("CC0: Public Domain", "CC0-1.0"),
        ("GPL 2", "GPL-2.0-only"),
        ("Gemma", "LicenseRef-Gemma"),
        ("Llama 2", "LicenseRef-Llama-2"),
        ("apache-2.0", "Apache-2.0"),  # SPDX ids in any case, by the library
        ("mit or apache-2.0", "MIT OR Apache-2.0"),
        ("GPL-2.0", "GPL-2.0-only"),  # a deprecated id, as SPDX reads it now
        ("Other", ""),
        ("Some custom terms v2", ""),
        ("", ""),
    ],
)
def test_names_read_as_spdx_ids(name: str, spdx: str) -> None:
    assert spdx_of(name) == spdx


def test_a_name_no_table_knows_stays_as_given() -> None:
    found = License.named("Company Internal", FROM_KAGGLE)
    assert (found.name, found.spdx, found.shown()) == ("Company Internal", "", "Company Internal")
    assert License.from_json(found.as_json()) == found
    # A manifest written before licences were recorded reads as unknown.
    assert License.from_json({}).shown() == "unknown"


POLICY = LicensePolicy(allowed=("Apache-2.0", "CC-BY-4.0"))


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("Apache 2.0", None),
        ("CC BY 4.0", None),
        ("MIT OR Apache-2.0", None),  # one may pick Apache
        ("MIT AND Apache-2.0", "its licence MIT AND Apache-2.0 is not in allowed_licenses"),
        ("CC BY-NC-SA 4.0", "its licence CC-BY-NC-SA-4.0 is not in allowed_licenses"),
        ("Other", "its licence 'Other' is no SPDX id, so not in allowed_licenses"),
    ],
)
def test_an_allow_list_publishes_only_what_it_names(name: str, refused: str | None) -> None:
    assert POLICY.refusal(License.named(name, FROM_KAGGLE)) == refused


def test_unknown_is_its_own_decision_and_no_policy_refuses_nothing() -> None:
    unknown = License.unknown("Kaggle names none")
    assert POLICY.refusal(unknown) == (
        "its licence is unknown (Kaggle names none) and allow_unknown_license is false"
    )
    assert LicensePolicy(POLICY.allowed, allow_unknown=True).refusal(unknown) is None
    assert LicensePolicy().refusal(unknown) is None
    assert LicensePolicy().refusal(License.named("CC BY-NC 4.0", FROM_CONFIG)) is None


def test_a_deny_list_refuses_only_what_it_names() -> None:
    policy = LicensePolicy(denied=("CC-BY-NC-SA-4.0", "LicenseRef-Gemma"))
    assert policy.refusal(License.named("Apache 2.0", FROM_KAGGLE)) is None
    assert policy.refusal(License.named("Other", FROM_KAGGLE)) is None
    refused = policy.refusal(License.named("Gemma", FROM_KAGGLE))
    assert refused == "its licence LicenseRef-Gemma is in denied_licenses"


def test_a_models_entry_overrides_the_hub_wide_policy(tmp_path: Path) -> None:
    config = parse_config(
        {
            "hub": {
                "allowed_licenses": ["Apache-2.0"],
                "models": [
                    "https://tfhub.dev/google/a/1",
                    {
                        "handle": "https://tfhub.dev/google/b/1",
                        "allowed_licenses": [],
                        "denied_licenses": ["mit"],
                        "allow_unknown_license": True,
                    },
                ],
            }
        },
        tmp_path,
    )
    hub_wide, own = (license_policy(m, config.hub) for m in config.hub.models)
    assert hub_wide == LicensePolicy(("Apache-2.0",), (), False)
    assert own == LicensePolicy((), ("mit",), True)
    assert own.refusal(License.named("MIT", FROM_CONFIG)) == "its licence MIT is in denied_licenses"


@pytest.mark.parametrize(
    ("hub", "line"),
    [
        (
            {"allowed_licenses": ["Apache 2.0"]},
            "[hub] allowed_licenses: 'Apache 2.0' is no SPDX id or expression; "
            "write 'Apache-2.0', its SPDX id",
        ),
        (
            {"models": [{"handle": "https://tfhub.dev/g/m/1", "denied_licenses": ["Nope"]}]},
            "[hub] models[0] denied_licenses: 'Nope' is no SPDX id or expression; write SPDX "
            'ids such as "Apache-2.0" (spdx.org/licenses), or LicenseRef-Name for one SPDX '
            "does not list",
        ),
        (
            {"allow_unknown_license": "yes"},
            "[hub] allow_unknown_license = 'yes': must be bool, e.g. allow_unknown_license = true",
        ),
    ],
)
def test_a_policy_that_is_no_spdx_id_is_refused_in_one_line(
    tmp_path: Path, hub: dict[str, object], line: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"hub": hub}, tmp_path)
    assert str(refused.value) == line
