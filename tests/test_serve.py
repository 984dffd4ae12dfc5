"""`ftwizard serve` as a real process on localhost, driven by a real HTTP client (httpx).

One server for the module (loading the model is the slow part): a run whose adapter is a
real peft LoRA (untrained, random B), served with a bearer token. Auth off is tested in
test_judge.py, whose server runs without a token.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

from serve_support import CliServer, make_adapter_run

pytestmark = pytest.mark.slow
TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Q = [{"role": "user", "content": "What colour is the sky?"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedded_model_dir):
    tmp = tmp_path_factory.mktemp("serve")
    runs_dir, run = make_adapter_run(tmp, embedded_model_dir)
    server = CliServer(["demo", "--runs-dir", str(runs_dir), "--port", "0"], env={"FTWIZARD_SERVE_TOKEN": TOKEN})
    yield server, runs_dir
    server.stop()


@pytest.fixture(scope="module")
def http(served):
    with httpx.Client(base_url=served[0].url, timeout=300) as c:
        yield c


def post(http, body, headers=AUTH):
    return http.post("/chat/completions", json=body, headers=headers)


def sse_events(resp) -> list:
    out = []
    for line in resp.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_models_lists_the_run_and_the_base(http, served):
    r = http.get("/models", headers=AUTH)
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == ["demo", "base"]
    assert "127.0.0.1" in served[0].url or "localhost" in served[0].url  # bound to localhost by default


def test_token_is_required_when_set(http, served):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = post(http, {"messages": Q}, headers)
        assert r.status_code == 401
        assert "bearer token" in r.json()["error"]["message"]
    assert http.get("/models").status_code == 401
    root = served[0].url.removesuffix("/v1")
    assert httpx.get(root + "/health").json()["status"] == "ok"  # open, for launchers
    assert TOKEN not in "".join(served[0].lines)  # the token is never printed


def test_completion_not_streamed(http):
    r = post(http, {"model": "demo", "messages": Q, "max_tokens": 12})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    u = body["usage"]
    assert u["prompt_tokens"] > 5 and 1 <= u["completion_tokens"] <= 12
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def test_streamed_answer_is_the_same_answer_token_by_token(http):
    whole = post(http, {"messages": Q, "max_tokens": 20}).json()["choices"][0]["message"]["content"]
    with http.stream("POST", "/chat/completions", headers=AUTH,
                     json={"messages": Q, "max_tokens": 20, "stream": True,
                           "stream_options": {"include_usage": True}}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e.get("choices")]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks]
    assert "".join(pieces) == whole  # greedy: streaming changes how, not what
    assert sum(1 for p in pieces if p) >= 3  # many pieces, not one block at the end
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    usage = [e for e in events[:-1] if e.get("usage")]
    assert usage and usage[0]["usage"]["completion_tokens"] >= sum(1 for p in pieces if p)


def test_base_is_the_same_weights_without_the_adapter(http):
    answers = {}
    for model in ("demo", "base"):
        answers[model] = [post(http, {"model": model, "messages": [{"role": "user", "content": q}],
                                      "max_tokens": 16}).json()["choices"][0]["message"]["content"]
                          for q in ("What colour is the sky?", "Name a fruit.")]
    assert answers["demo"] != answers["base"]


def test_bad_requests_get_4xx_with_a_message(http):
    cases = [
        ({}, 400, "messages"),
        ({"messages": []}, 400, "messages"),
        ({"messages": Q, "temperature": 5}, 400, "temperature"),
        ({"messages": Q, "n": 2}, 400, "n=1"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}, 400, "last message"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
        ({"messages": Q, "model": "gpt-9"}, 404, "demo, base"),
    ]
    for body, status, words in cases:
        r = post(http, body)
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["error"]["message"], (body, r.json())
    r = http.post("/chat/completions", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = http.get("/chat/completions", headers=AUTH)
    assert r.status_code == 405 and r.json()["error"]["message"]
    r = http.get("/nothing", headers=AUTH)
    assert r.status_code == 404 and "/v1/chat/completions" in r.json()["error"]["message"]


def test_hanging_up_stops_the_model(http, served):
    root = served[0].url.removesuffix("/v1")
    body = {"messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
            "max_tokens": 2000, "stream": True}
    with http.stream("POST", "/chat/completions", headers=AUTH, json=body) as resp:
        got = 0
        for line in resp.iter_lines():
            if line.startswith("data: ") and '"content"' in line:
                got += 1
            if got >= 4:
                break
    t0 = time.monotonic()
    while httpx.get(root + "/health").json()["busy"]:
        assert time.monotonic() - t0 < 10, "the model kept generating after the client hung up"
        time.sleep(0.1)
    time.sleep(0.3)
    assert any("cancelled" in line for line in served[0].lines)


def test_port_in_use_is_a_clear_error(served):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "ftwizard", "serve", "demo", "--runs-dir", str(served[1]),
                            "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--port" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_checkpoint_is_a_clear_error(served):
    r = subprocess.run([sys.executable, "-m", "ftwizard", "serve", "demo", "--runs-dir", str(served[1]),
                        "--checkpoint", "7"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "no checkpoint at step 7" in r.stderr and "Traceback" not in r.stderr
