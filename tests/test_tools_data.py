"""Tool-calling data: each accepted format normalised, each lint rule (a trigger and a near miss), the
refusal of a template that cannot render tools, and the loss mask token by token (calls trained, results not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftwizard.data.formats import to_messages
from ftwizard.data.lint import LintOptions, lint_file
from ftwizard.data.tools import Conversation, _minimal_schema_errors, lint_conversation, row_has_tools, schema_errors
from ftwizard.errors import UserError
from helpers import write_jsonl

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}


def call(name="get_weather", args='{"city": "Paris"}', cid="c1"):
    c = {"type": "function", "function": {"name": name, "arguments": args}}
    if cid:
        c["id"] = cid
    return c


def row(*turns, tools=(WEATHER,)):
    out = {"messages": [{"role": "user", "content": "Weather in Paris?"}, *turns]}
    if tools is not None:
        out["tools"] = list(tools)
    return out


ROUND_TRIP = row({"role": "assistant", "content": None, "tool_calls": [call()]},
                 {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": '{"temp": 18}'},
                 {"role": "assistant", "content": "It is 18 C in Paris."})


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


@pytest.fixture(scope="module")
def chatml(embedded_model_dir):
    from transformers import AutoTokenizer

    from ftwizard.data.chat_templates import apply_template

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    apply_template(tok, "chatml")
    return tok


# ------------------------------------------------------------------ normalising

def test_openai_rows_normalise_to_one_canonical_form():
    m = to_messages(ROUND_TRIP)
    assert isinstance(m, Conversation) and m.tools == [WEATHER]
    assert m[1] == {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    assert m[2] == {"role": "tool", "content": '{"temp": 18}', "tool_call_id": "c1", "name": "get_weather"}
    assert m[:2].tools == [WEATHER] and (m[:1] + [m[1]]).tools == [WEATHER]  # slices and + keep the tools
    # arguments already an object, a bare {"name", "arguments"} call, a result given as JSON, bare tool schemas
    alt = {"messages": [{"role": "user", "content": "q"},
                        {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
                        {"role": "tool", "content": {"temp": 18}}, {"role": "assistant", "content": "18 C"}],
           "tools": [WEATHER["function"]]}
    a = to_messages(alt)
    assert a.tools == [WEATHER] and a[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert json.loads(a[2]["content"]) == {"temp": 18}
    # legacy OpenAI function_call / role function
    legacy = {"messages": [{"role": "user", "content": "q"},
                           {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
                           {"role": "function", "name": "get_weather", "content": "cold"},
                           {"role": "assistant", "content": "Cold."}]}
    lg = to_messages(legacy)
    assert lg[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert lg[2] == {"role": "tool", "content": "cold", "name": "get_weather"} and lg.tools == []
    # plain rows stay plain lists
    plain = to_messages({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    assert type(plain) is list
    assert row_has_tools(ROUND_TRIP) and row_has_tools(legacy) and not row_has_tools({"messages": plain})


def test_sharegpt_function_call_and_observation_turns():
    """LLaMA-Factory's tool format: tools as a JSON string of bare schemas, function_call / observation turns;
    the assistant's words and its function_call turn become one assistant message."""
    sg = {"conversations": [{"from": "human", "value": "Weather in Paris?"},
                            {"from": "gpt", "value": "Let me check."},
                            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
                            {"from": "observation", "value": '{"temp": 18}'},
                            {"from": "gpt", "value": "18 C."}],
          "system": "Be brief.", "tools": json.dumps([WEATHER["function"]])}
    m = to_messages(sg)
    assert m.tools == [WEATHER]
    assert [x["role"] for x in m] == ["system", "user", "assistant", "tool", "assistant"]
    assert m[2]["content"] == "Let me check." and m[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert m[3] == {"role": "tool", "content": '{"temp": 18}'}
    report = lint_file(_tmp_jsonl([sg]),
                       LintOptions(tokenizer=None, dedup=False, pii=False))
    assert report.error_count == 0, [f.to_dict() for f in report.errors]
    assert "keys.unknown" not in report.counts and report.to_dict()["stats"]["tools"]["calls"] == 1




def _tmp_jsonl(rows) -> Path:
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="tools_"))
    return write_jsonl(d / "rows.jsonl", rows)


