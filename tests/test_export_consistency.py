"""The export as a new user meets it, on the CPU, with real llama.cpp: one short demo-like run
(the sample data, the `ftwizard init` settings, 2 steps) shared by every test here.

- the wizard's Export step with its defaults passes, clicked through with the Pilot;
- `ftwizard export` with relative paths, every format incl. k-quants and the GGUF LoRA:
  each file answers like the trained model in llama.cpp, and the consistency report says so;
- a GGUF whose chat template was broken on purpose, and one whose end-of-sequence token was,
  are each caught by the consistency check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, text_of, wait_for  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def cli(*args, cwd: Path, timeout=1800):
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(cwd))


def _needs_runtime():
    from ftwizard.export import runtime

    if not runtime.available():
        pytest.fail(f"the llama.cpp runtime is not installed: run `{runtime.INSTALL_COMMAND}` (the README's test "
                    "command does)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A demo-like run: `ftwizard init` (sample data, demo settings), 2 steps. Returns the working folder."""
    _needs_runtime()
    root = tmp_path_factory.mktemp("demo")
    r = cli("init", "-o", "run.yaml", cwd=root)
    assert r.returncode == 0, r.stderr
    r = cli("train", "run.yaml", "--max-steps", "2", "--name", "demo", cwd=root)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return root


@pytest.fixture(scope="module")
def full_export(demo) -> dict:
    """Every format from the CLI, with a relative run path and a relative --out."""
    r = cli("export", "./runs/demo", "--format", "all", "--quant", "f16,q4_k_m", "--out", "exp-all", "--json",
            cwd=demo)
    assert r.stdout.strip(), r.stderr[-3000:]
    m = json.loads(r.stdout)
    m["_rc"], m["_stderr"] = r.returncode, r.stderr
    return m


def test_cli_exports_every_format_with_relative_paths_and_each_answers_like_the_trained_model(demo, full_export):
    m = full_export
    assert m["_rc"] == 0, json.dumps({k: (e["state"], e.get("reason")) for k, e in m["exports"].items()}, indent=1)
    ex = m["exports"]
    assert {k: e["state"] for k, e in ex.items()} == {
        "adapter": "ok", "merged": "ok", "gguf-f16": "ok", "gguf-q4_k_m": "ok", "lora-gguf": "ok",
        "ollama": "ok", "card": "ok"}
    out = demo / "exp-all"
    # CPU: merged in fp32, and the manifest says why
    assert m["options"]["merged_dtype"] == "fp32" and "CPU" in m["options"]["merged_dtype_reason"]
    assert "sized from the data" in m["options"]["max_new_tokens_reason"]
    # GGUF files ran in llama.cpp; f16 answers token for token, q4_k_m at its documented rate
    from ftwizard.export.verify import TOP1_LOSSLESS, TOP1_QUANT

    f16 = [c for c in ex["gguf-f16"]["checks"] if "llama.cpp" in c["detail"] and "metrics" in c][0]["metrics"]
    assert f16["prompts"] >= 4 and f16["top1_agreement"] >= TOP1_LOSSLESS
    q4 = [c for c in ex["gguf-q4_k_m"]["checks"] if "metrics" in c][0]["metrics"]
    assert q4["top1_agreement"] >= TOP1_QUANT["q4_k_m"]
    assert (out / "gguf" / "demo-q4_k_m.gguf").stat().st_size < 0.5 * (out / "gguf" / "demo-f16.gguf").stat().st_size
    # base GGUF + LoRA GGUF in llama.cpp == the merged model's text
    lora = [c for c in ex["lora-gguf"]["checks"] if "metrics" in c][0]["metrics"]
    assert lora["top1_agreement"] >= TOP1_LOSSLESS
    assert (out / "gguf" / "demo-lora-f16.gguf").stat().st_size < 60e6
    # the consistency report: in the folder, in --json, texts side by side, every finding passed
    rep = json.loads((out / "consistency.json").read_text())
    assert rep["consistent"] and m["consistency"]["consistent"]
    assert set(rep["formats"]) >= {"trained", "merged", "gguf-f16", "gguf-q4_k_m", "lora-gguf"}
    assert rep["identical_to_trained"]["merged"] == rep["prompts"]
    for row in rep["rows"]:  # texts side by side, diffed against the trained model's
        assert row["texts"]["merged"] == row["texts"]["trained"]
        assert set(row["differs_from_trained"]) <= {"gguf-f16", "gguf-q4_k_m", "lora-gguf"}
    names = " ".join(f["check"] for f in rep["findings"])
    assert "chat template" in names and "end-of-turn" in names and "Modelfile" in names
    # each GGUF's own chat template rendered the prompts byte for byte as the tokenizer's
    assert all(f["ok"] for f in rep["findings"])

    # independent: the merged folder answers the first check prompt like the reference, read here with transformers
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out / "merged"))
    model = AutoModelForCausalLM.from_pretrained(str(out / "merged"), dtype=torch.float32)
    eval_row = json.loads((REPO / "sample_data" / "eval.jsonl").read_text().splitlines()[0])
    msgs = eval_row["messages"][:-1]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = model.generate(**ids, max_new_tokens=m["options"]["max_new_tokens"], do_sample=False)
    assert tok.decode(gen[0, ids["input_ids"].shape[1]:]) == m["reference"]["continuations"][0]

    # independent: the GGUF's end-of-sequence id is the end-of-turn token, read with gguf's reader
    from gguf import GGUFReader

    f = GGUFReader(str(out / "gguf" / "demo-q4_k_m.gguf")).fields["tokenizer.ggml.eos_token_id"]
    assert int(f.parts[f.data[0]][0]) == tok.convert_tokens_to_ids("<|im_end|>")

    # the Modelfile beside the smallest GGUF, with the training system prompt and the end-of-turn stop
    mf = (out / "gguf" / "Modelfile").read_text()
    assert "FROM ./demo-q4_k_m.gguf" in mf and 'PARAMETER stop "<|im_end|>"' in mf
    assert 'SYSTEM """You triage customer support tickets.' in mf
    assert ex["ollama"]["command"].startswith("ollama create demo -f ")

    # model card: base, method, data fingerprint recomputed here
    import hashlib

    card = (out / "README.md").read_text()
    sha = hashlib.sha256((REPO / "sample_data" / "train.jsonl").read_bytes()).hexdigest()
    assert sha in card and "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "| method | lora |" in card

    # never overwritten without --force
    r2 = cli("export", "./runs/demo", "--format", "adapter", "--out", "exp-all", cwd=demo)
    assert r2.returncode == 1 and "never overwritten" in r2.stderr


