"""`ftwizard estimate`: the table, the stable JSON, config files, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ftwizard.cli import main

SCHEMA_KEYS = {
    "schema", "model", "settings", "total_bytes", "parts", "peak_phase", "gpu", "verdict", "headroom_bytes",
    "advice", "cheapest_gpu", "tokens", "time_s", "cost", "flops", "utilization", "price_per_hour", "peak_tflops", "notes",
}


def run_json(capsys, *argv) -> dict:
    assert main(["estimate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_schema_is_stable(capsys):
    d = run_json(capsys, "--model", "llama-3.1-8b", "--method", "lora", "--max-length", "2048", "--batch", "4",
                 "--gpu", "RTX 4090", "--rows", "1000")
    assert set(d) == SCHEMA_KEYS
    assert d["schema"] == "ftwizard.estimate/1"
    assert sum(d["parts"].values()) == d["total_bytes"]
    assert d["verdict"] == "does_not_fit" and d["advice"]
    for a in d["advice"]:
        assert set(a) == {"change", "settings", "total_bytes", "verdict"}
    assert d["gpu"]["name"] == "RTX 4090" and d["gpu"]["source"] == "catalog"
    assert d["time_s"] > 0 and d["cost"] > 0 and d["tokens"] == 1000 * 2048
    assert d["model"]["total_params"] == 8_030_261_248
    assert set(d["settings"]) >= {"method", "max_length", "seq_len", "micro_batch", "grad_accum",
                                  "gradient_checkpointing", "optimizer", "precision", "n_gpus", "strategy"}


def test_no_gpu_gives_unknown_verdict_with_reason(capsys):
    d = run_json(capsys, "--model", "embedded")
    # on a machine without a GPU the detected GPU is absent: no verdict, and the reason is in the notes
    if d["gpu"] is None:
        assert d["verdict"] == "unknown" and d["time_s"] is None
        assert any("GPU" in n or "NVML" in n or "driver" in n for n in d["notes"])


def test_cheapest_gpu_that_fits(capsys):
    d = run_json(capsys, "--model", "llama-3.1-8b", "--method", "qlora", "--max-length", "1024", "--gpu", "T4",
                 "--gradient-checkpointing", "--tokens", "1000000")
    c = d["cheapest_gpu"]
    if d["verdict"] != "fits":
        assert c is not None and c["total_bytes"] <= 0.9 * c["memory_bytes"] and c["cost"] > 0


def test_price_and_utilization_are_editable(capsys):
    base = ["--model", "qwen2.5-7b", "--method", "qlora", "--gpu", "L4", "--tokens", "5000000"]
    a = run_json(capsys, *base)
    b = run_json(capsys, *base, "--price", "2.0", "--utilization", "0.7")
    assert b["price_per_hour"] == 2.0 and b["utilization"] == 0.7
    assert b["time_s"] == pytest.approx(a["time_s"] / 2)
    assert b["cost"] == pytest.approx(b["time_s"] / 3600 * 2.0)


def test_fsdp_gpus_flag(capsys):
    one = run_json(capsys, "--model", "llama-3.1-8b", "--method", "full", "--gpu", "H100")
    four = run_json(capsys, "--model", "llama-3.1-8b", "--method", "full", "--gpu", "H100", "--gpus", "4",
                    "--strategy", "fsdp")
    assert four["total_bytes"] < one["total_bytes"] / 2 and four["settings"]["n_gpus"] == 4


def test_config_file_and_overrides(tmp_path, capsys):
    from ftwizard.config import default_config

    cfg = default_config(tmp_path / "absent.jsonl")
    path = tmp_path / "run.yaml"
    cfg.save(path)
    d = run_json(capsys, str(path), "--gpu", "A10G", "--data", "")  # empty --data: no data file
    assert d["settings"]["method"] == "lora" and d["settings"]["micro_batch"] == cfg.training.batch_size
    d2 = run_json(capsys, str(path), "--gpu", "A10G", "--data", "", "--method", "full", "--batch", "1")
    assert d2["settings"]["method"] == "full" and d2["settings"]["micro_batch"] == 1


def test_table_output(capsys):
    assert main(["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--max-length", "2048", "--batch", "4",
                 "--gpu", "RTX 4090", "--rows", "100"]) == 0
    out = capsys.readouterr().out
    for text in ("activations", "logits", "total", "does not fit", "What would make it fit", "cost"):
        assert text in out


@pytest.mark.parametrize("argv,msg", [
    (["--model", "no/such-model-xyz"], "unknown model"),
    (["--gpu", "Voodoo 3"], "unknown GPU"),
    (["--data", "/no/such/file.jsonl"], "data file not found"),
    (["/no/such/config.yaml"], "config file not found"),
    (["--batch", "0"], "--batch: must be 1 or more"),
])
def test_user_errors_are_one_clear_message(argv, msg, capsys):
    assert main(["estimate", *argv]) == (2 if argv[0] == "--batch" else 1)  # a value out of range is a usage error
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_list_gpus(capsys):
    assert main(["estimate", "--list-gpus", "--json"]) == 0
    names = {g["name"] for g in json.loads(capsys.readouterr().out)}
    assert "H100" in names and "T4" in names


def test_cli_stays_light():
    code = ("import sys; from ftwizard.cli import build_parser; build_parser(); "
            "print([m for m in ('torch', 'transformers', 'peft', 'rich', 'pynvml') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.slow
def test_data_file_gives_real_token_counts(tmp_path, capsys, embedded_model_dir):
    rows = [{"messages": [{"role": "user", "content": "hi " * n}, {"role": "assistant", "content": "ok"}]}
            for n in (5, 10, 200)]
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    d = run_json(capsys, "--model", "embedded", "--data", str(f), "--max-length", "4096", "--gpu", "T4", "--batch", "1")
    assert 200 < d["settings"]["seq_len"] < 400  # the longest row (chat template + default system prompt)
    assert d["tokens"] > 0 and any("3 rows" in n for n in d["notes"])
