"""Modelfile TEMPLATE vs the tokenizer's chat template (string compare), and the Go-template subset."""

from __future__ import annotations

import copy

import pytest

from ftwizard.export import ollama as O
from ftwizard.export.gotemplate import TemplateError, render

LLAMA3 = ("<|begin_of_text|>{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
          "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
# Gemma-style: no system role, the system text is folded into the first user turn.
FOLDED = ("{% for message in messages %}{% if message['role'] == 'system' %}{% set sys = message['content'] %}"
          "{% elif message['role'] == 'user' %}<start_of_turn>user\n{{ sys ~ ' ' if sys is defined else '' }}"
          "{{ message['content'] }}<end_of_turn>\n{% else %}<start_of_turn>model\n{{ message['content'] }}"
          "<end_of_turn>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def _with_template(tok, template):
    t = copy.deepcopy(tok)
    t.chat_template = template
    return t


CONVS = [
    [{"role": "user", "content": "What colour is snow?"}],
    [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "Sky?"},
     {"role": "assistant", "content": "blue"}, {"role": "user", "content": "Grass?\nOne word."}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
]


def test_chatml_modelfile_renders_like_the_chat_template(embedded_tokenizer):
    tok = embedded_tokenizer
    tr = O.translate(tok, [tok.eos_token])
    assert tr.family == "chatml" and not tr.warnings
    assert tr.stops == ["<|im_end|>", "<|im_start|>"]
    # SmolLM's template inserts its own system prompt; the Modelfile's SYSTEM must carry it
    assert tr.default_system and tr.default_system.startswith("You are a helpful AI assistant named SmolLM")
    for system in (tr.default_system, "Answer with one word."):
        for conv in CONVS:
            trained = conv if any(m["role"] == "system" for m in conv) else [{"role": "system", "content": system}] + conv
            hf = tok.apply_chat_template(trained, tokenize=False, add_generation_prompt=True)
            go = render(tr.template, O.ollama_values(conv, system))
            assert go == hf
    assert O.check_rendering(tok, tr, "Answer with one word.", O.probe_conversations("Answer with one word.")) == []


def test_chatml_without_system_matches_template_default(embedded_tokenizer):
    tok = embedded_tokenizer
    tr = O.translate(tok, [tok.eos_token])
    conv = CONVS[0]
    hf = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)  # default system inserted
    assert render(tr.template, O.ollama_values(conv, tr.default_system)) == hf


def test_llama3_template_translates_and_matches(embedded_tokenizer):
    tok = _with_template(embedded_tokenizer, LLAMA3)
    tr = O.translate(tok, ["<|eot_id|>"])
    assert tr.family == "llama3" and not tr.warnings
    assert tr.bos == "<|begin_of_text|>"  # llama.cpp adds BOS itself, so TEMPLATE leaves it out
    assert "<|eot_id|>" in tr.stops and "<|start_header_id|>" in tr.stops
    assert tr.default_system is None
    for conv in CONVS:
        hf = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        assert tr.bos + render(tr.template, O.ollama_values(conv, None)) == hf
    assert O.check_rendering(tok, tr, None, O.probe_conversations(None)) == []


def test_untranslatable_template_falls_back_with_a_warning(embedded_tokenizer):
    tok = _with_template(embedded_tokenizer, FOLDED)
    tr = O.translate(tok, [tok.eos_token])
    assert tr.family == "generic"
    assert tr.warnings and "does NOT match training" in tr.warnings[0]
    # and the check says so instead of passing quietly
    assert O.check_rendering(tok, tr, None, O.probe_conversations(None))


def test_modelfile_text(embedded_tokenizer):
    tr = O.translate(embedded_tokenizer, [embedded_tokenizer.eos_token])
    text = O.modelfile_text("run-q8_0.gguf", tr, 'Say "hi".')
    assert "FROM ./run-q8_0.gguf\n" in text
    assert f'TEMPLATE """{tr.template}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert 'SYSTEM """Say "hi"."""' in text
    with pytest.raises(ValueError):
        O.modelfile_text("x.gguf", tr, 'a """ b')


def test_ollama_collates_like_ollama():
    v = O.ollama_values([{"role": "system", "content": "s1"}, {"role": "user", "content": "a"},
                         {"role": "user", "content": "b"}], "ignored")
    assert v["System"] == "s1"
    assert v["Messages"] == [{"Role": "system", "Content": "s1"}, {"Role": "user", "Content": "a\n\nb"}]
    assert O.ollama_values([{"role": "user", "content": "a"}], "S")["System"] == "S"


def test_go_template_subset():
    vals = {"System": "", "Messages": [{"Role": "user", "Content": "hi"}, {"Role": "assistant", "Content": "yo"}]}
    t = ('{{ if .System }}S{{ else if eq .Messages "x" }}X{{ else }}none{{ end }}|'
         '{{- range .Messages }} {{ .Role }}={{ .Content -}} ;{{ end }}|{{ if and (ne .System "") .Messages }}Y{{ end }}')
    assert render(t, vals) == "none| user=hi; assistant=yo;|"
    assert render("{{ if not .System }}empty{{ end }}", vals) == "empty"
    with pytest.raises(TemplateError):
        render("{{ slice .Messages 1 }}", vals)      # outside the subset: an error, never a silent pass
    with pytest.raises(TemplateError):
        render("{{ if .System }}unclosed", vals)
    with pytest.raises(TemplateError):
        render("{{ .Missing }}", vals)
