"""Experiment trackers (TensorBoard, W&B, MLflow, trackio) through transformers' own callbacks.

The run folder stays the source of truth (events.jsonl, status.json); a tracker is an
extra copy of the same metrics in the tool people already use. This module is light:
it never imports a tracker (the CLI and TUI call it), it only names them, checks with
`importlib.util.find_spec` whether they are installed, and builds what the trainer
process needs: the environment variables transformers' callbacks read
(integrations/integration_utils.py in transformers 5.24) and the TrainingArguments.

Offline (the default, `training.tracking_mode: offline`) every tracker writes under
`runs/NAME/tracking/` and needs no network: TensorBoard event files, a W&B offline run
(`wandb sync` uploads it later), an MLflow file store, a trackio SQLite store. Online
hands over to the tracker's usual settings (WANDB_API_KEY / `wandb login`,
MLFLOW_TRACKING_URI, TRACKIO_SPACE_ID), which stay in the environment only: no key or
token is ever written into the config, the run folder or the logs.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRACKING_DIR = "tracking"
DEFAULT_PROJECT = "ftwizard"


@dataclass(frozen=True)
class Tracker:
    name: str            # transformers' report_to name
    module: str          # what must be importable
    pip: str             # what to install (also an ftwizard extra of the same name)
    subdir: str          # where it writes under runs/NAME/tracking/ when offline
    view: str            # how a person looks at it afterwards ({path} = its folder)


TRACKERS: dict[str, Tracker] = {
    "tensorboard": Tracker("tensorboard", "tensorboard", "tensorboard", "tensorboard",
                           "tensorboard --logdir {path}"),
    "wandb": Tracker("wandb", "wandb", "wandb", "wandb", "wandb sync {path}/wandb/offline-run-*  (uploads it)"),
    "mlflow": Tracker("mlflow", "mlflow", "mlflow-skinny", "mlruns", "mlflow ui --backend-store-uri {uri}"),
    "trackio": Tracker("trackio", "trackio", "trackio", "trackio", "TRACKIO_DIR={path} trackio show"),
}

# Variables that would send an offline run somewhere: removed from the trainer's environment when offline.
_ONLINE_VARS = ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "TRACKIO_BUCKET_ID", "TRACKIO_DATASET_ID")


def is_installed(name: str) -> bool:
    """Whether tracker `name`'s package can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(TRACKERS[name].module) is not None
    except (ImportError, ValueError):
        return False


def missing_trackers(cfg) -> list[tuple[str, str]]:
    """(tracker, pip package) for each chosen tracker that is not installed; the pre-flight rule reads this."""
    return [(n, TRACKERS[n].pip) for n in cfg.training.report_to if not is_installed(n)]


