"""The generated nginx config and the entry point the fleet is told about."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mirror.core.accel import ACCEL_HEADER, ACCEL_PREFIX
from mirror.core.config import parse_config
from mirror.proxy.nginx import entry_point, find_nginx, plan_for, render


def test_the_config_sends_files_from_disk_pages_through_a_cache_and_the_rest_to_the_fronts(
    tmp_path: Path,
) -> None:
    config = parse_config(
        {"proxy": {"fronts": ["http://web-1:8080", "http://web-2:8080"], "port": 9000}},
        tmp_path,
    )
    text = render(plan_for(config))
    serverdir = (tmp_path / "data" / "devpi").resolve()
    assert f"root {serverdir};" in text
    # A file devpi does not hold yet: the store's blob, which a front names.
    assert "try_files /+files$uri @store;" in text and "location @store {" in text
    assert "location ^~ /tfmirror/pypi/ {" in text
    assert 'proxy_cache_key "$request_method $request_uri $http_accept";' in text
    assert "proxy_cache_valid 200 404 10s;" in text  # a removed page replaces its copy
    # The front answers a model archive with X-Accel-Redirect under this very location.
    assert f"location {ACCEL_PREFIX} {{" in text
    assert f'proxy_set_header {ACCEL_HEADER} "{ACCEL_PREFIX}";' in text
    assert f"alias {(tmp_path / 'data' / 'blobs' / 'sha256').resolve()}/;" in text
    assert "server web-1:8080 max_fails=1" in text and "server web-2:8080 max_fails=1" in text
    assert "server 127.0.0.1:3141;" in text
    assert "listen 127.0.0.1:9000 backlog=4096;" in text
    # Every proxied location keeps the Host the node used (nginx drops inherited
    # proxy_set_header lines where a location sets its own).
    assert text.count("proxy_set_header Host $http_host;") == 8
    # A TF.js model's files (?tfjs-format=file) are kept by nginx, sent by the front
    # without X-Accel (a cache keeps bytes); the rest of /hub/ goes by as before.
    hub = text[text.index("location /hub/ {") :]
    hub = hub[: hub.index("}")]
    assert "proxy_cache $tfmirror_file_cache;" in hub
    assert f"proxy_set_header {ACCEL_HEADER} $tfmirror_accel_blobs;" in hub
    assert f'default "{ACCEL_PREFIX}";' in text
    # devpi's own state stays on its port; its login is rate-limited before devpi.
    assert "location = /+status {\n            return 404;" in text
    assert "limit_req zone=tfmirror_login" in text
    # Each environment's index and each snapshot's (`@NAME/`) is the fronts' pages,
    # cached like the union's.
    name = "[A-Za-z0-9][A-Za-z0-9._-]*"
    envs = text[text.index(rf"location ~ ^/tfmirror/{name}/(@{name}/)?\+simple/ {{") :]
    envs = envs[: envs.index("}")]
    assert "proxy_pass http://tfmirror_front;" in envs and "proxy_cache tfmirror_pages;" in envs
    # The index's pages and each wheel's METADATA come from the fronts, files from devpi.
    index = text[text.index("location ^~ /tfmirror/pypi/ {") :]
    pages = index[index.index(r"location ~ /\+simple/ {") :]
    assert pages.index("proxy_pass http://tfmirror_front;") < pages.index("}")
    metadata = index[index.index(r"location ~ /\+f/.*\.metadata$ {") :]
    assert metadata.index("proxy_pass http://tfmirror_front;") < metadata.index("}")


def test_on_s3_or_an_external_devpi_nothing_is_sent_from_a_folder_we_do_not_have(
    tmp_path: Path,
) -> None:
    config = parse_config(
        {
            "storage": {"backend": "s3", "bucket": "b"},
            "devpi": {"url": "http://devpi:3141", "serverdir": ""},
        },
        tmp_path,
    )
    text = render(plan_for(config))
    assert "try_files" not in text and "/_tfmirror/blobs/ {" not in text
    assert "@store" not in text
    assert 'proxy_set_header X-Tfmirror-Accel-Blobs "";' in text
    assert "server devpi:3141;" in text


def test_the_fleet_is_told_the_entry_point_only_when_nginx_will_run(tmp_path: Path) -> None:
    on = parse_config({"proxy": {"nginx": "/bin/true", "port": 8000}}, tmp_path)
    assert find_nginx(on) == "/bin/true"
    assert entry_point(on).index_url == "http://127.0.0.1:8000/tfmirror/pypi/+simple/"
    assert entry_point(on).hub_url == "http://127.0.0.1:8000/hub/"
    for off in (
        {"proxy": {"enabled": False, "nginx": "/bin/true"}},
        {"proxy": {"nginx": str(tmp_path / "no-such-nginx")}},
    ):
        config = parse_config(off, tmp_path)
        assert find_nginx(config) is None
        # The fronts' pages (devpi's lack upload-time), whose file links lead to devpi.
        assert entry_point(config).index_url == "http://127.0.0.1:8080/tfmirror/pypi/+simple/"


def test_pip_conf_names_the_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "tfmirror.toml"
    path.write_text('[proxy]\nnginx = "/bin/true"\nport = 8123\n')
    proc = subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(path), "pip-conf"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "index-url = http://127.0.0.1:8123/tfmirror/pypi/+simple/" in proc.stdout
