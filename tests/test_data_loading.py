"""Loading every file kind with row numbers, format detection per row, and conversion to messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftwizard.data.checks import check_row
from ftwizard.data.dedup import NearDuplicates
from ftwizard.data.formats import detect_format, to_messages
from ftwizard.data.loading import iter_records

FIX = Path(__file__).parent / "fixtures" / "data"


@pytest.mark.parametrize("name,fmt", [
    ("valid_messages.jsonl", "messages"), ("valid_sharegpt.jsonl", "sharegpt"), ("valid_alpaca.jsonl", "alpaca"),
    ("valid_prompt_completion.jsonl", "prompt_completion"), ("valid_text.jsonl", "text"), ("preference.jsonl", "preference"),
    ("valid_array.json", "messages"), ("valid_wrapped.json", "messages"), ("jsonl_named.json", "messages"),
    ("valid_alpaca.csv", "alpaca"), ("valid_messages.csv", "messages"), ("valid_messages.parquet", "messages"),
])
def test_every_kind_and_format_loads_and_detects(name, fmt):
    recs = list(iter_records(FIX / name))
    assert [r.row for r in recs] == [1, 2, 3, 4, 5, 6]
    assert {detect_format(r.value) for r in recs} == {fmt}
    if fmt not in ("text", "preference"):
        for r in recs:
            msgs = to_messages(r.value)
            assert msgs[-1]["role"] == "assistant" and msgs[-2]["role"] == "user"
            assert check_row(r.value).ok


def test_same_conversation_from_every_sft_format():
    """The same six examples, stored six ways, convert to the same user/assistant turns."""
    def turns(name):
        return [[(m["role"], m["content"]) for m in to_messages(r.value) if m["role"] != "system"]
                for r in iter_records(FIX / name)]

    base = turns("valid_messages.jsonl")
    assert turns("valid_sharegpt.jsonl") == base
    assert turns("valid_prompt_completion.jsonl") == base
    assert turns("valid_messages.parquet") == base
    assert turns("valid_messages.csv") == base
    alpaca = turns("valid_alpaca.csv")
    assert [a[1][1] for a in alpaca] == [b[1][1] for b in base]
    assert all(a[0][1].endswith(b[0][1]) for a, b in zip(alpaca, base))


def test_jsonl_rows_are_lines_and_blank_lines_are_skipped(tmp_path):
    p = tmp_path / "gaps.jsonl"
    p.write_text('{"text": "a"}\n\n   \n{"text": "b"}\r\n')
    assert [(r.row, r.value["text"]) for r in iter_records(p)] == [(1, "a"), (4, "b")]
    assert list(iter_records(p))[1].raw == b'{"text": "b"}'


def test_check_row_reports_every_problem_of_a_row():
    res = check_row({"messages": [{"role": "user", "content": ""}, {"role": "wizard", "content": 3}]})
    assert not res.ok
    assert {(p.rule, p.field) for p in res.problems} == {
        ("content.empty", "messages[0].content"), ("roles.unknown", "messages[1].role"),
        ("content.not_string", "messages[1].content")}


def test_check_row_applies_the_system_prompt():
    res = check_row({"prompt": "hi", "completion": "hello"}, system_prompt="Be brief.")
    assert res.messages[0] == {"role": "system", "content": "Be brief."}


def test_near_duplicates_pair_later_rows_with_earlier_ones():
    base = "the quick brown fox jumps over the lazy dog while the farmer watches from the porch with a cup of tea"
    nd = NearDuplicates(0.7)
    nd.add([1, 2, 3, 4], [base, "something else entirely about bicycles and tyres and brakes", base.replace("lazy", "sleepy"), "short"])
    pairs = nd.pairs()
    assert [(p.row, p.other) for p in pairs] == [(3, 1)]
    assert 0.7 <= pairs[0].similarity < 1.0
    nd2 = NearDuplicates(0.7)
    nd2.add([1, 2, 3, 4], [base, "something else entirely about bicycles and tyres and brakes", base.replace("lazy", "sleepy"), "short"])
    assert nd2.pairs() == pairs  # stable hashes: the same answer in every process


@pytest.mark.parametrize("chunk", [5, 1 << 20])
def test_large_json_arrays_stream(tmp_path, monkeypatch, chunk):
    """Above STREAM_JSON_BYTES a JSON array is parsed element by element, in chunks of any size."""
    import ftwizard.data.loading as loading

    monkeypatch.setattr(loading, "STREAM_JSON_BYTES", 0)
    monkeypatch.setattr(loading, "_CHUNK", chunk)
    assert [r.value for r in iter_records(FIX / "valid_array.json")] == [r.value for r in iter_records(FIX / "valid_messages.jsonl")]
    bad = list(iter_records(FIX / "invalid_array.json"))
    assert [r.row for r in bad] == [1, 2, 3] and "line 4, column 3" in bad[2].problems[0].message
    p = tmp_path / "odd.json"
    p.write_bytes(b'\xef\xbb\xbf [ {"a": 1}, 12345678 , {"b": "caf\xe9"}, []')
    recs = list(iter_records(p))
    assert [r.value for r in recs[:4]] == [{"a": 1}, 12345678, {"b": "caf\ufffd"}, []]
    assert [p.rule for p in recs[0].problems] == ["encoding.bom"] and recs[2].problems[0].rule == "encoding.invalid_utf8"
    assert "not closed" in recs[4].problems[0].message and "column 42" in recs[4].problems[0].message
