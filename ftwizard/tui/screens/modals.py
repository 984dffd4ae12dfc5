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


class QuitScreen(ModalScreen[bool]):
    """Quitting while a run trains: say that it keeps running and how to come back."""

    BINDINGS = [Binding("y,enter,q", "quit", "Quit"), Binding("n,escape", "stay", "Stay")]

    def __init__(self, run_names: list[str]):
        super().__init__()
        self.run_names = run_names

    def compose(self) -> ComposeResult:
        names = ", ".join(self.run_names)
        with Vertical(classes="dialog"):
            yield Static(Text(f"Quit? The run {names} keeps training in the background.", style="bold"))
            yield Static(f"Re-attach any time, from any terminal: ftwizard monitor {self.run_names[0]}")
            yield Static(Text("y / Enter: quit    n / Esc: stay", style="dim"))

    def action_quit(self) -> None:
        self.dismiss(True)

    def action_stay(self) -> None:
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
