"""The LLM client's settings, each defined once, without importing the client (the openai package
takes seconds to import): `LLMConfig` (annotators/llm.py) adds the connection to them, the run
config's `llm` section the run's own settings, and the `generate`/`annotate` flags read their
defaults here."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

StructuredMode = Literal["json_schema", "json_object_schema", "json_object", "none"]
STRUCTURED_MODES: tuple[StructuredMode, ...] = get_args(StructuredMode)


class ClientSettings(BaseModel):
    """How to ask the LLM and how hard to try."""

    model_config = ConfigDict(extra="forbid")

    model: str = "gpt-4o-mini"
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, description="tokens one answer may take; None: the caller's budget (generate: 200 + 400 per example in the call)")
    concurrency: int = Field(default=8, ge=1, description="requests in flight at once")
    timeout: float = Field(default=60.0, gt=0, description="seconds for one request")
    max_retries: int = Field(default=4, ge=0, description="retries of one request on 429, 5xx and timeouts (a timeout retries with another seed)")
    reasks: int = Field(default=2, ge=0, description="re-asks after a malformed or cut-off answer")
    structured: StructuredMode = Field(default="json_schema", description=f"how to ask for JSON: {', '.join(STRUCTURED_MODES)}; steps down by itself if refused")
    schema_bounds: bool = Field(default=True, description="exact example count, bounded entities and relations in the schema (dropped if the server refuses them)")


def client_default(field: str) -> object:
    """The default of a `ClientSettings` field (for CLI help)."""
    return ClientSettings.model_fields[field].default
