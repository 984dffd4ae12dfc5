"""The server process: `python -m ftwizard.serve.worker --target JSON [--host] [--port] [--ready-file F]`.

Binds the port first (a port in use fails in a second, not after the model loads), loads
the model, then serves with uvicorn. When it accepts connections it writes the ready
file (atomically) with the port, pid and model ids; a failure writes `{"error": ...}`
there instead, so a launcher can show the reason. The bearer token comes from the
environment (FTWIZARD_SERVE_TOKEN), never the command line, where `ps` would show it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

TOKEN_ENV = "FTWIZARD_SERVE_TOKEN"


def _write_ready(path: str | None, data: dict) -> None:
    if not path:
        return
    from ftwizard.fileio import atomic_write_text

    atomic_write_text(Path(path), json.dumps(data))


def _watch_parent() -> None:
    """A private server must not outlive its chat: exit once the parent is gone (re-parented)."""
    import threading

    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ftwizard.serve.worker")
    ap.add_argument("--target", required=True, help="ServeTarget as JSON")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--ready-file")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="stop when the process that started this one is gone (chat, the Try step)")
    args = ap.parse_args(argv)
    if args.exit_with_parent:
        _watch_parent()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from ftwizard.serve.target import ServeTarget

    target = ServeTarget.from_json(args.target)
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        msg = f"cannot listen on {args.host}:{args.port}: {e.strerror or e}"
        _write_ready(args.ready_file, {"error": msg, "fix": "pass another --port (0 picks a free one)"})
        log(f"error: {msg}")
        return 2
    port = sock.getsockname()[1]
    try:
        from ftwizard.serve.model import ChatModel

        model = ChatModel(target, log=log)
    except Exception as e:  # noqa: BLE001 - one line for the launcher, the traceback in the log
        import traceback

        traceback.print_exc()
        _write_ready(args.ready_file, {"error": f"the model did not load: {type(e).__name__}: {e}",
                                       "fix": "see the server log"})
        return 1

    import uvicorn

    from ftwizard.serve.app import build_app

    def ready() -> None:
        _write_ready(args.ready_file, {"port": port, "host": args.host, "pid": os.getpid(), "models": target.model_ids,
                                       "device": model.device, "load_s": round(model.load_s, 2),
                                       "system_prompt": target.system_prompt, "label": target.label,
                                       "ready_at": time.time()})
        shown = "localhost" if args.host in ("127.0.0.1", "::1") else args.host
        log(f"serving {', '.join(target.model_ids)} ({target.label}, {model.device}) at http://{shown}:{port}/v1"
            f"{'  (bearer token required)' if os.environ.get(TOKEN_ENV) else ''}")

    app = build_app(model, token=os.environ.get(TOKEN_ENV) or None, on_ready=ready, log=log)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
                            lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
