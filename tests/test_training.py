"""Real training of the embedded model on CPU through `ftwizard train`: every method,
detached runs, stop and resume, SIGKILL, the lock, NaN and bad data as states."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ftwizard.rundir import FINAL_STATES, RunDir, latest_by_step

from helpers import tiny_config, tiny_chat_rows, write_jsonl

pytestmark = pytest.mark.slow


def cli(*args, timeout=900, **kw):
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def wait_for(pred, timeout=180.0, every=0.1):
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def train_losses(run: RunDir) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in latest_by_step(list(run.iter_events()))}


def greedy_reply(model, tok, question: str) -> str:
    msgs = [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": question}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    return tok.decode(out[0, ids["input_ids"].shape[1]:])


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_method_trains_loss_falls_and_result_loads(tmp_path, method, embedded_model_dir):
    cfg = tiny_config(tmp_path, method, save_every=0)
    r = cli("train", str(cfg), "--name", method)
    run = RunDir(tmp_path / "runs" / method)
    assert r.returncode == 0, r.stderr + run.log.read_text()
    assert "Traceback" not in r.stdout + r.stderr
    st = run.status()
    assert st["state"] == "completed" and st["step"] == 4
    losses = train_losses(run)
    assert sorted(losses) == [1, 2, 3, 4]
    assert losses[4] < 0.5 * losses[1], losses
    evals = [e for e in run.iter_events() if e["kind"] == "eval"]
    assert evals and evals[-1]["eval_loss"] < 1.0
    first = [e for e in run.iter_events() if e["kind"] == "train"][0]
    for key in ("epoch", "learning_rate", "grad_norm", "memory_gb", "elapsed_s", "eta_s", "time"):
        assert key in first, key
    saved = yaml.safe_load(run.config.read_text())  # the resolved config, absolute paths
    assert Path(saved["data"]["train"]).is_absolute() and saved["model"]["method"] == method

    from transformers import AutoModelForCausalLM, AutoTokenizer

    if method == "full":
        model = AutoModelForCausalLM.from_pretrained(run.model)
        tok = AutoTokenizer.from_pretrained(run.model)
    else:
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(embedded_model_dir)
        model = PeftModel.from_pretrained(base, run.adapter)
        tok = AutoTokenizer.from_pretrained(run.adapter)
    reply = greedy_reply(model, tok, "What colour is grass?")
    assert reply.strip().startswith("green"), reply
    assert "<|im_end|>" in reply  # it learned to stop


def test_detached_run_outlives_its_launcher(tmp_path):
    cfg = tiny_config(tmp_path, "lora", max_steps=3, save_every=0)
    t0 = time.time()
    r = cli("train", str(cfg), "--name", "bg", "--detach", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert time.time() - t0 < 30  # returns once the trainer has claimed the run, not after training
    pid = info["pid"]
    assert os.getsid(pid) != os.getsid(0)  # its own session: SIGHUP of our terminal never reaches it
    os.kill(pid, signal.SIGHUP)  # and a hang-up sent to it anyway is ignored
    run = RunDir(info["path"])
    st = wait_for(lambda: run.status() if run.status()["state"] in FINAL_STATES else None)
    assert st["state"] == "completed", st
    assert (run.adapter / "adapter_model.safetensors").is_file()
    listed = json.loads(cli("runs", "--runs-dir", str(tmp_path / "runs"), "--json").stdout)
    assert listed[0]["name"] == "bg" and listed[0]["state"] == "completed" and listed[0]["loss"] is not None
    plain = cli("monitor", str(run.path), "--plain")
    assert plain.returncode == 0 and "step 3/3" in plain.stdout and "completed" in plain.stdout


def test_stop_then_resume_matches_an_uninterrupted_run(tmp_path):
    cfg = tiny_config(tmp_path, "lora", max_steps=8, save_every=100)
    data = yaml.safe_load(cfg.read_text())
    data["lora"]["dropout"] = 0.1  # so the restored RNG state matters
    cfg.write_text(yaml.safe_dump(data))
    assert cli("train", str(cfg), "--name", "ref").returncode == 0
    assert cli("train", str(cfg), "--name", "cut", "--detach").returncode == 0
    run = RunDir(tmp_path / "runs" / "cut")
    wait_for(lambda: max(train_losses(run), default=0) >= 2)
    r = cli("stop", str(run.path), "--wait", "--json")
    assert r.returncode == 0, r.stderr
    st = run.status()
    assert st["state"] == "stopped", st
    stopped_at = st["step"]
    assert 2 <= stopped_at < 8 and run.last_checkpoint().name == f"checkpoint-{stopped_at}"
    r = cli("resume", str(run.path))
    assert r.returncode == 0, r.stderr + run.log.read_text()
    assert run.status()["state"] == "completed"
    ref, cut = train_losses(RunDir(tmp_path / "runs" / "ref")), train_losses(run)
    assert sorted(cut) == list(range(1, 9))
    for step in range(1, 9):
        assert abs(ref[step] - cut[step]) < 1e-3, (step, ref[step], cut[step])
    resumed = [e for e in run.iter_events() if e.get("event") == "resumed"]
    assert resumed and resumed[0]["step"] == stopped_at


def test_sigkill_reads_as_died_and_the_lock_refuses_a_second_trainer(tmp_path):
    cfg = tiny_config(tmp_path, "lora", max_steps=200, save_every=1)
    info = json.loads(cli("train", str(cfg), "--name", "k", "--detach", "--json").stdout)
    run = RunDir(info["path"])
    wait_for(lambda: run.last_checkpoint())
    second = subprocess.run([sys.executable, "-m", "ftwizard.training.worker", str(run.path)],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 3 and "already running" in second.stderr
    assert run.status()["pid"] == info["pid"]  # the second one did not touch the status
    os.kill(info["pid"], signal.SIGKILL)
    st = wait_for(lambda: run.status() if run.status()["state"] == "died" else None, timeout=30)
    assert "gone" in st["message"]
    listed = json.loads(cli("runs", "--runs-dir", str(tmp_path / "runs"), "--json").stdout)
    assert listed[0]["state"] == "died"
    r = cli("stop", "k", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 1 and "not running" in r.stderr


def nan_model(folder: Path, embedded_model_dir: Path) -> Path:
    """A tiny llama with the embedded tokenizer whose final norm is NaN: a real NaN loss at step 1."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=len(tok), tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_nan_loss_fails_the_run_with_step_and_hint(tmp_path, embedded_model_dir):
    cfg = tiny_config(tmp_path, "full", max_steps=5, save_every=0)
    data = yaml.safe_load(cfg.read_text())
    data["model"]["base"] = str(nan_model(tmp_path / "nan-model", embedded_model_dir))
    cfg.write_text(yaml.safe_dump(data))
    r = cli("train", str(cfg), "--name", "nan", "--force")
    run = RunDir(tmp_path / "runs" / "nan")
    st = run.status()
    assert r.returncode == 1 and st["state"] == "failed", (st, r.stderr)
    assert "NaN or infinite at step 1" in st["message"] and "learning_rate" in st["message"]
    assert max(train_losses(run)) == 1  # stopped at once, not after burning the remaining steps
    assert "Traceback" not in r.stdout + r.stderr


