"""The footer: every key the screen offers, wrapped onto a second line rather than cut.

Textual's Footer is one row of fixed cells, so at 80 columns a step with several keys
pushed the wizard's own keys (^n next, ^p back, ^q quit) off the edge. This footer
renders the same active bindings as text, the step's keys first and the wizard's
priority keys after, and grows to two (or more) lines when they do not fit.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class KeysFooter(Widget):
    DEFAULT_CSS = """
    KeysFooter { dock: bottom; height: auto; max-height: 3; width: 1fr; background: $panel; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    _keys: list[tuple[str, str, bool]] | None = None
    _cache: tuple[int, list[Text]] | None = None

    def _bindings_changed(self, screen) -> None:
        """Re-read the keys once; re-lay out the screen only when the footer's height changes (a focus change
        on every Tab must not reflow the whole screen)."""
        if not (self.is_attached and screen is self.screen):
            return
        keys = self.keys()
        if keys == self._keys:
            return
        before = len(self._lines(self.content_size.width or 80))
        self._keys, self._cache = keys, None
        self.refresh(layout=len(self._lines(self.content_size.width or 80)) != before)

    def keys(self) -> list[tuple[str, str, bool]]:
        """(key as shown, description, enabled), one per action, the screen's priority keys last."""
        seen: dict[str, tuple[str, str, bool, bool]] = {}
        for _node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen[binding.action] = (self.app.get_key_display(binding), binding.description, enabled,
                                    binding.priority)
        ordered = [v for v in seen.values() if not v[3]] + [v for v in seen.values() if v[3]]
        return [(k, d, e) for k, d, e, _p in ordered]

    def _lines(self, width: int) -> list[Text]:
        if self._keys is None:
            self._keys = self.keys()
        if self._cache is None or self._cache[0] != width:
            self._cache = (width, self.lines(width, self._keys))
        return self._cache[1]

    def lines(self, width: int, keys: list[tuple[str, str, bool]] | None = None) -> list[Text]:
        out: list[Text] = [Text()]
        for key, description, enabled in (self.keys() if keys is None else keys):
            cell = Text.assemble((key, "bold reverse" if enabled else "dim reverse"), " ",
                                 (description, "" if enabled else "dim"))
            if out[-1].cell_len and out[-1].cell_len + 2 + cell.cell_len > width:
                out.append(Text())
            if out[-1].cell_len:
                out[-1].append("  ")
            out[-1].append_text(cell)
        return out

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self._lines(width)))

    def render(self) -> Text:
        return Text("\n").join(self._lines(self.content_size.width or 80))
