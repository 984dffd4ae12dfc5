"""Model and method: base model, method, the GPU to judge against, and the memory estimate.

The estimate is `ftwizard.hardware.estimate` (pure arithmetic, a few ms), so it is
recomputed on every change and drawn as a stacked bar of its parts against the GPU's
memory, with the verdict. When the run does not fit, the estimator's fixes are listed;
Enter on one applies it to the config. GPU detection (NVML) runs in a worker.
"""

from __future__ import annotations

import re

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from ftwizard import advice
from ftwizard.errors import UserError
from ftwizard.tui.runwatch import format_duration
from ftwizard.tui.widgets.memory_bar import MemoryBar
from ftwizard.tui.workers import ReportsWorkerErrors

GB = 2**30
VERDICT_STYLE = {"fits": "bold green", "tight": "bold yellow", "does_not_fit": "bold red", "unknown": "bold"}
VERDICT_TEXT = {"fits": "fits", "tight": "fits, but tight (over 90 % of memory)", "does_not_fit": "does NOT fit",
                "unknown": "no GPU to compare with"}
_CLI_ASIDE = re.compile(r"\s*\((?:[^()]*?)(?:--[a-z]|`ftwizard)[^()]*\)")


def screen_note(note: str) -> str:
    """An estimator note for the screen: asides that name CLI flags or commands are dropped (the wizard has
    its own controls for them)."""
    return _CLI_ASIDE.sub("", note)
_OPTIMIZER_TO_CONFIG = {"adamw": "adamw_torch", "adamw8bit": "adamw_8bit", "paged_adamw8bit": "paged_adamw_8bit",
                        "paged_adamw32bit": "paged_adamw_32bit", "sgd": "sgd"}


def config_changes(settings: dict) -> dict[str, object] | None:
    """An estimator fix as config edits ('section.field' -> value); None when the config cannot express it."""
    out: dict[str, object] = {}
    for key, value in settings.items():
        if key == "gradient_checkpointing":
            out["training.gradient_checkpointing"] = value
        elif key == "micro_batch":
            out["training.batch_size"] = value
        elif key == "grad_accum":
            out["training.gradient_accumulation"] = value
        elif key == "optimizer":
            out["training.optimizer"] = _OPTIMIZER_TO_CONFIG[value]
        elif key == "method":
            out["model.method"] = value
        elif key == "max_length":
            out["data.max_length"] = value
        elif key == "model":
            from ftwizard.hardware.shapes import find_builtin

            shape = find_builtin(str(value))
            if shape is None or not shape.hub_id:
                return None
            out["model.base"] = shape.hub_id
        else:  # n_gpus, strategy: a launch choice, not a config field
            return None
    return out


def objective_options() -> list[tuple[str, str]]:
    """(label, value) per training objective, the labels from the objective guidance when it is there."""
    from ftwizard.config import Objective
    import typing

    names = list(typing.get_args(Objective))
    try:
        from ftwizard.preference_guidance import OBJECTIVES
    except ImportError:
        OBJECTIVES = {}
    out = []
    for n in names:
        guide = OBJECTIVES.get(n)
        title = (getattr(guide, "title", None) or "").split(" (")[0]
        out.append((f"{n.upper()}: {title}" if title else n.upper(), n))
    return out


def template_options() -> list[tuple[str, str]]:
    """(label, value): auto (the model's own; ChatML when it has none), then the built-ins."""
    from ftwizard.data.chat_templates import BUILTIN, DEFAULT

    out = [(f"auto: the model's own ({BUILTIN[DEFAULT].title} when it has none)", "auto")]
    out += [(f"{t.title}" + ("  (renders tools)" if t.tools else ""), name) for name, t in BUILTIN.items()]
    return out


