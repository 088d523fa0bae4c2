"""What the console's modules share: the services it acts through, the request
and application keys, and the HTTP status of each error.

:mod:`interlock.console.app` builds the application and imports the page
modules (:mod:`~interlock.console.pages`, :mod:`~interlock.console.live`);
they reach the running console only through :data:`CONSOLE`, typed by the
:class:`ConsoleView` protocol, so no module of the package imports the one
that imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from interlock.approvals import Approvals
from interlock.auth import Principal, PrincipalDirectory
from interlock.config import ServerConfig
from interlock.console.sessions import Session
from interlock.decisions import DecisionService
from interlock.errors import InterlockError
from interlock.events import EventHub
from interlock.guard import Guard
from interlock.health import HealthMonitor
from interlock.plans.orchestrator import Orchestrator
from interlock.policy.manager import PolicyManager
from interlock.signals import SignalEngine

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


@dataclass(frozen=True)
class Services:
    """What the console reads and acts through: the services the gRPC servicers use."""

    config: ServerConfig
    guard: Guard
    directory: PrincipalDirectory | None
    decisions: DecisionService
    approvals: Approvals
    orchestrator: Orchestrator
    events: EventHub
    health: HealthMonitor
    signals: SignalEngine
    policies: PolicyManager


class ConsoleView(Protocol):
    """What a page handler uses of the console (:class:`interlock.console.app.Console`)."""

    @property
    def s(self) -> Services: ...

    @property
    def config(self) -> ServerConfig: ...

    def render(
        self, request: web.Request, template: str, status: int = 200, **context: Any
    ) -> web.Response: ...


CONSOLE = web.AppKey("console", ConsoleView)
SESSION = web.RequestKey("session", Session)
PRINCIPAL = web.RequestKey("principal", Principal)


def http_status(exc: InterlockError) -> int:
    return HTTP_STATUS.get(exc.code.name, 500)


def console(request: web.Request) -> ConsoleView:
    return request.app[CONSOLE]


__all__ = [
    "CONSOLE",
    "HTTP_STATUS",
    "PRINCIPAL",
    "SESSION",
    "ConsoleView",
    "Services",
    "console",
    "http_status",
]
