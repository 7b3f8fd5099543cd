"""Interactive explorers and the parameter panel, with a static rendering for batch runs.

Every explorer follows one pattern (``explorer``): controls, a short text readout in
an ``HTML`` widget with the stable CSS class ``playbook-readout``, and a figure. The
update function reads precomputed or cached results; it never refits a model. In
batch runs (``interactive=False``) the same update function renders static
readouts and figures for a few representative settings, so reports show real output.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import HTML, Image, Markdown, display

from helpers.core.artifacts import figure_png
from helpers.ui.panel import ParameterPanel

READOUT_CLASS = "playbook-readout"
ExplorerUpdate = Callable[..., tuple[str, Any]]  # (**control values) -> (readout text, figure or None)


def _ipywidgets():
    import ipywidgets  # imported lazily: batch runs never need it

    return ipywidgets


def figure_image(fig: Any) -> Image:
    """A figure as a PNG image, then closed.

    ``display(fig)`` shows only "<Figure size ...>" text when the kernel's backend is not the
    inline one (e.g. MPLBACKEND=agg): a PNG shows the same under every backend. The PNG is
    rendered once (``artifacts.figure_png``): saving the figure afterwards reuses it.
    """
    png = figure_png(fig)
    plt.close(fig)
    return Image(data=png, format="png")


def show_figure(fig: Any) -> None:
    """Show a finished figure in the notebook (what ``plt.show()`` does, rendered only once)."""
    display(figure_image(fig))


def readout_html(text: str) -> str:
    """The readout's HTML: escaped text (user strings never become markup)."""
    return f"<div class='{READOUT_CLASS}-text'>{html.escape(text)}</div>"


class Explorer:
    """Controls + readout + figure, wired to one update function (testable without a browser)."""

    def __init__(self, title: str, controls: Mapping[str, Any], update: ExplorerUpdate):
        w = _ipywidgets()
        self.title = title
        self.controls = dict(controls)
        self.update = update
        self.readout = w.HTML(layout=w.Layout(min_height="2em"))
        self.readout.add_class(READOUT_CLASS)
        self.output = w.Output()
        self.output.add_class("playbook-explorer-figure")
        self.last_text = ""
        self.last_seconds = 0.0
        for control in self.controls.values():
            _uniform_label(control)
            control.observe(self._on_change, names="value")
        header = w.HTML(f"<b>{html.escape(title)}</b>")
        header.add_class("playbook-explorer-title")
        row = w.HBox(list(self.controls.values()), layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = w.VBox([header, row, self.readout, self.output])
        self.widget.add_class("playbook-explorer")
        self.refresh()

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def refresh(self) -> str:
        """Call the update function with the controls' values; show its readout and figure."""
        start = time.perf_counter()
        text, fig = self.update(**self.values())
        self.output.clear_output(wait=True)
        if fig is not None:
            image = figure_image(fig)
            with self.output:
                display(image)
        # the readout changes last: once it shows the new text, the figure is there too
        self.last_seconds = time.perf_counter() - start
        self.last_text = text
        self.readout.value = readout_html(text)
        return text

    def _on_change(self, _change) -> None:
        # An exception in a widget callback only reaches the browser's log console: show it
        # in the readout instead, where the person who moved the control looks.
        try:
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - any failure must be visible, not swallowed
            self.last_text = f"Could not update: {exc}"
            self.readout.value = readout_html(self.last_text)


def _uniform_label(control: Any) -> None:
    """Show every control's full label (the default width cuts labels such as "threshold")."""
    style = getattr(control, "style", None)
    if style is not None and hasattr(style, "description_width"):
        style.description_width = "initial"


def explorer(title: str, controls: Callable[[], Mapping[str, Any]], update: ExplorerUpdate, *,
             interactive: bool, static_cases: Sequence[Mapping[str, Any]]) -> Explorer | None:
    """Show an explorer (interactive) or its static rendering for ``static_cases`` (batch).

    ``controls`` is a function returning the widgets, so batch runs create none.
    """
    if interactive:
        ex = Explorer(title, controls(), update)
        display(ex.widget)
        return ex
    display(Markdown(f"**{title}** (static view of the interactive explorer)"))
    for case in static_cases:
        text, fig = update(**case)
        settings = ", ".join(f"{k} = {v}" for k, v in case.items())
        display(HTML(f"<p><i>{html.escape(settings)}</i></p>" + readout_html(text)))
        if fig is not None:
            display(figure_image(fig))
    return None


# --- parameter panel ----------------------------------------------------------------


def values_table(values: Mapping[str, Any]) -> pd.DataFrame:
    """A compact table of parameter values in force (the batch rendering of the panel)."""
    return pd.DataFrame({"parameter": list(values), "value": [repr(v) for v in values.values()]}).set_index("parameter")


def parameter_panel(step: str, params: MutableMapping[str, Any], *, interactive: bool,
                    namespace: MutableMapping[str, Any] | None = None):
    """The panel of a step's parameters (see ``helpers.ui.panel``); in batch runs a static table of the values."""
    if not interactive:
        display(values_table(params))
        return None

    panel = ParameterPanel(step, params, namespace=namespace)
    display(panel.widget)
    return panel
