"""Decide: the guidance's decision tree as a few questions, each answer with its reason.

The logic is `ftwizard.advice`; this pane only asks, shows the trail of answers with
their reasons, and renders the verdict (which may well be "don't fine-tune").
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ftwizard import advice

OBJECTIVE_PREFIX = "objective:"


def sci(v: float) -> str:
    """1e-4 rather than 0.0001 (learning rates read as powers of ten)."""
    mant, exp = f"{v:.0e}".split("e")
    return f"{mant}e{int(exp)}"


def lr_text(lo: float, hi: float) -> str:
    return sci(lo) if lo == hi else f"{sci(lo)} to {sci(hi)}"


def objective_why(name: str) -> Text:
    """One objective's guidance (ftwizard.preference_guidance, the one home of these facts): when it fits, the
    data it needs, its usual beta and learning rates, and the sources."""
    from ftwizard.preference_guidance import OBJECTIVES, SFT_THEN_DPO

    g = OBJECTIVES[name]
    out = Text.assemble(g.when, "\n", ("data: ", "bold"), g.data, "\n")
    out.append("typical: ", style="bold")
    if g.beta:
        out.append(f"beta {g.beta:g} ({g.beta_range[0]:g}-{g.beta_range[1]:g}), ")
    out.append(f"learning rate {lr_text(*g.lr_lora)} with LoRA, {lr_text(*g.lr_full)} full")
    if name != "sft":
        out.append(" (10-100x below SFT)")
    out.append("\n")
    if name == "dpo":
        out.append(SFT_THEN_DPO.split(". The")[0] + ".\n")
    out.append(f"source: {g.source}", style="dim")
    return out


def counts_table(highlight: str | None) -> Table:
    """Examples needed per task type (guidance), the chosen one in bold."""
    t = Table("examples needed", "minimum", "good", "excellent", box=None, padding=(0, 1),
              header_style="bold underline")
    for key, c in advice.EXAMPLE_COUNTS.items():
        style = "bold" if key == highlight else "dim"
        t.add_row(advice.TASK_LABELS[key], f"{c.minimum:,}", f"{c.good:,}", f"{c.excellent:,}+", style=style)
    t.add_row(advice.TASK_LABELS["other"], f"{advice.minimum_examples('other'):,}", "-", "-",
              style="bold" if highlight == "other" else "dim")
    return t


def approaches_table() -> Table:
    """The guidance's comparison of approaches, shown before the first answer."""
    t = Table("approach", "best when", "cost", "latency", box=None, padding=(0, 1), header_style="bold underline")
    for key in ("prompt", "few_shot", "rag", "fine_tune", "continued_pretraining"):
        a = advice.APPROACHES[key]
        t.add_row(a.title, a.best_when, a.cost, a.latency, style="dim" if key != "fine_tune" else "")
    return t


def words(text: str) -> str:
    """Advice text for the screen: the "(guidance)" source tag is said once, in the heading, not on every line."""
    for tag in (" (guidance).", " (guidance)", "; guidance)"):
        text = text.replace(tag, "." if tag.endswith(".") else (")" if tag.endswith(")") else ""))
    return text


def verdict_heading(v: advice.Verdict) -> Text:
    """"FINE-TUNE" or "DON'T FINE-TUNE", plus the recommended approach when it says more than that
    (never "DON'T FINE-TUNE: Fine-tuning")."""
    style = "bold green" if v.fine_tune else "bold yellow"
    head = "FINE-TUNE" if v.fine_tune else "DON'T FINE-TUNE"
    if v.approach != "fine_tune" and not v.fine_tune:
        head += " - instead: " + v.title
    elif v.approach != "fine_tune":
        head += ": " + v.title
    return Text(head, style=style)


