"""A Checkbox whose state shows as a glyph: "X" when on, blank when off.

Textual's Checkbox always draws its "X" and tells on from off by colour alone, which a
monochrome terminal (NO_COLOR, a colourless theme, a screen reader's text) cannot show.
Same API and messages as Checkbox, so screens swap the class only.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox


class GlyphCheckbox(Checkbox):
    @property
    def _button(self) -> Content:
        inner = self.BUTTON_INNER if self.value else " "
        button = super()._button
        # the parent assembles LEFT + INNER + RIGHT; replace the middle character only
        return Content.assemble(button[: len(self.BUTTON_LEFT)],
                                (inner, self.get_visual_style("toggle--button")),
                                button[len(self.BUTTON_LEFT) + len(self.BUTTON_INNER):])
