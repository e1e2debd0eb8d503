"""The one exception type that reaches users as a one-line error (and a non-zero exit)."""

from __future__ import annotations

from pydantic import ValidationError


class DistillError(Exception):
    """A problem the user can fix: bad input, a broken config, a server that is not up.

    The CLI prints `error: <message>` and exits with status 1; no traceback.
    """


def validation_message(err: ValidationError, names: dict[str, str] | None = None, whole: str = "") -> str:
    """The first problem of a pydantic error in one line: `field: message (and N more)`.

    `names` maps field names to what the user typed (e.g. `concurrency` -> `--concurrency`);
    `whole` names the object itself for a problem not in one field (e.g. `spec`; default: none).
    """
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    loc = (names or {}).get(loc, loc) or whole
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{loc + ': ' if loc else ''}{first['msg'].removeprefix('Value error, ')}{more}"
