"""The parameter panel: a step's declared parameters as widgets, applied in place or saved as project.yaml.

Generated from ``config.params_for_step`` (the source ``playbook params`` uses): a text
box per string, a number box respecting the declared bounds, a dropdown for
enumerations, a checkbox per flag, comma-separated text for lists and a KPI editor
(metric dropdown + threshold). Every field is checked with the same functions as the
command line (``config.convert``, ``kpis.validate_kpis``), so its message next to the
field is the CLI's message. A kernel cannot make JupyterLab re-run cells: "Apply"
changes the values the following cells read and says which cells to run.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import yaml
from IPython import get_ipython

import __main__
from helpers.core import config
from helpers.core.artifacts import (
    interactive_run_dir,
    write_text,  # atomic: a crash never leaves half a file
)
from helpers.core.datasets import BUILTIN_PREFIX, builtin_names, preset_for
from helpers.core.errors import PlaybookError
from helpers.core.kpis import METRICS, validate_kpis

RUNNER_ONLY = ("run_dir", "interactive")  # set by the runner or the notebook, never by a project
NO_VALUE = "None (dataset preset)"  # the label of None for preset-backed parameters
NO_VALUE_PLANNED = "None (automatic: see the help)"  # None of other parameters (n_jobs, the plan's sizes)


def no_value_label(param) -> str:
    return NO_VALUE if param.name in config.PRESET_KEYS else NO_VALUE_PLANNED
APPLIED_MESSAGE = "Applied. Now use Run > Run Selected Cell and All Below from the cell after the panel."
DEFAULT_PROJECT_FILE = "project.yaml"
_INT_LIMIT = 2**31 - 1
_FLOAT_LIMIT = 1e12
_ROW = {"width": "100%", "align_items": "center"}
_CONTROL_STYLE = {"description_width": "170px"}
_CONTROL_WIDTH = "430px"


def _w():
    import ipywidgets  # imported lazily: batch runs never build a panel

    return ipywidgets


def message_html(text: str, *, error: bool = True) -> str:
    """A field or panel message as escaped HTML (red for errors)."""
    if not text:
        return ""
    color = "#b00020" if error else "#1b5e20"
    return f"<span style='color:{color}'>{html.escape(text)}</span>"


def metric_options(problem_type: str | None, keep: str | None = None) -> list[tuple[str, str]]:
    """Dropdown options (label, metric) for a problem type; all metrics when it is unknown."""
    names = [n for n, m in METRICS.items() if problem_type in (None, "auto") or m.problem_type == problem_type]
    if keep is not None and keep not in names:
        names.append(keep)  # keep a non-fitting choice visible so its message can say why
    return [(f"{n} ({METRICS[n].direction} is better)", n) for n in names]


def _default_threshold(metric: str) -> float:
    m = METRICS[metric]
    return 0.5 if m.high <= 1 and m.low >= 0 else 1.0


# --- one field per parameter -------------------------------------------------------------


class Field:
    """One parameter: its control, its help text and a validation message next to it."""

    def __init__(self, param: config.Param, control: Any):
        w = _w()
        self.param = param
        self.control = control
        self.message = w.HTML(layout=w.Layout(margin="0 0 0 8px"))
        self.message.add_class("playbook-field-message")
        help_text = w.HTML(f"<span style='color:#555'>{html.escape(param.help)}</span>",
                           layout=w.Layout(margin="0 0 0 8px", flex="1 1 auto"))
        self.row = w.HBox([control, help_text, self.message], layout=w.Layout(**_ROW))
        self.row.add_class("playbook-field")
        self.row.add_class(f"playbook-field-{param.name}")

    @property
    def name(self) -> str:
        return self.param.name

    def raw(self) -> Any:
        """The control's value as a Python value (before conversion)."""
        return self.control.value

    def set_value(self, value: Any) -> None:
        self.control.value = value

    def value(self) -> Any:
        """The converted value; raises the CLI's ``PlaybookError`` when it is invalid."""
        return config.convert(self.name, self.raw())

    def validate(self) -> str:
        """Check the value, show the message next to the field and return it ('' when valid)."""
        try:
            self.value()
        except PlaybookError as exc:
            self.message.value = message_html(str(exc))
            return str(exc)
        self.message.value = ""
        return ""

    def on_change(self, callback: Callable[[], None]) -> None:
        self.control.observe(lambda _change: callback(), names="value")


