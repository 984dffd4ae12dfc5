"""training.report_to: a real tiny CPU run copies its metrics into each installed tracker,
offline, inside the run folder; each store is read back through the tracker's own reader
and must hold the same loss series as events.jsonl. No key or token reaches any file."""

from __future__ import annotations

import glob
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ftwizard import tracking
from ftwizard.config import config_from_dict, load_config
from ftwizard.errors import UserError
from ftwizard.rundir import RunDir, latest_by_step

from helpers import tiny_config

# Fake secrets in the trainer's environment: none of them may appear in any file the run writes.
SECRETS = {
    "WANDB_API_KEY": "wandbkey0h15" + "a" * 28,
    "HF_TOKEN": "hf_h15FakeTokenNeverWritten",
    "MLFLOW_TRACKING_TOKEN": "mlflowtokenh15NeverWritten",
    "MLFLOW_TRACKING_PASSWORD": "mlflowpassh15NeverWritten",
    "TRACKIO_WRITE_TOKEN": "trackiotokenh15NeverWritten",
    "FTWIZARD_NOTIFY_URL": "http://127.0.0.1:9/h15secrettopicNeverWritten",
}
INSTALLED = [n for n in tracking.TRACKERS if tracking.is_installed(n)]


def _cfg(**training):
    return config_from_dict({"data": {"train": "t.jsonl"}, "training": training})


# ---- fast: the settings each tracker gets ----------------------------------------
def test_offline_env_keeps_every_tracker_inside_the_run_folder(tmp_path):
    cfg = _cfg(report_to=["tensorboard", "wandb", "mlflow", "trackio"])
    user_env = {"TRACKIO_SPACE_ID": "me/space", "MLFLOW_TRACKING_URI": "http://mlflow.example:5000",
                "WANDB_API_KEY": SECRETS["WANDB_API_KEY"]}
    env = tracking.tracker_env(cfg, tmp_path / "run", user_env)
    run = str((tmp_path / "run").resolve())
    assert env["TENSORBOARD_LOGGING_DIR"] == f"{run}/tracking/tensorboard"
    assert env["WANDB_MODE"] == "offline" and env["WANDB_DIR"] == f"{run}/tracking"
    assert env["MLFLOW_TRACKING_URI"] == f"file://{run}/tracking/mlruns"  # offline beats the user's server
    assert env["TRACKIO_DIR"] == f"{run}/tracking/trackio"
    assert env["TRACKIO_SPACE_ID"] is None  # removed: offline must not publish a Space
    assert not any(v and SECRETS["WANDB_API_KEY"] in v for v in env.values())  # places and modes only


def test_online_mode_leaves_the_users_own_destinations(tmp_path):
    cfg = _cfg(report_to=["wandb", "mlflow", "trackio"], tracking_mode="online")
    env = tracking.tracker_env(cfg, tmp_path, {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000"})
    assert "WANDB_MODE" not in env and "MLFLOW_TRACKING_URI" not in env and "TRACKIO_SPACE_ID" not in env
    kw = tracking.sft_kwargs(cfg, "r1")
    assert kw["report_to"] == ["wandb", "mlflow", "trackio"] and kw["run_name"] == "r1"
    assert kw["trackio_static_space_id"] is False  # never freezes/publishes a Space on its own


def test_wandb_run_id_is_stable_per_run_folder_so_a_resume_continues_it(tmp_path):
    cfg = _cfg(report_to=["wandb"])
    a = tracking.tracker_env(cfg, tmp_path / "r1", {})
    assert a["WANDB_RUN_ID"] == tracking.tracker_env(cfg, tmp_path / "r1", {})["WANDB_RUN_ID"]
    assert a["WANDB_RUN_ID"] != tracking.tracker_env(cfg, tmp_path / "r2", {})["WANDB_RUN_ID"]
    assert a["WANDB_RUN_ID"].startswith("r1-") and a["WANDB_RESUME"] == "allow"
    assert "WANDB_RUN_ID" not in tracking.tracker_env(cfg, tmp_path / "r1", {"WANDB_RUN_ID": "mine"})


@pytest.mark.slow
def test_mlflow_resume_continues_the_same_run(tmp_path, monkeypatch):
    """Two trainer processes on one run folder (start, then resume) log into one MLflow run."""
    _need("mlflow")
    run = tmp_path / "r1"
    run.mkdir()
    code = ("import sys, os; from ftwizard import tracking; from ftwizard.config import config_from_dict; "
            "from ftwizard.rundir import RunDir; import mlflow; "
            "cfg = config_from_dict({'data': {'train': 't.jsonl'}, 'training': {'report_to': ['mlflow']}}); "
            "tracking.setup_for_trainer(cfg, sys.argv[1], 'r1'); "
            "mlflow.log_metric('loss', float(sys.argv[2]), step=int(sys.argv[2])); "
            "RunDir(sys.argv[1]).write_status(state=sys.argv[3])")
    for step, state in ((1, "stopped"), (2, "completed")):
        r = subprocess.run([sys.executable, "-c", code, str(run), str(step), state], capture_output=True, text=True,
                           timeout=300, env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")})
        assert r.returncode == 0, r.stderr
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.mlflow_uri(run))
    (mlrun,) = client.search_runs([client.get_experiment_by_name(tracking.DEFAULT_PROJECT).experiment_id])
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "loss")] == [1, 2]
    assert mlrun.info.status == "FINISHED"  # ended with the run's final state at process exit


