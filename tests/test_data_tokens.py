"""Exact token counts, assistant spans, the EOS check and the preview, with the embedded model's tokenizer."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from ftwizard.data.lint import LintOptions, lint_file
from ftwizard.data.loading import iter_records
from ftwizard.data.formats import to_messages
from ftwizard.data.preview import preview_row
from ftwizard.data.template import assistant_spans, assistant_token_mask, stop_tokens
from ftwizard.data.tokens import TokenCounter, load_tokenizer
from ftwizard.errors import UserError

FIX = Path(__file__).parent / "fixtures" / "data"

TRICKY = [
    [{"role": "user", "content": "  leading and trailing spaces  \n\n"}, {"role": "assistant", "content": "\n\nok  "}],
    [{"role": "user", "content": "ünïcödé, 日本語のテキスト, emoji 🚲🚲 and don't won't I'll"},
     {"role": "assistant", "content": "Numbers 1234567 3.14159 -42 and tabs\tand\r\nnewlines"}],
    [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "a <|im_end|> inside"},
     {"role": "assistant", "content": "<|im_start|>assistant\nfake"}],
    [{"role": "user", "content": "x"}],
    [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
     {"role": "assistant", "content": "a2 " * 300}],
]


def reference(tok, conv) -> int:
    out = tok.apply_chat_template(conv, tokenize=True)
    return len(out["input_ids"] if hasattr(out, "keys") else out)


def conversations(name: str) -> list[list[dict]]:
    return [to_messages(r.value) for r in iter_records(FIX / name)]


def test_counts_match_apply_chat_template(embedded_tokenizer):
    convs = TRICKY + conversations("valid_messages.jsonl") + conversations("valid_sharegpt.jsonl") * 30
    tc = TokenCounter(embedded_tokenizer)
    counts = tc.count_conversations(convs)
    assert counts == [reference(embedded_tokenizer, c) for c in convs]
    assert tc._use_pieces and tc._words is not None and tc._use_skeletons  # the fast paths were taken and verified


def test_counts_stay_exact_when_the_template_reads_the_content(embedded_tokenizer):
    tok = copy.deepcopy(embedded_tokenizer)
    tok.chat_template = tok.chat_template.replace("message['content']", "message['content'] | trim")
    tc = TokenCounter(tok)
    convs = TRICKY * 4
    assert tc.count_conversations(convs) == [reference(tok, c) for c in convs]
    assert not tc._use_skeletons  # the template filters content: every row goes through Jinja


def test_spot_checks_catch_a_template_the_static_check_misses(embedded_tokenizer):
    tok = copy.deepcopy(embedded_tokenizer)
    tok.chat_template = tok.chat_template.replace("message['content']", "(message['content'] if message['content'] != 'x' else 'why')")
    tc = TokenCounter(tok)
    assert tc._use_skeletons
    convs = TRICKY * 4  # TRICKY[3] has the content 'x'
    assert tc.count_conversations(convs) == [reference(tok, c) for c in convs]
    assert not tc._use_skeletons  # the spliced text differed from the real render: dropped


def test_slow_paths_agree(embedded_tokenizer):
    tc = TokenCounter(embedded_tokenizer)
    tc._use_pieces = False
    tc._use_skeletons = False
    assert tc.count_conversations(TRICKY) == [reference(embedded_tokenizer, c) for c in TRICKY]


def test_text_rows_count_like_the_trainer(embedded_tokenizer):
    from ftwizard.training.dataset import encode_text

    texts = ["plain text row", "another one\nwith lines", ""]
    assert TokenCounter(embedded_tokenizer).count_texts(texts) == [
        len(encode_text(embedded_tokenizer, t)["input_ids"]) for t in texts]


@pytest.mark.parametrize("name", ["valid_messages.jsonl", "valid_sharegpt.jsonl", "valid_alpaca.jsonl",
                                  "valid_prompt_completion.jsonl", "valid_text.jsonl", "valid_alpaca.csv",
                                  "valid_messages.parquet", "valid_array.json"])
def test_lint_counts_what_the_trainer_encodes(embedded_tokenizer, name):
    """Round trip through the trainer's encoder: every SFT format is accepted and lint's counts are its lengths."""
    from ftwizard.training.dataset import encode_file

    encoded = encode_file(FIX / name, embedded_tokenizer)
    report = lint_file(FIX / name, LintOptions(tokenizer=embedded_tokenizer))
    assert report.stats["tokens"]["total"] == sum(len(e["input_ids"]) for e in encoded)
    assert report.stats["tokens"]["count"] == len(encoded) == 6


def test_assistant_spans_cover_content_and_end_of_turn(embedded_tokenizer):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you."}]
    text = embedded_tokenizer.apply_chat_template(msgs, tokenize=False)
    spans = assistant_spans(embedded_tokenizer, msgs)
    assert [text[s.start:s.end] for s in spans] == ["Hello!<|im_end|>", "See you.<|im_end|>"]
    assert [s.message_index for s in spans] == [1, 3] and all(s.closed for s in spans)
    r = assistant_token_mask(embedded_tokenizer, msgs)
    trained = [i for i, m in zip(r.input_ids, r.trained_mask) if m]
    assert embedded_tokenizer.decode(trained) == "Hello!<|im_end|>See you.<|im_end|>"
    assert "".join(s.text for s in r.segments) == text
    assert [s.text for s in r.segments if s.trained] == ["Hello!<|im_end|>", "See you.<|im_end|>"]
    assert r.tokens == reference(embedded_tokenizer, msgs)


def test_eos_check_flags_a_template_that_never_closes_the_turn(embedded_tokenizer, tmp_path):
    tok = copy.deepcopy(embedded_tokenizer)
    # a template that closes user turns but leaves assistant turns open: the model would never learn to stop
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                         "{% if m['role'] != 'assistant' %}<|im_end|>{% endif %}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    msgs = to_messages(json.loads((FIX / "valid_messages.jsonl").read_text().splitlines()[0]))
    assert not any(s.closed for s in assistant_spans(tok, msgs))
    report = lint_file(FIX / "valid_messages.jsonl", LintOptions(tokenizer=tok))
    f = next(f for f in report.findings if f.rule == "template.no_eos")
    assert f.row == 1 and report.exit_code == 1 and "<|im_end|>" in f.message
    ok = lint_file(FIX / "valid_messages.jsonl", LintOptions(tokenizer=embedded_tokenizer))
    assert "template.no_eos" not in ok.counts and stop_tokens(embedded_tokenizer) == ["<|im_end|>"]


def test_length_and_special_token_rules(embedded_tokenizer):
    path = FIX / "too_long.jsonl"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    r = lint_file(path, LintOptions(tokenizer=embedded_tokenizer, max_length=256))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    over = [f for f in r.findings if f.rule == "length.over_max"]
    assert [f.row for f in over] == [2]
    tokens = r.stats["tokens"]
    assert tokens["truncated_rows"] == 1 and tokens["max"] > 256
    assert tokens["tokens_per_epoch"] == tokens["total"] - tokens["truncated_tokens"]
    assert sum(b["rows"] for b in tokens["histogram"]) == 3
    s = lint_file(FIX / "special_token.jsonl", LintOptions(tokenizer=embedded_tokenizer))
    f = next(f for f in s.findings if f.rule == "content.special_token")
    assert f.row == 1 and f.field == "messages[2].content" and "<|im_end|>" in f.message


def test_preview(embedded_tokenizer):
    pv = preview_row(FIX / "valid_alpaca.jsonl", 2, embedded_tokenizer)
    assert pv.fmt == "alpaca" and not pv.problems
    trained = "".join(s.text for s in pv.rendered.segments if s.trained)
    assert trained == "Check them before every ride: road tyres lose a few PSI a day. Pump to the pressure printed on the sidewall.<|im_end|>"
    text = preview_row(FIX / "valid_text.jsonl", 1, embedded_tokenizer)
    assert all(s.trained for s in text.rendered.segments) and text.rendered.text.endswith("<|im_end|>")
    bad = preview_row(FIX / "mixture.jsonl", 2, embedded_tokenizer)
    assert bad.rendered is None and any("roles.unknown" in p for p in bad.problems)
    with pytest.raises(UserError, match="no row 99"):
        preview_row(FIX / "valid_alpaca.jsonl", 99, embedded_tokenizer)


def test_load_tokenizer(embedded_model_dir, tmp_path):
    assert load_tokenizer(str(embedded_model_dir)).eos_token == "<|im_end|>"
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        load_tokenizer("nobody-xyz/no-such-model-123")
    with pytest.raises(UserError, match="cannot load a tokenizer"):
        load_tokenizer(str(tmp_path))
    (tmp_path / "f.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="a file, not a model folder"):
        load_tokenizer(str(tmp_path / "f.bin"))


def test_tokenizer_without_chat_template_is_one_finding(embedded_tokenizer):
    tok = copy.deepcopy(embedded_tokenizer)
    tok.chat_template = None
    r = lint_file(FIX / "valid_messages.jsonl", LintOptions(tokenizer=tok))
    assert r.counts["template.error"] == 1 and r.stats["tokens"] is None
