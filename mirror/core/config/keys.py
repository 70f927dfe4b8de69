"""How a config key is declared and read. Each key is declared once, on its section's
dataclass field, with `key(default, example, check, form)`; `Section.read` reads every
declared field of a class the same way (type, default, check, conversion), so a
section's own code is left with what spans several keys, its `validate()`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from mirror.core.errors import ConfigError
from mirror.core.redact import bounded, redact_url

T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    """What a key's value must be beyond its type, and the fix a refusal names."""

    ok: Callable[[Any], bool]
    fix: str


PORT = Check(lambda port: 1 <= port <= 65535, "use a TCP port from 1 to 65535")
RETRIES = Check(lambda n: 0 <= n <= 20, "use 0 to 20")
# inf and nan are floats TOML accepts: a number of seconds must be finite.
SECONDS = Check(lambda v: math.isfinite(v) and v > 0, "must be positive seconds")
SECONDS_OR_ZERO = Check(lambda v: math.isfinite(v) and v >= 0, "must be 0 or more seconds")


def optional_url(fix: str) -> Check:
    """Empty (the default applies), or an http(s) URL."""
    return Check(lambda url: not url or url.startswith(("http://", "https://")), fix)


@dataclass(frozen=True)
class Form:
    """A key whose TOML value is not yet the field's (a path, a list of requirements, a
    table of tables): the TOML type it must have, and how that becomes the field's value,
    checking each item on the way. `convert` also gets the default when the key is
    absent, so it takes the field's own type as well as the TOML one."""

    toml: type
    convert: Callable[[Section, str, Any], Any] = lambda section, name, value: value


@dataclass(frozen=True)
class Key:
    default: Any  # what an absent key reads as
    # The value a refusal of its type shows, e.g. `port = 8080`; or made from the keys
    # its class declares before it (a target's interpreter names its python).
    example: str | Callable[[Mapping[str, Any]], str]
    check: Check | None
    form: Form | None


def key(
    default: Any,
    example: str | Callable[[Mapping[str, Any]], str],
    check: Check | None = None,
    form: Form | None = None,
    *,
    required: bool = False,
    compare: bool = True,
) -> Any:
    """A config key, declared once on its dataclass field. `required`: the dataclass
    field has no default (code must give it), while an absent key still reads as
    `default` and meets `check` (which then names what is missing). `compare`: as
    dataclasses' own, for a key that does not make two values different."""
    declared = {"key": Key(default, example, check, form)}
    if required:
        return field(compare=compare, metadata=declared)
    return field(default=default, compare=compare, metadata=declared)


def plain(convert: Callable[[Any], Any]) -> Form:
    """A str key normalised after its check, e.g. a URL without its trailing slash."""
    return Form(str, lambda section, name, value: convert(value))


class Section:
    """Reads one TOML table, remembering which keys were used so leftovers are errors.
    `base` is the folder relative paths in it resolve against."""

    def __init__(self, name: str, data: Any, base: Path) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"[{name}] must be a table, e.g. [{name}] on its own line")
        self.name = name
        self.data = dict(data)
        self.base = base
        self.given = frozenset(data)  # the keys the file sets, read or not
        self.raw: dict[str, Any] = {}  # each read key's value before its conversion

    def get(self, key: str, kind: type[T], default: T, hint: str) -> T:
        if key not in self.data:
            return default
        value = self.data.pop(key)
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(
                f"[{self.name}] {key} = {value!r}: must be {kind.__name__}, e.g. {key} = {hint}"
            )
        return value  # type: ignore[no-any-return]

    def read(self, cls: type, absent: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every key `cls` declares with `key(...)`, in its field order: typed, defaulted,
        checked and converted by its own declaration. `absent` overrides what a missing
        key reads as where that depends on another section (a folder under the store's)."""
        kinds = get_type_hints(cls)
        values = {}
        for f in fields(cls):
            declared = f.metadata.get("key")
            if declared is None:
                continue  # not a key of the file (an environment's name, from its table's)
            kind = declared.form.toml if declared.form else kinds[f.name]
            default = (absent or {}).get(f.name, declared.default)
            example = declared.example
            if callable(example):
                example = example(self.raw)
            value = self.get(f.name, kind, default, example)
            self.raw[f.name] = value
            if declared.check is not None:
                self.check(f.name, declared.check.ok(value), value, declared.check.fix)
            if declared.form is not None:
                value = declared.form.convert(self, f.name, value)
            values[f.name] = value
        return values

    def check(self, key: str, ok: bool, value: Any, fix: str) -> None:
        if not ok:
            # The value as written, but never a password inside a URL, nor 10 KB of it.
            shown = bounded(redact_url(value), 300) if isinstance(value, str) else value
            raise ConfigError(f"[{self.name}] {key} = {shown!r}: {fix}")

    def done(self) -> None:
        if self.data:
            key = sorted(self.data)[0]
            raise ConfigError(f"[{self.name}] {key}: unknown key; remove it or check its spelling")


def read_table(
    cls: type[T],
    name: str,
    raw: Any,
    base: Path,
    validate: Callable[[Section, T], None] | None = None,
    absent: Mapping[str, Any] | None = None,
) -> T:
    """The table `name` as a `cls`: its declared keys read, then `validate` (the checks
    that span its keys), then no key left over."""
    s = Section(name, raw, base)
    value = cls(**s.read(cls, absent))
    if validate is not None:
        validate(s, value)
    s.done()
    return value
