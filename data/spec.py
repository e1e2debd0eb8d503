"""Task specs: labels, relation types, prompts, few-shot examples and seed topics, as YAML data."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distill_ner.data.errors import DistillError, validation_message

SPECS_DIR = Path(__file__).parent / "specs"


class SpecError(DistillError, ValueError):
    """A task spec that cannot be used; the message names the file and the mistake."""


# Hyphens inside entity labels are allowed (BioNLP's "Multi-tissue_structure"): every reader of a
# BIO tag splits it on the first hyphen only ("B-Multi-tissue_structure" -> "B", the label), and
# seqeval strips hyphens from the label's ends, so a label may not start or end with one.
ENTITY_LABEL = r"^[A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*$"


class EntityType(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(pattern=ENTITY_LABEL)
    description: str = ""


class RelationType(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    head: list[str] = Field(min_length=1)
    tail: list[str] = Field(min_length=1)
    description: str = ""


class FewShotEntity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    label: str


class FewShotRelation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    head: str
    tail: str
    label: str


class FewShot(BaseModel):
    """An example answer shown to the LLM; mentions are given as text, like the LLM answers."""

    model_config = ConfigDict(extra="forbid")

    text: str
    entities: list[FewShotEntity] = Field(default_factory=list)
    relations: list[FewShotRelation] = Field(default_factory=list)


NEGATIVE_PROMPT = """Off-topic: {{ topic }}
Write {{ n }} different sentences about this subject, in the style of the texts of this domain, that name no entity of these types: {{ entities | map(attribute="label") | join(", ") }}.
List no entities and no relations for them."""
DEFAULT_NEGATIVE_TOPICS = [
    "a committee meeting", "market prices", "a train timetable", "a football match", "a software update", "the weather forecast",
    "a cooking recipe", "a city council budget", "a school exam", "an office move", "a museum opening", "a car repair",
]


class Prompts(BaseModel):
    """Jinja2 templates. `generate` writes new annotated texts about a topic; `annotate`
    annotates a given text (used for k-sample confidence and for bringing your own texts);
    `negative` writes texts that name nothing of the spec (so that a student learns to stay quiet)."""

    model_config = ConfigDict(extra="forbid")

    system: str
    generate: str
    annotate: str
    negative: str = NEGATIVE_PROMPT

    @field_validator("system", "generate", "annotate", "negative")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            jinja2.Environment().parse(value)
        except jinja2.TemplateSyntaxError as err:
            raise ValueError(f"template syntax error on line {err.lineno}: {err.message}") from None
        return value


class TaskSpec(BaseModel):
    """Everything domain-specific about a distillation task."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    entities: list[EntityType] = Field(min_length=1)
    relations: list[RelationType] = Field(default_factory=list)
    prompts: Prompts
    few_shot: list[FewShot] = Field(default_factory=list)
    examples_per_call: int = Field(default=5, ge=1, le=50)
    topics: dict[str, list[str]] = Field(description="seed topics, grouped (e.g. by taxon)")
    negative_share: float = Field(default=0.1, ge=0, le=0.5, description="share of generated texts that name no entity (the `negative` prompt, on `negative_topics`)")
    negative_topics: list[str] = Field(default_factory=lambda: list(DEFAULT_NEGATIVE_TOPICS), description="subjects of the texts that name nothing")
    demo_text: str | None = Field(None, description="a sentence to try a trained model on (the report, `distill run`)")
    guidelines: list[str] = Field(
        default_factory=list,
        description="annotation guidelines, one rule each (what a span includes, whether pronouns are marked, what makes a text wrong); "
        "Label Studio shows them in the project's instructions",
    )

    @field_validator("topics")
    @classmethod
    def _topics_not_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not any(value.values()):
            raise ValueError("the seed topic list is empty: add at least one topic")
        for group, items in value.items():
            for item in items:
                if not isinstance(item, str) or not item.strip():
                    raise ValueError(f"group {group!r} has an empty topic")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        labels = [e.label for e in self.entities]
        _no_duplicates(labels, "entity label")
        _no_duplicates([r.label for r in self.relations], "relation label")
        for r in self.relations:
            for side in (*r.head, *r.tail):
                if side not in labels:
                    raise ValueError(f"relation {r.label!r} uses unknown entity label {side!r} (known: {', '.join(labels)})")
        for i, shot in enumerate(self.few_shot):
            self._check_few_shot(i, shot, labels)
        if self.negative_share and not self.negative_topics:
            raise ValueError("negative_share is above 0 but negative_topics is empty")
        for name in ("system", "generate", "annotate", "negative"):
            self.render(name, topic="TOPIC", text="TEXT", n=1)  # undefined variables fail here
        return self

    @property
    def try_text(self) -> str:
        """A sentence to try a trained model on: `demo_text`, else the first few-shot text."""
        return self.demo_text or (self.few_shot[0].text if self.few_shot else self.description)

    def _check_few_shot(self, i: int, shot: FewShot, labels: list[str]) -> None:
        mentions = {}
        for e in shot.entities:
            if e.label not in labels:
                raise ValueError(f"few_shot[{i}]: unknown entity label {e.label!r}")
            if e.text not in shot.text:
                raise ValueError(f"few_shot[{i}]: mention {e.text!r} does not occur in its text")
            mentions[e.text] = e.label
        for r in shot.relations:
            rel = self.relation(r.label)
            if rel is None:
                raise ValueError(f"few_shot[{i}]: unknown relation label {r.label!r}")
            if r.head not in mentions or r.tail not in mentions:
                raise ValueError(f"few_shot[{i}]: relation {r.label!r} refers to a mention that is not an entity")

    # --- lookups -------------------------------------------------------------------------
    @property
    def entity_labels(self) -> list[str]:
        return [e.label for e in self.entities]

    @property
    def relation_labels(self) -> list[str]:
        return [r.label for r in self.relations]

    @property
    def topic_list(self) -> list[str]:
        """All seed topics, in file order."""
        return [t for items in self.topics.values() for t in items]

    def relation(self, label: str) -> RelationType | None:
        return next((r for r in self.relations if r.label == label), None)

    def allows(self, relation: str, head_label: str, tail_label: str) -> bool:
        """Whether the spec allows `relation` from a `head_label` entity to a `tail_label` one."""
        rel = self.relation(relation)
        return rel is not None and head_label in rel.head and tail_label in rel.tail

    def render(self, prompt: str, **variables: Any) -> str:
        """Render one of the prompt templates with the spec itself in scope."""
        return _compile(getattr(self.prompts, prompt)).render(spec=self, entities=self.entities, relations=self.relations, few_shot=self.few_shot, **variables)


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(source)


def _no_duplicates(items: list[str], what: str) -> None:
    seen = set()
    for item in items:
        if item in seen:
            raise ValueError(f"duplicate {what} {item!r}")
        seen.add(item)


def spec_path(path_or_name: str | Path) -> Path:
    """The YAML file of a spec given by path, or by name from `data/specs/` (e.g. "species")."""
    path = Path(path_or_name)
    if not path.exists() and not path.suffix:
        path = SPECS_DIR / f"{path_or_name}.yaml"
    return path


def load_spec(path_or_name: str | Path) -> TaskSpec:
    """Load a spec from a YAML path, or by name from `data/specs/` (e.g. "species")."""
    path = spec_path(path_or_name)
    if not path.exists():
        raise SpecError(f"{path}: spec file not found")
    if path.is_dir():
        raise SpecError(f"{path}: is a folder; give a spec name (e.g. species) or a YAML file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{path}:{where} is not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec is a YAML mapping (name, entities, relations, prompts, topics)")
    try:
        return TaskSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(f"{path}: {validation_message(err, whole='spec')}") from None
    except jinja2.UndefinedError as err:
        raise SpecError(f"{path}: prompts: {err.message}") from None
