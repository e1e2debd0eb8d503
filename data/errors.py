"""The one exception type that reaches users as a one-line error (and a non-zero exit)."""


class DistillError(Exception):
    """A problem the user can fix: bad input, a broken config, a server that is not up.

    The CLI prints `error: <message>` and exits with status 1; no traceback.
    """