async def test_wizard_default_export_passes(demo):
    """The Export step with its defaults (adapter, merged, gguf q8_0, ollama), clicked through."""
    from textual.widgets import Checkbox, DataTable, Select, Static

    from ftwizard.tui.app import available_steps

    titles = [c.TITLE for c in available_steps()]
    cwd = os.getcwd()
    os.chdir(demo)  # the wizard's runs folder is relative, as a user's is
    try:
        app = app_for_tests(runs_dir=Path("runs"))
        async with app.run_test(size=(80, 24)) as pilot:
            # straight to the last step: ctrl+n through Train and Try would start the speed probe and a model
            # server, which compete with the export for the 2 cores and are not what this test is about
            await app.screen.go(len(titles) - 1)
            await pilot.pause()
            step = app.screen.query_one(f"#step-{len(titles) - 1}")
            assert step.query_one("#export-run", Select).value == str(Path("runs") / "demo")
            defaults = {k: step.query_one(f"#fmt-{k}", Checkbox).value for k in ("adapter", "merged", "gguf", "ollama")}
            assert all(defaults.values())
            assert step.query_one("#quant-q8_0", Checkbox).value
            await pilot.press("ctrl+e")
            table = step.query_one("#export-table", DataTable)
            # progress with an ETA shows while a format runs
            await wait_for(pilot, lambda: any("ETA" in str(table.get_row_at(i)[3]) for i in range(table.row_count)),
                           timeout=900)
            summary = step.query_one("#export-summary", Static)
            await wait_for(pilot, lambda: text_of(summary).startswith(("export completed", "export failed")),
                           timeout=1800)
            details = text_of(step.query_one("#export-details", Static))
            assert text_of(summary).startswith("export completed"), text_of(summary) + details
            rows = {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[1]) for i in range(table.row_count)}
            assert rows == {"adapter": "ok", "merged": "ok", "gguf-q8_0": "ok", "ollama": "ok", "card": "ok"}
            assert "consistency: consistent" in details
            assert "ollama create demo" in text_of(summary)
            await wait_for(pilot, lambda: step.proc.poll() is not None, timeout=120)  # the exporter's last lines
    finally:
        os.chdir(cwd)
    m = json.loads((demo / "runs" / "demo" / "export" / "manifest.json").read_text())
    assert m["state"] == "completed" and m["consistency"]["consistent"]
    assert "- export merged: ok" in (demo / "runs" / "demo" / "summary.md").read_text()  # the run's page lists it


def _edit_gguf(src: Path, dst: Path, *args: str) -> None:
    """A copy of a GGUF with metadata changed, by gguf's own gguf_new_metadata script."""
    r = subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(src), str(dst), "--force", *args],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and dst.is_file(), r.stderr[-2000:]


@pytest.fixture(scope="module")
def f16_gguf(demo, full_export) -> Path:
    return demo / "exp-all" / "gguf" / "demo-f16.gguf"


def test_a_broken_chat_template_is_caught(demo, f16_gguf, tmp_path):
    from ftwizard.export.consistency import recheck_gguf

    bad = tmp_path / "broken-template.gguf"
    # a template that drops the system prompt: a common hand-edit that changes every prompt
    tmpl = ("{% for message in messages %}{% if message['role'] != 'system' %}<|im_start|>{{ message['role'] }}\n"
            "{{ message['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    _edit_gguf(f16_gguf, bad, "--chat-template", tmpl)
    checks = recheck_gguf(bad, demo / "runs" / "demo", demo / "exp-all")
    tc = next(c for c in checks if c.name.startswith("chat template"))
    assert not tc.ok and "other prompt bytes than training's" in tc.detail and "eval prompt 1" in tc.detail
    # the untouched file passes the same check
    good = recheck_gguf(f16_gguf, demo / "runs" / "demo", demo / "exp-all")
    assert all(c.ok for c in good), [c.detail for c in good if not c.ok]


def test_a_broken_eos_token_is_caught(demo, f16_gguf, tmp_path):
    from ftwizard.export.consistency import recheck_gguf

    bad = tmp_path / "broken-eos.gguf"
    _edit_gguf(f16_gguf, bad, "--special-token", "eos", "<|endoftext|>")
    checks = recheck_gguf(bad, demo / "runs" / "demo", demo / "exp-all")
    ec = next(c for c in checks if c.name.startswith("end-of-turn"))
    assert not ec.ok and "'<|endoftext|>'" in ec.detail and "'<|im_end|>'" in ec.detail