class TextField(Field):
    """A string; for a nullable parameter an empty box means None (the dataset preset or automatic)."""

    def raw(self) -> Any:
        text = self.control.value
        return None if self.param.nullable and not text.strip() else text

    def set_value(self, value: Any) -> None:
        self.control.value = "" if value is None else str(value)


class ListField(TextField):
    """A list, typed as comma-separated text; empty means None when the parameter allows it."""

    def raw(self) -> Any:
        items = [part.strip() for part in self.control.value.split(",") if part.strip()]
        return None if self.param.nullable and not items else items

    def set_value(self, value: Any) -> None:
        self.control.value = "" if value is None else ", ".join(map(str, value))


class NullableNumberField(TextField):
    """A number that may be None: typed as text and converted like a ``-p`` value."""

    def value(self) -> Any:
        return config.convert(self.name, self.raw(), from_text=True)


class KpiField(Field):
    """The KPI editor: one row per KPI (metric dropdown, threshold, remove), and an add button."""

    def __init__(self, param: config.Param, value: Mapping[str, float] | None,
                 problem_type: Callable[[], str | None]):
        w = _w()
        self.problem_type = problem_type
        self.rows: list[Any] = []
        self._callbacks: list[Callable[[], None]] = []
        self.add_button = w.Button(description="+ KPI", tooltip="add a KPI row", layout=w.Layout(width="80px"))
        self.add_button.add_class("playbook-kpi-add")
        self.add_button.on_click(lambda _b: self.add_row())
        self.rows_box = w.VBox()
        label = w.HTML(f"<b>{html.escape(param.name)}</b>", layout=w.Layout(width="170px"))
        control = w.VBox([w.HBox([label, self.add_button]), self.rows_box], layout=w.Layout(width=_CONTROL_WIDTH))
        super().__init__(param, control)
        self.set_value(value)

    def add_row(self, metric: str | None = None, threshold: float | None = None) -> None:
        """Add a KPI row (by default the first fitting metric not used yet)."""
        w = _w()
        used = {r.children[0].value for r in self.rows}
        options = metric_options(self.problem_type(), keep=metric)
        if metric is None:
            metric = next((m for _, m in options if m not in used), options[0][1])
        dropdown = w.Dropdown(options=options, value=metric, layout=w.Layout(width="250px"))
        number = w.FloatText(value=_default_threshold(metric) if threshold is None else float(threshold),
                             layout=w.Layout(width="100px"))
        remove = w.Button(description="x", tooltip="remove this KPI", layout=w.Layout(width="36px"))
        row = w.HBox([dropdown, number, remove])
        row.add_class("playbook-kpi-row")
        remove.on_click(lambda _b: self.remove_row(row))
        for control in (dropdown, number):
            control.observe(lambda _change: self._changed(), names="value")
        self.rows.append(row)
        self.rows_box.children = tuple(self.rows)
        self._changed()

    def remove_row(self, row: Any) -> None:
        self.rows.remove(row)
        self.rows_box.children = tuple(self.rows)
        self._changed()

    def refresh_options(self) -> None:
        """Re-filter each row's metric list after the problem type changed (keeping its choice)."""
        for row in self.rows:
            dropdown = row.children[0]
            current = dropdown.value
            dropdown.options = metric_options(self.problem_type(), keep=current)
            dropdown.value = current
        self.validate()

    def raw(self) -> Any:
        if not self.rows:
            return None
        kpis: dict[str, float] = {}
        for row in self.rows:
            metric, threshold = row.children[0].value, row.children[1].value
            if metric in kpis:
                raise PlaybookError(f"KPI {metric!r} is listed twice.", "remove one of its rows.")
            kpis[metric] = threshold
        return kpis

    def set_value(self, value: Any) -> None:
        self.rows = []
        self.rows_box.children = ()
        for metric, threshold in (value or {}).items():
            self.add_row(metric, threshold)
        self._changed()

    def value(self) -> Any:
        converted = config.convert(self.name, self.raw())
        if converted is None:
            return None
        ptype = self.problem_type()
        return validate_kpis(converted, ptype if ptype != "auto" else None)

    def validate(self) -> str:
        problem = super().validate()
        if not problem and not self.rows:
            self.message.value = message_html("No KPI given: the dataset preset's KPIs apply.", error=False)
        return problem

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def _changed(self) -> None:
        for callback in self._callbacks:
            callback()


