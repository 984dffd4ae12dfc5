"""Light widgets for long forms: every widget costs layout time on each key, so the
Hyperparameters form (36 fields) uses these instead of heavier compound widgets.

`Choice` picks one of a few values (Left/Right or Space/Enter cycle; the value shows as
"‹ value ›"), instead of a Select with its overlay list. `Line` is text whose updates
repaint only itself (a Static's update re-lays out its whole container).
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class Choice(Widget, can_focus=True):
    DEFAULT_CSS = """
    Choice { width: 1fr; max-width: 48; height: 1; padding: 0; background: $boost; }
    Choice:focus { text-style: reverse bold; }
    """
    BINDINGS = [Binding("right,space,enter", "step(1)", "Next value", show=False),
                Binding("left", "step(-1)", "Previous value", show=False)]

    value: reactive[str] = reactive("")

    class Changed(Message):
        def __init__(self, choice: "Choice", value: str):
            super().__init__()
            self.choice = choice
            self.value = value

        @property
        def control(self) -> "Choice":
            return self.choice

    def __init__(self, options: list[str], value: str, *, id: str | None = None):
        super().__init__(id=id)
        self.options = list(options)
        self.set_reactive(Choice.value, value if value in self.options else self.options[0])

    def render(self) -> Text:
        i = self.options.index(self.value) + 1 if self.value in self.options else 0
        return Text.assemble("‹ ", (self.value, "bold"), " ›", (f"  {i}/{len(self.options)}", "dim"))

    def watch_value(self, value: str) -> None:
        self.post_message(self.Changed(self, value))

    def action_step(self, delta: int) -> None:
        i = self.options.index(self.value) if self.value in self.options else 0
        self.value = self.options[(i + delta) % len(self.options)]

    def on_click(self) -> None:
        self.action_step(1)


class Line(Widget):
    """Text of a fixed height (CSS), repainted alone when it changes."""

    DEFAULT_CSS = "Line { height: 1; }"
    text: reactive[Text] = reactive(Text, layout=False)

    def update(self, text: Text | str) -> None:
        self.text = text if isinstance(text, Text) else Text(text)

    def render(self) -> Text:
        return self.text
