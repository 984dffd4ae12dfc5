"""Hyperparameters: every field of the run config, its default from the guidance, a
one-line explanation (the config field's own description), and guardrail warnings.

The form is generated from the pydantic models, so a new config field shows up here
without code. Each edit is validated by the model itself (`validate_assignment`); a
bad value is shown under its field and the config keeps its last good value.
"""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import ValidationError
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Select, Static, Switch

from ftwizard import advice
from ftwizard.config import DataSection, LoraSection, ModelSection, TrainingSection
from ftwizard.tui.workers import ReportsWorkerErrors

# (section attribute, model, fields shown; None = all). Data paths are here too so the
# flow works before the Data step exists; the Data step edits the same fields.
GROUPS: list[tuple[str, str, type, list[str] | None]] = [
    ("Model and method", "model", ModelSection, ["base", "method"]),
    ("Data", "data", DataSection, None),
    ("LoRA adapters", "lora", LoraSection, None),
    ("Training", "training", TrainingSection, None),
]


def _literal_choices(annotation) -> list[str] | None:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in args]
    return None


def _is_bool(annotation) -> bool:
    return annotation is bool


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def _parse(path: str, text: str, annotation):
    """Input text -> a value the model will validate ('' means None where None is allowed)."""
    text = text.strip()
    args = typing.get_args(annotation)
    if text == "" and type(None) in args:
        return None
    if path == "lora.target_modules":
        return text if text == "all-linear" else [p.strip() for p in text.split(",") if p.strip()]
    return text


class FieldRow(Vertical):
    """One config field: name, editor, explanation, and a line for its warning or error."""

    DEFAULT_CSS = """
    FieldRow { height: auto; margin-bottom: 1; }
    FieldRow Horizontal { height: auto; }
    FieldRow .field-name { width: 20; padding: 0 1 0 0; }
    FieldRow Input, FieldRow Select { width: 1fr; max-width: 48; }
    FieldRow Switch { width: 8; height: 1; border: none; padding: 0; }
    FieldRow Switch:focus { border: none; background-tint: $foreground 10%; }
    FieldRow .field-help { color: $text-muted; padding-left: 20; }
    FieldRow .field-note { color: $warning; padding-left: 20; display: none; }
    FieldRow .field-note.-shown { display: block; }
    FieldRow .field-note.-error { color: $error; }
    """

    def __init__(self, path: str, annotation, value, description: str, default):
        super().__init__(id="field-" + path.replace(".", "-"))
        self.path, self.annotation, self.value = path, annotation, value
        self.description = description
        self.default = default

    def compose(self) -> ComposeResult:
        name = self.path.split(".", 1)[1]
        with Horizontal():
            yield Label(name, classes="field-name")
            choices = _literal_choices(self.annotation)
            if _is_bool(self.annotation):
                yield Switch(value=bool(self.value), id="editor")
            elif choices:
                yield Select([(c, c) for c in choices], value=str(self.value), allow_blank=False, id="editor",
                             compact=True)
            else:
                yield Input(_as_text(self.value), id="editor", placeholder="(none)",
                            compact=True)
        default = "" if self.default is None or repr(self.default).startswith("PydanticUndefined") else (
            f" [default {_as_text(self.default)}]")
        yield Static(Text(self.description + default), classes="field-help")
        yield Static(classes="field-note")

    def on_mount(self) -> None:
        for inp in self.query(Input):
            inp.cursor_blink = self.app.blink

    def set_note(self, text: str | None, error: bool = False) -> None:
        note = self.query_one(".field-note", Static)
        note.update(("x " if error else "! ") + text if text else "")
        note.set_class(bool(text), "-shown")
        note.set_class(error, "-error")