def test_glaive_rows_normalise_too():
    """glaive-function-calling-v2: functions as JSON in `system`, turns in free text, arguments in single quotes."""
    g = {"system": "SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\n"
                   + json.dumps(WEATHER["function"], indent=4) + "\n",
         "chat": "USER: Weather in Paris?\n\n\nASSISTANT: <functioncall> {\"name\": \"get_weather\", \"arguments\": "
                 "'{\"city\": \"Paris\"}'} <|endoftext|>\n\n\nFUNCTION RESPONSE: {\"temp\": 18}\n\n\n"
                 "ASSISTANT: It is 18 C. <|endoftext|>\n"}
    m = to_messages(g)
    assert m.tools == [WEATHER] and [x["role"] for x in m] == ["system", "user", "assistant", "tool", "assistant"]
    assert m[0]["content"].endswith("Use them if required") and m[4]["content"] == "It is 18 C."
    assert m[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    rep = lint_file(_tmp_jsonl([g]), LintOptions(tokenizer=None, dedup=False, pii=False))
    assert rep.format == "glaive" and rep.error_count == 0 and not rep.counts.get("keys.unknown"), rep.counts


# ------------------------------------------------------------------ lint rules

CASES = {
    # rule: (trigger row, near-miss row)
    "tools.unknown_name": (
        row({"role": "assistant", "content": "", "tool_calls": [call("get_wether")]}),
        row({"role": "assistant", "content": "", "tool_calls": [call("get_weather")]})),
    "tools.args_invalid_json": (
        row({"role": "assistant", "content": "", "tool_calls": [call(args='{"city": "Paris"')]}),
        row({"role": "assistant", "content": "", "tool_calls": [call(args='{"city": "Paris"}')]})),
    "tools.args_schema": (
        row({"role": "assistant", "content": "", "tool_calls": [call(args={"unit": "kelvin"})]}),
        row({"role": "assistant", "content": "", "tool_calls": [call(args={"city": "Paris", "unit": "celsius"})]})),
    "tools.schema_invalid": (
        row({"role": "assistant", "content": "", "tool_calls": [call()]},
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "objekt"}}}]),
        row({"role": "assistant", "content": "", "tool_calls": [call()]},
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])),
    "tools.result_orphan": (
        row({"role": "assistant", "content": "", "tool_calls": [call(cid="c1")]},
            {"role": "tool", "tool_call_id": "c9", "content": "18"}, {"role": "assistant", "content": "18 C"}),
        ROUND_TRIP),
    "tools.call_unanswered": (
        row({"role": "assistant", "content": "", "tool_calls": [call()]},
            {"role": "user", "content": "and tomorrow?"}, {"role": "assistant", "content": "No idea."}),
        row({"role": "assistant", "content": "", "tool_calls": [call()]})),  # a row may end at the call
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_tool_rule_fires_on_its_trigger_and_not_on_the_near_miss(rule):
    trigger, near = CASES[rule]
    rep = lint_file(_tmp_jsonl([trigger, near]), LintOptions(tokenizer=None, dedup=False, pii=False))
    assert rep.rows_with(rule) == [1], [f.to_dict() for f in rep.findings]
    f = next(f for f in rep.findings if f.rule == rule)
    assert f.field and f.field.startswith("messages[") or f.field == "tools"
    # the near miss has no tool finding and no role-order error either
    assert not [x for x in rep.findings if x.row == 2 and (x.rule.startswith("tools.") or x.severity == "error")]


