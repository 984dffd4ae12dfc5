"""Small dialogs: save the config, confirm quitting while a run trains, show an error."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class SaveConfigScreen(ModalScreen[Path | None]):
    """Ask where to write the config; an existing file needs a second Enter to overwrite."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, suggested: Path):
        super().__init__()
        self.suggested = suggested
        self._confirm: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text("Save the run config (commented YAML)", style="bold"))
            yield Input(str(self.suggested), id="save-path")
            yield Static(Text("Enter: save   Esc: cancel. Train from it with `ftwizard train FILE`.", style="dim"),
                         id="save-help")

    def on_mount(self) -> None:
        inp = self.query_one(Input)
        inp.cursor_blink = self.app.blink
        inp.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = Path(event.value.strip()).expanduser()
        if not event.value.strip():
            return
        if path.is_dir():
            self.query_one("#save-help", Static).update(Text(f"{path} is a folder; add a file name", style="red"))
            return
        if path.exists() and self._confirm != path:
            self._confirm = path
            self.query_one("#save-help", Static).update(
                Text(f"{path} exists: Enter again to overwrite it, or change the name", style="yellow"))
            return
        self.dismiss(path)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._confirm = None

    def action_cancel(self) -> None:
        self.dismiss(None)


class QuitScreen(ModalScreen[str]):
    """Quitting: say that an active run keeps training (with its absolute folder and how to come back),
    and offer to save answers not yet written to a config file. Dismisses with "quit", "save" or "stay"."""

    BINDINGS = [Binding("y,enter,q", "quit", "Quit"), Binding("s", "save", "Save first", show=False),
                Binding("n,escape", "stay", "Stay")]

    def __init__(self, runs: list[tuple[str, str]], unsaved: bool = False):
        super().__init__()
        self.runs = runs  # (name, absolute run folder)
        self.unsaved = unsaved

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            if self.runs:
                names = ", ".join(n for n, _p in self.runs)
                yield Static(Text(f"Quit? The run {names} keeps training in the background.", style="bold"))
                for _name, path in self.runs:
                    yield Static(f"Its folder: {path}")
                yield Static(f"Re-attach any time, from any folder: ftwizard monitor {self.runs[0][0]}")
            else:
                yield Static(Text("Quit the wizard?", style="bold"))
            if self.unsaved:
                yield Static(Text("Your answers are not saved in a config file yet.", style="yellow"))
                yield Static(Text("s: save first   y / Enter: quit without saving   n / Esc: stay", style="dim"))
            else:
                yield Static(Text("y / Enter: quit    n / Esc: stay", style="dim"))

    def action_quit(self) -> None:
        self.dismiss("quit")

    def action_save(self) -> None:
        if self.unsaved:
            self.dismiss("save")

    def action_stay(self) -> None:
        self.dismiss("stay")


class ConfirmErrorsScreen(ModalScreen[bool]):
    """The pre-flight check found errors: starting anyway takes a deliberate key (y), never Enter."""

    BINDINGS = [Binding("y", "go", "Start anyway"), Binding("n,escape,enter", "back", "Go back")]

    def __init__(self, errors: list[str]):
        super().__init__()
        self.errors = errors

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog error"):
            yield Static(Text(f"The pre-flight check found {len(self.errors)} error(s):", style="bold red"))
            for e in self.errors[:6]:
                yield Static(Text("x " + e))
            yield Static(Text("Such a run is likely to fail or to learn nothing useful.", style="bold"))
            yield Static(Text("y: start anyway (recorded as confirmed)    n / Esc / Enter: go back and fix",
                              style="dim"))

    def action_go(self) -> None:
        self.dismiss(True)

    def action_back(self) -> None:
        self.dismiss(False)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question that replaces something: y answers yes, Enter does not (a deliberate key)."""

    BINDINGS = [Binding("y", "yes", "Yes"), Binding("n,escape", "no", "No")]

    def __init__(self, title: str, question: str, *, yes: str = "y: yes", no: str = "n / Esc: no"):
        super().__init__()
        self.title_text, self.question, self.yes_text, self.no_text = title, question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text, style="bold"))
            yield Static(self.question)
            yield Static(Text(f"{self.yes_text}    {self.no_text}", style="dim"))

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ErrorScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, title: str, message: str):
        super().__init__()
        self.title_text, self.message = title, message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog error"):
            yield Static(Text(self.title_text, style="bold red"))
            yield Static(self.message)
            yield Static(Text("Enter / Esc: close", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
