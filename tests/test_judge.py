"""The LLM judge: verdict parsing and the position swap (fast), then the real thing (slow): a
run evaluated with `ftwizard eval`, judged by the embedded model behind `ftwizard serve`
(no token: auth off), with an API key in the environment that must never reach a file.

A 135M model judges badly, so the slow test checks plumbing, parsing and the swap, not
the quality of the verdicts.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
import yaml

from ftwizard.config import JudgeSection
from ftwizard.errors import UserError
from ftwizard.evaluation import judge as J

SECRET = "sk-test-DO-NOT-WRITE-4b1d9e"


@pytest.mark.parametrize("reply,verdict", [
    ("[[A]]", "A"), ("After thinking, answer B is better. [[B]]", "B"), ("[[C]]", "tie"), ("[[ b ]]", "B"),
    ("A", "A"), ("B. It is more accurate.", "B"), ("Answer A is better", "A"),
    ("[[A]] ... no wait [[B]]", None), ("Both are fine", None), ("", None), ("Absolutely", None),
])
def test_pairwise_verdicts_parse_or_stay_unreadable(reply, verdict):
    assert J.parse_pairwise(reply) == verdict


@pytest.mark.parametrize("reply,score", [("Score: 4", 4), ("score = 2.", 2), ("**Score:** 5", 5), ("3", 3),
                                         ("I'd give it a 9", None), ("Score: 7", None), ("", None)])
def test_rubric_scores_parse(reply, score):
    assert J.parse_score(reply) == score


def test_position_swap_cancels_position_bias():
    # a judge that always picks the first answer: each model wins once -> no winner, flagged as flipped
    first = J.winner("A", "base", "tuned")
    second = J.winner("A", "tuned", "base")
    assert (first, second) == ("base", "tuned")
    assert J.combine(first, second) == "inconsistent"
    # agreement in both orders is a win; tie + win is a tie; unreadable is invalid
    assert J.combine(J.winner("B", "base", "tuned"), J.winner("A", "tuned", "base")) == "tuned"
    assert J.combine("tuned", "tie") == "tie"
    assert J.combine(None, "tuned") == "invalid"
    rows = [{"orders": [{"verdict": "A"}, {"verdict": "A"}], "outcome": "inconsistent"},
            {"orders": [{"verdict": "B"}, {"verdict": "A"}], "outcome": "tuned"},
            {"orders": [{"verdict": None}, {"verdict": "B"}], "outcome": "invalid"}]
    s = J.summarize_pairwise(rows)
    assert (s["tuned_wins"], s["base_wins"], s["ties"], s["invalid"], s["valid"]) == (1, 0, 1, 1, 2)
    assert s["tuned_win_rate"] == 0.75
    assert s["first_position_rate"] == 3 / 5  # A, A, B, A, B


def test_judge_is_off_unless_configured_and_never_carries_the_key(monkeypatch):
    monkeypatch.delenv(J.URL_ENV, raising=False)
    assert J.settings_for_spec(JudgeSection()) is None
    monkeypatch.setenv(J.URL_ENV, "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("FTWIZARD_JUDGE_API_KEY", SECRET)
    s = J.settings_for_spec(JudgeSection(mode="pairwise"))
    assert s["url"] == "http://127.0.0.1:9/v1" and s["mode"] == "pairwise" and s["rubric"] == J.DEFAULT_RUBRIC
    assert SECRET not in json.dumps(s) and s["api_key_env"] == "FTWIZARD_JUDGE_API_KEY"
    with pytest.raises(UserError, match="user name or password"):
        J.settings_for_spec(JudgeSection(url="https://me:pw@api.example.com/v1"))
    with pytest.raises(UserError, match="not an http"):
        J.settings_for_spec(JudgeSection(url="api.example.com"))


# ---- slow: a real server, a real eval ------------------------------------------------------------
@pytest.fixture(scope="module")
def judge_server(tmp_path_factory, embedded_model_dir):
    from helpers import tiny_config
    from serve_support import CliServer

    tmp = tmp_path_factory.mktemp("judge-server")
    cfg = tiny_config(tmp)
    server = CliServer([str(cfg), "--base", "--port", "0"], env={"FTWIZARD_SERVE_TOKEN": ""})
    yield server
    server.stop()


@pytest.mark.slow
def test_served_without_a_token_needs_no_auth(judge_server):
    r = httpx.get(judge_server.url + "/models", timeout=30)
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["base"]


@pytest.mark.slow
def test_eval_with_a_judge_through_ftwizard_serve(tmp_path, embedded_model_dir, judge_server, monkeypatch):
    from serve_support import make_adapter_run

    runs_dir, run = make_adapter_run(tmp_path, embedded_model_dir)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["evaluation"] = {"few_shot": 0, "judge": {"url": judge_server.url, "max_samples": 1, "max_tokens": 12,
                                                  "rubric": "5 if the colour is right, else 1."}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(__import__("os").environ, FTWIZARD_JUDGE_API_KEY=SECRET)
    r = subprocess.run([sys.executable, "-m", "ftwizard", "eval", "demo", "--runs-dir", str(runs_dir), "--no-probe",
                        "--max-samples", "2", "--checkpoints", "final"], capture_output=True, text=True,
                       timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    j = json.loads((run / "eval" / "judge.json").read_text())
    assert j["judge_model"] == "base" and j["endpoint"] == judge_server.url and j["rows_judged"] == 1
    assert j["rubric"] == "5 if the colour is right, else 1."  # the rubric is stored with the results
    assert j["calls"] == 2 + 2  # pairwise: both orders per row; rubric: each model per row
    base = {s["row"]: s["output"] for s in json.loads((run / "eval" / "base.json").read_text())["samples"]}
    for row in j["pairwise"]["details"]:
        first, second = row["orders"]
        assert (first["a"], first["b"], second["a"], second["b"]) == ("base", "tuned", "tuned", "base")
        for o in (first, second):
            assert o["verdict"] in ("A", "B", "tie", None)
            assert o["winner"] == J.winner(o["verdict"], o["a"], o["b"])
        assert row["outcome"] == J.combine(first["winner"], second["winner"])
        assert row["row"] in base
    pw = j["pairwise"]
    assert pw["rows"] == 1 and pw["tuned_wins"] + pw["base_wins"] + pw["ties"] + pw["invalid"] == 1
    for side in ("base", "tuned"):
        d = j["rubric_scores"][side]
        assert d["valid"] + d["invalid"] == 1
        assert all(x["score"] in (1, 2, 3, 4, 5, None) for x in d["details"])
    # the key went only into the Authorization header: nowhere in the run folder, its config, logs or output
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET not in r.stdout + r.stderr
    assert "judge base on 1 rows" in r.stdout and "pairwise (both orders)" in r.stdout  # shown after the table
    assert SECRET not in "".join(judge_server.lines)
