"""The public names' answers through Flask's test client: tfhub.dev's paths and Kaggle's
model API with the bodies kagglesdk sends, read back with kagglesdk's own types."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from kagglesdk.kaggle_object import KaggleObject
from kagglesdk.models.types.model_api_service import (
    ApiDownloadModelInstanceVersionRequest,
    ApiGetModelInstanceRequest,
    ApiListModelInstanceVersionFilesRequest,
    ApiListModelInstanceVersionFilesResponse,
    ApiModelInstance,
)
from kagglesdk.models.types.model_enums import ModelFramework

from hub_cache.importer import import_model
from mirror.core.config import parse_config
from mirror.core.errors import ConfigError
from mirror.core.public_names import PUBLIC_NAMES
from mirror.core.storage import LocalStore
from mirror.proxy.nginx import plan_for, render
from testkit.site_ca import make_ca
from tests.support.archives import FAKE_MODEL, tar_bytes
from tests.support.cli import tfmirror
from tfmirror.app import create_app
from tfmirror.commands.node_setup import DEFAULT_CA

TFHUB = "https://tfhub.dev/google/imagenet/mobilenet/5"
OTHER_SITE = "https://hub.internal.example/google/other/1"
KAGGLE = "https://www.kaggle.com/models/tfmirror/bert/tensorFlow2/default"
V1, V2 = tar_bytes(FAKE_MODEL), tar_bytes({**FAKE_MODEL, "assets/vocab.txt": b"a\nb\n"})
RPC = "/v1/models.ModelApiService/"


def proxy_table(tmp_path: Path, names: tuple[str, ...] = PUBLIC_NAMES) -> dict[str, Any]:
    ca = make_ca(tmp_path / "ca", list(names))
    return {
        "answer_for": list(names),
        "tls_certificate": str(ca.certificate),
        "tls_key": str(ca.key),
    }


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    config = parse_config({"proxy": proxy_table(tmp_path)}, tmp_path)
    store = LocalStore(tmp_path / "store")
    for handle, archive in [
        (TFHUB, V1),
        (OTHER_SITE, V1),
        (f"{KAGGLE}/1", V1),
        (f"{KAGGLE}/2", V2),
    ]:
        tarball = tmp_path / "model.tar.gz"
        tarball.write_bytes(archive)
        assert import_model(store, tarball, handle, config.hub).status == "new"
    return create_app(config, store).test_client()


def call(client: FlaskClient, rpc: str, request: KaggleObject, host: str = "api.kaggle.com") -> Any:
    body = json.dumps(type(request).to_dict(request))
    headers = {"Host": host, "Content-Type": "application/json"}
    return client.post(RPC + rpc, data=body, headers=headers)


def instance(version: int = 0, variation: str = "default") -> dict[str, Any]:
    return {
        "owner_slug": "tfmirror",
        "model_slug": "bert",
        "framework": ModelFramework.MODEL_FRAMEWORK_TENSOR_FLOW_2,
        "instance_slug": variation,
        **({"version_number": version} if version else {}),
    }


def made(cls: type[KaggleObject], **fields: Any) -> Any:
    request = cls()
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def test_tfhub_paths_answer_the_held_models_and_nothing_held_under_another_site(
    client: FlaskClient,
) -> None:
    tfhub = {"Host": "tfhub.dev"}
    got = client.get("/google/imagenet/mobilenet/5?tf-hub-format=compressed", headers=tfhub)
    assert got.status_code == 200 and got.data == V1
    # The same path on the mirror's own name is the mirror's own page, not tfhub.dev's.
    assert client.get("/google/imagenet/mobilenet/5?tf-hub-format=compressed").status_code == 404
    # A model the mirror keeps under another site's handle is not tfhub.dev's to answer.
    assert client.get("/google/other/1?tf-hub-format=compressed", headers=tfhub).status_code == 404
    missing = client.get("/google/none/1?tf-hub-format=compressed", headers=tfhub)
    assert missing.status_code == 404 and "tfhub.dev" in missing.get_json()["message"]
    # The mirror's own pages answer on every name.
    assert client.get("/hub/", headers=tfhub).status_code == 200


def test_an_unversioned_handle_resolves_to_the_newest_version_held(client: FlaskClient) -> None:
    got = call(client, "GetModelInstance", made(ApiGetModelInstanceRequest, **instance()))
    assert got.status_code == 200, got.data
    answer = ApiModelInstance.from_json(got.get_data(as_text=True))
    assert answer.version_number == 2
    assert answer.framework == ModelFramework.MODEL_FRAMEWORK_TENSOR_FLOW_2


def test_listing_and_downloading_files_and_the_archive(client: FlaskClient) -> None:
    listing = call(
        client,
        "ListModelInstanceVersionFiles",
        made(ApiListModelInstanceVersionFilesRequest, **instance(2), page_size=25),
    )
    files = ApiListModelInstanceVersionFilesResponse.from_json(listing.get_data(as_text=True))
    with tarfile.open(fileobj=io.BytesIO(V2)) as tar:
        expected = {m.name.removeprefix("./"): m for m in tar if m.isfile()}
        contents = {name: tar.extractfile(m).read() for name, m in expected.items()}  # type: ignore[union-attr]
    assert {f.name: f.size for f in files.files} == {n: m.size for n, m in expected.items()}
    # Held only as an archive: "there may be more", so kagglehub fetches the archive once
    # rather than each file out of it; the page after is empty and the last.
    assert files.next_page_token != ""
    after = call(
        client,
        "ListModelInstanceVersionFiles",
        made(
            ApiListModelInstanceVersionFilesRequest,
            **instance(2),
            page_size=25,
            page_token=files.next_page_token,
        ),
    )
    assert after.get_json() == {"files": [], "nextPageToken": ""}

    one = call(
        client,
        "DownloadModelInstanceVersion",
        made(ApiDownloadModelInstanceVersionRequest, **instance(2), path="assets/vocab.txt"),
    )
    assert one.status_code == 200 and one.data == contents["assets/vocab.txt"]

    page = call(
        client,
        "ListModelInstanceVersionFiles",
        made(ApiListModelInstanceVersionFilesRequest, **instance(2), page_size=1),
    )
    assert page.get_json()["nextPageToken"] == "1" and len(page.get_json()["files"]) == 1

    # The whole archive: a redirect to the mirror's own URL on the name asked, then bytes.
    whole = call(
        client,
        "DownloadModelInstanceVersion",
        made(ApiDownloadModelInstanceVersionRequest, **instance(1)),
    )
    assert whole.status_code == 302
    location = whole.headers["Location"]
    assert location.startswith("/hub/models/tfmirror/bert/tensorflow2/default/1?")
    archive = client.get(location, headers={"Host": "api.kaggle.com"})
    assert hashlib.sha256(archive.data).hexdigest() == hashlib.sha256(V1).hexdigest()


def test_a_model_the_mirror_lacks_gets_kaggles_not_found_naming_it(client: FlaskClient) -> None:
    for rpc, request in [
        ("GetModelInstance", made(ApiGetModelInstanceRequest, **instance(variation="large"))),
        (
            "DownloadModelInstanceVersion",
            made(ApiDownloadModelInstanceVersionRequest, **instance(7)),
        ),
    ]:
        got = call(client, rpc, request)
        assert got.status_code == 404 and got.mimetype == "application/json"
        doc = got.get_json()
        assert doc["code"] == 404 and "tfmirror/bert/tensorflow2/" in doc["message"]
    bad = client.post(RPC + "GetModelInstance", data=b"[1]", headers={"Host": "api.kaggle.com"})
    assert bad.status_code == 400 and bad.get_json()["code"] == 400


def test_kaggle_site_paths_and_its_rest_download(client: FlaskClient) -> None:
    kaggle = {"Host": "www.kaggle.com"}
    page = client.get(
        "/models/tfmirror/bert/TensorFlow2/default/2?tf-hub-format=compressed", headers=kaggle
    )
    assert page.status_code == 200 and page.data == V2
    rest = client.get("/api/v1/models/tfmirror/bert/tensorFlow2/default/1/download", headers=kaggle)
    assert rest.status_code == 302
    assert client.get(rest.headers["Location"], headers=kaggle).data == V1
    assert client.get("/api/status", headers=kaggle).status_code == 404


def test_names_are_answered_only_when_configured(tmp_path: Path) -> None:
    config = parse_config({}, tmp_path)
    store = LocalStore(tmp_path / "store")
    client = create_app(config, store).test_client()
    got = client.post(RPC + "GetModelInstance", data=b"{}", headers={"Host": "api.kaggle.com"})
    assert got.status_code in (404, 405)
    assert "code" not in (got.get_json(silent=True) or {})  # the mirror's own 404, not Kaggle's


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"answer_for": ["pypi.org"]}, "answer_for = ['pypi.org']: list each at most once"),
        ({"tls_certificate": "missing.pem"}, "missing.pem: No such file"),
        ({"tls_key": ""}, "tls_key = '': answer_for needs it"),
        ({"tls_port": 8000}, "tls_port = 8000: must differ"),
    ],
)
def test_config_refuses_what_nodes_would_refuse(
    tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    table = {**proxy_table(tmp_path), **change}
    with pytest.raises(ConfigError) as refused:
        parse_config({"proxy": table}, tmp_path)
    assert says in str(refused.value)


def test_config_refuses_a_certificate_that_does_not_name_every_name(tmp_path: Path) -> None:
    table = {**proxy_table(tmp_path, ("tfhub.dev",)), "answer_for": list(PUBLIC_NAMES)}
    with pytest.raises(
        ConfigError, match=re.escape("does not name www.kaggle.com, kaggle.com, api.kaggle.com")
    ):
        parse_config({"proxy": table}, tmp_path)
    other = make_ca(tmp_path / "other", list(PUBLIC_NAMES))
    table = {**proxy_table(tmp_path), "tls_key": str(other.key)}
    with pytest.raises(ConfigError, match="is not the key of"):
        parse_config({"proxy": table}, tmp_path)


def _toml(tmp_path: Path, proxy: dict[str, Any], web: str = "") -> Path:
    lines = ["[proxy]"] + [f"{k} = {json.dumps(v)}" for k, v in proxy.items()]
    path = tmp_path / "tfmirror.toml"
    path.write_text("\n".join([*lines, web, ""]))
    return path


def test_node_setup_prints_the_hosts_line_and_the_ca_environment(tmp_path: Path) -> None:
    web = '[web]\npublic_url = "http://10.1.2.3:8000"'
    done = tfmirror(_toml(tmp_path, {**proxy_table(tmp_path), "tls_port": 8443}, web), "node-setup")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "10.1.2.3 tfhub.dev www.kaggle.com kaggle.com api.kaggle.com" in lines
    assert f"export REQUESTS_CA_BUNDLE={DEFAULT_CA}" in lines
    assert f"export SSL_CERT_FILE={DEFAULT_CA}" in lines
    assert any("tls_port is 8443" in line for line in lines)
    assert "KEY" not in done.stdout and "server.key" not in done.stdout  # nothing secret

    refused = tfmirror(_toml(tmp_path, {}), "node-setup")
    assert refused.returncode == 2 and "answer_for is empty" in refused.stderr
    bad_cert = tfmirror(
        _toml(tmp_path, {**proxy_table(tmp_path), "tls_certificate": "x.pem"}), "node-setup"
    )
    assert bad_cert.returncode == 2 and bad_cert.stderr.count("\n") == 1
    assert "[proxy] tls_certificate = 'x.pem'" in bad_cert.stderr


def test_nginx_answers_the_names_over_tls_and_keeps_their_host(tmp_path: Path) -> None:
    config = parse_config({"proxy": {**proxy_table(tmp_path), "tls_port": 8443}}, tmp_path)
    conf = render(plan_for(config))
    tls = conf[conf.index("listen 127.0.0.1:8443 ssl") :]
    assert "server_name tfhub.dev www.kaggle.com kaggle.com api.kaggle.com;" in tls
    assert f"ssl_certificate {(tmp_path / 'ca/server.pem').resolve()};" in tls
    assert "proxy_set_header Host $http_host;" in tls
    assert "location /_tfmirror/blobs/" in tls  # X-Accel answers are sent on this server too
    assert "ssl" not in render(plan_for(parse_config({}, tmp_path)))