def test_no_trackers_means_report_to_none():
    assert tracking.sft_kwargs(_cfg(), "r") == {"report_to": "none"}


def test_unknown_tracker_is_a_config_error_naming_the_allowed_ones():
    with pytest.raises(UserError) as e:
        _cfg(report_to=["neptune"])
    assert "training.report_to.0" in e.value.what and "tensorboard" in e.value.what


def test_missing_package_is_named_with_what_to_install(monkeypatch):
    monkeypatch.setitem(tracking.TRACKERS, "wandb", tracking.Tracker("wandb", "no_such_module_h15", "wandb",
                                                                    "wandb", ""))
    cfg = _cfg(report_to=["wandb"])
    assert tracking.missing_trackers(cfg) == [("wandb", "wandb")]
    assert "pip install wandb" in tracking.install_hint(tracking.missing_trackers(cfg))


# ---- slow: one real run with every installed tracker ----------------------------------
@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, embedded_model_dir):
    if not INSTALLED:
        pytest.skip("no tracker package installed (pip install 'ftwizard[tracking]')")
    tmp = tmp_path_factory.mktemp("tracked")
    cfg_path = tiny_config(tmp, save_every=0, eval_every=0, report_to=INSTALLED)
    env = dict(os.environ, **SECRETS)
    for k in ("WANDB_MODE", "MLFLOW_TRACKING_URI", "TRACKIO_SPACE_ID", "TRACKIO_DIR", "TENSORBOARD_LOGGING_DIR"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-m", "ftwizard", "train", str(cfg_path), "--name", "tracked"],
                       capture_output=True, text=True, timeout=900, env=env)
    run = RunDir(tmp / "runs" / "tracked")
    assert r.returncode == 0, r.stderr + (run.log.read_text() if run.log.exists() else "")
    losses = {e["step"]: e["loss"] for e in latest_by_step(list(run.iter_events()))}
    evals = [e["eval_loss"] for e in run.iter_events() if e.get("kind") == "eval"]
    assert sorted(losses) == [1, 2, 3, 4] and evals
    return tmp, run, losses, evals[-1]


def _need(name):
    if name not in INSTALLED:
        pytest.skip(f"{tracking.TRACKERS[name].pip} is not installed (pip install 'ftwizard[{name}]')")


