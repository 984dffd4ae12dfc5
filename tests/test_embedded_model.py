"""The embedded model: located without importing its package, converted once, atomically."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ftwizard.errors import UserError
from ftwizard.models import embedded
from ftwizard.models.resolve import resolve_base


def test_gguf_is_found_inside_the_installed_package():
    p = embedded.gguf_path()
    assert p.name == embedded.GGUF_NAME and p.stat().st_size > 50_000_000


def test_unknown_hub_id_offline_is_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError) as ei:
        resolve_base("some-org/not-a-cached-model")
    assert "not in the local hub cache" in ei.value.what and ei.value.where == "model.base"


def test_local_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(UserError) as ei:
        resolve_base(str(tmp_path))
    assert "config.json" in ei.value.what


@pytest.mark.slow
def test_two_processes_converting_at_once_leave_one_good_cache(tmp_path):
    """Both wait on the lock; exactly one converts; the cache loads; no temp folder is left."""
    code = ("from ftwizard.models.embedded import ensure_cached\n"
            "import sys\np = ensure_cached(log=lambda m: print('CONVERTING', flush=True))\nprint(p)")
    env = dict(os.environ, FTWIZARD_CACHE=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert sum("CONVERTING" in o[0] for o in outs) == 1
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(paths) == 1
    models = tmp_path / "cache" / "models"
    assert sorted(p.name for p in models.iterdir() if p.is_dir()) == [embedded.CACHE_NAME]
    from transformers import AutoConfig, AutoTokenizer

    folder = paths.pop()
    assert AutoConfig.from_pretrained(folder).num_hidden_layers == 30
    assert AutoTokenizer.from_pretrained(folder).eos_token == "<|im_end|>"