def test_bad_data_row_is_refused_with_its_location_and_input_untouched(tmp_path):
    rows = tiny_chat_rows(8)
    rows[2]["messages"][1]["role"] = "bot"
    cfg = tiny_config(tmp_path, "lora", max_steps=2)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    before = train.read_bytes()
    r = cli("train", str(cfg), "--name", "bad")  # the pre-flight check refuses before any run exists
    assert r.returncode == 1 and "row 3" in r.stdout + r.stderr
    assert not (tmp_path / "runs" / "bad").exists()
    r = cli("train", str(cfg), "--name", "forced", "--force")  # forced: the trainer itself fails as a state
    st = RunDir(tmp_path / "runs" / "forced").status()
    assert r.returncode == 1 and st["state"] == "failed"
    assert "row 3" in st["message"] and "messages[1].role" in st["message"]
    assert train.read_bytes() == before
    assert "Traceback" not in r.stdout + r.stderr


def test_missing_data_file_fails_before_any_run_folder(tmp_path):
    cfg = tiny_config(tmp_path, "lora")
    (tmp_path / "train.jsonl").unlink()
    r = cli("train", str(cfg), "--name", "x")
    assert r.returncode == 1 and "data.train file not found" in r.stderr
    assert not (tmp_path / "runs" / "x").exists()