class ObjectiveScreen(ModalScreen[str | None]):
    """Which training objective: SFT, DPO, ORPO or KTO, each with when it fits, the data it needs, its usual
    beta and learning rate and the sources (ftwizard.preference_guidance). Enter picks, Esc keeps the current."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    ObjectiveScreen #objective-dialog { width: 78; max-width: 100%; padding: 0 1; }
    ObjectiveScreen #objective-options { height: auto; max-height: 6; border: round $primary 50%; }
    ObjectiveScreen #objective-why { height: auto; color: $text-muted; }
    """

    def __init__(self, current: str):
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        from ftwizard.preference_guidance import CHOOSING, OBJECTIVES

        with Vertical(classes="dialog", id="objective-dialog"):
            yield Static(Text.assemble(("Training objective", "bold"), f"  (now {self.current.upper()}). ",
                                       (CHOOSING.split(". ")[0] + ".", "dim")))
            options = OptionList(id="objective-options")
            for name, g in OBJECTIVES.items():
                label = Text.assemble((name.upper().ljust(5), "bold"), g.title.split(" (")[0])
                if name == self.current:
                    label.append("  (now)", style="bold green")
                options.add_option(Option(label, id=OBJECTIVE_PREFIX + name))
            yield options
            yield Static(id="objective-why")
            yield Static(Text("Enter: use it   Esc: keep " + self.current.upper(), style="dim"))

    def on_mount(self) -> None:
        from ftwizard.preference_guidance import OBJECTIVES

        options = self.query_one(OptionList)
        names = list(OBJECTIVES)
        options.highlighted = names.index(self.current) if self.current in names else 0
        options.focus()

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self.query_one("#objective-why", Static).update(objective_why(event.option.id[len(OBJECTIVE_PREFIX):]))

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.dismiss(event.option.id[len(OBJECTIVE_PREFIX):])

    def action_cancel(self) -> None:
        self.dismiss(None)


