"""One registry mechanism for every kind of plug-in: KD methods, exporters, hardness scores and
pruning steps.

A `Registry` maps names to plug-ins: the built-in ones, those added with `register`, and those
that installed packages declare as Python entry points in the registry's group, so a package of
your own adds one without editing ours:

    # your pyproject.toml
    [project.entry-points."distill_ner.kd_methods"]
    teacher_ce = "my_kd.teacher_ce:METHOD"

A value given as "package.module:attribute" is imported when first used (so listing and checking
names imports neither torch nor the plug-in). A built-in name cannot be taken by an entry point.

| registry | group | a plug-in is |
|---|---|---|
| `trainers.kd.KD_METHODS` | `distill_ner.kd_methods` | a `KDMethod` (`trainers/kd/base.py`) |
| `trainers.export.EXPORTERS` | `distill_ner.exporters` | `(model_dir, out_dir, spec=None, **options) -> Path` |
| `trainers.scores.SCORERS` | `distill_ner.hardness_scores` | `(teacher_dir, examples, dev, early_dir) -> {id: score}` |
| `data.prune.STEPS` | `distill_ner.pruning_steps` | `(args, scores, seed) -> step` |
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from distill_ner.data.errors import DistillError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Named plug-ins of one kind (`kind` names it in errors; `group` is its entry-point group)."""

    def __init__(self, kind: str, group: str, builtin: Mapping[str, T | str]) -> None:
        self.kind, self.group = kind, group
        self._entries: dict[str, T | str] = dict(builtin)
        self._builtin = frozenset(builtin)
        self._plugins_read = False

    def _all(self) -> dict[str, T | str]:
        if not self._plugins_read:
            self._plugins_read = True
            for point in entry_points(group=self.group):
                if point.name not in self._builtin:
                    self._entries.setdefault(point.name, point.value)
        return self._entries

    def register(self, name: str, plugin: T | str) -> None:
        """Add (or replace) `name`: the plug-in itself, or "package.module:attribute"."""
        self._all()[name] = plugin

    def check(self, name: str) -> str:
        """`name` when it is registered, else a one-line error listing the registered names."""
        if name not in self._all():
            raise DistillError(f"unknown {self.kind} {name!r} (registered: {', '.join(self._all())})")
        return name

    def __getitem__(self, name: str) -> T:
        plugin = self._all()[name]
        if isinstance(plugin, str):
            module, _, attribute = plugin.partition(":")
            try:
                plugin = getattr(importlib.import_module(module), attribute)
            except (ImportError, AttributeError) as err:
                raise DistillError(f"{self.kind} {name!r}: cannot load {self._all()[name]!r} ({err})") from None
            self._entries[name] = plugin
        return plugin  # type: ignore[return-value]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def copy(self) -> Registry[T]:
        """A registry with the same entries (tests register into a copy)."""
        twin: Registry[T] = Registry(self.kind, self.group, {})
        twin._entries, twin._builtin, twin._plugins_read = dict(self._all()), self._builtin, True
        return twin

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._all())})"