class HyperparamsStep(ReportsWorkerErrors, VerticalScroll):
    TITLE = "Hyperparameters"
    BINDINGS = [Binding("ctrl+l", "toggle_pilot", "Pilot run")]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.rows: int | None = None
        self.avg_chars: int | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="pilot-row"):
            yield Label("Pilot run", classes="field-name")
            yield Switch(value=self.app.state.pilot, id="pilot")
            yield Static(Text("a few hundred examples, one pass: catches format bugs and bad learning rates "
                              "in minutes (Ctrl+L)", style="dim"), id="pilot-help")
        yield Static(id="plan", classes="panel")
        cfg = self.app.state.config
        for title, attr, model, names in GROUPS:
            yield Static(Text(title, style="bold underline"), classes="group-title")
            section = getattr(cfg, attr)
            for name, field in model.model_fields.items():
                if names is not None and name not in names:
                    continue
                yield FieldRow(f"{attr}.{name}", field.annotation, getattr(section, name),
                               field.description or "", field.default)

    def on_mount(self) -> None:
        self.query_one("#pilot", Switch).focus()
        self._count_rows()
        self.update_notes()

    def focus_first(self) -> None:
        self.query_one("#pilot", Switch).focus()

    @work(thread=True, exclusive=True, group="count", exit_on_error=False)
    def _count_rows(self) -> None:
        found = advice.count_examples(self.app.state.config.data.train)
        self.app.call_from_thread(self._set_rows, found)

    def _set_rows(self, found) -> None:
        self.rows, self.avg_chars = found if found else (None, None)
        self.update_notes()

    # ---- editing ---------------------------------------------------------------
    def _assign(self, row: FieldRow, value) -> None:
        section_name, name = row.path.split(".", 1)
        section = getattr(self.app.state.config, section_name)
        try:
            setattr(section, name, value)
        except ValidationError as e:
            err = e.errors()[0]
            row.set_note(f"{err['msg']} (kept {_as_text(getattr(section, name))})", error=True)
            return
        row.set_note(None)
        if row.path == "data.train":
            self._count_rows()
        self.update_notes()

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        row = next((a for a in event.input.ancestors if isinstance(a, FieldRow)), None)
        if row is None:
            return
        section, name = row.path.split(".", 1)
        current = getattr(getattr(self.app.state.config, section), name)
        if event.value == _as_text(current) and not row.query_one(".field-note").has_class("-error"):
            return  # mounting, or an edit back to the same value
        self._assign(row, _parse(row.path, event.value, row.annotation))

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        row = next((a for a in event.select.ancestors if isinstance(a, FieldRow)), None)
        if row is not None and event.value is not Select.NULL:
            self._assign(row, event.value)

    @on(Switch.Changed)
    def _switch_changed(self, event: Switch.Changed) -> None:
        if event.switch.id == "pilot":
            self.app.state.set_pilot(event.value, self.rows)
            self._sync_editor("training.max_steps")
            self.update_notes()
            return
        row = next((a for a in event.switch.ancestors if isinstance(a, FieldRow)), None)
        if row is not None:
            self._assign(row, event.value)

    def action_toggle_pilot(self) -> None:
        sw = self.query_one("#pilot", Switch)
        sw.value = not sw.value

    def _sync_editor(self, path: str) -> None:
        section_name, name = path.split(".", 1)
        value = getattr(getattr(self.app.state.config, section_name), name)
        editor = self.query_one(f"#field-{path.replace('.', '-')}").query_one("#editor")
        if isinstance(editor, Input):
            with editor.prevent(Input.Changed):
                editor.value = _as_text(value)

    def update_notes(self) -> None:
        cfg = self.app.state.config
        warnings = advice.hyperparameter_warnings(cfg, self.rows)
        for row in self.query(FieldRow):
            note = row.query_one(".field-note", Static)
            if note.has_class("-error"):
                continue
            row.set_note(warnings.get(row.path))
        self.query_one("#plan", Static).update(self._plan_text())

    def _estimated_time(self, plan) -> float | None:
        """Run time from the hardware estimate, when a GPU to judge against was chosen (Model step)."""
        target = self.app.state.gpu_target
        if target is None or plan.tokens is None or plan.rows is None:
            return None
        try:
            from ftwizard.hardware.estimate import estimate_for_config

            est = estimate_for_config(self.app.state.config, gpu=target, rows=plan.rows,
                                      train_tokens=plan.tokens, epochs=1.0)
        except Exception:  # an estimate that cannot be made simply shows no time
            return None
        return est.time_s

    def _gpu_name(self) -> str:
        t = self.app.state.gpu_target
        return getattr(t, "name", None) or str(t)

    def on_show(self) -> None:
        """Other steps edit the same config (method, batch, max length): show its current values."""
        for row in self.query(FieldRow):
            section, name = row.path.split(".", 1)
            value = getattr(getattr(self.app.state.config, section), name)
            editor = row.query_one("#editor")
            if isinstance(editor, Input):
                if editor.value != _as_text(value) and not row.query_one(".field-note").has_class("-error"):
                    with editor.prevent(Input.Changed):
                        editor.value = _as_text(value)
            elif isinstance(editor, Select):
                if editor.value != str(value):
                    with editor.prevent(Select.Changed):
                        editor.value = str(value)
            elif isinstance(editor, Switch) and editor.value != bool(value):
                with editor.prevent(Switch.Changed):
                    editor.value = bool(value)
        self.update_notes()

    def _plan_text(self) -> Text:
        cfg = self.app.state.config
        plan = advice.training_plan(cfg, self.rows, self.avg_chars)
        out = Text()
        out.append("Plan: ", style="bold")
        out.append(f"{plan.rows:,} examples" if plan.rows is not None else "examples: unknown (file not counted)")
        out.append(f"  x {plan.epochs:g} epochs  /  batch {plan.effective_batch}"
                   f" ({cfg.training.batch_size} x {cfg.training.gradient_accumulation})")
        out.append(f"\n      = {plan.steps:,} optimizer steps" if plan.steps is not None else "\n      = steps unknown")
        if plan.tokens is not None:
            out.append(f", about {plan.tokens:,} training tokens")
        if self.app.state.pilot:
            out.append("  [pilot]", style="bold yellow")
        time_s = self._estimated_time(plan)
        if time_s:
            from ftwizard.tui.runwatch import format_duration

            out.append(f"\n      ~ {format_duration(time_s)} on {self._gpu_name()} (estimate)")
        else:
            out.append("\n      time: the pilot run measures it (tokens/s on the Train screen)", style="dim")
        train = Path(cfg.data.train)
        if not train.is_file():
            out.append(f"\n  x training file not found: {train}", style="bold red")
        return out
