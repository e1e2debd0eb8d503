"""Wait for human review: a Label Studio webhook that wakes us whenever an annotation is saved.

`ReviewWatcher` registers a webhook on the project that points at a small receiver on this
machine, and returns once enough tasks are reviewed ("all", or at least N). The receiver only
wakes the watcher; progress is always read back through the API, so a stray POST cannot end the
wait early (and one without the watcher's secret header is refused). The webhook is removed on
the way out, also on Ctrl-C or an error.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from label_studio_sdk import LabelStudio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from distill_ner.annotators.http_server import BackgroundServer
from distill_ner.annotators.label_studio import call, create
from distill_ner.data.errors import DistillError

REVIEW_EVENTS = ["ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"]
SECRET_HEADER = "X-Distill-Secret"
WEBHOOK_PATH = "/label-studio-webhook"


def parse_when(text: str) -> int | None:
    """`"all"` -> None (every task), `"N"` -> N (at least N tasks reviewed)."""
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise DistillError(f"--when-reviewed {text!r}: use 'all' or a number of tasks (1 or more)")
    return n


@dataclass(frozen=True)
class Progress:
    reviewed: int  # tasks with at least one submitted (not skipped) annotation
    total: int

    def enough(self, when: int | None) -> bool:
        return self.total > 0 and self.reviewed >= (self.total if when is None else min(when, self.total))


def review_progress(ls: LabelStudio, project_id: int, example_ids: Collection[str] | None = None) -> Progress:
    """How many tasks have a submitted (not skipped) annotation: of the whole project, or of the
    tasks of `example_ids` (one run's examples, when several runs share the spec's project)."""
    if example_ids is None:
        project = call(ls, f"read project {project_id}", ls.projects.get, id=project_id)
        return Progress(project.num_tasks_with_annotations or 0, project.task_number or 0)
    wanted = set(example_ids)

    def count() -> Progress:
        tasks = ls.tasks.list(project=project_id, fields="task_only", include="id,data,total_annotations", page_size=5000)
        mine = [t for t in tasks if t.data and t.data.get("example_id") in wanted]
        return Progress(sum(bool(t.total_annotations) for t in mine), len(mine))

    progress = call(ls, f"listing tasks of project {project_id}", count)
    if wanted and not progress.total:
        raise DistillError(f"none of the {len(wanted)} examples is a task of Label Studio project {project_id}: push them first (distill review push)")
    return progress


class ReviewWatcher:
    """Listen on `host:port` for the project's annotation webhooks; `wait()` until enough tasks are reviewed.

    `example_ids` limits the count to those examples' tasks (default: every task of the project).
    `public_url` is the receiver's address as Label Studio sees it (default `http://host:port`);
    set it when Label Studio runs on another machine.
    """

    def __init__(
        self, ls: LabelStudio, project_id: int, example_ids: Collection[str] | None = None,
        host: str = "127.0.0.1", port: int = 0, public_url: str | None = None,
    ) -> None:
        self.ls, self.project_id, self.example_ids, self.public_url = ls, project_id, example_ids, public_url
        self.events = 0  # webhook calls received
        self._wake = threading.Event()
        self._secret = secrets.token_hex(16)
        app = Starlette(routes=[Route(WEBHOOK_PATH, self._receive, methods=["POST"])])
        self._http = BackgroundServer(app, host, port, name="review webhook receiver")

    def _remove_stale_hooks(self) -> None:
        """Delete this project's hooks left by a watcher that was killed (they point at a dead receiver)."""
        hooks = call(self.ls, "list the project's webhooks", self.ls.webhooks.list, project=str(self.project_id))
        for hook in hooks:
            if hook.url.endswith(WEBHOOK_PATH) and SECRET_HEADER in (hook.headers or {}):
                call(self.ls, f"delete stale webhook {hook.id}", self.ls.webhooks.delete, id=hook.id)

    def _registered(self, url: str) -> Any:
        """Our hook, if a register call that failed on the way back did save it."""
        hooks = self.ls.webhooks.list(project=str(self.project_id))
        return next((h for h in hooks if h.url == url and h.project == self.project_id), None)

    async def _receive(self, request: Request) -> JSONResponse:
        if not secrets.compare_digest(request.headers.get(SECRET_HEADER, ""), self._secret):
            return JSONResponse({"error": "unknown sender"}, status_code=403)
        self.events += 1
        self._wake.set()
        return JSONResponse({"ok": True})

    def wait(self, when: int | None = None, poll_seconds: float = 300.0, on_progress: Callable[[Progress], None] | None = None) -> Progress:
        """Block until `when` tasks (None: all) are reviewed; checks on every webhook and every `poll_seconds`."""
        self._http.start()
        self._remove_stale_hooks()
        url = (self.public_url or f"http://{self._http.host}:{self._http.port}").rstrip("/") + WEBHOOK_PATH
        hook = create(self.ls, "register the review webhook", self.ls.webhooks.create, lambda: self._registered(url),
                      url=url, project=self.project_id, actions=REVIEW_EVENTS, send_payload=False, send_for_all_actions=False,
                      headers={SECRET_HEADER: self._secret})
        try:
            last = None
            while True:
                self._wake.clear()  # before reading, so that a webhook during the read is not lost
                progress = review_progress(self.ls, self.project_id, self.example_ids)
                if on_progress and progress != last:
                    on_progress(progress)
                last = progress
                if progress.enough(when):
                    return progress
                self._wake.wait(poll_seconds)
        finally:
            try:
                call(self.ls, "remove the review webhook", self.ls.webhooks.delete, id=hook.id)
            finally:
                self._http.stop()
