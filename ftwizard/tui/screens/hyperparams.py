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
from textual.widgets import Input, Label, Static

from ftwizard import advice
from ftwizard.config import DataSection, LoraSection, ModelSection, PreferenceSection, RunConfig, TrainingSection
from ftwizard.tui.widgets.light import Choice, Line
from ftwizard.tui.widgets.toggle import Toggle
from ftwizard.tui.workers import ReportsWorkerErrors

# (section attribute, model, fields shown; None = all). Data paths are here too so the
# flow works before the Data step exists; the Data step edits the same fields.
# A field shows once, in the first group that names it.
GROUPS: list[tuple[str, str, type, list[str] | None]] = [
    ("Objective and method", "training", TrainingSection, ["objective"]),
    ("", "model", ModelSection, ["base", "method"]),
    ("Preference objective (DPO, ORPO, KTO)", "preference", PreferenceSection, None),
    ("Data", "data", DataSection, None),
    ("LoRA adapters", "lora", LoraSection, None),
    ("Training", "training", TrainingSection, None),
]


def objective_fields(objective: str) -> set[str]:
    """The preference.* fields an objective uses (the config says which); all of them until it can."""
    try:
        from ftwizard.config import objective_fields as fields
    except ImportError:  # the config names them per objective once it can; until then show them all for any
        return set() if objective == "sft" else {f"preference.{n}" for n in PreferenceSection.model_fields}
    return {f if f.startswith("preference.") else f"preference.{f}" for f in fields(objective)}


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
    if typing.get_origin(annotation) is list or list in [typing.get_origin(a) for a in args]:
        return [p.strip() for p in text.split(",") if p.strip()]  # a list field: comma-separated
    return text


def plain_description(text: str) -> str:
    """A field's description for the screen: the source note "(guidance)" is said once, in the help line."""
    for suffix in (" (guidance).", "; guidance).", " (guidance)"):
        if text.endswith(suffix):
            return text[: -len(suffix)] + (")." if suffix == "; guidance)." else ".")
    return text


class FieldRow(Horizontal):
    """One config field: its name and editor on one line. Its note (warning or error) is the Static just below
    it (`self.note`), and its description shows in the step's help line while it has focus.

    Kept to three widgets: the form has ~35 of these and every widget costs layout time on each key."""

    DEFAULT_CSS = """
    FieldRow { height: auto; }
    FieldRow .field-name { width: 24; padding: 0 1 0 0; }
    FieldRow Input, FieldRow Choice { width: 1fr; max-width: 48; }
    .field-note { color: $warning; padding-left: 24; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    .field-note.-error { color: $error; text-style: bold; }
    """

    def __init__(self, path: str, annotation, value, description: str, default):
        super().__init__(id="field-" + path.replace(".", "-"))
        self.path, self.annotation, self.value = path, annotation, value
        self.description = plain_description(description)
        self.default = default
        # A fixed one-line slot: showing or clearing a note repaints one line, never re-lays out the form.
        self.note = Line(classes="field-note", id="note-" + path.replace(".", "-"))
        self._note: tuple[str | None, bool] = (None, False)

    def compose(self) -> ComposeResult:
        name = self.path.split(".", 1)[1]
        yield Label(name, classes="field-name")
        choices = _literal_choices(self.annotation)
        if _is_bool(self.annotation):
            yield Toggle(value=bool(self.value), id="editor")
        elif choices:
            yield Choice(choices, str(self.value), id="editor")
        else:
            yield Input(_as_text(self.value), id="editor", placeholder="(none)", compact=True)

    def help_text(self) -> Text:
        """The focused field's help line: its note in full (the slot under the field is one line), else its
        description and default."""
        text, error = self._note
        if text:
            return Text(("x " if error else "! ") + text, style="bold red" if error else "yellow")
        default = "" if self.default is None or repr(self.default).startswith("PydanticUndefined") else (
            f" [default {_as_text(self.default)}]")
        return Text.assemble((self.path.split(".", 1)[1] + ": ", "bold"), self.description, (default, "dim"))

    def on_mount(self) -> None:
        for inp in self.query(Input):
            inp.cursor_blink = self.app.blink

    @property
    def has_error(self) -> bool:
        return self._note[1]

    def set_note(self, text: str | None, error: bool = False) -> None:
        if self._note == (text, error):
            return  # unchanged: no repaint, no layout (this runs for every row on every edit)
        self._note = (text, error)
        self.note.update(("x " if error else "! ") + text if text else "")
        self.note.set_class(error, "-error")
        if self.has_class("-advanced"):  # a hidden setting with something to say shows itself
            self.set_class(bool(text), "-noted")
            self.note.set_class(bool(text), "-noted")
        if self.has_focus_within:
            self.screen.query_one("#field-help", Line).update(self.help_text())