def test_tool_result_before_any_call_and_messages_field_paths():
    orphan = {"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "x"},
                           {"role": "assistant", "content": "a"}], "tools": [WEATHER]}
    probs = lint_conversation(to_messages(orphan), "messages")
    assert [p.rule for p in probs] == ["tools.result_orphan"] and probs[0].field == "messages[1].content"
    # a system prompt added by conversion does not shift the field paths of the row's own turns
    m = to_messages(CASES["tools.unknown_name"][0], system_prompt="Be brief.")
    from ftwizard.data.tools import conversion_offset

    p = lint_conversation(m, "messages", conversion_offset(CASES["tools.unknown_name"][0], "messages", m))
    assert p[0].field == "messages[1].tool_calls[0].function.name"


def test_schema_check_without_jsonschema_covers_required_type_and_enum():
    schema = WEATHER["function"]["parameters"]
    assert _minimal_schema_errors({"city": "Paris", "unit": "celsius"}, schema, "arguments") == []
    errs = _minimal_schema_errors({"unit": "kelvin", "city": 3}, schema, "arguments")
    assert any("'city' is a required" in e or "not of type" in e for e in errs) and any("kelvin" in e for e in errs)
    assert schema_errors({"unit": "celsius"}, schema) and not schema_errors({"city": "x"}, schema)


# ------------------------------------------------------------------ the template

def test_a_template_that_cannot_render_tools_is_refused_clearly(tmp_path, tokenizer, embedded_model_dir):
    """SmolLM2's own template drops `tools` and `tool_calls`: training stops before any row with which template,
    which row and what to do; lint reports it once for the file, not a template error per row."""
    from ftwizard.data.tools import template_tool_problem
    from ftwizard.training.dataset import encode_file

    assert "tool" in template_tool_problem(tokenizer)
    plain = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path = write_jsonl(tmp_path / "t.jsonl", [plain, ROUND_TRIP, ROUND_TRIP])
    with pytest.raises(UserError) as e:
        encode_file(path, tokenizer)
    err = e.value
    assert "cannot render tool calls" in err.what and "row: 2" in err.what and str(embedded_model_dir) in err.what
    assert err.where == f"{path}:2" and "data.chat_template: chatml" in err.fix
    rep = lint_file(path, LintOptions(tokenizer=tokenizer, dedup=False, pii=False))
    assert rep.counts.get("tools.template_unsupported") == 1 and "template.error" not in rep.counts
    assert rep.rows_with("tools.template_unsupported") == [2]


def test_loss_mask_trains_calls_and_never_tool_results(chatml, tmp_path):
    """One rendered row, token by token: the call (its JSON and the end-of-turn token) and the final answer are
    trained; the tool list, the user turn and the tool result are not."""
    from ftwizard.data.template import assistant_token_mask
    from ftwizard.data.tools import template_tool_problem
    from ftwizard.training.dataset import encode_file

    assert template_tool_problem(chatml) is None
    m = to_messages(ROUND_TRIP)
    r = assistant_token_mask(chatml, m)
    trained = "".join(chatml.decode([t]) for t, k in zip(r.input_ids, r.trained_mask) if k)
    assert trained == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
                       'It is 18 C in Paris.<|im_end|>')
    untrained = "".join(chatml.decode([t]) for t, k in zip(r.input_ids, r.trained_mask) if not k)
    assert '{"temp": 18}' in untrained and "<tools>" in untrained and "<tool_response>" in untrained
    for tok_id, k in zip(r.input_ids, r.trained_mask):  # every token of the tool turn is masked out
        piece = chatml.decode([tok_id])
        if "temp" in piece or "tool_response" in piece:
            assert not k
    # the trainer's encoding is the same mask, and the token counter agrees with apply_chat_template
    enc = encode_file(write_jsonl(tmp_path / "r.jsonl", [ROUND_TRIP]), chatml)[0]
    assert enc["input_ids"] == r.input_ids and enc["assistant_masks"] == [int(k) for k in r.trained_mask]
    from ftwizard.data.tokens import TokenCounter

    ref = chatml.apply_chat_template(list(m), tools=m.tools, tokenize=True, return_dict=False)
    assert TokenCounter(chatml).count_conversations([m]) == [len(ref)] == [len(r.input_ids)]


