"""[hub]: the TF Hub and Kaggle models to mirror, and how their downloads are fetched
and bounded."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mirror.core.config.forms import HOSTS, HOSTS_EXAMPLE, PATH, is_base_url, resolve_path
from mirror.core.config.keys import RETRIES, SECONDS, Check, Form, Section, key, plain, read_table
from mirror.core.config.signatures import SignedBy, read_signed_by
from mirror.core.config.storage import StorageConfig
from mirror.core.contracts import Contract, ContractInvalid, read_contract_file
from mirror.core.errors import ConfigError
from mirror.core.handles import handle_path
from mirror.core.kaggle import DEFAULT_API, KaggleModel, parse_kaggle
from mirror.core.licenses import LicensePolicy, is_spdx, spdx_of
from mirror.core.model_forms import FORM_NAMES, TFLITE, form_of_handle

_SERVING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_EXAMPLE = '"https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"'


def _where(s: Section) -> str:
    """How a model's own messages name it: "[hub] models[3]"."""
    return f"[hub] {s.name.removeprefix('hub.')}"


def _aliases(s: Section, name: str, raw: Any) -> tuple[str, ...]:
    for alias in raw:
        s.check(name, isinstance(alias, str), alias, "list handle URLs")
        try:
            handle_path(alias)
        except ValueError as exc:
            raise ConfigError(f"{_where(s)} {name}: {exc}") from None
    return tuple(raw)


def _names(s: Section, name: str, raw: Any) -> tuple[str, ...]:
    for env in raw:
        s.check(name, isinstance(env, str) and bool(env), env, "list environment names")
    return tuple(raw)


@dataclass(frozen=True)
class PinnedContract:
    """The contract an operator keeps for a model: the one its serving code was written
    against. `shown` is the file as the config names it (pages and journals say that,
    not a path of this machine)."""

    shown: str
    contract: Contract


def _pinned(s: Section, name: str, raw: Any) -> PinnedContract | None:
    if not raw:
        return None
    try:
        contract = read_contract_file(resolve_path(s.base, raw))
    except ContractInvalid as exc:
        raise ConfigError(
            f"{_where(s)} {name} = {raw!r}: {exc}; write one with "
            "`tfmirror hub contract HANDLE --write FILE`"
        ) from None
    return PinnedContract(raw, contract)


CONTRACT_CHANGE = ("report", "block")
LICENSES_EXAMPLE = '["Apache-2.0", "CC-BY-4.0"]'


def _licenses(s: Section, name: str, raw: Any) -> tuple[str, ...] | None:
    """A licence policy's list: SPDX ids or expressions (None: the key is absent)."""
    if raw is None:
        return None
    for text in raw:
        s.check(name, isinstance(text, str) and bool(text), text, "list SPDX ids")
        if not is_spdx(text):
            spdx = spdx_of(text)
            fix = (
                f"write {spdx!r}, its SPDX id"
                if spdx
                else 'write SPDX ids such as "Apache-2.0" (spdx.org/licenses), or '
                "LicenseRef-Name for one SPDX does not list"
            )
            where = _where(s) if s.name.startswith("hub.") else f"[{s.name}]"
            raise ConfigError(f"{where} {name}: {text!r} is no SPDX id or expression; {fix}")
    return tuple(raw)


LICENSES = Form(list, _licenses)


