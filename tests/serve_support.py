"""Support for the serve/chat/Try/judge tests: a run folder with a real (untrained) LoRA adapter,
and a way to start `ftwizard serve` as a real process and find its port.

The adapter is made by peft on the embedded model with random B matrices
(init_lora_weights=False), so the "tuned" model answers differently from the base, as
a trained one would, without spending a training run on it. It is made in a child
process so the test process never holds a second copy of the model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from helpers import tiny_config

MAKE_ADAPTER = r"""
import sys, torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
torch.manual_seed(0)
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
cfg = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False,
                 task_type="CAUSAL_LM")
p = get_peft_model(m, cfg)
for n, w in p.named_parameters():
    if "lora_B" in n:
        torch.nn.init.normal_(w, std=0.02)
p.save_pretrained(sys.argv[2])
"""


def make_adapter_run(tmp_path: Path, embedded_dir: Path, name: str = "demo") -> tuple[Path, Path]:
    """runs/<name>/ with config.yaml, status.json (completed) and adapter/; returns (runs_dir, run)."""
    cfg_path = tiny_config(tmp_path)
    cfg = yaml.safe_load(cfg_path.read_text())
    runs_dir = Path(cfg["runs_dir"])
    run = runs_dir / name
    run.mkdir(parents=True)
    cfg["name"] = name
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "status.json").write_text(json.dumps({"state": "completed", "step": 4, "started_at": time.time()}))
    subprocess.run([sys.executable, "-c", MAKE_ADAPTER, str(embedded_dir), str(run / "adapter")], check=True,
                   timeout=600, env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    return runs_dir, run


SERVING = re.compile(r"serving (?P<models>.+?) \(.*\) at (?P<url>http://\S+/v1)")


class CliServer:
    """`ftwizard serve ...` as a real process; `.url` once it prints its address."""

    def __init__(self, args: list[str], env: dict | None = None, timeout: float = 600):
        self.proc = subprocess.Popen([sys.executable, "-m", "ftwizard", "serve", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, **(env or {})))
        self.lines: list[str] = []
        self.url = None
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)
            m = SERVING.search(line)
            if m:
                self.url = m.group("url").replace("localhost", "127.0.0.1")
                break
            if time.monotonic() > deadline:
                break
        if self.url is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))
        import threading

        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:  # keep reading, so the server never blocks on a full pipe
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return "".join(self.lines)


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