def make_field(param: config.Param, value: Any, problem_type: Callable[[], str | None]) -> Field:
    """The field for one parameter, chosen from its declared type, choices and bounds."""
    w = _w()
    common = {"description": param.name, "tooltip": param.help, "style": _CONTROL_STYLE,
              "layout": w.Layout(width=_CONTROL_WIDTH)}
    if param.type == "dict":
        return KpiField(param, value, problem_type)
    if param.choices is not None:
        options = ([(no_value_label(param), None)] if param.nullable else []) + [(str(c), c) for c in param.choices]
        return Field(param, w.Dropdown(options=options, value=value, **common))
    if param.type == "bool":
        return Field(param, w.Checkbox(value=bool(value), indent=False, **common))
    if param.type in ("int", "float") and not param.nullable:
        return Field(param, _number_control(param, value, common))
    field_class = {"list": ListField, "int": NullableNumberField, "float": NullableNumberField}.get(param.type, TextField)
    if param.name == "dataset":
        control = w.Combobox(options=[BUILTIN_PREFIX + n for n in builtin_names()], ensure_option=False,
                             placeholder="builtin:<name> or a file path", continuous_update=False, **common)
    else:
        control = w.Text(placeholder=no_value_label(param) if param.nullable else "", continuous_update=False, **common)
    field = field_class(param, control)
    field.set_value(value)
    return field


def _number_control(param: config.Param, value: Any, common: dict[str, Any]) -> Any:
    """A number box; bounded when the registry declares bounds (exclusive ends are checked by the message)."""
    w = _w()
    is_int = param.type == "int"
    if param.minimum is None and param.maximum is None:
        return (w.IntText if is_int else w.FloatText)(value=value, **common)
    limit = _INT_LIMIT if is_int else _FLOAT_LIMIT
    low = -limit if param.minimum is None else param.minimum
    high = limit if param.maximum is None else param.maximum
    if is_int:
        return w.BoundedIntText(value=value, min=int(low), max=int(high), **common)
    return w.BoundedFloatText(value=value, min=low, max=high, step=None, **common)


# --- the panel ------------------------------------------------------------------------------


def kernel_namespace() -> MutableMapping[str, Any]:
    """The notebook's global namespace (the kernel's user namespace, else ``__main__``)."""
    shell = get_ipython()
    if shell is not None:
        return shell.user_ns
    return vars(__main__)