@dataclass(frozen=True)
class HubModel:
    """A TF Hub handle to mirror, and where to fetch it from when not from the handle.
    [hub] models lists each as its handle alone, or as a table of these keys."""

    handle: str = key("", _EXAMPLE, required=True)
    # another URL, or a local tarball path (DMZ set-ups)
    source: str = key("", '"http://dmz/models/x.tar.gz" or "models/x.tar.gz"')
    # the download's cap; default [hub] max_uncompressed_mb
    max_mb: int | None = key(
        None,
        "2048",
        Check(lambda mb: mb is None or mb > 0, "must be a positive number of MB"),
        Form(int),
    )
    # other handles served the same model (old tfhub.dev)
    aliases: tuple[str, ...] = key(
        (), '["https://tfhub.dev/google/model/1"]', form=Form(list, _aliases)
    )
    # Environments whose TensorFlow must load it: a version incompatible with one of
    # them is not served (verify.compat's gate); the last good version stays.
    environments: tuple[str, ...] = key((), '["serving"]', form=Form(list, _names))
    # its name in a TF Serving repository (hub export-serving)
    serving_name: str = key(
        "",
        '"mobilenet"',
        Check(
            lambda name: not name or _SERVING_NAME.match(name) is not None,
            "use letters, digits, '.', '-' and '_' (a folder name and a URL segment)",
        ),
    )

    # the form it is published in; by default what the handle says (mirror.core.model_forms)
    format: str = key(
        "",
        '"tflite"',
        Check(lambda f: not f or f in FORM_NAMES, f"must be one of {', '.join(FORM_NAMES)}"),
    )

    # The contract its serving code was written against (a file `tfmirror hub contract
    # --write` makes); a new version that breaks it is reported or blocked.
    contract: PinnedContract | None = key(  # noqa: RUF009 - key() returns a dataclasses.field
        None, '"contracts/resnet.json"', form=Form(str, _pinned)
    )
    # What a version that breaks it meets: "report" (served, shown, journaled) or
    # "block" (the version before stays served); default [hub] on_contract_change.
    on_contract_change: str = key(
        "",
        '"block"',
        Check(lambda v: not v or v in CONTRACT_CHANGE, 'use "report" or "block"'),
    )
    # Who must have signed it (checked with model-signing over the files extracted);
    # a version without a signature that verifies is not served.
    signed_by: SignedBy | None = key(  # noqa: RUF009 - key() returns a dataclasses.field
        None, '{ key = "keys/vendor.pub" }', form=Form(dict, read_signed_by)
    )

    # Its licence where its upstream publishes none (tfhub.dev, a source, an import);
    # a Kaggle model's is Kaggle's, and this only where Kaggle names none.
    license: str = key("", '"Apache-2.0"')
    # This model's licence policy, in place of [hub]'s where set.
    allowed_licenses: tuple[str, ...] | None = key(None, LICENSES_EXAMPLE, form=LICENSES)
    denied_licenses: tuple[str, ...] | None = key(None, '["CC-BY-NC-4.0"]', form=LICENSES)
    allow_unknown_license: bool | None = key(None, "true", form=Form(bool))

    @property
    def kaggle(self) -> KaggleModel | None:
        return parse_kaggle(self.handle)

    @property
    def form(self) -> str:
        """The form it is fetched, checked and served in: `format`, else the handle's."""
        return self.format or form_of_handle(self.handle)

    @property
    def path(self) -> str:
        """The mirrored path: the handle's URL path, e.g. google/imagenet/.../5."""
        return handle_path(self.handle)


def read_model(i: int, raw: Any, base: Path) -> HubModel:
    if isinstance(raw, str):
        model = HubModel(raw)
    elif isinstance(raw, Mapping):
        s = Section(f"hub.models[{i}]", raw, base)
        model = HubModel(**s.read(HubModel))
        s.done()
    else:
        raise ConfigError(f"[hub] models[{i}] = {raw!r}: must be a handle URL, e.g. {_EXAMPLE}")
    return validate_model(i, model, base)


def validate_model(i: int, model: HubModel, base: Path) -> HubModel:
    """Checks the handle (either form), and finds a local source as a file."""
    try:
        handle_path(model.handle)
    except ValueError as exc:
        raise ConfigError(f"[hub] models[{i}]: {exc}; e.g. {_EXAMPLE}") from None
    # A bare .tflite has no folder to carry a signature in (Kaggle's is an archive).
    if (
        model.signed_by is not None
        and model.form == TFLITE
        and (model.kaggle is None or model.source)
    ):
        raise ConfigError(
            f"[hub] models[{i}] signed_by: a bare .tflite file carries no signature; "
            "remove signed_by, or mirror the model from an archive that holds model.sig"
        )
    source = model.source
    if not source or source.startswith(("http://", "https://")):
        return model
    local = resolve_path(base, source)
    if not local.is_file():
        what = "is not a regular file" if local.exists() else "does not exist"
        raise ConfigError(
            f"[hub] models[{i}] source = {source!r}: {local} {what}; give a model tarball "
            "or an http(s) URL"
        )
    return replace(model, source=str(local))


