"""A small OpenAI-compatible server on 127.0.0.1 that misbehaves the way real servers do.

`FakeLLM(**knobs)` answers `generate` prompts ("Topic: ...", "Write N ...") with N groundable
species sentences, records every request body in `.bodies`, and can:
- `json_schema_status=500`: refuse `response_format: json_schema` as llama-cpp-python does
  (HTTP 500, "Input should be 'text' or 'json_object'");
- `bounds_status=400`: refuse minItems/maxItems in a schema as OpenAI's strict mode does;
- `context_chars=N`: answer 400 "request (T tokens) exceeds the available context size" when the
  messages are longer than N characters (llama-server's words);
- `runaway=True`: a first answer that runs on (thousands of characters of broken JSON);
- `cut_below=N`: cut an answer off (`finish_reason=length`) when `max_tokens` is below N;
- `style="prose"|"list"`: ignore `response_format` and wrap the JSON in prose and a fence, or
  answer a bare list;
- `delay_s`, `slow_first_s`: answer every request (or only the first) that late;
- `hook(body, n) -> (status, payload) | None`: anything else, per request.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from distill_ner.annotators.http_server import BackgroundServer

HABITATS = ["dry forests", "cold mountain rivers", "coastal mangroves", "alpine meadows", "limestone caves", "peat swamps", "river deltas"]
FOODS = ["small insects", "freshwater shrimp", "ripe figs", "river snails", "seeds of grasses", "aquatic worms", "young leaves"]
TEMPLATES = [
    "The {name} lives in {hab} and feeds on {food}.",
    "In {hab}, small groups of {name} hunt {food} at dusk.",
    "Conservationists report that the {name} survives only in {hab}, where it eats {food}.",
    "Most of the diet of the {name}, a rare inhabitant of {hab}, is {food}.",
    "Every spring the {name} returns to {hab} to breed and to feed on {food}.",
]


def item(topic: str, i: int) -> dict[str, Any]:
    """A groundable annotated sentence about `topic` (the i-th of an answer)."""
    name = topic.split(" (")[0]
    hab, food = HABITATS[i % len(HABITATS)], FOODS[(i * 3) % len(FOODS)]
    text = TEMPLATES[i % len(TEMPLATES)].format(name=name, hab=hab, food=food)
    return {
        "text": text,
        "entities": [{"text": name, "label": "SPECIES"}, {"text": hab, "label": "HABITAT"}, {"text": food, "label": "FEEDING"}],
        "relations": [{"head": name, "tail": hab, "label": "live_in"}, {"head": name, "tail": food, "label": "feed_on"}],
    }


def error(status: int, message: str, kind: str = "invalid_request_error") -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": kind, "code": status}}


class FakeLLM:
    """See the module docstring; a context manager that serves on a free port."""

    def __init__(
        self,
        json_schema_status: int | None = None,
        bounds_status: int | None = None,
        context_chars: int | None = None,
        runaway: bool = False,
        cut_below: int | None = None,
        style: str = "json",
        delay_s: float = 0.0,
        slow_first_s: float = 0.0,
        hook: Callable[[dict[str, Any], int], tuple[int, Any] | None] | None = None,
    ) -> None:
        self.json_schema_status, self.bounds_status, self.context_chars = json_schema_status, bounds_status, context_chars
        self.runaway, self.cut_below, self.style, self.delay_s, self.hook = runaway, cut_below, style, delay_s, hook
        self.slow_first_s = slow_first_s
        self.bodies: list[dict[str, Any]] = []
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]), Route("/v1/models", self.models)])
        self.server = BackgroundServer(app, name="fake LLM")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"

    def __enter__(self) -> FakeLLM:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def formats(self) -> list[str | None]:
        return [(b.get("response_format") or {}).get("type") for b in self.bodies]

    async def models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def chat(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.bodies.append(body)
        status, payload = self.respond(body, len(self.bodies))
        if self.delay_s or (self.slow_first_s and len(self.bodies) == 1):
            await asyncio.sleep(self.delay_s + (self.slow_first_s if len(self.bodies) == 1 else 0))
        return JSONResponse(payload, status_code=status)

    def respond(self, body: dict[str, Any], n_call: int) -> tuple[int, Any]:
        if self.hook and (custom := self.hook(body, n_call)) is not None:
            return custom
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and self.json_schema_status:
            message = (
                "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", "
                "'input': 'json_schema', 'ctx': {'expected': \"'text' or 'json_object'\"}}]"
            )
            return error(self.json_schema_status, message, "internal_server_error")
        schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema")
        if self.bounds_status and schema and "maxItems" in json.dumps(schema):
            return error(self.bounds_status, "Invalid schema for response_format 'answer': In context=('properties', 'examples'), 'maxItems' is not permitted.")
        chars = sum(len(str(m.get("content", ""))) for m in body["messages"])
        if self.context_chars and chars > self.context_chars:
            return error(400, f"request ({chars // 4 + 100} tokens) exceeds the available context size ({self.context_chars // 4} tokens), try increasing it", "exceed_context_size_error")
        prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
        topic = re.search(r"^Topic: (.*)$", prompt, re.M).group(1).strip()
        n = int(re.search(r"\bWrite (\d+)\b", prompt).group(1))
        reask = any(m["role"] == "assistant" for m in body["messages"])
        content = json.dumps({"examples": [item(topic, i) for i in range(n)]})
        finish = "stop"
        if self.runaway and not reask:
            content = '{"examples": [{"text": "' + "and the forest and the river " * 200 + '"'  # a loop, then the end of the context
        elif self.cut_below and (body.get("max_tokens") or 0) < self.cut_below:
            content, finish = content[: len(content) // 2], "length"
        elif self.style == "prose":
            content = f"Sure! Here are the sentences you asked for:\n```json\n{content}\n```\nEach entity is given as {{text, label}} and each relation as {{head, tail, label}}."
        elif self.style == "list":
            content = json.dumps([item(topic, i) for i in range(n)], indent=2)
        return 200, {
            "id": f"chatcmpl-{n_call}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": chars // 4, "completion_tokens": len(content) // 4},
        }
