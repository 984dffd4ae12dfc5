"""Notifications: the webhook reaches a real HTTP server on 127.0.0.1, a failed or hanging
delivery never touches the run, the URL is never written down, and the terminal
notification (bell + OSC 9 + OSC 777) reaches a real tmux pane."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ftwizard import notify
from ftwizard.rundir import EventWriter, RunDir

REPO = Path(__file__).resolve().parent.parent


class Hook:
    """A real local HTTP server that records what is POSTed to it."""

    def __init__(self, delay: float = 0.0, status: int = 200):
        received, self.event = [], threading.Event()
        self.received = received
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                time.sleep(delay)
                self.send_response(status)
                self.end_headers()
                hook.event.set()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/s3cr3t-topic"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def _run(tmp_path, notify_yaml: str = "") -> RunDir:
    run = RunDir(tmp_path / "runs" / "r1")
    run.path.mkdir(parents=True)
    run.config.write_text(f"data:\n  train: {tmp_path}/t.jsonl\n{notify_yaml}")
    run.write_status(state="running", step=7, output=str(run.adapter))
    return run


def _events(run: RunDir) -> list[dict]:
    return list(run.iter_events())


def test_webhook_from_the_config_reaches_a_local_server(tmp_path, hook, monkeypatch):
    monkeypatch.delenv(notify.ENV_URL, raising=False)
    run = _run(tmp_path, f"notify:\n  url: {hook.url}\n")
    w = notify.NotifyingWriter(EventWriter(run.events), run)
    w.write("train", step=7, loss=0.4213)
    w.write("eval", step=7, eval_loss=0.39)
    w.write("system", event="completed")
    w.close()
    assert hook.event.wait(10)
    (got,) = hook.received
    assert got["path"] == "/hooks/s3cr3t-topic" and got["headers"]["Content-Type"] == "application/json"
    body = json.loads(got["body"])
    assert body["run"] == "r1" and body["event"] == "completed" and body["step"] == 7
    assert body["loss"] == 0.4213 and body["eval_loss"] == 0.39
    assert body["text"] == "run r1 completed at step 7 (loss 0.4213, eval_loss 0.39)"
    done = [e for e in _events(run) if e.get("event") == "notified"]
    assert done and done[0]["host"] == hook.url.split("/hooks")[0] and done[0]["for"] == "completed"
    assert b"s3cr3t-topic" not in run.events.read_bytes()  # the URL's path (the secret part) is never written


def test_env_url_wins_and_only_the_chosen_endings_notify(tmp_path, hook, monkeypatch):
    monkeypatch.setenv(notify.ENV_URL, hook.url)
    run = _run(tmp_path, "notify:\n  url: http://127.0.0.1:9/unused\n  events: [failed, divergence]\n")
    w = notify.NotifyingWriter(EventWriter(run.events), run)
    w.write("system", event="divergence", step=3, reason="loss 3.1x its start", fix="lower the learning rate")
    w.write("system", event="divergence", step=4, reason="again")  # once per kind of ending
    w.write("system", event="completed")  # not chosen
    w.close()
    assert hook.event.wait(10)
    time.sleep(0.3)
    assert [json.loads(r["body"])["event"] for r in hook.received] == ["divergence"]
    assert "lower the learning rate" in json.loads(hook.received[0]["body"])["text"]


def test_failed_or_hanging_delivery_never_affects_the_writer(tmp_path, monkeypatch):
    slow = Hook(delay=30)
    try:
        for url, want in ((slow.url, "TimeoutError"), ("http://127.0.0.1:9/x", "URLError")):
            monkeypatch.setenv(notify.ENV_URL, url)
            monkeypatch.setattr(notify, "TIMEOUT_S", 0.5)
            run = _run(tmp_path / want)
            w = notify.NotifyingWriter(EventWriter(run.events), run)
            t0 = time.monotonic()
            w.write("system", event="failed", message="boom")
            w.write("system", event="after")  # the writer goes on at once
            assert time.monotonic() - t0 < 0.3
            w.close()
            assert time.monotonic() - t0 < 3
            failed = [e for e in _events(run) if e.get("event") == "notify_failed"]
            assert failed and failed[0]["for"] == "failed", _events(run)
            assert {e.get("event") for e in _events(run)} >= {"failed", "after"}
    finally:
        slow.close()


def test_send_with_a_timeout_argument_and_error_text(monkeypatch):
    err = notify.send("http://127.0.0.1:9/x", "r", "completed", {}, timeout=0.5)
    assert err and "Error" in err


def test_ntfy_urls_get_ntfy_headers():
    req = notify.build_request("https://ntfy.sh/my-topic", "r1", "failed", {"step": 3, "message": "NaN loss"})
    assert req.get_header("Title") == "ftwizard: r1 failed" and req.get_header("Priority") == "high"
    assert req.data == b"run r1 failed at step 3: NaN loss"
    assert notify.safe_host("https://ntfy.sh/my-topic") == "https://ntfy.sh"


def test_terminal_sequence_has_bell_osc9_osc777_and_tmux_wrapping():
    seq = notify.terminal_sequence("ftwizard: r1 completed", "run r1 completed; ok\x1b[31m", tmux=False)
    assert seq.startswith("\a")
    assert "\x1b]9;ftwizard: r1 completed: run r1 completed, ok[31m\x07" in seq  # no stray ESC or ';' inside
    assert "\x1b]777;notify;ftwizard: r1 completed;run r1 completed, ok[31m\x07" in seq
    wrapped = notify.terminal_sequence("t", "b", tmux=True)
    assert wrapped == "\a\x1bPtmux;\x1b\x1b]9;t: b\x07\x1b\x1b]777;notify;t;b\x07\x1b\\"


def test_viewer_stays_quiet_for_old_endings_and_notifies_once():
    v = notify.ViewerNotifier("r1", since=1000.0)
    assert v.feed({"kind": "system", "event": "completed", "time": 999.0}) is None  # before the viewer came
    assert v.status({"state": "completed"}) is None  # never seen active
    v = notify.ViewerNotifier("r1", since=1000.0)
    v.status({"state": "running"})
    v.feed({"kind": "train", "step": 5, "loss": 0.5, "time": 1001.0})
    seq = v.feed({"kind": "system", "event": "completed", "time": 1002.0})
    assert seq and "run r1 completed at step 5 (loss 0.5)" in seq
    assert v.feed({"kind": "system", "event": "completed", "time": 1002.0}) is None
    assert v.status({"state": "completed"}) is None  # already said by the event
    v = notify.ViewerNotifier("r2", since=0)
    v.status({"state": "running"})
    assert "r2 died" in v.status({"state": "died", "message": "the trainer is gone"})


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
@pytest.mark.parametrize("mode", ["--plain", ""], ids=["plain", "fullscreen"])
def test_monitor_sends_the_notification_into_a_tmux_pane(tmp_path, mode):
    """`ftwizard monitor` (--plain, and the full-screen Textual monitor) in a real tmux pane; the pane's
    output is logged with pipe-pane."""
    run_path = tmp_path / "runs" / "tmuxnote"
    sock = str(tmp_path / f"tmux-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "pane.log"

    def tmux(*a):
        return subprocess.run(["tmux", "-S", sock, *a], capture_output=True, text=True, timeout=30)

    steps = 30
    fake = subprocess.Popen([sys.executable, str(REPO / "tests" / "tui_fakerun.py"), str(run_path), str(steps), "0.4"])
    try:
        for _ in range(100):
            if RunDir(run_path).status().get("state") == "running":
                break
            time.sleep(0.1)
        cmd = f"{sys.executable} -m ftwizard monitor {mode} {run_path}; sleep 30"
        assert tmux("-f", "/dev/null", "new-session", "-d", "-s", "n", "-x", "100", "-y", "30", cmd).returncode == 0
        tmux("set-option", "-g", "allow-passthrough", "on")
        tmux("pipe-pane", "-o", "-t", "n", f"cat >> {log}")
        for _ in range(150):  # the viewer is attached and has seen the run active before it ends
            pane = tmux("capture-pane", "-p", "-t", "n").stdout
            if "loss" in pane:
                break
            time.sleep(0.2)
        assert fake.poll() is None, "the fake run ended before the viewer attached: the machine is too slow"
        fake.wait(timeout=60)
        deadline = time.time() + 30
        data = b""
        while time.time() < deadline:
            data = log.read_bytes() if log.exists() else b""
            if b"]777;" in data:
                break
            time.sleep(0.2)
        # inside tmux ($TMUX set) the OSCs ride in tmux's DCS passthrough, ESCs doubled; the bell is plain
        assert b"\x07\x1bPtmux;\x1b\x1b]9;ftwizard: tmuxnote completed: run tmuxnote completed at step 30" in data, data[-600:]
        assert b"\x1b\x1b]777;notify;ftwizard: tmuxnote completed;" in data
        for _ in range(100):  # the viewer still shows the run (a loaded machine redraws late)
            screen = tmux("capture-pane", "-p", "-t", "n").stdout
            if "completed" in screen:
                break
            time.sleep(0.3)
        assert "completed" in screen, screen
        assert data.count(b"]777;notify;") == 1  # once, not on every redraw
    finally:
        if fake.poll() is None:
            fake.kill()
        tmux("kill-server")
