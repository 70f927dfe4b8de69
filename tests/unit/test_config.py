from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mirror.core.config import ConfigError, Target, host_target, load_config, parse_config


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tfmirror.toml"
    path.write_text(text)
    return str(path)


def test_embedded_default_is_local_disk_own_devpi_and_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.source is None
    assert config.storage.backend == "local"
    assert config.storage.path == tmp_path / "data"
    assert config.devpi.url == "http://127.0.0.1:3141"
    assert config.devpi.serverdir == tmp_path / "data" / "devpi"
    assert config.pypi.requirements == ("tensorflow", "tensorflow-hub")
    assert config.pypi.targets == (host_target(),)
    assert config.devpi_mirror_url == "http://127.0.0.1:8080/simple/"


def test_lookup_order_flag_then_env_then_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, '[pypi]\nrequirements = ["local"]\n')
    assert load_config().pypi.requirements == ("local",)
    env_file = tmp_path / "env.toml"
    env_file.write_text('[pypi]\nrequirements = ["fromenv"]\n')
    monkeypatch.setenv("TFMIRROR_CONFIG", str(env_file))
    assert load_config().pypi.requirements == ("fromenv",)
    flag = tmp_path / "flag.toml"
    flag.write_text('[pypi]\nrequirements = ["fromflag"]\n')
    assert load_config(str(flag)).pypi.requirements == ("fromflag",)


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    path = sub / "m.toml"
    path.write_text('[storage]\npath = "../store"\n[devpi]\nserverdir = "dv"\n')
    config = load_config(str(path))
    assert config.storage.path.resolve() == (tmp_path / "store").resolve()
    assert config.devpi.serverdir == sub.resolve() / "dv"


def test_targets_parse_and_get_ids(tmp_path: Path) -> None:
    config = parse_config(
        {
            "pypi": {
                "targets": [
                    {"python": "3.11", "platform": "manylinux_2_28_x86_64"},
                    {"python": "3.12", "platform": "win_amd64"},
                ]
            }
        },
        tmp_path,
    )
    assert [t.id for t in config.pypi.targets] == [
        "py3.11-manylinux_2_28_x86_64",
        "py3.12-win_amd64",
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"storage": {"backend": "ftp"}}, '[storage] backend = \'ftp\': use "local" or "s3"'),
        ({"storage": {"bucket": 3}}, "[storage] bucket = 3: must be str"),
        ({"storage": {"backend": "s3"}}, "needs a bucket"),
        ({"pypi": {"requirements": ["tensor flow>="]}}, "[pypi] requirements[0]"),
        ({"pypi": {"requirements": []}}, "list at least one"),
        (
            {"pypi": {"targets": [{"python": "3", "platform": "win_amd64"}]}},
            "[pypi.targets[0]] python = '3': must look like \"3.11\"",
        ),
        (
            {"pypi": {"targets": [{"python": "3.11", "platform": "linux"}]}},
            "must be a wheel platform tag",
        ),
        (
            {"pypi": {"targets": [{"python": "3.11", "platform": "win_amd64", "abi": "x"}]}},
            "[pypi.targets[0]] abi: unknown key",
        ),
        ({"pypi": {"workers": True}}, "[pypi] workers = True: must be int"),
        (
            {"pypi": {"upstrem": "x"}},
            "[pypi] upstrem: unknown key; remove it or check its spelling",
        ),
        ({"devpi": {"index": "noslash"}}, 'must be "user/index"'),
        ({"web": {"port": 70000}}, "use a TCP port"),
        ({"webb": {}}, "[webb]: unknown section"),
        ({"proxy": {"port": 0}}, "[proxy] port = 0: use a TCP port"),
        ({"proxy": {"fronts": ["web:8080"]}}, "[proxy] fronts[0] = 'web:8080': must be \"http://"),
        ({"proxy": {"fronts": ["http://u:p@web:8080"]}}, "[proxy] fronts[0]"),
        ({"proxy": {"page_cache_seconds": -1}}, "use 0 to 3600 seconds"),
        ({"proxy": {"nginx": ""}}, "name the nginx binary"),
        ({"proxy": {"enable": True}}, "[proxy] enable: unknown key"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(
    tmp_path: Path, doc: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, tmp_path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_duplicate_targets_are_refused(tmp_path: Path) -> None:
    target = {"python": "3.11", "platform": "win_amd64"}
    with pytest.raises(ConfigError, match="may appear once"):
        parse_config({"pypi": {"targets": [target, dict(target)]}}, tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        '[pypi]\nrequirements = ["tensorflow>=="]\n',
        "[pypi\n",
        '[storage]\nbackend = "nfs"\n',
        '[pypi]\ntargets = [{python = "3.11", platform = "solaris"}]\n',
    ],
)
def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    proc = subprocess.run(
        [sys.executable, "-m", "mirror.cli", "--config", path, "sync", "pypi"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tfmirror: config error: ")
    assert "Traceback" not in proc.stderr


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "nope.toml"))


def test_target_python_tuple() -> None:
    assert Target("3.12", "win_amd64").python_tuple == (3, 12)


def test_hub_models_parse_with_optional_source(tmp_path: Path) -> None:
    (tmp_path / "b.tar.gz").write_bytes(b"a tarball the sync will check")
    config = parse_config(
        {
            "hub": {
                "models": [
                    "https://tfhub.dev/google/a/1",
                    {"handle": "https://tfhub.dev/google/b/2", "source": "b.tar.gz"},
                ]
            }
        },
        tmp_path,
    )
    assert [m.path for m in config.hub.models] == ["google/a/1", "google/b/2"]
    assert config.hub.models[1].source == str(tmp_path / "b.tar.gz")


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (["https://tfhub.dev/google/a/1", "https://kaggle.com/google/a/1"], "is the same as"),
        (["https://tfhub.dev/google/a/1", "https://tfhub.dev/google/a/1"], "may appear once"),
        (["tfhub.dev/google/a/1"], "not an http(s) URL"),
        (["https://tfhub.dev/google/../a"], "no usable path"),
        (["https://tfhub.dev/google/a/1?tf-hub-format=compressed"], "query or fragment"),
        ([{"handle": "https://tfhub.dev/x/1", "url": "y"}], "[hub.models[0]] url: unknown key"),
    ],
)
def test_bad_hub_models_are_refused(tmp_path: Path, models: list[object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"hub": {"models": models}}, tmp_path)
    assert expected in str(info.value)