def _models(s: Section, name: str, raw: Any) -> tuple[HubModel, ...]:
    return tuple(read_model(i, m, s.base) for i, m in enumerate(raw))


@dataclass(frozen=True)
class HubConfig:
    models: tuple[HubModel, ...] = key(
        (), '["https://tfhub.dev/google/.../5"]', form=Form(list, _models)
    )
    max_uncompressed_mb: int = key(
        16384, "16384", Check(lambda mb: mb > 0, "must be a positive number of MB")
    )
    # uncompressed / compressed: above it, an archive bomb
    max_ratio: float = key(100.0, "100", Check(lambda r: r >= 1, "must be at least 1"))
    timeout: float = key(60.0, "60", SECONDS)
    retries: int = key(4, "4", RETRIES)
    deadline: float = key(3600.0, "3600", SECONDS)  # one model's whole download, retries included
    # Kaggle's REST base, or a proxy or test double of it
    kaggle_api: str = key(
        DEFAULT_API,
        '"https://www.kaggle.com/api/v1"',
        Check(is_base_url, "must be an http(s) URL"),
        plain(lambda url: url.rstrip("/")),
    )
    # internal hosts a redirect may lead to
    allow_hosts: tuple[str, ...] = key((), HOSTS_EXAMPLE, form=HOSTS)
    # What a new version that breaks a model's pinned contract meets, where its entry
    # does not say: "report" (it is served, shown and journaled) or "block".
    on_contract_change: str = key(
        "report",
        '"block"',
        Check(lambda v: v in CONTRACT_CHANGE, 'use "report" or "block"'),
    )
    # The licences a model may have to be published (SPDX ids or expressions; none: any
    # not denied), those it may not, and whether one whose licence is not known may.
    # With neither list there is no policy: every model is published.
    allowed_licenses: tuple[str, ...] = key((), LICENSES_EXAMPLE, form=LICENSES)
    denied_licenses: tuple[str, ...] = key((), '["CC-BY-NC-4.0"]', form=LICENSES)
    allow_unknown_license: bool = key(False, "true")
    # Where each environment's runtime venv is built (verify.runtimes); by default
    # under [storage] path
    runtimes_dir: Path = key(  # noqa: RUF009 - key() returns a dataclasses.field
        Path("data/runtimes"), '"/var/cache/tfmirror"', form=PATH
    )


def contract_policy(model: HubModel, hub: HubConfig) -> str:
    """What a version of `model` that breaks its pinned contract meets."""
    return model.on_contract_change or hub.on_contract_change


def license_policy(model: HubModel, hub: HubConfig) -> LicensePolicy:
    """The licence policy `model` is published under: its entry's keys, else [hub]'s."""
    hub_wide = LicensePolicy(hub.allowed_licenses, hub.denied_licenses, hub.allow_unknown_license)
    return hub_wide.own(model.allowed_licenses, model.denied_licenses, model.allow_unknown_license)


def read(raw: Any, base: Path, storage: StorageConfig) -> HubConfig:
    runtimes = str(storage.path / "runtimes")
    return read_table(HubConfig, "hub", raw, base, validate, {"runtimes_dir": runtimes})


def validate(s: Section, hub: HubConfig) -> None:
    """No two models (or aliases) may be kept under one path."""
    seen: dict[str, str] = {}
    for model in hub.models:
        for name in (model.handle, *model.aliases):
            path = handle_path(name)
            other = seen.setdefault(path, name)
            s.check(
                "models",
                other == name,
                name,
                f"its path {path!r} is the same as {other!r}'s; mirror only one of them",
            )
    handles = [m.handle for m in hub.models]
    dup = next((h for h in handles if handles.count(h) > 1), None)
    s.check("models", dup is None, dup, "each handle may appear once")
