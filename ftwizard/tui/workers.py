"""One place for worker failures.

`Worker.StateChanged` does not bubble, so each node that starts workers mixes this in;
a failed worker then shows the app's single error dialog instead of try/except in
every worker (expected failures, such as a UserError, are still handled in the worker).
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState


class ReportsWorkerErrors:
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.app.report_worker_error(event.worker)  # type: ignore[attr-defined]
