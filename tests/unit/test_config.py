from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mirror.core.config import Target, host_target, load_config, parse_config
from mirror.core.errors import ConfigError


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
        ({"pypi": {"sdists": "compile"}}, '[pypi] sdists = \'compile\': use "build" or "refuse"'),
        ({"pypi": {"build_timeout": 0}}, "[pypi] build_timeout = 0.0: must be positive seconds"),
        ({"pypi": {"build_memory_mb": 64}}, "[pypi] build_memory_mb = 64: give at least 256 MB"),
        ({"pypi": {"min_age": "7 days"}}, "[pypi] min_age = '7 days': use a number with s, m, h"),
        ({"pypi": {"min_age": 7}}, '[pypi] min_age = 7: must be str, e.g. min_age = "7d"'),
        (
            {"pypi": {"environments": {"s": {"requirements": ["a"], "min_age": "-1d"}}}},
            "[pypi.environments.s] min_age = '-1d'",
        ),
        ({"pypi": {"cooldown_exempt": ["url lib"]}}, "[pypi] cooldown_exempt[0] = 'url lib'"),
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
        [sys.executable, "-m", "tfmirror.cli", "--config", path, "sync", "pypi"],
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
        (
            [{"handle": "https://tfhub.dev/x/1", "format": "onnx"}],
            "must be one of savedmodel, tflite, tfjs, keras",
        ),
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


ENVIRONMENTS = """
[pypi]
constraints = ["urllib3<3"]

[pypi.environments.training]
requirements = ["tensorflow[and-cuda]==2.20.*", "tf-keras"]
targets = [{python = "3.11", platform = "manylinux_2_28_x86_64"}]

[pypi.environments.serving]
requirements = ["tensorflow==2.18.*", "tensorflow-serving-api==2.18.*"]
targets = [{python = "3.10", platform = "manylinux_2_17_x86_64"}]
constraints = ["setuptools<82"]

[pypi.environments.notebooks]
requirements = ["jupyterlab"]
"""


def test_environments_each_have_their_pins_targets_and_constraints(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ENVIRONMENTS))
    envs = {env.name: env for env in config.pypi.environments}
    # No top-level requirements: there is no environment "default".
    assert list(envs) == ["training", "serving", "notebooks"]
    assert envs["training"].requirements == ("tensorflow[and-cuda]==2.20.*", "tf-keras")
    assert [t.id for t in envs["serving"].targets] == ["py3.10-manylinux_2_17_x86_64"]
    # Top-level constraints bound every environment; each adds its own.
    assert envs["training"].constraints == ("urllib3<3",)
    assert envs["serving"].constraints == ("urllib3<3", "setuptools<82")
    # Without targets, the host's, as a plain config gets.
    assert envs["notebooks"].targets == (host_target(),)


def test_the_old_shape_is_the_environment_default(tmp_path: Path) -> None:
    config = parse_config(
        {
            "pypi": {
                "requirements": ["alpha"],
                "targets": [{"python": "3.11", "platform": "win_amd64"}],
            }
        },
        tmp_path,
    )
    (env,) = config.pypi.environments
    assert (env.name, env.requirements, env.constraints) == ("default", ("alpha",), ())
    assert [t.id for t in env.targets] == ["py3.11-win_amd64"]
    both = parse_config(
        {"pypi": {"requirements": ["alpha"], "environments": {"ci": {"requirements": ["beta"]}}}},
        tmp_path,
    )
    assert [e.name for e in both.pypi.environments] == ["default", "ci"]


def test_the_built_in_default_holds_setuptools_below_82(tmp_path: Path) -> None:
    # tensorflow_hub imports pkg_resources, which setuptools 82 removed.
    (env,) = parse_config({}, tmp_path).pypi.environments
    assert env.requirements == ("tensorflow", "tensorflow-hub")
    assert env.constraints == ("setuptools<82",)


def test_a_target_may_name_the_interpreter_that_builds_its_extensions(tmp_path: Path) -> None:
    target = {"python": "3.11", "platform": "manylinux_2_28_x86_64", "interpreter": sys.executable}
    config = parse_config({"pypi": {"requirements": ["a"], "targets": [target]}}, tmp_path)
    assert config.pypi.targets[0].interpreter == sys.executable
    target["interpreter"] = "/nowhere/python3.11"
    with pytest.raises(ConfigError) as info:
        parse_config({"pypi": {"requirements": ["a"], "targets": [target]}}, tmp_path)
    assert "interpreter = '/nowhere/python3.11': not an executable file" in str(info.value)


