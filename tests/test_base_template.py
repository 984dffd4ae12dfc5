"""Any base model, including one without a chat template (issue 14, part 3): the built-in templates render as
written (golden strings), their spans end at the end-of-turn token, auto leaves an instruct model alone, and a
real LoRA run on a template-less copy of the embedded model adds the template's tokens, trains only their
embedding rows, saves the template with the adapter, and eval, the Try server's engine and export load it."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftwizard.data import chat_templates as ct
from ftwizard.data.template import assistant_spans, render
from ftwizard.errors import UserError

from helpers import tiny_config

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]

GOLDEN = {
    "chatml": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
              "Hello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
    "llama3": "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
              "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant"
              "<|end_header_id|>\n\n4<|eot_id|>",
    "gemma": "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
             "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n",
    # mistral and alpaca close turns with the tokenizer's own eos (<|im_end|> for SmolLM2's tokenizer)
    "mistral": "[INST] Be brief.\n\nHi [/INST]Hello!<|im_end|>[INST] 2+2? [/INST]4<|im_end|>",
    "alpaca": "Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello!<|im_end|>\n\n### Instruction:\n2+2?\n\n"
              "### Response:\n4<|im_end|>\n\n",
}
GEN_PROMPT = {"chatml": "<|im_start|>assistant\n", "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
              "gemma": "<start_of_turn>model\n", "mistral": "[/INST]", "alpaca": "### Response:\n"}

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
TOOL_CONV = [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": "", "tool_calls": [
                 {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
             {"role": "tool", "content": '{"temp": 20}'}, {"role": "assistant", "content": "20 C."}]
TOOL_GOLDEN = (
    "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": '
    '{"type": "object", "properties": {"city": {"type": "string"}}}}}\n</tools>\n\n'
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
    "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
    '<|im_start|>user\n<tool_response>\n{"temp": 20}\n</tool_response><|im_end|>\n'
    "<|im_start|>assistant\n20 C.<|im_end|>\n")


def strip_template(folder: Path) -> Path:
    """A model folder as a base model ships: no chat template anywhere."""
    for name in ("chat_template.jinja", "chat_template.json"):
        (folder / name).unlink(missing_ok=True)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="module")
def base_dir(embedded_model_dir, tmp_path_factory) -> Path:
    return strip_template(Path(shutil.copytree(embedded_model_dir, tmp_path_factory.mktemp("nochat") / "base")))


@pytest.fixture(scope="module")
def bare_tokenizer(base_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    assert not tok.chat_template
    return tok


# ---- fast: the templates themselves -------------------------------------------------------------------
@pytest.mark.parametrize("name", ct.NAMES)
def test_builtin_renders_golden_and_spans_end_at_end_of_turn(bare_tokenizer, name):
    tok = copy.deepcopy(bare_tokenizer)
    applied = ct.apply_template(tok, name)
    assert render(tok, CONV) == GOLDEN[name]
    assert render(tok, CONV[:2], add_generation_prompt=True).endswith(GEN_PROMPT[name])
    eot = ct.BUILTIN[name].end_of_turn or "<|im_end|>"
    assert applied.end_of_turn == eot and tok.eos_token == eot
    spans = assistant_spans(tok, CONV)
    text = render(tok, CONV)
    assert [text[s.start:s.end] for s in spans] == ["Hello!" + eot, "4" + eot]
    assert all(s.closed for s in spans)
    # each declared token is one token (added where the vocabulary lacked it)
    for t in ct.BUILTIN[name].special_tokens:
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1
    assert len(tok) == len(bare_tokenizer) + len(applied.added_tokens)


def test_chatml_renders_tools_hermes_style_others_refuse(bare_tokenizer):
    tok = copy.deepcopy(bare_tokenizer)
    ct.apply_template(tok, "chatml")
    assert tok.apply_chat_template(TOOL_CONV, tools=TOOLS, tokenize=False) == TOOL_GOLDEN
    # OpenAI-style arguments as a JSON string come out as written
    as_string = copy.deepcopy(TOOL_CONV)
    as_string[1]["tool_calls"][0]["function"]["arguments"] = '{"city": "Paris"}'
    assert tok.apply_chat_template(as_string, tools=TOOLS, tokenize=False) == TOOL_GOLDEN
    other = copy.deepcopy(bare_tokenizer)
    ct.apply_template(other, "llama3")
    with pytest.raises(Exception, match="cannot render tools"):
        other.apply_chat_template(TOOL_CONV, tools=TOOLS, tokenize=False)


def test_auto_gives_a_base_chatml_and_leaves_an_instruct_model_alone(bare_tokenizer, embedded_tokenizer):
    tok = copy.deepcopy(bare_tokenizer)
    applied = ct.apply_template(tok, "auto")
    assert applied.changed and applied.source == "chatml" and tok.chat_template == ct.template_text(
        ct.BUILTIN["chatml"], tok)
    assert applied.trained_tokens == ["<|im_start|>", "<|im_end|>"] and applied.added_tokens == []  # SmolLM2 has them
    inst = copy.deepcopy(embedded_tokenizer)
    before = (inst.chat_template, inst.eos_token, len(inst))
    applied = ct.apply_template(inst, "auto")
    assert not applied.changed and applied.trained_tokens == [] and (inst.chat_template, inst.eos_token, len(inst)) == before
    # plain text rows need no template: nothing applied even to a base
    tok = copy.deepcopy(bare_tokenizer)
    assert not ct.apply_template(tok, "llama3", needed=False).changed and not tok.chat_template


def test_config_field_validation_and_jinja_file(tmp_path, bare_tokenizer):
    from ftwizard.config import load_config

    cfg_path = tiny_config(tmp_path)
    data = yaml.safe_load(cfg_path.read_text())
    data["data"]["chat_template"] = "chatmll"
    cfg_path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="data.chat_template"):
        load_config(cfg_path)
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "mine.jinja").write_text(
        "{% for m in messages %}<|turn|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>{% endfor %}"
        "{% if add_generation_prompt %}<|turn|>assistant: {% endif %}")
    data["data"]["chat_template"] = "tpl/mine.jinja"
    cfg_path.write_text(yaml.safe_dump(data))
    cfg = load_config(cfg_path)
    assert cfg.data.chat_template == str(tmp_path / "tpl" / "mine.jinja")  # relative to the config file
    tok = copy.deepcopy(bare_tokenizer)
    applied = ct.apply_template(tok, cfg.data.chat_template)
    assert applied.added_tokens == ["<|turn|>"] and applied.end_of_turn == "<|im_end|>"
    assert render(tok, CONV[1:3]) == "<|turn|>user: Hi<|im_end|><|turn|>assistant: Hello!<|im_end|>"
    with pytest.raises(UserError, match="not found"):
        ct.apply_template(copy.deepcopy(bare_tokenizer), str(tmp_path / "missing.jinja"))
    (tmp_path / "bad.jinja").write_text("{% for m in messages %}")
    with pytest.raises(UserError, match="not valid Jinja"):
        ct.apply_template(copy.deepcopy(bare_tokenizer), str(tmp_path / "bad.jinja"))
    text_rows = tmp_path / "text.jsonl"
    text_rows.write_text('{"text": "plain"}\n')
    assert not ct.needs_template(text_rows) and ct.needs_template(cfg.data.train)


# ---- slow: one real run on the template-less copy --------------------------------------------------------
def cli(*args, timeout=900, **kw):
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.fixture(scope="module")
def trained(base_dir, tmp_path_factory):
    """LoRA SFT with the Llama-3 template on the template-less copy: 3 new tokens (the embeddings grow)."""
    tmp = tmp_path_factory.mktemp("basetpl")
    cfg_path = tiny_config(tmp, "lora", save_every=0)
    data = yaml.safe_load(cfg_path.read_text())
    data["model"]["base"] = str(base_dir)
    data["data"]["chat_template"] = "llama3"
    cfg_path.write_text(yaml.safe_dump(data))
    r = cli("train", str(cfg_path), "--name", "tpl")
    run = tmp / "runs" / "tpl"
    log = (run / "train.log").read_text() if (run / "train.log").is_file() else ""
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + log[-3000:]
    return run


@pytest.mark.slow
def test_base_without_template_trains_its_new_token_rows_and_every_loader_uses_the_template(trained, base_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftwizard.models.vocab import fit_embeddings
    from ftwizard.rundir import RunDir, latest_by_step

    run = RunDir(trained)
    events = list(run.iter_events())
    losses = {e["step"]: e["loss"] for e in latest_by_step(events)}
    assert losses[max(losses)] < losses[min(losses)], losses
    tpl = [e for e in events if e.get("event") == "chat_template"]
    assert tpl and tpl[0]["added_tokens"] == ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

    # the saved tokenizer carries the template, the tokens and the end-of-turn as eos
    tok = AutoTokenizer.from_pretrained(str(run.adapter))
    assert tok.chat_template == ct.template_text(ct.BUILTIN["llama3"], tok)
    assert len(tok) == 49152 + 3 and tok.eos_token == "<|eot_id|>"
    # the adapter holds the trained rows, not a copy of the whole embedding
    from safetensors import safe_open

    with safe_open(str(run.adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any("trainable_tokens_delta" in k for k in keys)
    assert not any(k.endswith("embed_tokens.weight") or k.endswith("lm_head.weight") for k in keys)

    # base + adapter through the one loader function: new rows trained, every other row untouched
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    original = base.get_input_embeddings().weight.detach().clone()
    new_ids = fit_embeddings(base, tok)
    assert new_ids == [49152, 49153, 49154]
    mean = original.mean(0)
    model = PeftModel.from_pretrained(base, str(run.adapter), is_trainable=False).eval()
    merged = model.get_input_embeddings().weight.detach()  # peft's view: base rows with the trained rows written in
    assert merged.shape[0] == 49155
    assert torch.equal(merged[:49152], original)
    for i in new_ids:
        assert not torch.allclose(merged[i], mean), f"row {i} did not train"
    assert model.get_base_model().config.tie_word_embeddings  # SmolLM2: the output layer follows the same rows

    # eval's engine (the Try server loads through it too) reads the run's tokenizer and fits the base
    from ftwizard.evaluation.generate import Engine
    from ftwizard.evaluation.runner import run_tokenizer_folder

    assert run_tokenizer_folder({"models": [{"path": None}, {"path": str(run.adapter)}]}) == str(run.adapter)
    eng = Engine(str(base_dir), "lora", device="cpu", log=lambda *_: None, tokenizer_path=str(run.adapter))
    eng.use("adapter", str(run.adapter), "final")
    prompt = [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "What colour is sky?"}]
    assert eng.render_prompt(prompt).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    (out,), (stopped,) = eng.generate([prompt], max_new_tokens=6, with_stops=True)
    assert isinstance(out, str) and "<|" not in out

    # adapter export: loaded back and checked against the fine-tuned model by the exporter itself
    r = cli("export", str(run.path), "--format", "adapter", "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    exported = next(p for p in (run.path / "export").rglob("chat_template.jinja"))
    assert "<|start_header_id|>" in exported.read_text()


def test_estimate_counts_the_template_token_rows(tmp_path, base_dir):
    """The estimate (what check and the wizard show) includes the trained template rows for a base without a
    template, and nothing for the instruct model under auto or for plain text rows."""
    from ftwizard.config import load_config
    from ftwizard.hardware.estimate import estimate_for_config

    cfg_path = tiny_config(tmp_path)
    data = yaml.safe_load(cfg_path.read_text())
    data["model"]["base"] = str(base_dir)
    cfg_path.write_text(yaml.safe_dump(data))
    base_cfg = load_config(cfg_path)
    est = estimate_for_config(base_cfg, device="cpu")
    assert est.input.template_tokens == 2  # ChatML under auto
    # LoRA: the output layer's merged weight and its fp32 gradient (8 B per vocab x hidden, measured on the CPU)
    assert est.parts["template_token_rows"] >= 49152 * 576 * 8
    assert any("chat-template token rows" in n for n in est.notes)
    instruct = load_config(cfg_path, {"model.base": ("--model", "embedded")})
    assert estimate_for_config(instruct, device="cpu").parts["template_token_rows"] == 0
    text = tmp_path / "text.jsonl"
    text.write_text('{"text": "plain words"}\n' * 4)
    plain = load_config(cfg_path, {"data.train": ("--data", str(text))})
    assert estimate_for_config(plain, device="cpu").parts["template_token_rows"] == 0


def test_an_adapter_folder_without_tokenizer_files_falls_back_to_the_base_tokenizer(tmp_path, embedded_model_dir):
    """An adapter copied without its tokenizer (or made by hand) is scored and served with the base's tokenizer;
    loading it from the half-empty folder crashed the model server (seen: `ftwizard chat` waiting 300 s)."""
    from ftwizard.evaluation.generate import Engine
    from ftwizard.evaluation.runner import run_tokenizer_folder
    from ftwizard.models.vocab import has_tokenizer

    bare = tmp_path / "adapter"
    bare.mkdir()
    (bare / "adapter_config.json").write_text("{}")
    (bare / "tokenizer_config.json").write_text("{}")
    assert not has_tokenizer(bare) and has_tokenizer(embedded_model_dir)
    assert run_tokenizer_folder({"models": [{"path": str(bare)}]}) is None
    eng = Engine(str(embedded_model_dir), "lora", False, "cpu", log=lambda *_: None, tokenizer_path=str(bare))
    assert eng.tokenizer.chat_template and "<|im_end|>" in eng.tokenizer.chat_template