def test_a_hub_only_mirror_needs_no_requirements(tmp_path: Path) -> None:
    hub = {"models": ["https://tfhub.dev/google/a/1"]}
    no_pypi = parse_config({"hub": hub}, tmp_path)
    assert no_pypi.pypi.requirements == () and not no_pypi.pypi.enabled
    empty = parse_config({"hub": hub, "pypi": {"requirements": []}}, tmp_path)
    assert not empty.pypi.enabled
    # Without models, an empty list is still a mistake; and the default is unchanged.
    with pytest.raises(ConfigError, match="or list \\[hub\\] models for a hub-only mirror"):
        parse_config({"pypi": {"requirements": []}}, tmp_path)
    assert parse_config({}, tmp_path).pypi.requirements == ("tensorflow", "tensorflow-hub")


def test_an_inner_mirror_names_no_upstream_and_schedules_no_pypi_sync(tmp_path: Path) -> None:
    from sync_jobs.scheduler import scheduled_jobs

    bare = parse_config({"pypi": {"upstream": ""}}, tmp_path)
    assert bare.pypi.requirements == () and not bare.pypi.syncs
    # Requirements it lists are what verify proves installs; still nothing to sync.
    listed = parse_config({"pypi": {"upstream": "", "requirements": ["tensorflow"]}}, tmp_path)
    assert listed.pypi.enabled and not listed.pypi.syncs
    assert "an inner mirror that bundles feed" in listed.pypi.why_no_sync
    assert "pypi" not in dict(scheduled_jobs(listed))
    assert "pypi" in dict(scheduled_jobs(parse_config({}, tmp_path)))
    with pytest.raises(ConfigError, match='or "" for an inner mirror'):
        parse_config({"pypi": {"upstream": "ftp://x/"}}, tmp_path)
