"""Render the Jinja2 templates (charter, datasheet, stack decision, model card, CI workflow)."""

from __future__ import annotations

from typing import Any

import jinja2

from helpers.core.paths import templates_dir


def _md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell (pipes and newlines would break the row)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def environment(markup: bool = True) -> jinja2.Environment:
    """Markdown templates autoescape HTML, so user strings never become markup."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), autoescape=markup,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["md_cell"] = _md_cell
    env.filters["fmt"] = lambda v, spec=".3f": "n/a" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>``; ``.md.j2`` output escapes HTML, YAML output does not."""
    return environment(markup=template.endswith(".md.j2")).get_template(template).render(**context)