def test_sample_data_lints_clean_with_chatml(chatml):
    here = Path(__file__).resolve().parent.parent / "sample_data"
    for name in ("tools_train.jsonl", "tools_eval.jsonl"):
        rep = lint_file(here / name, LintOptions(tokenizer=chatml, max_length=1024, pii=False))
        assert rep.error_count == 0, [f.to_dict() for f in rep.errors]
        assert not [r for r in rep.counts if r.startswith("tools.")]
        t = rep.to_dict()["stats"]["tools"]
        assert t["calls"] > 0 and set(t["names"]) == {"get_weather", "calculate", "convert_units"}


# ------------------------------------------------------------------ eval scoring

def test_tool_call_parsing_and_scores():
    from ftwizard.evaluation.toolcalls import ToolSample, parse_calls, score

    good = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert parse_calls(good) == ([{"name": "get_weather", "arguments": {"city": "Paris"}}], True)
    assert parse_calls('{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}')[0][0]["arguments"] == {"city": "Paris"}
    assert parse_calls("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": ")[1] is False  # cut off
    assert parse_calls("It is sunny.") == ([], True)
    expected = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    samples = [ToolSample(i, [], expected, "") for i in range(4)] + [ToolSample(9, [], None, "Hello!")]
    outputs = [good,                                                                  # right tool, right arguments
               good.replace("Paris", "Lyon"),                                         # right tool, wrong arguments
               '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"</tool_call>',  # not JSON
               "Sorry, I cannot check the weather.",                                  # no call at all
               "Hello!"]                                                              # plain row, no call: right
    s = score(samples, outputs)
    assert s["metrics"] == {"tool_name_accuracy": 0.5, "tool_args_exact": 0.25, "tool_json_valid": 0.5,
                            "tool_no_call_accuracy": 1.0}
    assert s["counts"] == {"call_rows": 4, "plain_rows": 1} and [x["correct"] for x in s["samples"]] == [True, False, False, False, True]


def test_eval_samples_cut_tool_rows_at_the_first_assistant_turn(tmp_path):
    from ftwizard.evaluation.samples import load_samples
    from ftwizard.evaluation.toolcalls import load_tool_samples

    plain = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    ends_at_call = row({"role": "assistant", "content": None, "tool_calls": [call()]})
    path = write_jsonl(tmp_path / "e.jsonl", [plain, ROUND_TRIP, ends_at_call])
    ts = load_tool_samples(path)
    assert [t.row for t in ts] == [2, 3] and ts[0].expected == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert ts[0].prompt.tools == [WEATHER] and [m["role"] for m in ts[0].prompt] == ["user"]
    gen = load_samples(path)  # the generation eval's reference for a row ending at its call is the call itself
    assert gen[2].reference == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert gen[1].prompt.tools == [WEATHER]


def test_fix_to_messages_keeps_tools_and_calls(tmp_path):
    """`data fix --to messages` on LLaMA-Factory rows writes OpenAI rows that keep the tool schemas and calls."""
    from ftwizard.data.fix import fix_file

    sg = {"conversations": [{"from": "human", "value": "Weather in Paris?"},
                            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
                            {"from": "observation", "value": '{"temp": 18}'}, {"from": "gpt", "value": "18 C."}],
          "tools": json.dumps([WEATHER["function"]])}
    out = tmp_path / "out.jsonl"
    fix_file(_tmp_jsonl([sg]), out, to_messages=True)
    written = json.loads(out.read_text().splitlines()[0])
    assert written["tools"] == [WEATHER] and written["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    again = to_messages(written)
    assert again == to_messages(sg) and again.tools == [WEATHER]
