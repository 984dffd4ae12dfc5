"""Theme files: TOML under `themes/` (bundled) and `<config_dir>/themes` (the user's).

Each file is parsed into a typed `ThemeSpec` (unknown keys and bad colours are errors
naming the file and field) and turned into a Textual `Theme`. A file that does not
parse is skipped and reported, so the app can fall back to the default theme with a
notification instead of crashing.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from textual.color import Color, ColorParseError
from textual.theme import Theme

from ftwizard.paths import config_dir, themes_dir

DEFAULT_THEME = "ftwizard-dark"


class ThemeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    primary: str
    dark: bool = True
    secondary: str | None = None
    accent: str | None = None
    foreground: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    success: str | None = None
    warning: str | None = None
    error: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("primary", "secondary", "accent", "foreground", "background", "surface", "panel",
                     "success", "warning", "error")
    @classmethod
    def _colour(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                Color.parse(v)
            except ColorParseError:
                raise ValueError(f"{v!r} is not a colour (use #RRGGBB, rgb(...) or a colour name)") from None
        return v

    def to_theme(self) -> Theme:
        return Theme(**self.model_dump())


@dataclass
class ThemeProblem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"theme {self.path.name}: {self.message}"


def load_theme_file(path: Path) -> Theme:
    """One theme file as a Textual Theme; ValueError with a readable message otherwise."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"not valid TOML: {e}") from None
    try:
        return ThemeSpec.model_validate(data).to_theme()
    except ValidationError as e:
        parts = [f"{'.'.join(map(str, err['loc'])) or 'file'}: {err['msg']}" for err in e.errors()]
        raise ValueError("; ".join(parts)) from None


def theme_dirs() -> list[Path]:
    return [themes_dir(), config_dir() / "themes"]


def discover_themes(dirs: list[Path] | None = None) -> tuple[list[Theme], list[ThemeProblem]]:
    """All loadable themes (later folders override earlier ones by name) and the problems."""
    themes: dict[str, Theme] = {}
    problems: list[ThemeProblem] = []
    for d in theme_dirs() if dirs is None else dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ValueError as e:
                problems.append(ThemeProblem(path, str(e)))
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems
