"""Report sections: what every step's ``report_section(run)`` returns, and the one way they are rendered.

A section leads with one sentence of takeaway and its two or three key facts and figures; the key
tables follow; everything else sits in collapsible details (``<details>``), then links to the
documents and the executed notebook. Rendering goes through the Jinja templates
``report_section.html.j2`` (autoescape: user strings are escaped; tables come from ``tables.table``).
Figures are inlined as data URIs, so the report stays one offline file.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from helpers.core import documents


@dataclass(frozen=True)
class Fact:
    """One key figure: a label, its value as text, and optionally the verdict that colours it."""

    label: str
    value: str
    verdict: str | None = None  # pass, watch or fail (see tables.verdict_word); None: neutral
    note: str = ""


@dataclass(frozen=True)
class Details:
    """A collapsible part of a section: its summary line and its content (trusted ``Markup`` parts)."""

    summary: str
    parts: Sequence[Markup]


@dataclass
class Section:
    """One report section: anchor, title, takeaway sentence, key facts, figures and tables, details, links."""

    anchor: str
    title: str
    takeaway: str
    facts: list[Fact] = field(default_factory=list)
    figures: list[Markup] = field(default_factory=list)
    body: list[Markup] = field(default_factory=list)
    details: list[Details] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)

    def render(self) -> Markup:
        """The section as HTML."""
        return Markup(template("report_section.html.j2").render(section=self))

    def _repr_html_(self) -> str:  # shown as HTML in a notebook
        return str(self.render())


@functools.lru_cache(maxsize=8)
def template(name: str) -> jinja2.Template:
    """A report template of ``templates/`` (autoescaped), loaded once per process."""
    return _environment().get_template(name)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return documents.environment(markup=True)


def image(path: Path, alt: str, *, css: str = "pb-figure") -> Markup | None:
    """A PNG figure inlined as a data URI (None when the file is absent: a figure a step did not draw)."""
    path = Path(path)
    if not path.exists():
        return None
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return Markup('<img class="{}" alt="{}" src="data:image/png;base64,{}">').format(css, alt, data)


def images(folder: Path, names: Sequence[tuple[str, str]]) -> list[Markup]:
    """The figures of ``folder`` that exist, as (file name, description) pairs -> inlined images."""
    return [img for name, alt in names if (img := image(Path(folder) / name, alt)) is not None]


def paragraph(text: Any, *, lead: str | None = None) -> Markup:
    """A paragraph of (escaped) text, optionally led by a bold label."""
    if lead:
        return Markup("<p><b>{}:</b> {}</p>").format(lead, text)
    return Markup("<p>{}</p>").format(text)


def bullets(items: Sequence[Any]) -> Markup:
    """A bulleted list (items escaped unless they are ``Markup``)."""
    return Markup("<ul>{}</ul>").format(Markup("").join(Markup("<li>{}</li>").format(i) for i in items))


def markdown(text: str) -> Markup:
    """Markdown (e.g. a section written by another part of the playbook) as HTML; raw HTML in it is escaped."""
    import mistune  # local: only sections written in Markdown need it (nbconvert's own Markdown renderer)

    return Markup(mistune.create_markdown(escape=True, plugins=["table"])(text))


def markdown_section(anchor: str, title: str, takeaway: str, text: str) -> Section:
    """A section whose body is Markdown (e.g. "since the last run of this project")."""
    return Section(anchor, title, takeaway, body=[markdown(text)])
