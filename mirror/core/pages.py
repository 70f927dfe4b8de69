"""Every HTML page the mirror makes, made one way: a Jinja template from one environment
that escapes every value, a template missing a value fails loudly (StrictUndefined) and
styled pages extend one `base.html` (mirror/core/templates). A template is named by its
package and file, e.g. "sync_jobs/status.html" (its package's `templates/` folder), so
each package keeps its own pages and the core needs to know none of them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    PackageLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)
from markupsafe import Markup

from mirror.core.journal_text import describe
from mirror.core.sizes import human_bytes


class _PackageTemplates(BaseLoader):
    """ "<package>/<file>" from that package's templates folder (installed as package data)."""

    def __init__(self) -> None:
        self._loaders: dict[str, PackageLoader] = {}

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        package, _, name = template.partition("/")
        if not name:
            raise TemplateNotFound(template)
        loader = self._loaders.get(package)
        if loader is None:
            try:
                loader = PackageLoader(package, "templates")
            except (ImportError, ValueError) as missing:
                raise TemplateNotFound(template) from missing
            self._loaders[package] = loader
        return loader.get_source(environment, name)


def plain_time(text: str) -> str:
    """An ISO 8601 time as pages and `tfmirror status` print it, in UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _when(text: str | None) -> str:
    if not text:
        return Markup('<span class="muted">never</span>')
    try:
        return plain_time(text)
    except ValueError:
        return text


def _code(text: str) -> Markup:
    """Code as a <pre> shows it: escaped as element text needs, its quotes left as typed
    (an attribute's escaping would turn them into &#34;)."""
    return Markup(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


PAGES = Environment(
    loader=_PackageTemplates(),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,  # a page ends as its file does
)
PAGES.filters["size"] = human_bytes
PAGES.filters["when"] = _when
PAGES.filters["change"] = describe
PAGES.filters["code"] = _code


def add_filters(**filters: Callable[..., Any]) -> None:
    """A package's own filters (at its import): each name once, whoever adds it."""
    for name, function in filters.items():
        if PAGES.filters.get(name, function) is not function:
            raise ValueError(f"page filter {name!r} is taken")
        PAGES.filters[name] = function


def add_globals(**values: Callable[..., Any]) -> None:
    """A package's own functions templates call, each name once (as add_filters)."""
    for name, value in values.items():
        if PAGES.globals.get(name, value) is not value:
            raise ValueError(f"page global {name!r} is taken")
        PAGES.globals[name] = value


def render(template: str, **values: object) -> str:
    """The page `template` ("package/file.html") shows for these values."""
    return PAGES.get_template(template).render(**values)