class ModelStep(ReportsWorkerErrors, VerticalScroll):
    TITLE = "Model"
    BINDINGS = [Binding("u", "undo_fix", "Undo fix")]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.detection = None
        self.estimate = None
        self.rows: int | None = None
        self.applied: list[tuple[str, dict[str, tuple[object, object]]]] = []  # (fix, {field: (old, new)})
        self.cpu = False  # judged against this machine's RAM (a CPU run)
        self.has_template: dict[str, bool | None] = {}  # model.base -> brings a chat template (None: unknown)
        self._template_pending: str | None = None

    def compose(self) -> ComposeResult:
        cfg = self.app.state.config
        with Horizontal(classes="form-row"):
            yield Label("base model", classes="field-name")
            yield Input(cfg.model.base, id="model-base", compact=True,
                        placeholder="embedded, a local folder, or a hub id")
        yield Static(Text("'embedded' is SmolLM2-135M-Instruct and works offline; a folder or a hub id "
                          "(its config must be local: nothing is downloaded)", style="dim"), classes="form-help")
        with Horizontal(classes="form-row"):
            yield Label("method", classes="field-name")
            yield Select([("LoRA: adapters, 0.1-1 % of weights", "lora"),
                          ("QLoRA: adapters over a 4-bit base", "qlora"),
                          ("full: every weight (~4x model size)", "full")],
                         value=cfg.model.method, allow_blank=False, compact=True, id="model-method")
        with Horizontal(classes="form-row"):
            yield Label("objective", classes="field-name")
            yield Select(objective_options(), value=cfg.training.objective, allow_blank=False, compact=True,
                         id="model-objective")
        with Horizontal(classes="form-row", id="model-template-row"):
            yield Label("chat template", classes="field-name")
            yield Select(template_options(), value=cfg.data.chat_template if cfg.data.chat_template in
                         dict((v, l) for l, v in template_options()) else "auto", allow_blank=False, compact=True,
                         id="model-template")
        yield Static(id="model-template-help", classes="form-help")
        with Horizontal(classes="form-row"):
            yield Label("judge against", classes="field-name")
            yield Select([("(detecting GPUs...)", "none")], value="none", allow_blank=False, compact=True,
                         id="model-gpu")
        yield Static(id="model-detected", classes="form-help")
        yield Static(id="model-verdict")
        yield MemoryBar(id="model-bar")
        yield Static(id="model-notes", classes="form-help")
        yield Static(id="model-undo")
        yield Static(Text("Fixes (Enter applies one):", style="bold"), id="model-fixes-title")
        yield OptionList(id="model-fixes")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = self.app.blink
        self.show_template()
        self._detect()
        self._count()
        self.update_estimate()

    def focus_first(self) -> None:
        self.query_one("#model-method", Select).focus()

    def on_show(self) -> None:
        """Batch size, max length, checkpointing and the objective are edited on other steps: re-estimate."""
        if self.is_mounted:
            self._sync_editors()
            self.show_template()
            self.update_estimate()

    @work(thread=True, exclusive=True, group="detect", exit_on_error=False)
    def _detect(self) -> None:
        from ftwizard.hardware.gpus import detect

        det = detect()
        self.app.call_from_thread(self._detected, det)

    @work(thread=True, exclusive=True, group="count", exit_on_error=False)
    def _count(self) -> None:
        found = advice.count_examples(self.app.state.config.data.train)
        self.app.call_from_thread(self._counted, found[0] if found else None)

    def _counted(self, rows: int | None) -> None:
        self.rows = rows
        self.update_estimate()

    def _detected(self, det) -> None:
        from ftwizard.hardware.catalog import names

        self.detection = det
        options = [(f"detected: {g.name} ({g.memory_total / GB:.0f} GB)", f"detected:{g.index}") for g in det.gpus]
        options += [(f"catalog: {n}", n) for n in names()]
        options.append(("this machine: CPU and RAM (no GPU)", "none"))
        sel = self.query_one("#model-gpu", Select)
        wanted = self.app.state.gpu_choice
        if wanted is None:
            wanted = options[0][1] if det.gpus else "none"
        with sel.prevent(Select.Changed):
            sel.set_options(options)
            sel.value = wanted if any(v == wanted for _, v in options) else "none"
        self.app.state.gpu_choice = sel.value
        if det.gpus:
            info = ", ".join(f"{g.name} {g.memory_used / GB:.1f}/{g.memory_total / GB:.0f} GB used" for g in det.gpus)
        else:
            why = (det.message or "no GPU found").split(" (")[0]
            info = (f"no GPU here ({why}): the run trains on the CPU, {det.cpu.cores} cores, "
                    f"{det.cpu.ram_total / GB:.0f} GB RAM ({det.cpu.ram_available / GB:.0f} GB free), "
                    "fp32, no CUDA context")
        self.query_one("#model-detected", Static).update(Text(info, style="dim"))
        self.update_estimate()

    def gpu_target(self):
        """What the estimate is judged against: a detected or catalog GPU, or this machine's RAM for a CPU run."""
        choice = self.app.state.gpu_choice
        self.cpu = not choice or choice == "none" or self.app.state.config.training.device == "cpu"
        if self.cpu:
            if self.detection is not None:  # the same RAM figure the detected line shows
                from ftwizard.hardware.estimate import GpuTarget

                cpu = self.detection.cpu
                return GpuTarget(name=f"CPU RAM ({cpu.cores} cores)", memory_bytes=int(cpu.ram_total), peak_tflops=None,
                                 price_per_hour=None, supports_bf16=False, source="detected")
            from ftwizard.preflight.inputs import cpu_target

            return cpu_target()
        if choice.startswith("detected:") and self.detection is not None:
            from ftwizard.hardware.gpus import gpu_target

            idx = int(choice.split(":", 1)[1])
            for g in self.detection.gpus:
                if g.index == idx:
                    return gpu_target(g)
            return None
        return choice

    def update_estimate(self) -> None:
        from ftwizard.hardware.estimate import estimate_for_config

        cfg = self.app.state.config
        verdict = self.query_one("#model-verdict", Static)
        fixes = self.query_one("#model-fixes", OptionList)
        target = self.gpu_target()
        self.app.state.gpu_target = None if self.cpu else target
        cpu = {"device": "cpu", "precision": "fp32"} if self.cpu else {}  # as `ftwizard check` judges a CPU run
        try:
            est = estimate_for_config(cfg, gpu=target, rows=self.rows, **cpu)
        except UserError as e:
            self.estimate = None
            verdict.update(Text(f"x cannot estimate: {e.what}" + (f" ({e.fix})" if e.fix else ""), style="bold red"))
            self.query_one(MemoryBar).set_parts([], None)
            fixes.clear_options()
            return
        self.estimate = est
        self.app.state.estimate = est
        small = sum(v for v in est.parts.values() if v < 0.02 * est.total_bytes)
        parts = [(k.replace("_", " "), v / GB) for k, v in est.parts.items() if v >= 0.02 * est.total_bytes]
        if small:
            parts.append(("other", small / GB))
        cap = est.gpu.memory_bytes / GB if est.gpu else None
        self.query_one(MemoryBar).set_parts(parts, cap)
        line = Text.assemble(("Estimate: ", "bold"), f"{est.total_bytes / GB:.1f} GB peak ",
                             (VERDICT_TEXT[est.verdict], VERDICT_STYLE[est.verdict]))
        if self.cpu:
            line.append(f" in {est.gpu.memory_bytes / GB:.0f} GB RAM (CPU run, fp32)")
        elif est.gpu is not None:
            line.append(f" on {est.gpu.name}")
        line.append(f"   {est.trainable_params / 1e6:,.1f}M of {est.total_params / 1e6:,.0f}M params trained")
        if est.time_s:
            line.append(f"\nTime ~{format_duration(est.time_s)}")
            if est.cost is not None:
                line.append(f", about ${est.cost:,.2f}")
        verdict.update(line)
        self.query_one("#model-notes", Static).update(Text("\n".join(screen_note(n) for n in est.notes[:3]),
                                                            style="dim"))
        fixes.clear_options()
        for i, fix in enumerate(est.advice[:6]):
            usable = config_changes(fix["settings"]) is not None
            label = Text.assemble(fix["change"], (f"  -> {fix['total_bytes'] / GB:.1f} GB ", "dim"),
                                  (fix["verdict"].replace("_", " "), VERDICT_STYLE.get(fix["verdict"], "")))
            if not usable:
                label.append("  (a launch choice, not a config field)", style="dim")
            fixes.add_option(Option(label, id=str(i), disabled=not usable))
        self.query_one("#model-fixes-title").display = bool(est.advice)
        fixes.display = bool(est.advice)
        first = next((i for i in range(fixes.option_count) if not fixes.get_option_at_index(i).disabled), None)
        fixes.highlighted = first  # Enter applies the highlighted fix: the first usable one to start with
        self.show_template()  # its memory cost is a part of this estimate

    # ---- edits ------------------------------------------------------------------
    @on(Input.Changed, "#model-base")
    def _base(self, event: Input.Changed) -> None:
        value = event.value.strip()
        if value:
            self.app.state.config.model.base = value
            self.show_template()
            self.update_estimate()
            self._explain_applied()

    @on(Select.Changed, "#model-method")
    def _method(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            notes = self.app.state.set_method(event.value)  # a preference objective's LR follows the method
            if notes:
                self.notify("; ".join(notes), timeout=6)
            self.update_estimate()
            self._explain_applied()

    @on(Select.Changed, "#model-objective")
    def _objective(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL and event.value != self.app.state.config.training.objective:
            notes = self.app.state.set_objective(str(event.value))
            self.notify(f"training.objective: {event.value}" + (": " + "; ".join(notes) if notes else ""),
                        timeout=8)
            self.update_estimate()

    @on(Select.Changed, "#model-template")
    def _template(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL and event.value != self.app.state.config.data.chat_template:
            self.app.state.config.data.chat_template = str(event.value)
            self.show_template()
            self.update_estimate()

    def show_template(self) -> None:
        """The template choice shows when the base has no chat template of its own (or one was chosen):
        what the choice adds to the vocabulary and what those trained embedding rows cost."""
        from ftwizard.data.chat_templates import BUILTIN, DEFAULT

        cfg = self.app.state.config
        if cfg.model.base not in self.has_template and cfg.model.base != self._template_pending:
            self._template_pending = cfg.model.base
            self._check_template(cfg.model.base)  # reads the model's files (a thread): shown when it answers
        has = self.has_template.get(cfg.model.base)
        chosen = cfg.data.chat_template
        shown = has is False or chosen != "auto"
        self.query_one("#model-template-row").display = shown
        help_ = self.query_one("#model-template-help", Static)
        help_.display = shown
        if not shown:
            return
        name = DEFAULT if chosen == "auto" else chosen
        tpl = BUILTIN.get(name)
        text = Text()
        if has is False:
            text.append("This base has no chat template: chat rows need one. ", style="bold yellow")
        if tpl is not None:
            text.append(tpl.why.split(". ")[0].rstrip(".") + ". " if tpl.why else "")
            if tpl.special_tokens:
                text.append(f"Adds {', '.join(tpl.special_tokens)} where the vocabulary lacks them; their "
                            "embedding rows train", style="dim")
                cost = self._template_cost()
                text.append(f": +{cost} in the estimate below" if cost else " (in the estimate below)", style="dim")
                text.append(".", style="dim")
        help_.update(text)

    @work(thread=True, exclusive=True, group="template", exit_on_error=False)
    def _check_template(self, base: str) -> None:
        try:
            from ftwizard.data.chat_templates import base_has_template

            has = base_has_template(base)
        except (ImportError, OSError):  # unknown: the choice shows once one is set; the pre-flight says more
            has = None
        self.app.call_from_thread(self._template_known, base, has)

    def _template_known(self, base: str, has: bool | None) -> None:
        self.has_template[base] = has
        self._template_pending = None
        if base == self.app.state.config.model.base:
            self.show_template()

    def _template_cost(self) -> str | None:
        """The estimate's part for the template's trained embedding rows, when it has one."""
        est = self.estimate
        if est is None:
            return None
        value = est.parts.get("template_token_rows")  # ftwizard.hardware.memory.template_token_bytes
        if not value:
            return None
        return f"{value / 2**20:,.0f} MB" if value < GB else f"{value / GB:.1f} GB"

    def _explain_applied(self) -> None:
        """The model changed after a fix: the fix's settings were chosen for the old model; say so, offer undo."""
        box = self.query_one("#model-undo", Static)
        if not self.applied:
            box.update("")
            return
        change, edits = self.applied[-1]
        what = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in edits.items())
        box.update(Text.assemble(("! ", "bold yellow"), f"The fix \"{change}\" changed {what} for the earlier "
                                 "model. ", ("u undoes it.", "bold")))

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "undo_fix":
            return bool(self.applied)
        return True

    def action_undo_fix(self) -> None:
        if not self.applied:
            return
        change, edits = self.applied.pop()
        cfg = self.app.state.config
        for path, (old, _new) in edits.items():
            section, name = path.split(".", 1)
            setattr(getattr(cfg, section), name, old)
        self._sync_editors()
        self.notify("undid the fix \"" + change + "\": " + ", ".join(f"{k} back to {old}" for k, (old, _n)
                                                                  in edits.items()))
        self.query_one("#model-undo", Static).update("")
        self.refresh_bindings()
        self.update_estimate()

    def _sync_editors(self) -> None:
        cfg = self.app.state.config
        method = self.query_one("#model-method", Select)
        with method.prevent(Select.Changed):
            method.value = cfg.model.method
        objective = self.query_one("#model-objective", Select)
        with objective.prevent(Select.Changed):
            objective.value = cfg.training.objective
        base = self.query_one("#model-base", Input)
        with base.prevent(Input.Changed):
            base.value = cfg.model.base

    @on(Select.Changed, "#model-gpu")
    def _gpu(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self.app.state.gpu_choice = str(event.value)
            self.update_estimate()

    @on(OptionList.OptionSelected, "#model-fixes")
    def _apply_fix(self, event: OptionList.OptionSelected) -> None:
        if self.estimate is None:
            return
        fix = self.estimate.advice[int(event.option.id)]
        changes = config_changes(fix["settings"])
        if not changes:
            return
        cfg = self.app.state.config
        edits: dict[str, tuple[object, object]] = {}
        for path, value in changes.items():
            section, name = path.split(".", 1)
            old = getattr(getattr(cfg, section), name)
            setattr(getattr(cfg, section), name, value)
            if old != value:
                edits[path] = (old, value)
        self.applied.append((fix["change"], edits))
        self._sync_editors()
        self.notify("Applied \"" + fix["change"] + "\": " + ", ".join(f"{k} {o} -> {n}" for k, (o, n) in edits.items()))
        self.refresh_bindings()
        self.update_estimate()