@pytest.mark.slow
def test_tensorboard_event_files_load_with_the_loss_series(tracked_run):
    _need("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run, losses, eval_loss = tracked_run
    acc = EventAccumulator(str(tracking.tracker_dir(run.path, "tensorboard")))
    acc.Reload()
    got = {s.step: s.value for s in acc.Scalars("train/loss")}
    assert got == pytest.approx(losses, rel=1e-6)  # float32 in the event file
    assert [s.value for s in acc.Scalars("eval/loss")][-1] == pytest.approx(eval_loss, rel=1e-6)


@pytest.mark.slow
def test_mlflow_file_store_read_back_through_its_client(tracked_run, monkeypatch):
    _need("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    _, run, losses, eval_loss = tracked_run
    client = MlflowClient(tracking_uri=tracking.mlflow_uri(run.path))
    exp = client.get_experiment_by_name(tracking.DEFAULT_PROJECT)
    (mlrun,) = client.search_runs([exp.experiment_id])
    assert mlrun.info.run_name == "tracked" and mlrun.info.status == "FINISHED"
    hist = {m.step: m.value for m in client.get_metric_history(mlrun.info.run_id, "loss")}
    assert hist == pytest.approx(losses)
    assert client.get_metric_history(mlrun.info.run_id, "eval_loss")[-1].value == pytest.approx(eval_loss)
    assert mlrun.data.params["learning_rate"] == "0.001"


def _wandb_records(path: Path):
    """The records of a .wandb transaction log (W&B's LevelDB-style log: 7-byte file header, 32 KiB
    blocks of chunks with a 7-byte header: crc32, length, type full/first/middle/last). wandb 0.31
    writes it from its Go core and no longer ships a Python reader, so the framing is read here
    and each record is parsed with wandb's own protobuf classes."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending + chunk)
            pending = b""
            yield rec
        else:
            pending = (pending if kind == 3 else b"") + chunk


@pytest.mark.slow
def test_wandb_offline_run_folder_holds_the_loss_series(tracked_run):
    _need("wandb")
    _, run, losses, eval_loss = tracked_run
    (log,) = glob.glob(str(tracking.tracking_root(run.path) / "wandb" / "offline-run-*" / "run-*.wandb"))
    got, evals, kinds = {}, [], set()
    for rec in _wandb_records(Path(log)):
        kinds.add(rec.WhichOneof("record_type"))
        if rec.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in rec.history.item}
            if "train/loss" in items:
                got[items["train/global_step"]] = items["train/loss"]
            if "eval/loss" in items:
                evals.append(items["eval/loss"])
    assert got == losses and evals[-1] == eval_loss
    assert {"run", "config", "exit"} <= kinds  # a complete offline run: `wandb sync` can upload it


@pytest.mark.slow
def test_trackio_local_store_holds_the_loss_series(tracked_run):
    _need("trackio")
    _, run, losses, eval_loss = tracked_run
    store = tracking.tracker_dir(run.path, "trackio")
    code = ("import json,sys; from trackio.sqlite_storage import SQLiteStorage as S; "
            "print(json.dumps(S.get_logs(sys.argv[1], sys.argv[2]), default=str))")
    # TRACKIO_DIR is read at import, so the reader runs in its own interpreter
    r = subprocess.run([sys.executable, "-c", code, tracking.DEFAULT_PROJECT, "tracked"], capture_output=True,
                       text=True, env=dict(os.environ, TRACKIO_DIR=str(store)), timeout=120)
    assert r.returncode == 0, r.stderr
    logs = json.loads(r.stdout)
    got = {row["train/global_step"]: row["train/loss"] for row in logs if "train/loss" in row}
    assert got == losses
    assert [row["eval/loss"] for row in logs if "eval/loss" in row][-1] == eval_loss


@pytest.mark.slow
def test_no_key_or_token_in_any_file_the_run_wrote(tracked_run):
    tmp, run, _, _ = tracked_run
    assert (run.path / "tracking").is_dir()
    needles = [v.encode() for v in SECRETS.values()] + [b"h15secrettopic"]
    leaks = []
    for p in tmp.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            leaks += [f"{p}: {n.decode()}" for n in needles if n in data]
    assert leaks == []
    cfg = load_config(run.config)
    assert cfg.training.report_to == INSTALLED


@pytest.mark.slow
def test_run_ends_well_despite_an_unreachable_webhook_and_its_summary_names_the_trackers(tracked_run):
    _, run, _, _ = tracked_run
    failed = [e for e in run.iter_events() if e.get("event") == "notify_failed"]
    assert run.status()["state"] == "completed"
    assert failed and failed[0]["for"] == "completed" and failed[0]["host"] == "http://127.0.0.1:9"
    summary = (run.path / "summary.md").read_text()
    for name in INSTALLED:
        assert f"| {name} | `{run.path.resolve() / 'tracking'}" in summary
