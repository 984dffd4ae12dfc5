"""Where things live: the user cache, the default runs folder, bundled data.

`FTWIZARD_CACHE` overrides the cache (model conversions), `FTWIZARD_RUNS` the default
runs folder. Bundled sample data and themes come from the source checkout when there
is one, else from the copies packed into the wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def cache_dir() -> Path:
    env = os.environ.get("FTWIZARD_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ftwizard"


def config_dir() -> Path:
    """The user config folder (themes, preferences)."""
    env = os.environ.get("FTWIZARD_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ftwizard"


def default_runs_dir() -> Path:
    return Path(os.environ.get("FTWIZARD_RUNS", "runs"))


def _bundled(name: str) -> Path:
    checkout = PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    return PACKAGE_DIR / f"_{name}"


def sample_data_dir() -> Path:
    return _bundled("sample_data")


def themes_dir() -> Path:
    return _bundled("themes")