@pytest.mark.parametrize(
    ("pypi", "expected"),
    [
        (
            {"environments": {"pypi": {"requirements": ["a"]}}},
            "[pypi.environments.pypi]: tfmirror/pypi is the union index",
        ),
        (
            {"environments": {"PyPI": {"requirements": ["a"]}}},
            "[pypi.environments.PyPI]: tfmirror/PyPI is the union index",
        ),
        (
            {
                "environments": {
                    "Serving": {"requirements": ["a"]},
                    "serving": {"requirements": ["b"]},
                }
            },
            "'Serving' and 'serving' are one index name after normalising; rename one",
        ),
        (
            {
                "environments": {
                    "serving_1": {"requirements": ["a"]},
                    "serving.1": {"requirements": ["b"]},
                }
            },
            "'serving_1' and 'serving.1' are one index name",
        ),
        (
            {"requirements": ["a"], "environments": {"default": {"requirements": ["b"]}}},
            "(the top-level requirements are the environment default)",
        ),
        ({"environments": {"+api": {"requirements": ["a"]}}}, "becomes its index path"),
        ({"environments": {"ci": {"requirements": []}}}, "[pypi.environments.ci] requirements"),
        (
            {"environments": {"ci": {"requirements": ["a"], "pins": []}}},
            "[pypi.environments.ci] pins: unknown key",
        ),
        (
            {"environments": {"ci": {"requirements": ["a"], "constraints": ["x>=>1"]}}},
            "[pypi.environments.ci] constraints[0] = 'x>=>1'",
        ),
        (
            {"environments": {"ci": {"requirements": ["a"], "targets": [{"python": "3"}]}}},
            "[pypi.environments.ci.targets[0]] python = '3'",
        ),
        (
            {
                "targets": [{"python": "3.11", "platform": "win_amd64"}],
                "environments": {"ci": {"requirements": ["a"]}},
            },
            "the top-level targets belong to the environment default",
        ),
        ({"environments": {"ci": "tensorflow"}}, "[pypi.environments.ci] must be a table"),
    ],
)
def test_bad_environments_are_one_line_that_says_what_to_fix(
    tmp_path: Path, pypi: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"pypi": pypi}, tmp_path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_a_tfjs_model_names_no_environment_to_be_checked_in(tmp_path: Path) -> None:
    # A browser or Node.js runs it: no Python environment can say it loads there.
    handle = "https://tfhub.dev/google/tfjs-model/x/1"
    doc = {
        "pypi": {"environments": {"web": {"requirements": ["a"]}}},
        "hub": {"models": [{"handle": handle, "environments": ["web"]}]},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(doc, tmp_path)
    assert str(info.value) == (
        f"[hub] models: {handle} is a TF.js model, which runs in browsers and Node.js, "
        "not in a Python environment: drop its `environments`"
    )


def test_the_cooldown_is_off_by_default_and_an_environment_may_set_its_own(
    tmp_path: Path,
) -> None:
    doc = {
        "pypi": {
            "requirements": ["tensorflow"],
            "min_age": "12h",
            "cooldown_exempt": ["urllib3==2.8.1"],
            "environments": {"ci": {"requirements": ["pytest"], "min_age": "0"}},
        }
    }
    pypi = parse_config(doc, tmp_path).pypi
    assert {env.name: env.min_age for env in pypi.environments} == {"default": 43200, "ci": 0}
    assert pypi.cooldown_exempt == ("urllib3==2.8.1",)
    assert all(env.min_age == 0 for env in parse_config({}, tmp_path).pypi.environments)


@pytest.mark.parametrize(
    ("handle", "form"),
    [
        ("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5", "savedmodel"),
        ("https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3", "tflite"),
        (
            "https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/classification/3/default/1",
            "tfjs",
        ),
        (
            "https://www.kaggle.com/models/google/mobilenet-v2/tfLite/100-224-classification/1",
            "tflite",
        ),
        ("https://www.kaggle.com/models/google/mobilenet-v2/TFJS/100-224-classification/1", "tfjs"),
        ("https://www.kaggle.com/models/keras/bert/keras/bert_base_en/2", "keras"),
        ("https://www.kaggle.com/models/google/bert/tensorFlow2/en-uncased/3", "savedmodel"),
    ],
)
def test_a_model_is_fetched_in_the_form_its_handle_names(
    tmp_path: Path, handle: str, form: str
) -> None:
    config = parse_config({"hub": {"models": [handle]}}, tmp_path)
    assert config.hub.models[0].form == form
    named = parse_config({"hub": {"models": [{"handle": handle, "format": "keras"}]}}, tmp_path)
    assert named.hub.models[0].form == "keras"  # an entry's own format wins


def test_every_backend_the_config_accepts_opens_a_store() -> None:
    from mirror.core.backend_names import BACKEND_NAMES
    from mirror.core.storage import BACKENDS

    assert tuple(BACKENDS) == BACKEND_NAMES
