"""Package licences, read from each file's METADATA as the sync reads it, and the policy
an environment holds them to: the four shapes a closure meets (PEP 639 expression,
classifier only, free-text License field, nothing), config errors, and the manifest of
the release before licences, filled in from the METADATA blob already held."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from mirror.core.config import parse_config
from mirror.core.errors import ConfigError
from mirror.core.storage import LocalStore
from mirror.pypi.closure_checks import Verdict
from mirror.pypi.closure_checks.licenses import Licenses
from mirror.pypi.file_facts import settle, settle_all
from mirror.pypi.package_licenses import LicenseSummary, license_of
from mirror.pypi.resolve import BuiltFrom, Wheel
from testkit.wheels import WheelSpec, build_wheel

MIT_EXPRESSION = WheelSpec("expr-lib", "1.0", headers=["License-Expression: MIT OR Apache-2.0"])
CLASSIFIED = WheelSpec(
    "classified-lib", "1.0", headers=["Classifier: License :: OSI Approved :: BSD License"]
)
FREE_TEXT = WheelSpec("text-lib", "1.0", headers=["License: Apache Software License"])
GPL = WheelSpec(
    "gpl-lib",
    "2.0",
    headers=[
        "License: see LICENSE.txt",
        "Classifier: License :: OSI Approved :: GNU General Public License v3 (GPLv3)",
    ],
)
NONE = WheelSpec("bare-lib", "1.0")


def read(spec: WheelSpec) -> tuple[str, str, str]:
    found = license_of(spec.metadata())
    return found.name, found.spdx, found.source


def test_each_shape_of_metadata_is_read_to_spdx_and_says_where_from() -> None:
    assert read(MIT_EXPRESSION) == ("MIT OR Apache-2.0", "MIT OR Apache-2.0", "expression")
    assert read(CLASSIFIED) == (
        "License :: OSI Approved :: BSD License",
        "BSD-3-Clause",
        "classifier",
    )
    assert read(FREE_TEXT) == ("Apache Software License", "Apache-2.0", "license field")
    # A field that names no licence gives way to the classifier that does.
    assert read(GPL)[1:] == ("GPL-3.0-only", "classifier")
    assert read(NONE) == ("", "", "unknown")
    # An SPDX id in the License field is taken as one, in any case; a whole licence
    # text is kept short and has no SPDX id.
    assert read(WheelSpec("x", "1", headers=["License: apache-2.0"]))[1] == "Apache-2.0"
    text = "Copyright (c) 2020 Someone. " * 40
    name, spdx, source = read(WheelSpec("x", "1", headers=[f"License: {text}"]))
    assert (spdx, source) == ("", "license field") and len(name) == 200
    # Two licence classifiers: the user may pick either.
    dual = WheelSpec(
        "x",
        "1",
        headers=[
            "Classifier: License :: OSI Approved :: MIT License",
            "Classifier: License :: OSI Approved :: Apache Software License",
        ],
    )
    assert read(dual)[1] == "MIT OR Apache-2.0"


def stored(store: LocalStore, spec: WheelSpec) -> Wheel:
    data = build_wheel(spec)
    sha = hashlib.sha256(data).hexdigest()
    writer = store.new_blob()
    writer.write(data)
    writer.publish(sha)
    return Wheel(spec.name, spec.version, spec.filename, f"https://up/{spec.filename}", sha, None)


def test_sync_records_the_licence_and_fills_an_old_manifests_in_without_the_wheel(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    wheel = stored(store, FREE_TEXT)
    first = settle(store, wheel, None, None)
    assert first.license is not None and first.license.spdx == "Apache-2.0"
    assert Wheel.from_json(first.as_json()) == first  # kept in the manifest
    # A manifest of the release before: no licence; it reads as unknown ...
    old = Wheel.from_json({k: v for k, v in first.as_json().items() if k != "license"})
    assert old.license is None and old.licensed.source == "unknown"
    # ... and the next sync reads it from the METADATA blob, the wheel gone from the store.
    store.delete_blob(wheel.sha256)
    again = settle(store, wheel, None, old)
    assert again.license == first.license


def test_an_sdist_kept_beside_its_built_wheel_has_the_built_wheels_licence(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    built = stored(store, MIT_EXPRESSION)
    sdist = Wheel("expr-lib", "1.0", "expr_lib-1.0.tar.gz", "https://up/s", "5" * 64, 10)
    provenance = BuiltFrom(sdist.filename, sdist.sha256, "CPython 3.11", (), (), "now", "uv")
    built = dataclasses.replace(built, url="", built_from=provenance)
    settled, failures = settle_all(store, [built, sdist], {}, {})
    assert failures == []
    assert settled[sdist.sha256].licensed.spdx == "MIT OR Apache-2.0"


def licensed(spec: WheelSpec) -> Wheel:
    found = license_of(spec.metadata())
    return Wheel(spec.name, spec.version, spec.filename, "", spec.name[0] * 64, 1, license=found)


CLOSURE = [licensed(s) for s in (MIT_EXPRESSION, CLASSIFIED, FREE_TEXT, GPL, NONE)]


def test_the_policy_refuses_a_closure_naming_project_version_and_licence(tmp_path: Path) -> None:
    pypi = {
        "upstream": "",
        "denied_licenses": ["GPL-3.0-only"],
        "allow_unknown_license": True,
        "environments": {
            "lab": {"requirements": ["x"], "targets": [], "denied_licenses": []},
            "strict": {
                "requirements": ["x"],
                "targets": [],
                "allowed_licenses": ["MIT", "Apache-2.0"],
                "allow_unknown_license": False,
            },
        },
    }
    config = parse_config({"pypi": pypi}, tmp_path)
    check = Licenses(config.pypi)
    (finding,) = check.review("default/t", CLOSURE)
    assert finding.verdict is Verdict.REFUSE
    assert finding.reason == (
        "gpl-lib 2.0 (gpl_lib-2.0-py3-none-any.whl): its licence GPL-3.0-only is in denied_licenses"
    )
    assert check.review("lab/t", CLOSURE) == []  # its own (empty) list: no policy
    refused = [f.reason.split(" (")[0] for f in check.review("strict/t", CLOSURE)]
    assert refused == ["classified-lib 1.0", "gpl-lib 2.0", "bare-lib 1.0"]

    summary = LicenseSummary.of("default", CLOSURE, config.pypi.license_policy("default"))
    assert summary.counts == {
        "Apache-2.0": 1,
        "BSD-3-Clause": 1,
        "GPL-3.0-only": 1,
        "MIT OR Apache-2.0": 1,
        "unknown": 1,
    }
    assert [line.split(":")[0] for line in summary.outside] == [
        "gpl-lib 2.0 (gpl_lib-2.0-py3-none-any.whl)"
    ]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"denied_licenses": ["GPL 3"]},
            "[pypi] denied_licenses: 'GPL 3' is no SPDX id or expression; write "
            "'GPL-3.0-only', its SPDX id",
        ),
        (
            {"environments": {"lab": {"requirements": ["x"], "allowed_licenses": ["nope!"]}}},
            "[pypi.environments.lab] allowed_licenses: 'nope!' is no SPDX id",
        ),
        ({"licenses": "deny"}, '[pypi] licenses = \'deny\': use "block" or "report"'),
        (
            {"environments": {"lab": {"requirements": ["x"], "licenses": "fail"}}},
            '[pypi.environments.lab] licenses = \'fail\': use "block" or "report"',
        ),
    ],
)
def test_a_policy_or_mode_the_mirror_cannot_read_is_a_config_error(
    tmp_path: Path, table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"pypi": {"upstream": "", **table}}, tmp_path)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "spdx"),
    [
        ("3-Clause BSD License", "BSD-3-Clause"),
        ("BSD 3-Clause", "BSD-3-Clause"),
        ("BSD 3-Clause License", "BSD-3-Clause"),
        ("Modified BSD License", "BSD-3-Clause"),
        ("2-Clause BSD License", "BSD-2-Clause"),
        ("Apache License, Version 2.0", "Apache-2.0"),
        ("Apache Software License", "Apache-2.0"),
        ("Apache-2.0 license", "Apache-2.0"),
        ("Apache License v2.0", "Apache-2.0"),
        ("MIT License", "MIT"),
        ("The MIT License", "MIT"),
        ("ISC License", "ISC"),
        ("Mozilla Public License 2.0", "MPL-2.0"),
        ("GNU General Public License v3 (GPLv3)", "GPL-3.0-only"),
        ("GNU GPLv3", "GPL-3.0-only"),
        ("The Unlicense", "Unlicense"),
        ("see LICENSE.txt", ""),  # names none: the classifiers decide, else it stays as given
        ("Proprietary License", ""),
    ],
)
def test_free_text_license_fields_read_as_spdx_ids(text: str, spdx: str) -> None:
    found = license_of(WheelSpec("x", "1", headers=[f"License: {text}"]).metadata())
    assert (found.spdx, found.name) == (spdx, text)


def test_report_mode_refuses_nothing_and_block_is_the_default(tmp_path: Path) -> None:
    pypi = {
        "upstream": "",
        "denied_licenses": ["GPL-3.0-only"],
        "allow_unknown_license": True,
        "environments": {
            "strict": {"requirements": ["x"], "targets": []},
            "open": {"requirements": ["x"], "targets": [], "licenses": "report"},
        },
    }
    config = parse_config({"pypi": pypi}, tmp_path)
    modes = {env.name: env.licenses for env in config.pypi.environments}
    assert modes == {"strict": "block", "open": "report"}
    check = Licenses(config.pypi)
    assert [f.reason.split(" (")[0] for f in check.review("strict/t", CLOSURE)] == ["gpl-lib 2.0"]
    assert check.review("open/t", CLOSURE) == []
    # [pypi]'s mode is every environment's that sets none.
    config = parse_config({"pypi": {**pypi, "licenses": "report"}}, tmp_path)
    modes = {env.name: env.licenses for env in config.pypi.environments}
    assert modes == {"strict": "report", "open": "report"}
