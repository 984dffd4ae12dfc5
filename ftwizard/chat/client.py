"""A small client for OpenAI-compatible chat servers (ours, vLLM, Ollama, llama.cpp, hosted APIs).

Built on httpx (well kept, sync and streaming). Server-sent events are read line by
line by hand: OpenAI's stream is only `data: {json}` lines ending with `data: [DONE]`,
a few lines that do not justify another dependency. Used by `ftwizard chat`, the Try
step and the judge. Light: no torch.

`stream()` yields text pieces as they arrive and records the timings a person feels:
time to the first token (from sending the request) and tokens per second after it.
Breaking out of the loop (or `close()`) hangs up, and our server then stops generating.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

import httpx


class ApiError(Exception):
    """The server refused the request or could not be reached: status (0 = no answer) and its message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}" if status else message)
        self.status, self.message = status, message


def _message_of(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        err = body.get("error", body)
        return err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        return resp.text[:300] or resp.reason_phrase


class Stream:
    """One streamed answer: iterate for text pieces; afterwards read finish, tokens and timings."""

    def __init__(self, client: "ChatClient", payload: dict[str, Any]):
        self.client, self.payload = client, payload
        self.text = ""
        self.finish: str | None = None
        self.pieces = 0
        self.usage: dict | None = None
        self.first_token_s: float | None = None
        self.total_s: float | None = None
        self._resp: httpx.Response | None = None
        self._cm = None
        self.closed = False

    @property
    def tokens(self) -> int:
        return int(self.usage["completion_tokens"]) if self.usage else self.pieces

    @property
    def tokens_per_s(self) -> float | None:
        """Decoding speed after the first token (prompt reading excluded, as LLM benchmarks report it)."""
        if self.first_token_s is None or self.total_s is None or self.pieces < 2:
            return None
        span = self.total_s - self.first_token_s
        return (self.pieces - 1) / span if span > 0 else None

    def __iter__(self) -> Iterator[str]:
        t0 = time.perf_counter()
        try:
            self._cm = self.client.http.stream("POST", self.client.url("/chat/completions"), json=self.payload,
                                               headers=self.client.headers())
            try:
                self._resp = self._cm.__enter__()
            except httpx.HTTPError as e:
                raise ApiError(0, f"cannot reach {self.client.base_url}: {e}") from None
            if self._resp.status_code >= 400:
                self._resp.read()
                raise ApiError(self._resp.status_code, _message_of(self._resp))
            for line in self._resp.iter_lines():
                if self.closed:
                    break
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                obj = json.loads(data)
                if "error" in obj:
                    raise ApiError(500, (obj["error"] or {}).get("message", "error"))
                if obj.get("usage"):
                    self.usage = obj["usage"]
                for ch in obj.get("choices") or []:
                    piece = (ch.get("delta") or {}).get("content")
                    if piece:
                        if self.first_token_s is None:
                            self.first_token_s = time.perf_counter() - t0
                        self.pieces += 1
                        self.text += piece
                        yield piece
                    if ch.get("finish_reason"):
                        self.finish = ch["finish_reason"]
        except httpx.HTTPError as e:
            if not self.closed:
                raise ApiError(0, f"the connection to {self.client.base_url} broke: {e}") from None
        finally:
            self.total_s = time.perf_counter() - t0
            self.close()

    def close(self) -> None:
        """Hang up (the server stops generating at its next token)."""
        self.closed = True
        if self._cm is not None:
            cm, self._cm = self._cm, None
            try:
                cm.__exit__(None, None, None)
            except (httpx.HTTPError, RuntimeError):
                pass


class ChatClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 600.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))

    def url(self, path: str) -> str:
        return self.base_url + path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def close(self) -> None:
        self.http.close()

    def _get(self, url: str) -> dict:
        try:
            r = self.http.get(url, headers=self.headers())
        except httpx.HTTPError as e:
            raise ApiError(0, f"cannot reach {url}: {e}") from None
        if r.status_code >= 400:
            raise ApiError(r.status_code, _message_of(r))
        return r.json()

    def models(self) -> list[str]:
        return [m["id"] for m in self._get(self.url("/models")).get("data", [])]

    def health(self) -> dict:
        """Our server's /health (busy flag, system prompt); not part of the OpenAI API."""
        return self._get(self.base_url.removesuffix("/v1") + "/health")

    def payload(self, messages: list[dict], model: str | None = None, temperature: float = 0.0, top_p: float = 1.0,
                max_tokens: int | None = None, **extra) -> dict[str, Any]:
        p: dict[str, Any] = {"messages": messages, "temperature": temperature, "top_p": top_p, **extra}
        if model:
            p["model"] = model
        if max_tokens:
            p["max_tokens"] = max_tokens
        return p

    def complete(self, messages: list[dict], model: str | None = None, **params) -> dict:
        """A whole (non-streamed) chat completion as the server's JSON."""
        try:
            r = self.http.post(self.url("/chat/completions"), json=self.payload(messages, model, **params),
                               headers=self.headers())
        except httpx.HTTPError as e:
            raise ApiError(0, f"cannot reach {self.base_url}: {e}") from None
        if r.status_code >= 400:
            raise ApiError(r.status_code, _message_of(r))
        return r.json()

    def stream(self, messages: list[dict], model: str | None = None, **params) -> Stream:
        p = self.payload(messages, model, stream=True, stream_options={"include_usage": True}, **params)
        return Stream(self, p)