def wandb_logged_in(environ=None) -> bool:
    """W&B has a key here: WANDB_API_KEY, or the ~/.netrc entry `wandb login` writes (never read out)."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY"):
        return True
    import netrc
    import urllib.parse

    host = urllib.parse.urlsplit(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        path = env.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def online_problems(cfg, environ=None) -> list[str]:
    """Trackers that cannot go online from here as configured (pre-flight warns; the run would stop at start)."""
    if cfg.training.tracking_mode != "online":
        return []
    out = []
    if "wandb" in cfg.training.report_to and not wandb_logged_in(environ):
        out.append("wandb has no login here (no WANDB_API_KEY, no `wandb login`); a detached run cannot ask for one")
    return out


def install_hint(missing: list[tuple[str, str]]) -> str:
    pkgs = " ".join(p for _, p in missing)
    return f"pip install {pkgs}   (or: pip install 'ftwizard[tracking]' for all four)"


def tracking_root(run_path: Path | str) -> Path:
    return Path(run_path) / TRACKING_DIR


def tracker_dir(run_path: Path | str, name: str) -> Path:
    return tracking_root(run_path) / TRACKERS[name].subdir


def mlflow_uri(run_path: Path | str) -> str:
    return tracker_dir(Path(run_path).resolve(), "mlflow").as_uri()


def tracker_env(cfg, run_path: Path | str, environ: dict[str, str] | None = None) -> dict[str, str | None]:
    """Environment changes for the trainer process: name -> value (None: remove the variable).

    Only places and modes: never a key. The user's own settings win where they are
    placement choices for online use (WANDB_PROJECT, MLFLOW_EXPERIMENT_NAME)."""
    env = os.environ if environ is None else environ
    run_path = Path(run_path).resolve()
    chosen = list(cfg.training.report_to)
    offline = cfg.training.tracking_mode == "offline"
    out: dict[str, str | None] = {}
    if "tensorboard" in chosen:  # always files; in the run folder, not checkpoints/runs/<date>
        out["TENSORBOARD_LOGGING_DIR"] = str(tracker_dir(run_path, "tensorboard"))
    if "wandb" in chosen:
        out["WANDB_DIR"] = str(tracking_root(run_path))
        out["WANDB_PROJECT"] = env.get("WANDB_PROJECT") or DEFAULT_PROJECT
        out["WANDB_DISABLE_GIT"] = "true"     # a git remote URL can carry credentials
        out["WANDB_DISABLE_CODE"] = "true"
        if not env.get("WANDB_RUN_ID"):  # one W&B run per run folder: a resume continues it
            out["WANDB_RUN_ID"] = wandb_run_id(run_path)
            out["WANDB_RESUME"] = env.get("WANDB_RESUME") or "allow"
        if offline:
            out["WANDB_MODE"] = "offline"
    if "mlflow" in chosen:
        if offline or not env.get("MLFLOW_TRACKING_URI"):
            out["MLFLOW_TRACKING_URI"] = mlflow_uri(run_path)
            # MLflow 3 keeps the file store (no database, no server) behind an opt-in; `mlflow migrate-filestore`
            # turns it into SQLite later if wanted
            out["MLFLOW_ALLOW_FILE_STORE"] = "true"
        out["MLFLOW_EXPERIMENT_NAME"] = env.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
    if "trackio" in chosen:
        out["TRACKIO_DIR"] = str(tracker_dir(run_path, "trackio"))
        if offline:
            out.update({k: None for k in _ONLINE_VARS})
    return out


def wandb_run_id(run_path: Path | str) -> str:
    """A stable W&B run id for a run folder: its name (W&B's allowed characters) and a hash of its path."""
    import hashlib
    import re

    path = Path(run_path).resolve()
    name = re.sub(r"[^A-Za-z0-9_-]", "-", path.name)[:40]
    return f"{name}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def apply_env(changes: dict[str, str | None], environ=None) -> None:
    env = os.environ if environ is None else environ
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v


def sft_kwargs(cfg, run_name: str) -> dict[str, Any]:
    """TrainingArguments fields for the chosen trackers (report_to "none" when there are none)."""
    chosen = list(cfg.training.report_to)
    if not chosen:
        return {"report_to": "none"}
    out: dict[str, Any] = {"report_to": chosen, "run_name": run_name}
    if "trackio" in chosen:
        out["project"] = os.environ.get("TRACKIO_PROJECT") or DEFAULT_PROJECT
        out["trackio_static_space_id"] = False  # never publish a Space after training
        if cfg.training.tracking_mode == "offline":
            out["trackio_space_id"] = None
    return out


def setup_for_trainer(cfg, run_path: Path | str, run_name: str) -> dict[str, Any]:
    """In the trainer process: set the environment and return the SFTConfig kwargs. One call from trainer.py."""
    apply_env(tracker_env(cfg, run_path))
    for name in cfg.training.report_to:
        if TRACKERS[name].subdir and name != "wandb":
            tracker_dir(run_path, name).mkdir(parents=True, exist_ok=True)
    if cfg.training.report_to:
        tracking_root(run_path).mkdir(parents=True, exist_ok=True)
    if "mlflow" in cfg.training.report_to and os.environ.get("RANK", "0") == "0":
        _start_mlflow_run(run_path, run_name)
    return sft_kwargs(cfg, run_name)


_MLFLOW_STATUS = {"completed": "FINISHED", "stopped": "KILLED"}


def _start_mlflow_run(run_path: Path | str, run_name: str) -> None:
    """Open the MLflow run ourselves, so that transformers' callback logs into it and does not end it at
    train end: the final evaluation after training (eval_every: 0) then lands in the same run instead of
    an auto-started second one. It is ended when the trainer process exits, with the run's final state."""
    import atexit

    import mlflow

    from ftwizard.rundir import RunDir

    if mlflow.active_run() is not None:
        return
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT)
    id_file = tracking_root(run_path) / "mlflow_run_id"  # a resume continues the same MLflow run
    previous = id_file.read_text().strip() if id_file.is_file() else ""
    try:
        active = mlflow.start_run(run_id=previous) if previous else mlflow.start_run(run_name=run_name)
    except Exception:  # noqa: BLE001 - the old run is gone (another store, deleted): start a new one
        active = mlflow.start_run(run_name=run_name)
    id_file.write_text(active.info.run_id + "\n")

    def end() -> None:
        try:
            if mlflow.active_run() is not None:
                state = RunDir(run_path).read_status().get("state")
                mlflow.end_run(status=_MLFLOW_STATUS.get(state, "FAILED"))
        except Exception:  # noqa: BLE001 - a tracker must not turn an ending into a crash
            pass

    atexit.register(end)


def where(cfg, run_path: Path | str) -> list[dict[str, str]]:
    """For the summary and `runs --json`: each chosen tracker, where it wrote, how to look at it."""
    run_path = Path(run_path).resolve()
    offline = cfg.training.tracking_mode == "offline"
    out = []
    for name in cfg.training.report_to:
        t = TRACKERS[name]
        path = tracker_dir(run_path, name) if name != "wandb" else tracking_root(run_path)
        if name == "mlflow" and not offline:
            location = "MLFLOW_TRACKING_URI (online)"
        elif name == "trackio" and not offline and os.environ.get("TRACKIO_SPACE_ID"):
            location = "the Space in TRACKIO_SPACE_ID (online)"
        else:
            location = str(path)
        out.append({"tracker": name, "location": location,
                    "view": t.view.format(path=path, uri=mlflow_uri(run_path))})
    return out