class DecideStep(Vertical):
    TITLE = "Decide"
    BINDINGS = [Binding("escape", "undo", "Undo answer"), Binding("ctrl+r", "restart", "Restart", show=False),
                Binding("o", "objective", "Objective")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="decide-trail-box"):
            yield Static(id="decide-trail")
            yield Static(id="decide-verdict")
        yield Static(id="decide-question", classes="question")
        yield OptionList(id="decide-options")
        yield Input(id="decide-number", placeholder="a number, then Enter", type="integer")
        yield Static(id="decide-why", classes="why")

    @property
    def answers(self) -> dict:
        return self.app.state.answers

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = self.app.blink
        self.refresh_view()

    def focus_first(self) -> None:
        q = advice.next_question(self.answers)
        if q is None:
            self.query_one("#decide-trail-box").focus()
        elif q.kind == "number":
            self.query_one(Input).focus()
        else:
            self.query_one(OptionList).focus()

    def refresh_view(self) -> None:
        q = advice.next_question(self.answers)
        options = self.query_one(OptionList)
        number = self.query_one(Input)
        self.query_one("#decide-trail", Static).update(self._trail())
        verdict = self.query_one("#decide-verdict", Static)
        if q is None:
            v = advice.decide(self.answers)
            verdict.update(self._verdict(v))
            verdict.display = True
            number.display = options.display = False
            hint = Text("Esc undoes the last answer; Ctrl+N goes on to the next step.", style="dim")
            if v.fine_tune:
                from ftwizard.preference_guidance import OBJECTIVES

                now = self.app.state.config.training.objective
                names = [n.upper() + (" (now)" if n == now else "") for n in OBJECTIVES]
                hint = Text.assemble(("o: choose the objective: ", "bold"),
                                     ", ".join(names[:-1]) + " or " + names[-1] + ". ", hint)
            self.query_one("#decide-question", Static).update(hint)
            self.query_one("#decide-why", Static).update("")
            if v.task_type:
                self.app.state.config.data.task_type = v.task_type
        else:
            verdict.display = False
            self.query_one("#decide-question", Static).update(Text(q.text, style="bold"))
            options.display = q.kind == "choice"
            number.display = q.kind == "number"
            if q.kind == "choice":
                options.clear_options()
                options.add_options([Option(o.label, id=o.key) for o in q.options])
                options.highlighted = 0
                self._show_reason(q.options[0].reason)
            else:
                number.value = ""
                self._show_reason(q.help)
        self.call_after_refresh(self.focus_first)

    # ---- after a fine-tune verdict: which objective (SFT, DPO, ORPO, KTO) -------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        if action == "objective":
            return advice.next_question(self.answers) is None and advice.decide(self.answers).fine_tune
        return True

    def action_objective(self) -> None:
        def picked(name: str | None) -> None:
            if name is None:
                return
            notes = self.app.state.set_objective(name)
            self.notify(f"training.objective: {name}" + (": " + "; ".join(notes) if notes else ""), timeout=8)
            self.refresh_view()

        self.app.push_screen(ObjectiveScreen(self.app.state.config.training.objective), picked)

    def _show_reason(self, reason: str) -> None:
        self.query_one("#decide-why", Static).update(Text.assemble(("why: ", "bold"), words(reason)))

    def _trail(self):
        out = Text()
        for q in advice.asked(self.answers):
            a = self.answers[q.key]
            label = f"{a:,}" if q.kind == "number" else q.option(a).label
            out.append(f"{q.text}\n", style="dim")
            out.append(f"  > {label}\n", style="bold")
        if not out:
            out.append("Answer a few questions to find out whether fine-tuning is the right tool.\n", style="dim")
            grid = Table.grid()
            grid.add_row(out)
            grid.add_row(approaches_table())
            return grid
        q = advice.next_question(self.answers)
        if q is not None and q.key in ("task_type", "examples"):
            grid = Table.grid()
            grid.add_row(out)
            grid.add_row(counts_table(self.answers.get("task_type")))
            return grid
        return out

    def _verdict(self, v: advice.Verdict) -> Table:
        t = Table.grid(padding=(0, 1))
        t.add_column()
        t.add_row(verdict_heading(v))
        t.add_row(Text(words(v.headline), style="bold"))
        t.add_row(Text("Why (from the fine-tuning guidance):", style="underline"))
        for r in v.reasons:
            t.add_row(Text("- " + words(r)))
        for c in v.caveats:
            t.add_row(Text("! " + words(c), style="yellow"))
        t.add_row(Text("Try instead:" if not v.fine_tune else "Next:", style="underline"))
        for s in v.next_steps:
            t.add_row(Text("- " + words(s)))
        if v.task_type:
            t.add_row(counts_table(v.task_type))
        return t

    @on(OptionList.OptionHighlighted, "#decide-options")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        q = advice.next_question(self.answers)
        if q is not None and q.kind == "choice" and event.option.id:
            self._show_reason(q.option(event.option.id).reason)

    @on(OptionList.OptionSelected, "#decide-options")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        q = advice.next_question(self.answers)
        if q is not None and event.option.id:
            self.answers[q.key] = event.option.id
            self._prune()
            self.refresh_view()

    @on(Input.Submitted, "#decide-number")
    def _number(self, event: Input.Submitted) -> None:
        q = advice.next_question(self.answers)
        try:
            n = int(event.value.replace(",", "").replace("_", ""))
            if n < 0:
                raise ValueError
        except ValueError:
            self.notify("Type a whole number of examples (0 or more).", severity="warning")
            return
        if q is not None:
            self.answers[q.key] = n
            self._prune()
            self.refresh_view()

    def _prune(self) -> None:
        """Forget answers from a branch the latest answer left (so they do not resurface)."""
        keep = {q.key for q in advice.applicable(self.answers)}
        for key in [k for k in self.answers if k not in keep]:
            del self.answers[key]

    def action_undo(self) -> None:
        trail = advice.asked(self.answers)
        if trail:
            del self.answers[trail[-1].key]
            self.refresh_view()

    def action_restart(self) -> None:
        self.answers.clear()
        self.refresh_view()
