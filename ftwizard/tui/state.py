"""The wizard's state: the one typed run config, plus what the screens learned on the way.

Every screen reads and edits `WizardState.config` (a `RunConfig`); "save config"
writes it as commented YAML at any time. A fresh wizard starts from the bundled
sample data, so a first run works with nothing prepared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ftwizard.config import RunConfig, commented_yaml, load_config, starting_config
from ftwizard.fileio import atomic_write_text
from ftwizard.paths import default_runs_dir

PILOT_EXAMPLES = 200  # guidance: a pilot is "a few hundred examples, one epoch"


@dataclass
class WizardState:
    config: RunConfig
    config_path: Path | None = None  # the file it came from (--config), if any
    answers: dict = field(default_factory=dict)  # Decide answers (advice question key -> answer)
    pilot: bool = False
    max_steps_before_pilot: int | None = None
    saved_to: Path | None = None
    gpu_choice: str | None = None  # Model step: "detected:<index>", a catalog GPU name, or "none"
    gpu_target: object = None  # what the estimate was judged against (GpuTarget, catalog name, or None)
    estimate: object = None  # the latest ftwizard.hardware Estimate, when the Model step exists
    edited: set = field(default_factory=set)  # config fields ("training.learning_rate") the user typed here
    _saved_view: dict | None = None  # the config and answers as last loaded or saved (see `unsaved`)

    def __post_init__(self) -> None:
        self.mark_saved()

    def _view(self) -> dict:
        return {"config": self.config.to_dict(), "answers": dict(self.answers)}

    def mark_saved(self) -> None:
        self._saved_view = self._view()

    def unsaved(self) -> bool:
        """True when the answers or the config differ from what was loaded or last saved."""
        return self._view() != self._saved_view

    @classmethod
    def create(cls, config: str | Path | None = None, runs_dir: str | Path | None = None) -> "WizardState":
        if config is not None:
            cfg = load_config(config)
            path = Path(config)
        else:
            cfg = starting_config()  # the same default as `ftwizard init` (config.starting_config)
            path = None
        if runs_dir is not None:
            cfg = cfg.model_copy(update={"runs_dir": Path(runs_dir)})
        elif config is None:
            cfg = cfg.model_copy(update={"runs_dir": default_runs_dir()})
        return cls(config=cfg, config_path=path)

    def default_save_path(self) -> Path:
        if self.saved_to is not None:
            return self.saved_to
        if self.config_path is not None:
            return self.config_path.with_name(self.config_path.stem + ".wizard.yaml")
        return Path("ftwizard.yaml")

    def save(self, path: Path) -> Path:
        """Write the config as commented YAML (atomic); the user's own input files are never touched."""
        path = Path(path).expanduser()
        atomic_write_text(path, commented_yaml(self.config))
        self.saved_to = path
        self.mark_saved()
        return path

    def _get(self, path: str):
        section, name = path.split(".", 1)
        return getattr(getattr(self.config, section), name)

    def _set(self, path: str, value) -> None:
        section, name = path.split(".", 1)
        setattr(getattr(self.config, section), name, value)

    def _follow_defaults(self, old: dict, new: dict, why: str) -> list[str]:
        """Move each field still at its old default to its new one (`config.objective_defaults`, the config's one
        home of them). A value the user typed here, or one a config file set to something else, is kept."""
        notes = []
        for path, value in new.items():
            current = self._get(path)
            if current == value:
                continue
            mine = path in self.edited or (self.config_path is not None and current != old.get(path))
            if mine:
                notes.append(f"kept your {path.split('.', 1)[1]} {current:g}; {why} default is {value:g}")
            else:
                self._set(path, value)
                notes.append(f"{path.split('.', 1)[1]} {current:g} -> {value:g} ({why} default)")
        return notes

    def set_objective(self, objective: str) -> list[str]:
        """Switch training.objective (sft, dpo, orpo, kto); returns what else changed, in words.

        The objective's defaults (the learning rate, an order or two lower for preference tuning) replace the
        old ones unless the user chose them; packing goes off for a preference objective (the config refuses
        the two together)."""
        from ftwizard.config import PREFERENCE_OBJECTIVES, objective_defaults

        cfg = self.config
        old = cfg.training.objective
        if objective == old:
            return []
        method = cfg.model.method
        cfg.training.objective = objective
        notes = self._follow_defaults(objective_defaults(old, method), objective_defaults(objective, method),
                                      f"{objective.upper()}'s")
        if objective in PREFERENCE_OBJECTIVES and cfg.data.packing:
            cfg.data.packing = False
            notes.append("packing off (a preference objective scores each answer whole)")
        return notes

    def set_method(self, method: str) -> list[str]:
        """Switch model.method; defaults that depend on it (a preference objective's learning rate) follow."""
        from ftwizard.config import objective_defaults

        cfg = self.config
        old = cfg.model.method
        if method == old:
            return []
        cfg.model.method = method
        objective = cfg.training.objective
        return self._follow_defaults(objective_defaults(objective, old), objective_defaults(objective, method),
                                     f"the {objective.upper()} + {method}")

    def pilot_steps(self, rows: int | None) -> int:
        """Optimizer steps of a pilot run: about PILOT_EXAMPLES examples, one pass."""
        t = self.config.training
        eff = t.batch_size * t.gradient_accumulation
        n = min(rows, PILOT_EXAMPLES) if rows else PILOT_EXAMPLES
        return max(1, math.ceil(n / eff))

    def set_pilot(self, on: bool, rows: int | None) -> None:
        """Pilot run: about PILOT_EXAMPLES examples for one pass, as a max_steps cap."""
        t = self.config.training
        if on and not self.pilot:
            self.max_steps_before_pilot = t.max_steps
            t.max_steps = self.pilot_steps(rows)
        elif not on and self.pilot:
            t.max_steps = self.max_steps_before_pilot
        self.pilot = on