class ParameterPanel:
    """The widgets for one step's parameters, with "Apply" and "Save as project file".

    ``params`` is the notebook's validated ``Params``: Apply updates it in place and writes
    the raw values into ``namespace`` (default: the kernel's globals), as the parameters cell
    would hold them. ``project_dir`` anchors a relative project file path (default: the
    current folder, which in JupyterLab is the notebook's folder).
    """

    def __init__(self, step: str, params: MutableMapping[str, Any], *,
                 namespace: MutableMapping[str, Any] | None = None, project_dir: str | os.PathLike | None = None):
        w = _w()
        self.step = step
        self.params = params
        self.namespace = kernel_namespace() if namespace is None else namespace
        self.project_dir = Path(project_dir) if project_dir is not None else None
        self.fields: dict[str, Field] = {}
        for p in config.params_for_step(step):
            if p.name not in RUNNER_ONLY:
                self.fields[p.name] = make_field(p, params.get(p.name, p.default), self.problem_type)
        for field in self.fields.values():
            field.on_change(lambda f=field: self._field_changed(f))
            field.validate()
        self.apply_button = w.Button(description="Apply", button_style="primary", icon="check",
                                     tooltip="validate the values and use them in the following cells")
        self.apply_button.add_class("playbook-apply")
        self.apply_button.on_click(lambda _b: self.apply())
        self.path = w.Text(value=DEFAULT_PROJECT_FILE, description="project file", style=_CONTROL_STYLE,
                           layout=w.Layout(width=_CONTROL_WIDTH))
        self.path.add_class("playbook-project-path")
        self.overwrite = w.Checkbox(value=False, description="overwrite", indent=False, layout=w.Layout(width="110px"))
        self.overwrite.add_class("playbook-overwrite")
        self.save_button = w.Button(description="Save as project file", icon="save", layout=w.Layout(width="auto"),
                                    tooltip="write these values as a project.yaml for `playbook run -f`")
        self.save_button.add_class("playbook-save")
        self.save_button.on_click(lambda _b: self.save())
        self.status = w.HTML()
        self.status.add_class("playbook-panel-status")
        self.widget = self._layout()

    def _layout(self) -> Any:
        w = _w()
        title = w.HTML(f"<b>Parameters of {html.escape(self.step)}</b> "
                       f"<span style='color:#555'>(run folder: {html.escape(str(self.run_folder()))})</span>")
        rows = [f.row for f in self.fields.values()]
        actions = w.HBox([self.apply_button, self.path, self.overwrite, self.save_button], layout=w.Layout(**_ROW))
        box = w.VBox([title, *rows, actions, self.status],
                     layout=w.Layout(border="1px solid #ccc", padding="6px", width="100%"))
        box.add_class("playbook-panel")
        return box

    def run_folder(self) -> str:
        """The run folder this notebook writes into (set by the setup cell, not by the panel)."""
        return str(self.params.get("run_dir") or interactive_run_dir())

    def problem_type(self) -> str | None:
        """The problem type in the panel when valid, else the one in force (None when unknown)."""
        field = self.fields.get("problem_type")
        if field is not None:
            try:
                return field.value()
            except PlaybookError:
                pass
        return self.params.get("problem_type")

    def _field_changed(self, field: Field) -> None:
        field.validate()
        self.status.value = ""
        if field.name == "dataset":
            self._fill_from_preset()
        if field.name == "problem_type" and isinstance(self.fields.get("kpis"), KpiField):
            self.fields["kpis"].refresh_options()

    def _fill_from_preset(self) -> None:
        """A built-in dataset brings its preset: refill the preset-backed fields from it."""
        dataset = str(self.fields["dataset"].raw())
        if not dataset.startswith(BUILTIN_PREFIX):
            return
        try:
            preset = preset_for(dataset)
        except PlaybookError as exc:
            self.fields["dataset"].message.value = message_html(str(exc))
            return
        for key in config.PRESET_KEYS:
            if key in self.fields and key != "kpis":
                self.fields[key].set_value(preset.get(key))
        if "kpis" in self.fields:  # after problem_type, so the metric lists fit
            self.fields["kpis"].set_value(preset.get("kpis"))

    # --- values --------------------------------------------------------------------------

    def collect(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The panel's values as a parameters cell would hold them, and the fields' errors."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, field in self.fields.items():
            problem = field.validate()
            if problem:
                errors[name] = problem
            else:
                values[name] = field.value()
        return values, errors

    def resolved(self, values: Mapping[str, Any]) -> config.Params:
        """What the setup cell would compute from ``values`` (presets resolved, consistency checked)."""
        namespace = {name: self.params.get(name) for name in RUNNER_ONLY}
        namespace.update({p.name: p.default for p in config.params_for_step(self.step) if p.name not in namespace})
        namespace.update(values)
        return config.validate_step(self.step, namespace)

    def _checked(self) -> tuple[dict[str, Any], config.Params] | None:
        values, errors = self.collect()
        if errors:
            names = ", ".join(errors)
            self.show(f"Nothing changed: {len(errors)} field(s) have errors ({names}); see the messages next to them.")
            return None
        try:
            return values, self.resolved(values)
        except PlaybookError as exc:
            self.show(f"Nothing changed: {exc}")
            return None

    def apply(self) -> bool:
        """Validate every value, then make them the ones the following cells use."""
        checked = self._checked()
        if checked is None:
            return False
        values, resolved = checked
        changed = [name for name in values if resolved[name] != self.params.get(name)]
        self.namespace.update(values)
        self.params.clear()
        self.params.update(resolved)
        detail = f" Changed: {', '.join(changed)}." if changed else " (No value changed.)"
        self.show(APPLIED_MESSAGE + detail, error=False)
        return True

    # --- project file --------------------------------------------------------------------

    def project_path(self) -> Path:
        path = Path(os.path.expanduser(self.path.value.strip() or DEFAULT_PROJECT_FILE))
        if not path.is_absolute():
            path = (self.project_dir or Path.cwd()) / path
        return path

    def save(self) -> Path | None:
        """Write the panel's values as a project file; never overwrite one unless asked to."""
        checked = self._checked()
        if checked is None:
            return None
        values, _resolved = checked
        path = self.project_path()
        if path.is_dir():
            self.show(f"{path} is a folder, not a file: nothing written. Give a file name such as {DEFAULT_PROJECT_FILE}.")
            return None
        if path.exists() and not self.overwrite.value:
            free = free_name(path)
            self.path.value = str(free if Path(self.path.value).is_absolute() else free.name)
            self.show(f"{path.name} already exists and was not overwritten. Tick 'overwrite' to replace it, "
                      f"or press 'Save as project file' again to write {free.name} (filled in above).")
            return None

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, project_file_text(self.step, values))
        except OSError as exc:
            self.show(f"Could not write {path}: {exc.strerror or exc}. Choose another path.")
            return None
        self.show(f"Saved {path}. Run it with: playbook run -f {path}", error=False)
        return path

    def show(self, text: str, *, error: bool = True) -> None:
        """Show a message in the panel's status line."""
        self.status.value = message_html(text, error=error)


def free_name(path: Path) -> Path:
    """``project.yaml`` -> the first of ``project-2.yaml``, ``project-3.yaml``... that does not exist."""
    n = 2
    while (candidate := path.with_name(f"{path.stem}-{n}{path.suffix}")).exists():
        n += 1
    return candidate


def project_file_text(step: str, values: Mapping[str, Any]) -> str:
    """A ``project.yaml`` holding ``values``, each with its help as a comment.

    A preset-backed parameter left at None is written as a comment only: omitting it gives
    the dataset preset, exactly as in the notebook (an explicit null would not).
    """
    lines = [f"# ML Project Playbook: parameters set in the panel of {step}.",
             "# Run with: playbook run -f <this file>   (other parameters keep their defaults: playbook params)", ""]
    for name, value in values.items():
        if name in RUNNER_ONLY:
            continue
        param = config.REGISTRY[name]
        lines.append(f"# {param.help} [{param.annotation}]")
        text = yaml.safe_dump({name: value}, sort_keys=False, default_flow_style=False, allow_unicode=True,
                              width=1_000_000).strip()
        if value is None and name in config.PRESET_KEYS:
            text = f"# {name}: null  (from the dataset preset)"
        lines += [text, ""]
    return "\n".join(lines)
