"""Try: chat with the fine-tuned model, the base model's answer beside it on one key.

The model runs in its own process, the same local OpenAI-compatible server as `ftwizard
serve` and `ftwizard chat` (started through `ftwizard.serve.launch` on 127.0.0.1 with a
private token); this step only talks HTTP to it (`ftwizard.chat.client`), so the wizard
never imports torch. The server applies the chat template and system prompt the run
trained with. The tuned answer streams token by token; Ctrl+O asks the base (the same
weights with the adapter switched off) the last message and shows its answer in a pane
beside; Esc stops an answer at once (the pane says so immediately, and the server stops
within one token when the reader hangs up); Ctrl+L starts a new conversation.
Temperature 0 (the default) is greedy decoding.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Select, Static

from ftwizard.errors import UserError
from ftwizard.tui.workers import ReportsWorkerErrors

BASE_ONLY = "__base__"
BASE_LABEL = "base model only (no fine-tuning)"
HINT = "Enter sends · Ctrl+O base model beside · Esc stops · Ctrl+L new chat"


class Turn:
    """One message and the answers to it (tuned, and base when asked)."""

    def __init__(self, question: str):
        self.question = question
        self.answer = ""
        self.base: str | None = None
        self.state = "streaming"        # streaming, done, stopped, failed
        self.base_state: str | None = None
        self.stats = ""
        self.base_stats = ""


class TryStep(ReportsWorkerErrors, Vertical):
    TITLE = "Try"
    DEFAULT_CSS = """
    TryStep #try-status { height: 2; color: $text-muted; }
    TryStep #try-panes { height: 1fr; }
    TryStep .try-pane { width: 1fr; border: round $primary 40%; padding: 0 1; }
    TryStep #try-base-pane { display: none; }
    TryStep #try-base-pane.shown { display: block; }
    TryStep #try-input { margin: 0 0; }
    TryStep .form-row Input.num { width: 8; }
    """
    BINDINGS = [
        # not priority: an open drop-down keeps Esc; the message Input binds none of these keys
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+o", "ask_base", "Base beside"),
        Binding("ctrl+l", "clear", "New chat"),
    ]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.server = None           # ftwizard.serve.launch.ServerProcess
        self.client = None           # ftwizard.chat.client.ChatClient
        self.target = None           # ftwizard.serve.target.ServeTarget
        self.turns: list[Turn] = []
        self.cancel = threading.Event()
        self.generating = False
        self.loading = False
        self._pending: str | None = None
        self._loaded_for: str | None = None
        self._first_seen: dict[int, float] = {}

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("model", classes="field-name")
            yield Select([(BASE_LABEL, BASE_ONLY)], id="try-run", compact=True, allow_blank=False)
        with Horizontal(classes="form-row"):
            yield Label("temperature", classes="field-name")
            yield Input("0", id="try-temp", compact=True, classes="num")
            yield Label(" top-p ", classes="field-name")
            yield Input("1", id="try-top-p", compact=True, classes="num")
            yield Static(Text("  0 = greedy (the same answer each time)", style="dim"))
        yield Static(Text(HINT, style="dim"), id="try-status")
        with Horizontal(id="try-panes"):
            with VerticalScroll(id="try-tuned-pane", classes="try-pane"):
                yield Static(id="try-tuned")
            with VerticalScroll(id="try-base-pane", classes="try-pane"):
                yield Static(id="try-base")
        yield Input(placeholder="message (Enter sends; the model loads on the first one)", id="try-input",
                    compact=True)

    def on_mount(self) -> None:
        self.query_one("#try-tuned-pane").border_title = "fine-tuned"
        self.query_one("#try-base-pane").border_title = "base"
        self.refresh_runs()

    def on_show(self) -> None:
        self.refresh_runs()

    def focus_first(self) -> None:
        self.query_one("#try-input", Input).focus()

    def on_unmount(self) -> None:
        self.stop_server()

    # ---- which model ---------------------------------------------------------------
    def refresh_runs(self) -> None:
        from ftwizard.serve.target import servable_runs

        runs = servable_runs(Path(self.app.state.config.runs_dir))
        sel = self.query_one("#try-run", Select)
        current = sel.value if isinstance(sel.value, str) else None
        options = [(p.name, str(p)) for p in runs] + [(BASE_LABEL, BASE_ONLY)]
        sel.set_options(options)
        values = [v for _, v in options]
        sel.value = current if current in values and current != BASE_ONLY else values[0]  # newest run first

    @on(Select.Changed, "#try-run")
    def _run_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self._loaded_for and self.server is not None:
            self.stop_server()
            self.action_clear()
            self.set_status(Text(f"model changed; it loads on the next message. {HINT}", style="dim"))

    def resolve(self):
        from ftwizard.serve.target import base_target, resolve_target

        value = self.query_one("#try-run", Select).value
        if value == BASE_ONLY or not isinstance(value, str):
            return base_target(self.app.state.config)
        return resolve_target(value, Path(self.app.state.config.runs_dir))

    # ---- the server process ---------------------------------------------------------
    def stop_server(self) -> None:
        self.cancel.set()
        server, self.server = self.server, None
        if self.client is not None:
            self.client.close()
            self.client = None
        if server is not None:
            threading.Thread(target=server.stop, daemon=True).start()  # never block the UI on a process exit
        self._loaded_for = None

    @work(thread=True, exclusive=True, group="try-load")
    def load(self) -> None:
        from ftwizard.chat.client import ChatClient
        from ftwizard.serve.launch import start_server

        call = self.app.call_from_thread
        try:
            target = self.resolve()
        except UserError as e:
            call(self._load_failed, e.render())
            return
        call(self.set_status, Text(f"loading {target.name} ({target.label}) in its own process...", style="yellow"))
        t0 = time.perf_counter()
        server = start_server(target)
        try:
            info = server.wait_ready()
        except UserError as e:
            call(self._load_failed, e.render())
            return
        client = ChatClient(server.base_url, server.token)
        call(self._loaded, target, server, client, info, time.perf_counter() - t0)

    def _loaded(self, target, server, client, info, seconds: float) -> None:
        self.loading = False
        self.target, self.server, self.client = target, server, client
        self._loaded_for = str(self.query_one("#try-run", Select).value)
        self._loaded_text = Text.assemble(
            (f"{target.name} ({target.label}) on {info.get('device')}, loaded in {seconds:.0f} s", "bold"),
            ("  system prompt: ", "dim"), (repr(target.system_prompt) if target.system_prompt else "none", ""))
        self.set_status(self._loaded_text + Text(f"\n{HINT}", style="dim"))
        self.query_one("#try-input", Input).placeholder = "message (Enter sends)"
        if self._pending is not None:
            text, self._pending = self._pending, None
            self.send(text)

    def _load_failed(self, message: str) -> None:
        self.loading = False
        self._pending = None
        self.set_status(Text(message, style="bold red"))

    # ---- chatting ----------------------------------------------------------------------
    def set_status(self, text: Text) -> None:
        self.query_one("#try-status", Static).update(text)

    def sampling(self) -> dict | None:
        try:
            t = float(self.query_one("#try-temp", Input).value or 0)
            p = float(self.query_one("#try-top-p", Input).value or 1)
            if not (0 <= t <= 2 and 0 < p <= 1):
                raise ValueError
        except ValueError:
            self.set_status(Text("temperature takes 0-2 (0 = greedy), top-p above 0 up to 1", style="bold red"))
            return None
        return {"temperature": t, "top_p": p}

    @on(Input.Submitted, "#try-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.generating or self.loading:
            self.app.notify("wait for the answer, or press Esc to stop it", timeout=3)
            return
        if self.sampling() is None:
            return
        event.input.value = ""
        if self.server is None or not self.server.alive():
            self.server = None
            self._pending = text
            self.loading = True
            self.load()
            self.turns.append(Turn(text))
            self.turns[-1].state = "waiting"
            self.render_turns()
            return
        self.send(text)

    def history(self, upto: int) -> list[dict[str, str]]:
        """Messages for turn `upto`: earlier finished turns, then its question."""
        msgs: list[dict[str, str]] = []
        for t in self.turns[:upto]:
            if t.state == "done":
                msgs += [{"role": "user", "content": t.question}, {"role": "assistant", "content": t.answer}]
        msgs.append({"role": "user", "content": self.turns[upto].question})
        return msgs

    def send(self, text: str) -> None:
        params = self.sampling()
        if params is None:
            return
        if not self.turns or self.turns[-1].question != text or self.turns[-1].state not in ("waiting",):
            self.turns.append(Turn(text))
        turn = self.turns[-1]
        turn.state = "streaming"
        self.render_turns()
        self.cancel.clear()
        self.generating = True
        self.generate(len(self.turns) - 1, "tuned", params)

    def action_ask_base(self) -> None:
        if self.generating or self.loading:
            self.app.notify("wait for the answer, or press Esc to stop it", timeout=3)
            return
        if self.target is not None and self.target.kind == "base":
            self.app.notify("this is the base model already", timeout=3)
            return
        done = [i for i, t in enumerate(self.turns) if t.state == "done"]
        if not done or self.client is None:
            self.app.notify("send a message first; Ctrl+O then shows the base model's answer to it", timeout=4)
            return
        params = self.sampling()
        if params is None:
            return
        i = done[-1]
        self.turns[i].base, self.turns[i].base_state = "", "streaming"
        self.query_one("#try-base-pane").add_class("shown")
        self.render_turns()
        self.cancel.clear()
        self.generating = True
        self.generate(i, "base", params)

    @work(thread=True, exclusive=True, group="try-generate")
    def generate(self, index: int, side: str, params: dict) -> None:
        from ftwizard.chat.client import ApiError

        call = self.app.call_from_thread
        turn = self.turns[index]
        client = self.client
        model = "base" if side == "base" else self.target.name
        stream = client.stream(self.history(index), model, **params)
        try:
            for piece in stream:
                if self.cancel.is_set():
                    break  # hang up: the server stops at its next token
                call(self._piece, turn, side, piece, stream)
        except ApiError as e:
            call(self._finished, turn, side, stream, f"error: {e.message}")
            return
        except Exception as e:  # noqa: BLE001 - e.g. the model was switched mid-answer and its client closed
            call(self._finished, turn, side, stream, f"error: {type(e).__name__}: {e}")
            return
        finally:
            stream.close()
            self.generating = False
        call(self._finished, turn, side, stream, None)

    def _piece(self, turn: Turn, side: str, piece: str, stream) -> None:
        if side == "base":
            if turn.base_state != "streaming":
                return
            turn.base = (turn.base or "") + piece
        else:
            if turn.state != "streaming":
                return
            turn.answer += piece
        self.render_turns()
        self._live_rate(side, stream)

    def _live_rate(self, side: str, stream) -> None:
        """Tokens so far and the decoding rate while the answer streams (the final figure replaces it)."""
        if stream.first_token_s is None:
            return
        now = time.perf_counter()
        first_seen = self._first_seen.setdefault(id(stream), now)
        rate = f", {(stream.pieces - 1) / (now - first_seen):.1f} tokens/s" if now - first_seen > 0.2 else ""
        base = getattr(self, "_loaded_text", Text(""))
        self.set_status(base + Text(f"\n{side}: {stream.pieces} tokens, first token {stream.first_token_s:.2f} s"
                                    f"{rate}", style="dim"))

    def _finished(self, turn: Turn, side: str, stream, error: str | None) -> None:
        from ftwizard.chat.terminal import stats_line

        stopped = self.cancel.is_set()
        state = "failed" if error else "stopped" if stopped else "done"
        stats = error or stats_line(stream, stopped).replace("; not kept in the history", "")
        if side == "base":
            if turn.base_state == "streaming":
                turn.base_state, turn.base_stats = state, stats
        elif turn.state == "streaming":
            turn.state, turn.stats = state, stats
        self.render_turns()
        base = getattr(self, "_loaded_text", Text(""))
        self.set_status(base + Text(f"\n{side}: {stats}", style="bold red" if error else "dim"))

    def action_stop(self) -> None:
        """Esc: stop the answer now (the pane says so at once; the reader hangs up at the next token)."""
        if self.loading and self._pending is not None:
            self._pending = None
            if self.turns and self.turns[-1].state == "waiting":
                self.turns.pop()
            self.set_status(Text("the model keeps loading; your message was not sent", style="yellow"))
            self.render_turns()
            return
        if not self.generating:
            return
        self.cancel.set()
        for t in self.turns:
            if t.state == "streaming":
                t.state, t.stats = "stopped", "[stopped]"
            if t.base_state == "streaming":
                t.base_state, t.base_stats = "stopped", "[stopped]"
        self.render_turns()

    def action_clear(self) -> None:
        if self.generating:
            self.action_stop()
        self.turns.clear()
        self.query_one("#try-base-pane").remove_class("shown")
        self.render_turns()

    # ---- drawing --------------------------------------------------------------------------
    def render_turns(self) -> None:
        name = self.target.name if self.target is not None else "model"
        tuned, base = Text(), Text()
        for t in self.turns:
            for out in (tuned, base):
                out.append("you  ", style="bold")
                out.append(t.question + "\n")
            tuned.append(f"{name}  ", style="bold cyan")
            if t.state == "waiting":
                tuned.append("(loading the model...)\n", style="yellow")
            else:
                tuned.append(t.answer + ("▌" if t.state == "streaming" else "") + "\n")
            if t.stats:
                tuned.append(t.stats + "\n", style="red" if t.state == "failed" else "dim")
            if t.base is not None:
                base.append("base  ", style="bold magenta")
                base.append(t.base + ("▌" if t.base_state == "streaming" else "") + "\n")
                if t.base_stats:
                    base.append(t.base_stats + "\n", style="red" if t.base_state == "failed" else "dim")
            else:
                base.append("(Ctrl+O asks the base)\n", style="dim")
            tuned.append("\n")
            base.append("\n")
        self.query_one("#try-tuned", Static).update(tuned)
        self.query_one("#try-base", Static).update(base)
        self.query_one("#try-tuned-pane", VerticalScroll).scroll_end(animate=False)
        self.query_one("#try-base-pane", VerticalScroll).scroll_end(animate=False)
