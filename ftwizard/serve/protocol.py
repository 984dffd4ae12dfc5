"""The OpenAI chat-completions protocol, the part we serve: request checks and response shapes.

Light (pydantic only), so the server, the chat client, the judge and the tests share it.
A request that breaks a rule is answered 400 with OpenAI's error shape
`{"error": {"message", "type", "param", "code"}}`, the message naming the field.
Unknown request fields are ignored, as OpenAI-compatible servers do, so clients that
send extra options (logprobs=false, user=...) still work.

One difference from OpenAI, on purpose: temperature defaults to 0 (greedy), so the same
question gets the same answer from a fine-tuned model unless sampling is asked for.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_MAX_TOKENS = 512


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)

    @field_validator("messages")
    @classmethod
    def _last_is_user(cls, v: list[Message]) -> list[Message]:
        if v[-1].role == "assistant":
            raise ValueError("the last message is the assistant's; end with a user message for the model to answer")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops

    @property
    def token_limit(self) -> int:
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS

    @property
    def stops(self) -> list[str]:
        return list(self.stop or [])

    def turns(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class RequestError(Exception):
    """A request we refuse: HTTP status, message, the offending field."""

    def __init__(self, status: int, message: str, param: str | None = None, type_: str = "invalid_request_error",
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def parse_request(payload: Any) -> ChatRequest:
    """A checked request, or RequestError(400) naming the first bad field and what is allowed."""
    if not isinstance(payload, dict):
        raise RequestError(400, "the body must be a JSON object with 'messages'")
    try:
        return ChatRequest.model_validate(payload)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is required"
        elif loc == "n":
            msg = "only n=1 is supported"
        raise RequestError(400, f"{loc}: {msg}", param=loc) from None


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def completion(cid: str, model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chunk(cid: str, model: str, delta: dict, finish: str | None = None) -> dict:
    return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk(cid: str, model: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [], "usage": usage(prompt_tokens, completion_tokens)}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def models_list(ids: list[str], owner: str = "ftwizard") -> dict:
    now = int(time.time())
    return {"object": "list", "data": [{"id": i, "object": "model", "created": now, "owned_by": owner} for i in ids]}
