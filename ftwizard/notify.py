"""Call the owner back when a run ends: a webhook / ntfy POST from the trainer, and a
terminal notification (bell + OSC 9 + OSC 777) from every attached viewer.

Two halves, because they live in different processes:
- The trainer process sends the webhook itself (`NotifyingWriter` wraps its event
  writer), so the call arrives with no viewer attached. Fire-and-forget: a daemon
  thread, a short timeout, every error swallowed into one `notify_failed` event. A
  failed delivery never affects the run. The URL comes from `notify.url` or the
  environment (FTWIZARD_NOTIFY_URL, which keeps a secret URL out of the config); it is
  never written to the run folder: events name only the host.
- Viewers (the TUI monitor, `ftwizard monitor --plain`, a foreground `ftwizard train`)
  see the ending in events.jsonl and write `terminal_sequence(...)` to their terminal.
  OSC 9 (iTerm2, Windows Terminal, WezTerm, kitty, foot, ghostty) and OSC 777 (VTE
  terminals, rxvt, Konsole) pass through SSH untouched; tmux forwards them only with
  `set -g allow-passthrough on` plus the DCS wrapping done here when $TMUX is set.
Hand-written with urllib (stdlib), because one POST with a timeout needs no library.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

ENV_URL = "FTWIZARD_NOTIFY_URL"
ENDINGS = ("completed", "failed", "stopped", "divergence")
TIMEOUT_S = 5.0


def notify_url(cfg) -> str | None:
    """The webhook URL: the environment wins (a secret stays out of files), else the config."""
    return os.environ.get(ENV_URL) or (cfg.notify.url if cfg is not None else None) or None


def safe_host(url: str) -> str:
    """What may be written down about a URL: scheme and host only (the path of an ntfy topic or a
    Slack hook is the secret)."""
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.hostname or ''}" + (f":{p.port}" if p.port else "")


def message(run_name: str, event: str, info: dict[str, Any]) -> tuple[str, str]:
    """(title, body) for an ending; short enough for a phone's lock screen."""
    step = info.get("step")
    at = f" at step {step}" if step is not None else ""
    losses = ", ".join(f"{k} {info[k]:.4g}" for k in ("loss", "eval_loss") if isinstance(info.get(k), (int, float)))
    if event == "completed":
        return f"ftwizard: {run_name} completed", f"run {run_name} completed{at}" + (f" ({losses})" if losses else "")
    if event == "failed":
        return f"ftwizard: {run_name} failed", f"run {run_name} failed{at}: {info.get('message') or 'see train.log'}"
    if event == "stopped":
        return (f"ftwizard: {run_name} stopped",
                f"run {run_name} stopped{at}; `ftwizard resume {run_name}` continues")
    if event == "divergence":
        return (f"ftwizard: {run_name} is diverging",
                f"run {run_name}: loss diverging{at}: {info.get('reason') or ''} {info.get('fix') or ''}".strip())
    return f"ftwizard: {run_name}", f"run {run_name}: {event}{at}"


