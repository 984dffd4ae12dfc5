"""Time to first token and tokens/s of the model server, as chat, the Try step and `ftwizard serve` see it.

    python bench/chat_speed.py [RUN_OR_CONFIG] [--runs-dir DIR] [--tokens 64] [--rounds 3]

Starts the server process (the same one `ftwizard chat` starts), then for the tuned
model and the base (adapter switched off) sends the same short questions, streamed,
measuring on the client: time to first token (request sent -> first text; includes
HTTP, the chat template and reading the prompt) and decoding speed after it. One
non-streamed request per model gives the whole-answer latency. Without RUN it serves a
throwaway run with an untrained random LoRA adapter on the embedded model. Prints a
table; record it in docs/benchmarks.md with the machine and `uptime`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

QUESTIONS = ["What colour is the sky?", "Name three fruits.", "Explain what a fine-tuned model is in two sentences."]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    from ftwizard.chat.client import ChatClient
    from ftwizard.serve.launch import start_server
    from ftwizard.serve.target import resolve_target

    if args.run is None:
        from ftwizard.models.embedded import ensure_cached
        from serve_support import make_adapter_run

        tmp = Path(tempfile.mkdtemp(prefix="chat-speed-"))
        runs_dir, run = make_adapter_run(tmp, ensure_cached(log=lambda *a: None))
        target = resolve_target(str(run), runs_dir)
    else:
        target = resolve_target(args.run, Path(args.runs_dir))
    t0 = time.perf_counter()
    server = start_server(target)
    try:
        info = server.wait_ready()
        ready = time.perf_counter() - t0
        client = ChatClient(server.base_url, server.token)
        for _ in client.stream([{"role": "user", "content": "hi"}], target.name, max_tokens=4):  # warm-up
            pass
        import psutil

        proc = psutil.Process(server.proc.pid)

        def cpu() -> float:  # the server's CPU seconds: a load-proof cost next to the wall-clock rates
            t = proc.cpu_times()
            return t.user + t.system

        rows = []
        for model in target.model_ids:
            ttft, tps, toks = [], [], []
            c0 = cpu()
            for _ in range(args.rounds):
                for q in QUESTIONS:
                    st = client.stream([{"role": "user", "content": q}], model, max_tokens=args.tokens)
                    for _ in st:
                        pass
                    ttft.append(st.first_token_s)
                    if st.tokens_per_s:
                        tps.append(st.tokens_per_s)
                    toks.append(st.tokens)
            cpu_per_token = (cpu() - c0) / max(1, sum(toks))
            t1 = time.perf_counter()
            out = client.complete([{"role": "user", "content": QUESTIONS[-1]}], model, max_tokens=args.tokens)
            whole = time.perf_counter() - t1
            rows.append((model, statistics.median(ttft), max(ttft), statistics.median(tps) if tps else float("nan"),
                         statistics.median(toks), whole, out["usage"]["completion_tokens"], cpu_per_token))
        print(f"server: {target.name} ({target.label}) on {info['device']}; process start to ready {ready:.1f} s "
              f"(model load {info['load_s']:.1f} s); threads OMP={os.environ.get('OMP_NUM_THREADS', 'default')}")
        print(f"{'model':<8} {'TTFT med':>9} {'TTFT max':>9} {'tok/s med':>10} {'tokens':>7} "
              f"{'non-stream':>11} {'tokens':>7} {'CPU s/token':>12}")
        for m, t_med, t_max, r, n, whole, n2, c in rows:
            print(f"{m:<8} {t_med:>8.2f}s {t_max:>8.2f}s {r:>10.1f} {n:>7.0f} {whole:>10.2f}s {n2:>7} {c:>12.3f}")
        client.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
