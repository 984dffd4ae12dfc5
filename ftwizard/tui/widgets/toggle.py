"""An on/off field that shows its state by glyph ("[x] yes" / "[ ] no"), not by colour alone.

Textual's Switch tells on from off only by colour, which a monochrome terminal
(NO_COLOR, a colourless theme) cannot show. Space or Enter toggles it.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class Toggle(Widget, can_focus=True):
    DEFAULT_CSS = """
    Toggle { width: auto; min-width: 9; height: 1; padding: 0 1; }
    Toggle:focus { text-style: reverse bold; }
    """
    BINDINGS = [Binding("space,enter", "toggle", "Toggle", show=False)]

    value: reactive[bool] = reactive(False)

    class Changed(Message):
        def __init__(self, toggle: "Toggle", value: bool):
            super().__init__()
            self.toggle = toggle
            self.value = value

        @property
        def control(self) -> "Toggle":
            return self.toggle

    def __init__(self, value: bool = False, *, on: str = "yes", off: str = "no", id: str | None = None):
        super().__init__(id=id)
        self.on_text, self.off_text = on, off
        self.set_reactive(Toggle.value, bool(value))

    def render(self) -> Text:
        return Text("[x] " + self.on_text if self.value else "[ ] " + self.off_text)

    def watch_value(self, value: bool) -> None:
        self.post_message(self.Changed(self, value))

    def action_toggle(self) -> None:
        self.value = not self.value

    def on_click(self) -> None:
        self.action_toggle()