# The settings a first run usually touches; the rest show with Ctrl+A (or when they carry a note).
# Fewer rows laid out also keeps a step switch and each key cheap on a slow machine.
BASIC_FIELDS = {
    "model.base", "model.method", "data.train", "data.eval", "data.task_type", "data.max_length", "lora.r",
    "lora.alpha", "training.learning_rate", "training.epochs", "training.max_steps", "training.batch_size",
    "training.gradient_accumulation", "training.eval_every", "training.save_every", "training.stop_on_divergence",
    "training.objective", "preference.beta", "preference.loss_type", "preference.desirable_weight",
    "preference.undesirable_weight",
}


class HyperparamsStep(ReportsWorkerErrors, VerticalScroll):
    TITLE = "Hyperparameters"
    BINDINGS = [Binding("ctrl+l", "toggle_pilot", "Pilot run"),
                Binding("ctrl+a", "toggle_all", "All settings", priority=True)]
    DEFAULT_CSS = """
    HyperparamsStep .-advanced { display: none; }
    HyperparamsStep.-all .-advanced, HyperparamsStep .-advanced.-noted { display: block; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self.rows: int | None = None
        self.avg_chars: int | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="pilot-row"):
            yield Label("Pilot run", classes="field-name")
            yield Toggle(value=self.app.state.pilot, on="on", off="off", id="pilot")
            yield Static(Text("a few hundred examples, one pass: catches format bugs and bad learning rates "
                              "in minutes (Ctrl+L). Ctrl+A: all settings", style="dim"), id="pilot-help")
        yield Line(id="plan", classes="panel")
        yield Line(id="field-help")
        cfg = self.app.state.config
        shown: set[str] = set()
        for title, attr, model, names in GROUPS:
            if title:
                yield Static(Text(title, style="bold underline"), classes="group-title",
                             id="group-preference" if attr == "preference" else None)
            section = getattr(cfg, attr)
            for name, field in model.model_fields.items():
                if names is not None and name not in names or f"{attr}.{name}" in shown:
                    continue
                shown.add(f"{attr}.{name}")
                row = FieldRow(f"{attr}.{name}", field.annotation, getattr(section, name),
                               field.description or "", field.default)
                if row.path not in BASIC_FIELDS:
                    row.add_class("-advanced")
                    row.note.add_class("-advanced")
                yield row
                yield row.note

    def on_mount(self) -> None:
        self.query_one("#pilot", Toggle).focus()
        self.show_objective_fields()
        self._show_help(None)
        self._count_rows()
        self.update_notes()

    def action_toggle_all(self) -> None:
        self.toggle_class("-all")
        shown = self.has_class("-all")
        self.notify("showing every setting" if shown else "showing the common settings (Ctrl+A shows all)",
                    timeout=3)

    def on_descendant_focus(self, event) -> None:
        row = next((a for a in (self.app.focused.ancestors_with_self if self.app.focused else [])
                    if isinstance(a, FieldRow)), None)
        self._show_help(row)

    def _show_help(self, row: "FieldRow | None") -> None:
        if row is None:
            text = Text("Tab moves between fields; each field's meaning shows here. Ranges follow the guidance "
                        "(GUIDANCE.md).", style="dim")
        else:
            text = row.help_text()
        self.query_one("#field-help", Line).update(text)

    def focus_first(self) -> None:
        self.query_one("#pilot", Toggle).focus()

    @work(thread=True, exclusive=True, group="count", exit_on_error=False)
    def _count_rows(self) -> None:
        found = advice.count_examples(self.app.state.config.data.train)
        self.app.call_from_thread(self._set_rows, found)

    def _set_rows(self, found) -> None:
        self.rows, self.avg_chars = found if found else (None, None)
        self.update_notes()

    # ---- editing ---------------------------------------------------------------
    def show_objective_fields(self) -> None:
        """The preference group shows only for a preference objective, with the fields that objective uses."""
        wanted = objective_fields(self.app.state.config.training.objective)
        self.query_one("#group-preference").display = bool(wanted)
        for row in self.query(FieldRow):
            if row.path.startswith("preference."):
                for w in (row, row.note):
                    if row.path in wanted:
                        w.styles.clear_rule("display")  # back to the stylesheet (advanced rows stay folded)
                    else:
                        w.display = False

    def _set_objective(self, row: FieldRow, value: str) -> None:
        notes = self.app.state.set_objective(value)
        row.set_note(None)
        for path in ("training.learning_rate", "data.packing"):
            self._sync_editor(path)
        self.show_objective_fields()
        if notes:
            self.notify(f"objective {value}: " + "; ".join(notes), timeout=6)
        self.update_notes()

    def _assign(self, row: FieldRow, value) -> None:
        if row.path == "training.objective":
            self._set_objective(row, value)
            return
        if row.path == "model.method":
            notes = self.app.state.set_method(value)
            if notes:
                self._sync_editor("training.learning_rate")
                self.notify("; ".join(notes), timeout=6)
        section_name, name = row.path.split(".", 1)
        section = getattr(self.app.state.config, section_name)
        old = getattr(section, name)
        try:
            setattr(section, name, value)
            RunConfig.model_validate(self.app.state.config.to_dict())  # the rules across fields (config.py)
        except ValidationError as e:
            if getattr(section, name) != old:
                object.__setattr__(section, name, old)  # the whole config refused it: back to the last good value
                if not isinstance(row.query_one("#editor"), Input):
                    self._sync_editor(row.path)  # a toggle or choice shows the value kept (typed text stays)
            err = e.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            row.set_note(f"{msg} (kept {_as_text(getattr(section, name))})", error=True)
            return
        row.set_note(None)
        self.app.state.edited.add(row.path)
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
        if event.value == _as_text(current) and not row.has_error:
            return  # mounting, or an edit back to the same value
        self._assign(row, _parse(row.path, event.value, row.annotation))

    @on(Choice.Changed)
    def _select_changed(self, event: Choice.Changed) -> None:
        row = next((a for a in event.choice.ancestors if isinstance(a, FieldRow)), None)
        if row is not None and event.value != str(getattr(getattr(self.app.state.config, row.path.split(".")[0]),
                                                          row.path.split(".", 1)[1])):
            self._assign(row, event.value)

    @on(Toggle.Changed)
    def _switch_changed(self, event: Toggle.Changed) -> None:
        if event.toggle.id == "pilot":
            self.app.state.set_pilot(event.value, self.rows)
            self._sync_editor("training.max_steps")
            self.update_notes()
            return
        row = next((a for a in event.toggle.ancestors if isinstance(a, FieldRow)), None)
        if row is not None:
            self._assign(row, event.value)

    def action_toggle_pilot(self) -> None:
        sw = self.query_one("#pilot", Toggle)
        sw.value = not sw.value

    def _sync_editor(self, path: str) -> None:
        section_name, name = path.split(".", 1)
        value = getattr(getattr(self.app.state.config, section_name), name)
        editor = self.query_one(f"#field-{path.replace('.', '-')}").query_one("#editor")
        if isinstance(editor, Input):
            with editor.prevent(Input.Changed):
                editor.value = _as_text(value)
        elif isinstance(editor, Choice):
            with editor.prevent(Choice.Changed):
                editor.value = str(value)
        elif isinstance(editor, Toggle):
            with editor.prevent(Toggle.Changed):
                editor.value = bool(value)

    def update_notes(self) -> None:
        cfg = self.app.state.config
        warnings = advice.hyperparameter_warnings(cfg, self.rows)
        for row in self.query(FieldRow):
            if row.has_error:
                continue
            row.set_note(warnings.get(row.path))
        self.query_one("#plan", Line).update(self._plan_text())

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
                if editor.value != _as_text(value) and not row.has_error:
                    with editor.prevent(Input.Changed):
                        editor.value = _as_text(value)
            elif isinstance(editor, Choice):
                if editor.value != str(value):
                    with editor.prevent(Choice.Changed):
                        editor.value = str(value)
            elif isinstance(editor, Toggle) and editor.value != bool(value):
                with editor.prevent(Toggle.Changed):
                    editor.value = bool(value)
        self.show_objective_fields()
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
            from ftwizard.tui.screens.train import plan_walltimes, walltime_short

            times = plan_walltimes(self.app.state, self.rows) if self.app.state.gpu_target is None else None
            short = walltime_short(times, self.app.state.pilot)
            if short:
                out.append("\n      ~ " + short)
            else:
                out.append("\n      time: measured on the Train step (a short run here)", style="dim")
        train = Path(cfg.data.train)
        if not train.is_file():
            out.append(f"\n  x training file not found: {train}", style="bold red")
        return out
