"""chat and serve: talk to a run's model in the terminal, or serve it over an OpenAI-compatible API.

Both start the same model server process (`python -m ftwizard.serve.worker`); this
process stays light (no torch): it resolves the run, starts the server, and either
chats with it over localhost or waits on it.
"""

from __future__ import annotations

import argparse
import sys

CHECKPOINT_HELP = ("which weights: final (default), best (lowest logged eval loss), a step number, merged (the "
                   "merged export), or a folder")


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run name or folder (or a config YAML: its base model)")
    p.add_argument("--checkpoint", metavar="WHICH", help=CHECKPOINT_HELP)
    p.add_argument("--base", action="store_true", help="the base model alone, without the fine-tuning")
    p.add_argument("--runs-dir", default=None)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chat", help="chat with a run's model in the terminal (the base model's answer on /base)",
        description="Chat with the fine-tuned model, using the chat template and system prompt the run trained with. "
        "Answers stream token by token with tokens/s; Esc or Ctrl-C stops one. /base shows the base model's answer "
        "to the last message beside the tuned one; /clear, /temp, /top_p (greedy by default), /quit.",
    )
    _add_target_args(p)
    p.add_argument("--max-tokens", type=int, default=512, metavar="N", help="longest answer in tokens (default 512)")
    p.set_defaults(handler=cmd_chat)

    s = sub.add_parser(
        "serve", help="serve a run's model with an OpenAI-compatible API (/v1/chat/completions, /v1/models)",
        description="Serve the fine-tuned model over HTTP: POST /v1/chat/completions (JSON or streamed server-sent "
        "events) and GET /v1/models, answering as the run's name, and as 'base' (adapter off) for comparison. "
        "Listens on localhost unless --host says otherwise. With --token (or FTWIZARD_SERVE_TOKEN) every request "
        "needs 'Authorization: Bearer TOKEN'. Temperature defaults to 0 (greedy). Ctrl-C stops it.",
    )
    _add_target_args(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    s.add_argument("--token", help="require this bearer token (better: set FTWIZARD_SERVE_TOKEN, which `ps` "
                                   "does not show)")
    s.set_defaults(handler=cmd_serve)


def _target(args):
    from pathlib import Path

    from ftwizard.paths import default_runs_dir
    from ftwizard.serve.target import resolve_target

    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    return resolve_target(args.run, runs_dir, args.checkpoint, args.base)


def cmd_chat(args) -> int:
    import time

    from ftwizard.chat.client import ChatClient
    from ftwizard.chat.terminal import run_chat
    from ftwizard.serve.launch import start_server

    from ftwizard.errors import UserError

    if args.max_tokens < 1:
        raise UserError("--max-tokens must be at least 1", where="--max-tokens")
    target = _target(args)
    what = f"{target.name} ({target.label})" if target.kind != "base" else "the base model"
    print(f"loading {what}...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    server = start_server(target)
    try:
        info = server.wait_ready()
        print(f"ready in {time.perf_counter() - t0:.1f} s on {info.get('device')}", file=sys.stderr, flush=True)
        client = ChatClient(server.base_url, server.token)
        try:
            return run_chat(client, model=target.name, has_base=target.kind != "base",
                            system_prompt=target.system_prompt, label=target.label, max_tokens=args.max_tokens)
        finally:
            client.close()
    finally:
        server.stop()


def cmd_serve(args) -> int:
    import os

    from ftwizard.errors import UserError
    from ftwizard.serve.launch import TOKEN_ENV, start_server

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a port", where="--port", fix="use 1-65535, or 0 for a free one")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    target = _target(args)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(f"warning: listening on {args.host} without a token: anyone who can reach this machine can use the "
              f"model. Set {TOKEN_ENV} to require one.", file=sys.stderr)
    print(f"loading {target.name} ({target.label})...", file=sys.stderr, flush=True)
    server = start_server(target, host=args.host, port=args.port, token=token, foreground=True)
    try:
        server.wait_ready()
        rc = server.proc.wait()
    except KeyboardInterrupt:
        server.stop()
        print("server stopped", file=sys.stderr)
        return 0
    finally:
        server.stop()
    if rc not in (0, -2, -15):
        raise UserError(f"the server stopped with exit code {rc}", where="the output above", fix="read the reason above")
    return 0