def _is_ntfy(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return "ntfy" in host


def build_request(url: str, run_name: str, event: str, info: dict[str, Any]) -> urllib.request.Request:
    """ntfy: the text as the body with Title/Tags headers (its publish API). Anything else: JSON with
    `text` (Slack, Mattermost) and `content` (Discord) besides the fields, so common hooks show it as is."""
    import json

    title, body = message(run_name, event, info)
    if _is_ntfy(url):
        tags = {"completed": "white_check_mark", "failed": "x", "stopped": "pause_button",
                "divergence": "warning"}.get(event, "bell")
        headers = {"Title": title, "Tags": tags, "Priority": "high" if event in ("failed", "divergence") else "default"}
        return urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    payload = {"text": body, "content": body, "title": title, "run": run_name, "event": event,
               **{k: v for k, v in info.items() if k in ("step", "loss", "eval_loss", "message", "reason", "path")}}
    return urllib.request.Request(url, data=json.dumps(payload).encode(),
                                  headers={"Content-Type": "application/json", "User-Agent": "ftwizard"},
                                  method="POST")


def send(url: str, run_name: str, event: str, info: dict[str, Any], timeout: float | None = None) -> str | None:
    """POST once; returns None on success, else a one-line reason (never raises)."""
    timeout = TIMEOUT_S if timeout is None else timeout
    try:
        req = build_request(url, run_name, event, info)
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the user's own URL
            if resp.status >= 300:
                return f"HTTP {resp.status}"
        return None
    except Exception as e:  # noqa: BLE001 - a notification must never break anything
        reason = getattr(e, "reason", None) or getattr(e, "code", None) or e
        return f"{type(e).__name__}: {str(reason)[:120]}"


class NotifyingWriter:
    """Wraps the trainer's EventWriter: every event is written as before; an ending (or a
    divergence) also starts a webhook POST in a daemon thread. `finish()` waits for those
    at most `TIMEOUT_S` before the process exits."""

    def __init__(self, writer, run, cfg=None):
        self._writer = writer
        self._run = run
        self._cfg = cfg
        self._threads: list[threading.Thread] = []
        self._last: dict[str, Any] = {}
        self._sent: set[str] = set()

    def __getattr__(self, name):  # everything else (close, path, ...) is the wrapped writer's
        return getattr(self._writer, name)

    def _config(self):
        if self._cfg is None:
            try:
                from ftwizard.config import load_config

                self._cfg = load_config(self._run.config)
            except Exception:  # noqa: BLE001 - no config, no configured URL (the env one still works)
                self._cfg = False
        return self._cfg or None

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = self._writer.write(kind, **fields)
        try:
            self._observe(kind, fields)
        except Exception:  # noqa: BLE001 - notifying is best effort
            pass
        return event

    def _observe(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == "train" and fields.get("loss") is not None:
            self._last.update(loss=fields["loss"], step=fields.get("step"))
        elif kind == "eval" and fields.get("eval_loss") is not None:
            self._last.update(eval_loss=fields["eval_loss"], step=fields.get("step"))
        elif kind == "system" and fields.get("event") in ENDINGS:
            self._notify(fields["event"], fields)

    def _notify(self, event: str, fields: dict[str, Any]) -> None:
        cfg = self._config()
        url = notify_url(cfg)
        wanted = cfg.notify.events if cfg is not None else list(ENDINGS)
        if not url or event not in wanted or event in self._sent:
            return
        self._sent.add(event)  # one call per kind of ending (a divergence is reported once)
        info = dict(self._last)
        info.update({k: v for k, v in fields.items() if k in ("step", "message", "reason", "fix", "loss")})
        if event == "completed":
            st = self._run.read_status()
            info.setdefault("path", st.get("output"))
            if st.get("step") is not None:
                info["step"] = st["step"]
        t = threading.Thread(target=self._deliver, args=(url, event, info), daemon=True, name="ftwizard-notify")
        t.start()
        self._threads.append(t)

    def _deliver(self, url: str, event: str, info: dict[str, Any]) -> None:
        t0 = time.time()
        err = send(url, self._run.name, event, info)
        fields = {"event": "notified" if err is None else "notify_failed", "for": event, "channel": "webhook",
                  "host": safe_host(url), "seconds": round(time.time() - t0, 3)}
        if err:
            fields["error"] = err
        try:
            self._writer.write("system", **fields)
        except Exception:  # noqa: BLE001 - the writer may be closed already
            pass

    def close(self) -> None:
        self.finish()
        self._writer.close()

    def finish(self, timeout: float | None = None) -> None:
        """Give pending deliveries a moment before the process exits (never longer than `timeout`)."""
        end = time.time() + (TIMEOUT_S + 1 if timeout is None else timeout)
        for t in self._threads:
            t.join(max(0.0, end - time.time()))


# ---- viewers: the terminal ----------------------------------------------------------
def terminal_sequence(title: str, body: str, *, tmux: bool | None = None) -> str:
    """BEL + OSC 9 + OSC 777 for one notification. Inside tmux ($TMUX set) the OSCs are wrapped in
    tmux's DCS passthrough (ESC P tmux; ... ESC \\, inner ESCs doubled), which tmux forwards to the
    outer terminal when `allow-passthrough` is on; the bell goes through tmux's own bell handling."""
    def clean(s: str) -> str:
        return "".join(ch for ch in s if ch >= " " and ch != "\x7f").replace(";", ",")[:200]

    title, body = clean(title), clean(body)
    oscs = f"\x1b]9;{title}: {body}\x07\x1b]777;notify;{title};{body}\x07"
    if tmux if tmux is not None else bool(os.environ.get("TMUX")):
        oscs = "\x1bPtmux;" + oscs.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return "\a" + oscs


def ending_notification(run_name: str, ev: dict[str, Any], last: dict[str, Any] | None = None) -> str | None:
    """The terminal sequence for an events.jsonl event that ends a run (or a divergence); None otherwise.
    Viewers call this on each new event."""
    if ev.get("kind") != "system" or ev.get("event") not in ENDINGS:
        return None
    info = dict(last or {})
    info.update({k: v for k, v in ev.items() if k in ("step", "message", "reason", "fix")})
    return terminal_sequence(*message(run_name, ev["event"], info))


class ViewerNotifier:
    """A viewer's side: turns ending events that happen while it watches into one terminal
    notification each. Events older than the viewer (a finished run re-opened) stay quiet."""

    def __init__(self, run_name: str, since: float | None = None):
        self.run_name = run_name
        self.since = time.time() - 2.0 if since is None else since
        self.seen: set[tuple] = set()
        self.last: dict[str, Any] = {}
        self.saw_active = False
        self.ended = False

    def feed(self, ev: dict[str, Any]) -> str | None:
        if ev.get("kind") == "train" and isinstance(ev.get("loss"), (int, float)):
            self.last["loss"] = ev["loss"]
            self.last["step"] = ev.get("step")
        elif ev.get("kind") == "eval" and isinstance(ev.get("eval_loss"), (int, float)):
            self.last["eval_loss"] = ev["eval_loss"]
        if ev.get("kind") != "system" or ev.get("event") not in ENDINGS:
            return None
        key = (ev.get("event"), ev.get("time"))
        t = ev.get("time")
        if key in self.seen or (isinstance(t, (int, float)) and t < self.since):
            return None
        self.seen.add(key)
        if ev.get("event") != "divergence":
            self.ended = True
        return ending_notification(self.run_name, ev, self.last)

    def status(self, st: dict[str, Any]) -> str | None:
        """From status.json: a run seen active that is now final (a trainer killed outright writes no
        ending event, and shows as died) notifies once, unless its ending event already did."""
        state = st.get("state")
        if state in ("starting", "running", "stopping"):
            self.saw_active = True
            return None
        if not self.saw_active or self.ended or state not in ("completed", "failed", "stopped", "died"):
            return None
        self.ended = True
        info = dict(self.last, step=st.get("step", self.last.get("step")), message=st.get("message"))
        event = "failed" if state == "died" else state
        title, body = message(self.run_name, event, info)
        if state == "died":
            title, body = f"ftwizard: {self.run_name} died", f"run {self.run_name} died: {st.get('message') or ''}"
        return terminal_sequence(title, body)

    def scan(self, events, last: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> str | None:
        """Feed a window of recent events (already-seen ones are skipped) and the status; the sequences
        to write, if any."""
        if last:
            self.last.update({k: v for k, v in last.items() if v is not None})
        seqs = [s for s in (self.feed(e) for e in list(events) if e.get("kind") == "system") if s]
        if status is not None:
            seqs.append(self.status(status) or "")
        return "".join(seqs) or None
