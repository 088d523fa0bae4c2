"""Request and decision ids on every log record written while handling a call.

The interceptor sets the request id (the caller's ``x-request-id`` metadata,
or a new one, echoed back in the trailing metadata); the decision path sets
the decision id once it has one. :class:`ContextFilter` copies both onto each
record, so the JSON log lines carry them and the text lines can show them.
"""

from __future__ import annotations

import contextvars
import logging
import os

REQUEST_ID_HEADER = "x-request-id"

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
decision_id: contextvars.ContextVar[str] = contextvars.ContextVar("decision_id", default="")


def new_request_id() -> str:
    return f"req_{os.urandom(8).hex()}"


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``decision_id`` (empty outside a call) to records."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.decision_id = decision_id.get()
        return True


__all__ = ["REQUEST_ID_HEADER", "ContextFilter", "decision_id", "new_request_id", "request_id"]
