"""The HTTP side: a Starlette app with OpenAI's `/v1/chat/completions` (plain JSON or
server-sent events) and `/v1/models`, plus `/health` for launchers.

Why Starlette + uvicorn: small, well kept, async, with streaming responses that notice a
client hanging up (which sets the cancel flag, so the model stops within one token). The
model is not thread-safe and a CPU runs one generation well, so requests queue on the
model's lock; generation runs in a worker thread and hands tokens to the event loop.

Auth: with a token, every /v1 request needs `Authorization: Bearer <token>` (401
otherwise); /health stays open so a launcher can tell "up" from "refused". The token is
compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import threading
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ftwizard.serve import protocol as P


def _error(err: P.RequestError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


def build_app(model, token: str | None = None, on_ready=None, log=None) -> Starlette:
    """The ASGI app serving `model` (a `ChatModel`, or anything with its `answer`/`target`)."""
    target = model.target
    ids = target.model_ids
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def check_auth(request: Request) -> None:
        if not token:
            return
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise P.RequestError(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                                      "(the token given to `ftwizard serve --token` or FTWIZARD_SERVE_TOKEN)",
                                 type_="authentication_error", code="invalid_api_key")

    def model_id(req: P.ChatRequest) -> str:
        if req.model in (None, "", "default"):
            return target.name
        if req.model not in ids:
            raise P.RequestError(404, f"model: {req.model!r} is not served here; models: {', '.join(ids)}",
                                 param="model", code="model_not_found")
        return req.model

    async def models(request: Request):
        try:
            check_auth(request)
        except P.RequestError as e:
            return _error(e)
        return JSONResponse(P.models_list(ids))

    async def health(request: Request):
        return JSONResponse({"status": "ok", "busy": bool(getattr(model, "busy", False)), "models": ids,
                             "device": getattr(model, "device", None), "label": target.label,
                             "system_prompt": target.system_prompt})

    async def chat(request: Request):
        try:
            check_auth(request)
            try:
                payload = json.loads(await request.body() or b"null")
            except ValueError as e:
                raise P.RequestError(400, f"the body is not valid JSON: {e}") from None
            req = P.parse_request(payload)
            mid = model_id(req)
        except P.RequestError as e:
            return _error(e)
        cid = P.completion_id()
        if req.stream:
            return StreamingResponse(_stream(req, mid, cid), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        cancel = threading.Event()
        try:
            ans = await asyncio.to_thread(model.answer, mid, req, lambda _t: None, cancel)
        except P.RequestError as e:
            return _error(e)
        except asyncio.CancelledError:
            cancel.set()
            raise
        _log_answer(mid, ans)
        return JSONResponse(P.completion(cid, mid, ans.text, ans.finish, ans.prompt_tokens, ans.completion_tokens))

    async def _stream(req: P.ChatRequest, mid: str, cid: str):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        done = object()

        def run():
            try:
                ans = model.answer(mid, req, lambda t: loop.call_soon_threadsafe(queue.put_nowait, t), cancel)
                if ans.finish == "cancelled":  # the client hung up: nobody reads the queue any more
                    _log_answer(mid, ans)
                loop.call_soon_threadsafe(queue.put_nowait, (done, ans))
            except BaseException as e:  # noqa: BLE001 - handed to the event loop, reported there
                loop.call_soon_threadsafe(queue.put_nowait, (done, e))

        threading.Thread(target=run, daemon=True, name=f"gen-{cid}").start()
        try:
            yield _sse(P.chunk(cid, mid, {"role": "assistant", "content": ""}))
            while True:
                item = await queue.get()
                if isinstance(item, tuple) and item and item[0] is done:
                    result = item[1]
                    break
                yield _sse(P.chunk(cid, mid, {"content": item}))
            if isinstance(result, P.RequestError):
                yield _sse(result.body())
            elif isinstance(result, BaseException):
                yield _sse({"error": {"message": f"generation failed: {type(result).__name__}: {result}",
                                      "type": "server_error", "param": None, "code": None}})
            else:
                _log_answer(mid, result)
                yield _sse(P.chunk(cid, mid, {}, finish=result.finish))
                if req.stream_options and req.stream_options.include_usage:
                    yield _sse(P.usage_chunk(cid, mid, result.prompt_tokens, result.completion_tokens))
            yield "data: [DONE]\n\n"
        finally:  # the client hung up (or we finished): stop the model at its next token
            cancel.set()

    def _log_answer(mid: str, ans) -> None:
        tps = ans.tokens_per_s
        log(f"{time.strftime('%H:%M:%S')} {mid}: {ans.prompt_tokens} prompt + {ans.completion_tokens} tokens, "
            f"{ans.finish}, first token {ans.first_token_s or 0:.2f} s, "
            f"{f'{tps:.1f} tokens/s' if tps else '-'}")

    async def not_found(request: Request, exc):
        status = getattr(exc, "status_code", 404)
        msg = f"{request.method} {request.url.path}: " + ("no such endpoint; use POST /v1/chat/completions or "
                                                          "GET /v1/models" if status == 404 else "method not allowed")
        return JSONResponse(P.RequestError(status, msg).body(), status_code=status)

    async def startup():
        if on_ready:
            on_ready()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        await startup()
        yield

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
