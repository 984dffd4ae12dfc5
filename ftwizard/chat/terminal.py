"""`ftwizard chat`: talk to a run's model in the terminal, line by line.

The model runs in the server process (`ftwizard.serve`), started privately on localhost;
this side only reads lines, streams the answer token by token, and keeps the history.
While an answer streams, Esc or Ctrl-C stops it at once (the terminal is put in cbreak
mode to see the Esc key; Ctrl-C still works where stdin is not a terminal). `/base`
asks the base model (the same weights with the adapter off) the last question and shows
both answers side by side.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ftwizard.chat.client import ApiError, ChatClient, Stream

HELP = ("Enter sends · /base: the base model's answer to the last message, beside · /clear: new conversation · "
        "/temp T · /top_p P (temperature 0 = greedy, the default) · /system · /quit · Esc or Ctrl-C stops an answer")


@dataclass
class Conversation:
    """Multi-turn history (user and assistant turns; the server adds the run's system prompt)."""

    turns: list[dict[str, str]] = field(default_factory=list)
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int | None = None

    def ask(self, text: str) -> list[dict[str, str]]:
        return self.turns + [{"role": "user", "content": text}]

    def last_question(self) -> list[dict[str, str]] | None:
        """History up to and including the last user message (what the base is asked with /base)."""
        for i in range(len(self.turns) - 1, -1, -1):
            if self.turns[i]["role"] == "user":
                return self.turns[: i + 1]
        return None

    def last_answer(self) -> str:
        return self.turns[-1]["content"] if self.turns and self.turns[-1]["role"] == "assistant" else ""

    def params(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}


def stats_line(st: Stream, cancelled: bool = False) -> str:
    if cancelled:
        return f"[stopped after {st.pieces} tokens; not kept in the history]"
    parts = [f"{st.tokens} tokens"]
    if st.first_token_s is not None:
        parts.append(f"first token {st.first_token_s:.2f} s")
    if st.tokens_per_s:
        parts.append(f"{st.tokens_per_s:.1f} tokens/s")
    if st.finish == "length":
        parts.append("cut at the token limit")
    return "[" + ", ".join(parts) + "]"


class _KeyWatch:
    """cbreak mode on a terminal stdin while an answer streams, so a lone Esc can be seen."""

    def __init__(self):
        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self.saved = None

    def __enter__(self):
        if self.fd is not None:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)  # not TCSAFLUSH: an Esc typed a moment early still counts
        return self

    def escape_pressed(self, wait: float) -> bool:
        if self.fd is None:
            return False
        r, _, _ = select.select([self.fd], [], [], wait)
        if not r:
            return False
        data = os.read(self.fd, 64)
        return b"\x1b" in data

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def stream_to(console: Console, st: Stream) -> bool:
    """Print the stream's pieces as they come; True if the person stopped it (Esc / Ctrl-C)."""
    q: queue.Queue = queue.Queue()
    end = object()

    def pump():
        try:
            for piece in st:
                q.put(piece)
            q.put(end)
        except BaseException as e:  # noqa: BLE001 - re-raised on the main thread
            q.put(e)

    threading.Thread(target=pump, daemon=True).start()
    with _KeyWatch() as keys:
        try:
            while True:
                try:
                    item = q.get(timeout=0.02)
                except queue.Empty:
                    if keys.escape_pressed(0.03):
                        st.close()
                        return True
                    continue
                if item is end:
                    return False
                if isinstance(item, BaseException):
                    raise item
                console.out(item, end="", highlight=False)
                console.file.flush()
        except KeyboardInterrupt:
            st.close()
            return True


def side_by_side(tuned: str, base: str, tuned_name: str) -> Table:
    t = Table(show_lines=False, expand=True, pad_edge=False)
    t.add_column(tuned_name, ratio=1, overflow="fold")
    t.add_column("base", ratio=1, overflow="fold", style="dim")
    t.add_row(tuned, base)
    return t


def run_chat(client: ChatClient, *, model: str, has_base: bool, system_prompt: str | None, label: str,
             console: Console | None = None, input_fn=input, max_tokens: int | None = None) -> int:
    console = console or Console(highlight=False)
    conv = Conversation(max_tokens=max_tokens)
    console.print(Text(f"chatting with {model} ({label})", style="bold"))
    console.print(Text(f"system prompt: {system_prompt!r}" if system_prompt else "system prompt: none (the run "
                       "trained without one)", style="dim"))
    console.print(Text(HELP, style="dim"))
    while True:
        try:
            line = input_fn("you> ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return 0
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            cmd, _, arg = text.partition(" ")
            if cmd in ("/quit", "/exit", "/q"):
                return 0
            if cmd == "/clear":
                conv.turns.clear()
                console.print(Text("[history cleared]", style="dim"))
            elif cmd == "/system":
                console.print(Text(f"system prompt: {system_prompt!r}", style="dim"))
            elif cmd in ("/temp", "/top_p"):
                try:
                    v = float(arg)
                    if cmd == "/temp" and not 0 <= v <= 2 or cmd == "/top_p" and not 0 < v <= 1:
                        raise ValueError
                except ValueError:
                    console.print(Text(f"{cmd} takes a number: temperature 0-2 (0 = greedy), top_p above 0 up to 1",
                                       style="red"))
                    continue
                setattr(conv, "temperature" if cmd == "/temp" else "top_p", v)
                console.print(Text(f"[temperature {conv.temperature}, top_p {conv.top_p}]", style="dim"))
            elif cmd == "/base":
                ask_base(console, client, conv, model, has_base)
            else:
                console.print(Text(f"unknown command {cmd}. {HELP}", style="red"))
            continue
        messages = conv.ask(text)
        console.print(Text(f"{model}> ", style="bold cyan"), end="")
        st = client.stream(messages, model, **conv.params())
        try:
            cancelled = stream_to(console, st)
        except ApiError as e:
            console.print()
            console.print(Text(f"error: {e.message}", style="red"))
            continue
        console.print()
        console.print(Text(stats_line(st, cancelled), style="dim"))
        if not cancelled:
            conv.turns = messages + [{"role": "assistant", "content": st.text}]


def ask_base(console: Console, client: ChatClient, conv: Conversation, model: str, has_base: bool) -> None:
    if not has_base:
        console.print(Text("this is the base model already (started with --base)", style="yellow"))
        return
    question = conv.last_question()
    if question is None:
        console.print(Text("ask something first; /base then shows the base model's answer to it", style="yellow"))
        return
    console.print(Text("base> ", style="bold magenta"), end="")
    st = client.stream(question, "base", **conv.params())
    try:
        cancelled = stream_to(console, st)
    except ApiError as e:
        console.print(Text(f"\nerror: {e.message}", style="red"))
        return
    console.print()
    console.print(Text(stats_line(st, cancelled).replace("; not kept in the history", ""), style="dim"))
    if not cancelled:
        console.print(side_by_side(conv.last_answer(), st.text, model))
